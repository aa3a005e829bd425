"""pycaffe's NCCL face: multi-GPU gradient exchange for scripts written like Caffe's
python/train.py (one process per GPU):

    uid = caffe.NCCL.new_uid()                      # in the parent, handed to every process
    # in process `rank`:
    caffe.set_mode_gpu(); caffe.set_device(gpus[rank])
    caffe.set_solver_count(len(gpus)); caffe.set_solver_rank(rank); caffe.set_multiprocess(True)
    solver = caffe.SGDSolver(solver_file)
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()                                    # rank 0's weights everywhere
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)             # reduce in buckets during the backward pass
    solver.step(solver.param.max_iter)

It is the same machinery as `pcl train --gpu 0,1` (pycaffelite.distributed, through cupy's NCCL
bindings), and it has not yet run on a real GPU. `has_nccl()` is true only where cupy, its NCCL
library and a GPU are all present; elsewhere NCCL and new_uid end in one message saying what to
install.
"""
from . import device
from .distributed.buckets import GradientReducer
from .distributed.data_parallel import broadcast_weights, check_rank
from .distributed.group import CommunicatorGroup
from .distributed import nccl_comm


def has_nccl():
    """Whether multi-GPU training through NCCL can run here: cupy with NCCL, and a GPU."""
    try:
        nccl_comm.nccl_module()
        import cupy  # noqa: PLC0415 - optional dependency

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - cupy or NCCL missing, or no CUDA driver
        return False


class NCCL:
    """pycaffe's `caffe.NCCL(solver, uid)`: joins this process's solver (on the current GPU, as
    rank solver_rank() of solver_count()) to the others holding `uid`."""

    def __init__(self, solver, uid):
        self.solver = solver
        self.comm = nccl_comm.NcclCommunicator(device.solver_count(), uid, device.solver_rank())
        check_rank(self.comm)
        self.reducer = GradientReducer(solver.net, self.comm, solver.param.iter_size)
        solver.group = CommunicatorGroup(self.comm)

    @staticmethod
    def new_uid():
        """A new id for the processes to join by."""
        return nccl_comm.new_uid()

    def bcast(self):
        """Give every solver rank 0's weights."""
        broadcast_weights(self.solver.net, self.comm)

    # `solver.add_callback(nccl)` and `solver.net.after_backward(nccl)`
    def on_start(self):
        self.reducer.start_iteration()

    def on_gradients_ready(self):
        self.reducer.finish()

    def __call__(self, layer_id):
        self.reducer.layer_done(layer_id)
