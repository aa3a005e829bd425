"""How `pcl train` runs as one solver of several.

- Under mpiexec (`mpiexec -n N pcl train ...`) MPI joins the processes. CPU ranks average their
  gradients through MPI; with --gpu, each rank trains on one of the listed GPUs (chosen by its
  rank among the ranks of its machine) and the ranks average through NCCL, whose id rank 0 hands
  out over MPI.
- `pcl train --gpu 0,1` without mpiexec starts one worker process per GPU (as pycaffe's
  train.py does; pycaffelite's device state is per process) and waits for them; the workers run
  the same `pcl train` command line and join through NCCL. SIGINT and SIGHUP received by this
  process are passed on to them (they have a process group of their own, so a terminal's signal
  reaches each once).

A `Job` is this process's place: its rank, and how to end every rank when it fails alone.
Failures while setting up (a bad file, a wrong path: usually every rank fails alike) are agreed
on: the lowest failing rank reports and every rank ends. A failure during training ends the job
at once with the failing rank's message (MPI_Abort, or the worker's exit making the launcher end
the others), so no rank is left waiting in an all-reduce.

The GPU paths (NCCL) have not yet run on a real GPU; the worker processes and everything above
the communicator are tested with a stand-in communicator.
"""
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback

import click

from .. import device, parallel
from .. import training_log as tlog
from ..errors import PclError
from . import mpi, nccl_comm

log = logging.getLogger("pycaffelite")

# Seconds a failing MPI rank waits after writing its message before it ends the job.
_ABORT_GRACE_SECONDS = 0.5
_worker = None  # in a worker process started by `spawn`: (rank, size, connector)


class Job:
    """Rank `rank` of `size` solvers, `local_size` of them on this machine; `connect(gpus)` makes
    the communicator, `abort()` ends every rank; `control` is the communicator the set-up
    agreements use (None before there is one)."""

    control = None

    def __init__(self, rank, size, local_size):
        self.rank = rank
        self.size = size
        self.local_size = local_size

    @property
    def is_root(self):
        return self.rank == 0

    def connect(self, gpus):
        raise NotImplementedError

    def abort(self):
        raise NotImplementedError


class MpiJob(Job):
    """A process started by mpiexec."""

    def __init__(self):
        self.mpi = self.control = mpi.MpiCommunicator()
        self.local_rank, local_size = self.mpi.local_place()
        super().__init__(self.mpi.rank, self.mpi.size, local_size)

    def connect(self, gpus):
        if not gpus:
            device.set_mode_cpu()
            return self.mpi
        return nccl_over_mpi(self.mpi, self.local_rank, gpus)

    def abort(self):
        # mpiexec forwards a rank's stderr through its proxy and ends every process as soon as
        # one aborts, and the message just written may not have been forwarded yet: under load
        # jobs ended without it (1 in 20 with four jobs side by side). Flushed, and given a moment.
        sys.stderr.flush()
        time.sleep(_ABORT_GRACE_SECONDS)
        self.mpi.abort(1)


class WorkerJob(Job):
    """A worker process started by `spawn`; its launcher ends the others when it exits."""

    def __init__(self, rank, size, connector):
        super().__init__(rank, size, size)
        self.connector = connector

    def connect(self, gpus):
        self.control = self.connector(self.rank)
        return self.control

    def abort(self):
        sys.stderr.flush()
        os._exit(1)


def current_job():
    """This process's Job, or None when it trains alone. Under mpiexec this initialises MPI;
    when it cannot (mpi4py missing), rank 0 says what to install and the others end quietly."""
    if _worker is not None:
        return WorkerJob(*_worker)
    if mpi.launched_size() <= 1:
        return None
    try:
        return MpiJob()
    except PclError:
        if mpi.launched_rank() != 0:
            raise click.exceptions.Exit(1) from None
        raise


def configure_logging(job, log_file):
    """pcl's logging for this rank: rank 0 (or a solver alone) logs as usual; the others show
    their errors only and write no log files (--log FILE, GLOG_log_dir are rank 0's)."""
    if job is None or job.is_root:
        tlog.configure_logging(log_file=log_file)
        return
    tlog.configure_logging(level=logging.ERROR,
                           environ={k: v for k, v in os.environ.items() if k != "GLOG_log_dir"})


def nccl_over_mpi(mpi_comm, local_rank, gpus):
    """Train on one of `gpus` (by this rank's place among its machine's ranks) and return an
    NCCL communicator joining the MPI ranks. Not yet run on a real GPU."""
    nccl_comm.nccl_module()
    gpu = gpus[local_rank % len(gpus)]
    device.set_device(gpu)
    device.set_mode_gpu()
    uid = mpi_comm.broadcast_object(nccl_comm.new_uid() if mpi_comm.rank == 0 else None)
    return nccl_comm.NcclCommunicator(mpi_comm.size, uid, mpi_comm.rank)


