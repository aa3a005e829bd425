"""Run `pcl ARGS` (this process being one rank of mpiexec), then save this rank's train-net
weights to rank<r>.caffemodel in the current folder: the test's view of every rank."""
import sys

from pycaffelite import device
from pycaffelite.cli import main
from pycaffelite.solvers import base

_solve = base.Solver.solve


def _solve_and_save(self, resume_file=None):
    _solve(self, resume_file)
    self.net.save(f"rank{device.solver_rank()}.caffemodel")


base.Solver.solve = _solve_and_save
main(sys.argv[1:])
