"""CPU threads: how many, and running independent pieces of a layer's work side by side.

The count follows OpenBLAS's environment variables (OPENBLAS_NUM_THREADS, then OMP_NUM_THREADS),
else the CPUs this process may run on; `set_num_threads` changes it. pycaffelite's compute runs
in these threads only (the compiled kernels are serial and release the GIL; no OpenMP runtime,
whose idle threads spin and would compete with these); data prefetching has a thread of its own.

`run_parallel(tasks)` runs callables at once, each on a thread of its own (the caller runs the
first, worker thread k the k-th of the others): the tasks of one call never share a thread, so
a task may keep results in buffers of its thread (a convolution's runs of chunks do). Inside a
task the products run in that task's thread alone (`in_task()`), so the threads never
oversubscribe the CPUs. The heavy parts of a task (numpy copies, compiled kernels) release the
GIL; the Python between them does not, so tasks should be coarse: a run of a layer's chunks.
"""
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from . import device

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")  # the environment's thread count
_num_threads = None
_workers = []  # single-thread executors: the k-th of them runs the k-th task after the first
_task = threading.local()


def _default_threads():
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def num_threads():
    """Threads the CPU work of a layer may use."""
    if _num_threads is None:
        set_num_threads(_default_threads())
    return _num_threads


def set_num_threads(count):
    """Use `count` threads (>= 1) from now on."""
    global _num_threads
    if count < 1:
        raise ValueError(f"thread count must be at least 1, got {count}")
    if _num_threads is not None and _num_threads != count:
        device.layout_changed()  # layers keep buffers per thread: they reshape again
    _num_threads = int(count)
    for worker in _workers:
        worker.shutdown()
    _workers.clear()


def in_task():
    """True inside a task of `run_parallel`: work here must stay in this thread."""
    return getattr(_task, "active", False)


def _run_task(task):
    _task.active = True
    try:
        return task()
    finally:
        _task.active = False


def ranges(total, parts, unit=1):
    """Up to `parts` near-equal (lo, hi) ranges covering range(total), cut at multiples of
    `unit` (none empty)."""
    units = -(-total // unit)
    edges = [min(total, units * k // parts * unit) for k in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]


def over_ranges(total, work, unit=1):
    """work(lo, hi) over near-equal ranges covering range(total), cut at multiples of `unit`,
    one per thread side by side (one range inside a task); the results, in order."""
    parts = 1 if in_task() else min(-(-total // unit), num_threads())
    return run_parallel([functools.partial(work, lo, hi)
                         for lo, hi in ranges(total, max(parts, 1), unit)])


def run_parallel(tasks):
    """Run the callables side by side, each on a thread of its own (the caller runs the first);
    their results, in order. At most `num_threads()` tasks. An exception in any task is raised
    here once all have ended."""
    if len(tasks) <= 1 or in_task():
        return [task() for task in tasks]
    if len(tasks) > num_threads():
        raise ValueError(f"{len(tasks)} tasks for {num_threads()} threads")
    while len(_workers) < len(tasks) - 1:
        _workers.append(ThreadPoolExecutor(1, thread_name_prefix=f"pcl-worker-{len(_workers)}"))
    futures = [worker.submit(_run_task, task) for worker, task in zip(_workers, tasks[1:])]
    try:
        first = _run_task(tasks[0])
    finally:
        rest = [future.result() for future in futures]
    return [first] + rest