def join(job, comm):
    """Make this process the job's rank for the solvers created from now on. Unless the
    environment sets the thread count (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS), the ranks of a
    machine share its CPUs: each computes with CPUs / ranks threads (at least 1)."""
    device.set_solver_count(job.size)
    device.set_solver_rank(job.rank)
    device.set_multiprocess(True)
    if not any(os.environ.get(name, "").strip() for name in parallel.THREAD_VARIABLES):
        parallel.set_num_threads(max(1, parallel.num_threads() // job.local_size))
    log.info("Training data-parallel: %d solvers, averaging through %s; %d threads each",
             job.size, comm.name, parallel.num_threads())


# -- failures ---------------------------------------------------------------------------------
class AgreedError(PclError):
    """A set-up failure every rank knows of: reported by one rank, ending all normally."""


def _report(message):
    click.echo(f"pcl: error: {message}", err=True)
    tlog.write_to_log_files(logging.ERROR, f"pcl: error: {message}")


@contextlib.contextmanager
def setting_up(job):
    """Set-up without collectives, on every rank; if any rank fails, the lowest failing rank
    raises its error (with its rank, if not 0) and the others end quietly (exit status 1). Before
    the job has a communicator (a worker not yet connected), a failure is the rank's alone."""
    if job.control is None:
        yield
        return
    failure = None
    try:
        yield
    except PclError as exc:
        failure = exc
    failed = job.control.gather(1.0 if failure is not None else 0.0)
    if not any(failed):
        return
    first = failed.index(1.0)
    if job.rank != first:
        raise click.exceptions.Exit(1)
    raise AgreedError(f"rank {first}: {failure}" if first else str(failure)) from None


@contextlib.contextmanager
def failing_alone(job):
    """Training: an error on this rank ends every rank now, with this rank's message. Errors every
    rank raised together (agreed set-up failures, a non-finite loss) end normally: the root
    reports a non-finite loss, the others exit quietly."""
    from ..solvers.base import NonFiniteLossError  # noqa: PLC0415 - the solvers import this package

    try:
        yield
    except (click.exceptions.Exit, AgreedError):
        raise
    except NonFiniteLossError:
        if job.is_root:
            raise
        raise click.exceptions.Exit(1) from None
    except PclError as exc:
        _report(f"rank {job.rank}: {exc}")
        job.abort()
    except BaseException as exc:  # noqa: BLE001 - a bug or an interrupt: end every rank, not hang
        traceback.print_exc()
        _report(f"rank {job.rank}: {type(exc).__name__}: {exc}")
        job.abort()


# -- one worker process per GPU ---------------------------------------------------------------
class NcclConnector:
    """Made in the launcher, called in worker `rank`: train on gpus[rank] and join through NCCL."""

    def __init__(self, gpus):
        self.gpus = gpus
        self.uid = nccl_comm.new_uid()

    def __call__(self, rank):
        device.set_device(self.gpus[rank])
        device.set_mode_gpu()
        return nccl_comm.NcclCommunicator(len(self.gpus), self.uid, rank)


def _run_worker(rank, size, connector, args):
    global _worker
    os.setpgrp()  # the launcher passes signals on; a terminal's reach it only
    _worker = (rank, size, connector)
    from ..cli import main  # noqa: PLC0415 - the command line, as the launcher was given it

    main(args)


def spawn(size, args, connector):
    """Run `pcl ARGS` in `size` worker processes, worker r as rank r, its communicator made by
    `connector(r)`; wait for them. When one fails the others are ended and the exit status is
    1 (the worker has reported why)."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_run_worker, args=(rank, size, connector, args),
                               name=f"pcl-rank{rank}") for rank in range(size)]
    forwarded = (signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, lambda signum, _: _pass_on(workers, signum))
                for signum in forwarded}
    try:
        for worker in workers:
            worker.start()
        failed = _wait_all(workers)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    if failed:
        raise click.exceptions.Exit(1)


def _pass_on(workers, signum):
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            os.kill(worker.pid, signum)


def _wait_all(workers):
    """Wait until every worker has ended, or one has failed; whether one failed."""
    running = list(workers)
    while running:
        multiprocessing.connection.wait([worker.sentinel for worker in running])
        for worker in [worker for worker in running if not worker.is_alive()]:
            running.remove(worker)
            if worker.exitcode != 0:
                return True
    return False
