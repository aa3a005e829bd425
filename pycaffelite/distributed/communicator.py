"""The communicator interface: what data-parallel training needs from a group of processes.

Two implementations exist: `mpi.MpiCommunicator` (processes, on one machine or several, through
mpi4py) and `nccl_comm.NcclCommunicator` (one GPU per process, through cupy's NCCL bindings).
Everything above them (buckets, the solver's agreement points, broadcasting the weights) is
written once against this interface, so both routes share it; the tests exercise it through
stand-ins (a cupy/NCCL whose ranks are threads, and processes joined by pipes).

Collectives must be called by every rank in the same order (as MPI and NCCL require).
"""
import numpy as np


def to_host(array):
    """A numpy array of `array`'s values (cupy arrays are copied from the device)."""
    return array.get() if hasattr(array, "get") else np.asarray(array)


class Pending:
    """A started all-reduce: `test()` says (without waiting) whether it has finished and lets the
    implementation make progress; `wait()` blocks until it has."""

    def test(self):
        raise NotImplementedError

    def wait(self):
        raise NotImplementedError


class Communicator:
    """A fixed group of `size` ranks; this process is `rank`. `xp` is the array module of the
    buffers the collectives take (numpy for MPI, cupy for NCCL)."""

    rank = 0
    size = 1
    xp = np
    name = "communicator"

    def start_allreduce(self, buffer):
        """Begin summing the contiguous float32 or float64 array `buffer` in place across the
        ranks; returns a Pending. The buffer must not be touched until it has finished."""
        raise NotImplementedError

    def broadcast(self, buffer, root=0):
        """Overwrite `buffer` (a contiguous float32, float64 or int64 array) with root's, in
        place, on every rank."""
        raise NotImplementedError

    def allreduce(self, buffer):
        """Sum `buffer` in place across the ranks and wait for it."""
        self.start_allreduce(buffer).wait()

    def gather(self, value):
        """Every rank's float `value`, as a list indexed by rank (on every rank). Used for the
        small agreements of a training loop (requested actions, non-finite losses)."""
        slots = np.zeros(self.size, dtype=np.float64)
        slots[self.rank] = value
        buffer = self.xp.asarray(slots)
        self.allreduce(buffer)
        return [float(v) for v in to_host(buffer)]
