"""NCCL through cupy (`cupy.cuda.nccl`): the communicator between GPUs, one GPU per process.

NOT YET RUN ON A REAL GPU: no GPU exists where pycaffelite is developed. The calls follow cupy's
documented NCCL API (NcclCommunicator(ndev, id, rank), allReduce and bcast on device pointers and
a stream); the tests run this class against a stand-in `nccl` module that exchanges numpy arrays
between threads, and the logic above it (buckets, agreements) is shared with the MPI route.

Collectives run on a stream of their own, after the work queued on the current stream (an event
orders them without blocking the host), so a bucket travels while the backward pass goes on.
"""
from ..errors import PclError
from .communicator import Communicator, Pending

INSTALL_HINT = "pip install 'pycaffelite[gpu]' (cupy, with the NCCL library for its CUDA)"


def nccl_module():
    """cupy's NCCL bindings; one PclError saying what to install when they are missing."""
    try:
        from cupy.cuda import nccl  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise PclError(f"training on several GPUs needs cupy with NCCL; install it with: "
                       f"{INSTALL_HINT}") from None
    if not getattr(nccl, "available", False):
        raise PclError(f"cupy is installed but cannot load NCCL; install NCCL for your CUDA "
                       f"(e.g. pip install nvidia-nccl-cu12) or the GPU extra: {INSTALL_HINT}")
    return nccl


def new_uid():
    """A new NCCL unique id: made by one process, handed to every rank before they connect."""
    return nccl_module().get_unique_id()


class _NcclPending(Pending):
    def __init__(self, event):
        self.event = event

    def test(self):
        return self.event.done

    def wait(self):
        self.event.synchronize()


class NcclCommunicator(Communicator):
    """Rank `rank` of `size` GPUs joined by the NCCL id `uid`, on the current cupy device
    (`cupy` and `nccl` default to the real modules; tests pass stand-ins)."""

    name = "NCCL"

    def __init__(self, size, uid, rank, cupy=None, nccl=None):
        self.nccl = nccl if nccl is not None else nccl_module()
        if cupy is None:
            import cupy  # noqa: PLC0415 - optional dependency
        self.xp = cupy
        self.rank, self.size = rank, size
        self.comm = self.nccl.NcclCommunicator(size, uid, rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._types = {"float32": self.nccl.NCCL_FLOAT32, "float64": self.nccl.NCCL_FLOAT64,
                       "int64": self.nccl.NCCL_INT64}

    def _after_current_work(self):
        """Make the NCCL stream wait for what is queued on the current stream."""
        ready = self.xp.cuda.Event()
        ready.record()
        self.stream.wait_event(ready)

    def _finished_event(self):
        done = self.xp.cuda.Event()
        done.record(self.stream)
        return done

    def start_allreduce(self, buffer):
        self._after_current_work()
        ptr = buffer.data.ptr
        self.comm.allReduce(ptr, ptr, buffer.size, self._types[buffer.dtype.name],
                            self.nccl.NCCL_SUM, self.stream.ptr)
        return _NcclPending(self._finished_event())

    def broadcast(self, buffer, root=0):
        self._after_current_work()
        self.comm.bcast(buffer.data.ptr, buffer.size, self._types[buffer.dtype.name], root,
                        self.stream.ptr)
        self._finished_event().synchronize()
