"""Solvers: Caffe's training loop and its six update rules.

    import pycaffelite as pcl
    solver = pcl.get_solver("solver.prototxt")    # the class named by the solver's `type`
    solver.step(100)                               # or solver.solve(), solver.restore(...)

`get_solver` accepts a solver prototxt path or a SolverParameter; the deprecated `solver_type`
enum is upgraded to `type` on reading.
"""
import os

from ..errors import PclError
from ..proto import caffe_pb2
from .adaptive import AdaDeltaSolver, AdaGradSolver, AdamSolver, RMSPropSolver
from .base import NonFiniteLossError, Solver, read_solver_file
from .sgd import NesterovSolver, SGDSolver

SOLVER_CLASSES = {cls.type: cls for cls in (SGDSolver, NesterovSolver, AdaGradSolver, RMSPropSolver,
                                            AdaDeltaSolver, AdamSolver)}


def solver_class(type_name, source="solver"):
    """The solver class for a SolverParameter `type` string; one clear error if unknown."""
    if type_name not in SOLVER_CLASSES:
        raise PclError(f'{source}: unknown solver type "{type_name}"; use one of '
                       f"{', '.join(sorted(SOLVER_CLASSES))}")
    return SOLVER_CLASSES[type_name]


def get_solver(solver):
    """Create the solver a prototxt path (or SolverParameter) describes, of the class its `type`
    names."""
    if isinstance(solver, caffe_pb2.SolverParameter):
        return solver_class(solver.type)(solver)
    source = os.fspath(solver)
    param = read_solver_file(source)
    return solver_class(param.type, source)(param, source=source)


__all__ = ["AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "NesterovSolver", "NonFiniteLossError",
           "RMSPropSolver", "SGDSolver", "SOLVER_CLASSES", "Solver", "get_solver", "read_solver_file",
           "solver_class"]
