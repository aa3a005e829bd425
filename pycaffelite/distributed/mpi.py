"""MPI through mpi4py: the communicator of `mpiexec -n N pcl train ...` and of Python scripts run
under mpiexec.

mpi4py is imported only when this process was started by mpiexec (its environment says so: MPICH
and Intel MPI set PMI_SIZE, Open MPI OMPI_COMM_WORLD_SIZE, MVAPICH MV2_COMM_WORLD_SIZE), so a
plain `pcl train` never loads MPI. The `mpi` extra installs mpi4py and MPICH's runtime (whose
`mpiexec` runs as root too, unlike Open MPI's without --allow-run-as-root).

MPICH moves a message only while the process is inside an MPI call, so a bucket started during the
backward pass would wait for the next call; a progress thread tests the all-reduces in flight every
half millisecond (it sleeps when none is), and the reducer tests them after each layer too. Waiting
polls the request without pause for up to 2 ms (a transfer moves only while both ranks call MPI,
and a bucket's all-reduce takes many steps), then sleeps between polls (up to a millisecond): MPI's
own blocking wait spins for as long as it waits, and ranks waiting while the root solver tests, or
for a slower rank, would take CPU time from the ranks computing beside them.
"""
import os
import threading
import time

from ..errors import PclError
from .communicator import Communicator, Pending

INSTALL_HINT = "pip install 'pycaffelite[mpi]' (mpi4py and the MPICH runtime)"

_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_POLL_SECONDS = 5e-4
_SPIN_SECONDS = 2e-3
_LONGEST_SLEEP = 1e-3


def _from_environment(names, default):
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_size():
    """How many processes mpiexec started this one among (1 when not started by mpiexec)."""
    return _from_environment(_SIZE_VARIABLES, 1)


def launched_rank():
    """This process's rank as mpiexec's environment tells it (0 when not started by mpiexec)."""
    return _from_environment(_RANK_VARIABLES, 0)


def import_mpi():
    """mpi4py's MPI module, initialising MPI; one PclError saying what to install when missing."""
    try:
        from mpi4py import MPI  # noqa: PLC0415 - optional dependency, loaded under mpiexec only
    except ImportError:
        raise PclError(f"pcl was started by mpiexec ({launched_size()} processes) but mpi4py is not "
                       f"installed; install it with: {INSTALL_HINT}") from None
    except RuntimeError as exc:  # mpi4py installed, but no MPI library it can load
        raise PclError(f"mpi4py cannot load an MPI library ({exc}); install one with: "
                       f"{INSTALL_HINT}") from None
    return MPI


def _wait(test):
    """Call `test()` until it is true: without pause for a while, then sleeping between calls."""
    spin_until = time.perf_counter() + _SPIN_SECONDS
    delay = 1e-5
    while not test():
        if time.perf_counter() > spin_until:
            time.sleep(delay)
            delay = min(2 * delay, _LONGEST_SLEEP)


class _MpiPending(Pending):
    """A started all-reduce; its tests are serialised by `lock`, which it shares with the
    progress thread (MPI forbids testing one request from two threads at once)."""

    def __init__(self, request, lock):
        self.request = request
        self.lock = lock
        self.done = False

    def test(self):
        with self.lock:
            return self.test_locked()

    def test_locked(self):
        if not self.done:
            self.done = self.request.Test()
        return self.done

    def wait(self):
        _wait(self.test)


class _Progress:
    """The progress thread: tests the all-reduces in flight every _POLL_SECONDS, sleeping on an
    event while there is none (so it makes no MPI call when MPI is finalised at exit)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.flying = []
        self.work = threading.Event()
        threading.Thread(target=self._run, name="pcl-mpi-progress", daemon=True).start()

    def add(self, pending):
        with self.lock:
            self.flying.append(pending)
        self.work.set()

    def _run(self):
        while True:
            self.work.wait()
            time.sleep(_POLL_SECONDS)
            with self.lock:
                self.flying = [pending for pending in self.flying if not pending.test_locked()]
                if not self.flying:
                    self.work.clear()


class MpiCommunicator(Communicator):
    """The processes of an MPI communicator (COMM_WORLD by default), exchanging numpy arrays."""

    name = "MPI"

    def __init__(self, comm=None):
        self.mpi = import_mpi()
        self.comm = comm if comm is not None else self.mpi.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        expected = launched_size()
        if comm is None and expected != self.size:
            raise PclError(f"mpiexec started {expected} processes but MPI counts {self.size}: the "
                           f"mpiexec on PATH belongs to another MPI than mpi4py's; run the "
                           f"mpiexec installed with mpi4py's MPI (from {INSTALL_HINT})")
        threads_allowed = self.mpi.Query_thread() == self.mpi.THREAD_MULTIPLE
        self._progress = _Progress() if threads_allowed else None
        self._lock = self._progress.lock if threads_allowed else threading.Lock()

    def start_allreduce(self, buffer):
        with self._lock:
            request = self.comm.Iallreduce(self.mpi.IN_PLACE, buffer, op=self.mpi.SUM)
        pending = _MpiPending(request, self._lock)
        if self._progress is not None:
            self._progress.add(pending)
        return pending

    def broadcast(self, buffer, root=0):
        request = self.comm.Ibcast(buffer, root=root)
        _wait(request.Test)

    def broadcast_object(self, value, root=0):
        """Root's picklable `value`, on every rank (an NCCL id, a seed)."""
        return self.comm.bcast(value, root=root)

    def local_place(self):
        """(rank, size) among the ranks of the group on this machine (to choose a GPU, to share
        the CPUs)."""
        local = self.comm.Split_type(self.mpi.COMM_TYPE_SHARED)
        try:
            return local.Get_rank(), local.Get_size()
        finally:
            local.Free()

    def abort(self, code=1):
        """End every process of the job now (a rank failed alone; the others would wait)."""
        self.comm.Abort(code)
