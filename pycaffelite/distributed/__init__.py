"""Data-parallel training: several solvers, one per process (or GPU), averaging their gradients
after every backward pass, as Caffe's multi-GPU training does.

    mpiexec -n 4 pcl train --solver solver.prototxt          # CPU processes, through MPI
    mpiexec -f hosts -n 8 pcl train --solver solver.prototxt  # several machines (a hostfile)
    pcl train --solver solver.prototxt --gpu 0,1              # one process per GPU, through NCCL
    mpiexec -n 4 pcl train --solver s.prototxt --gpu 0,1      # one GPU per rank (a machine's
                                                              # ranks take its listed GPUs in
                                                              # turn), through NCCL

From a Python script started by mpiexec:

    from pycaffelite import distributed, get_solver
    comm = distributed.init()                 # sets solver_count / solver_rank; None alone
    solver = get_solver("solver.prototxt")    # after init: data layers read the rank's share
    if comm is not None:
        distributed.DataParallel(solver, comm)
    solver.solve()

`rank()` and `size()` are this process's place (pycaffe's solver_rank / solver_count).

Across machines every rank reads the solver, the nets, the data and a --snapshot from the same
paths, so they must be on every machine (a shared folder, or copies). Ctrl-C (SIGINT) reaches
every rank through mpiexec; SIGHUP does not (MPICH's mpiexec ends the job on it): send it to a
rank, e.g. rank 0, whose process id starts every log line. Whichever rank a signal reaches, every
rank acts on it at the same iteration.

Modules: `communicator` (the interface), `mpi` and `nccl_comm` (its two implementations),
`buckets` (the gradient reduction overlapped with the backward pass), `group` (the solver
loop's agreements), `data_parallel` (wiring a solver), `shares` (which records each rank
reads), `launch` (`pcl train` under mpiexec and with several GPUs). The NCCL (GPU) route has not
yet run on a real GPU.
"""
from .. import device
from .data_parallel import DataParallel, broadcast_weights
from .mpi import MpiCommunicator, launched_size


def rank():
    """This process's rank among the solvers training side by side (0 alone)."""
    return device.solver_rank()


def size():
    """How many solvers train side by side (1 alone)."""
    return device.solver_count()


def init():
    """Join the processes mpiexec started with this one: set solver_count, solver_rank and
    multiprocess, and return the MPI communicator; None (a solver alone) when this process was
    not started by mpiexec. Call it before creating the solver."""
    if launched_size() <= 1:
        return None
    comm = MpiCommunicator()
    device.set_solver_count(comm.size)
    device.set_solver_rank(comm.rank)
    device.set_multiprocess(True)
    return comm


__all__ = ["DataParallel", "MpiCommunicator", "broadcast_weights", "init", "rank", "size"]
