"""One solver of a data-parallel group: rank 0's weights everywhere, gradients averaged in buckets
during the backward pass, and the group's agreements wired into the solver's loop."""
from .. import device
from ..errors import PclError
from .buckets import BUCKET_BYTES, GradientReducer
from .group import CommunicatorGroup


def broadcast_weights(net, comm, root=0):
    """Overwrite every learnable param of `net` with root's (fillers, --weights and snapshots
    then start every rank equal)."""
    for blob in net.learnable_params:
        comm.broadcast(blob.write_data(), root)


def check_rank(comm):
    """A PclError unless solver_count / solver_rank say what `comm` does: the data layers chose
    their share of the records from them when the nets were set up."""
    if (device.solver_count(), device.solver_rank()) != (comm.size, comm.rank):
        raise PclError(f"this process is rank {comm.rank} of {comm.size} but solver_count / "
                       f"solver_rank are {device.solver_count()} / {device.solver_rank()}: set "
                       f"them before creating the solver (pycaffelite.distributed.init() does), so "
                       f"that each rank's data layers read their own share of the records")


class DataParallel:
    """Train `solver` as rank `comm.rank` of `comm.size` solvers side by side (Caffe's multi-GPU
    semantics: each rank computes a whole batch, iter_size times, so an update sees
    size x iter_size x batch_size items).

        comm = pycaffelite.distributed.init()        # under mpiexec
        solver = pycaffelite.get_solver("solver.prototxt")
        pycaffelite.distributed.DataParallel(solver, comm)
        solver.solve()

    Creating it broadcasts rank 0's weights (restore a snapshot on every rank before); from then
    on the solver's iterations average the gradients, only rank 0 tests and snapshots, and stops,
    snapshots and non-finite losses are decided by all ranks together (`solver.group`). With the
    solver's `layer_wise_reduce` (the default) the buckets reduce during the backward pass;
    otherwise all at once after it. `reducer` holds the timings.
    """

    def __init__(self, solver, comm, bucket_bytes=BUCKET_BYTES):
        check_rank(comm)
        if comm.xp is not device.array_module():
            raise PclError(f"the {comm.name} communicator exchanges {comm.xp.__name__} arrays but "
                           f"the solver computes with {device.array_module().__name__}: use NCCL "
                           f"between GPUs and MPI between CPU processes")
        self.solver = solver
        self.comm = comm
        self.reducer = GradientReducer(solver.net, comm, solver.param.iter_size, bucket_bytes)
        solver.add_callback(on_start=self.reducer.start_iteration,
                            on_gradients_ready=self.reducer.finish)
        if solver.param.layer_wise_reduce:
            solver.net.after_backward(self.reducer.layer_done)
        solver.group = CommunicatorGroup(comm)
        broadcast_weights(solver.net, comm)
