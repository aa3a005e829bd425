"""pycaffelite.parallel: the thread count and run_parallel."""
import threading

import pytest

from pycaffelite import parallel


def test_thread_count_follows_openblas_variables(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert parallel._default_threads() == 3
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert parallel._default_threads() == 5
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert parallel._default_threads() >= 1
    with pytest.raises(ValueError, match="at least 1"):
        parallel.set_num_threads(0)


@pytest.fixture
def two_threads(use_threads):
    use_threads(2)


def test_tasks_run_in_separate_threads_and_keep_order(two_threads):
    seen = []

    def task(value):
        seen.append((threading.get_ident(), parallel.in_task()))
        return value * 10

    assert parallel.run_parallel([lambda v=v: task(v) for v in range(2)]) == [0, 10]
    assert all(inside for _, inside in seen)
    assert len({ident for ident, _ in seen}) == 2   # the caller and one worker
    assert not parallel.in_task()
    with pytest.raises(ValueError, match="3 tasks for 2 threads"):
        parallel.run_parallel([lambda: 0] * 3)


def test_the_tasks_of_a_call_never_share_a_thread():
    """With idle workers and quick tasks, a shared pool could hand two tasks of one call to one
    worker in turn, and a layer keeping a task's result in its thread's buffer would lose one
    (a convolution's weight gradient was wrong with 3 or more threads so)."""
    before = parallel.num_threads()
    parallel.set_num_threads(4)
    try:
        for _ in range(200):
            idents = parallel.run_parallel([threading.get_ident] * 4)
            assert len(set(idents)) == 4
    finally:
        parallel.set_num_threads(before)


def test_a_failing_task_raises_after_all_ended(two_threads):
    finished = []

    def slow():
        finished.append(True)

    def bad():
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        parallel.run_parallel([bad, slow])
    assert finished == [True]
    assert not parallel.in_task()


def test_nested_calls_run_in_the_task_thread(two_threads):
    def outer():
        return threading.get_ident(), parallel.run_parallel([threading.get_ident] * 2)

    for ident, inner in parallel.run_parallel([outer, outer]):
        assert inner == [ident, ident]


def test_a_single_task_is_not_confined(two_threads):
    """One task has the threads to itself: work inside it may still spread."""
    assert parallel.run_parallel([parallel.in_task]) == [False]


def test_nothing_to_split_runs_nothing(two_threads):
    """An empty range (e.g. a batch of no images) gives no tasks, and no tasks give nothing."""
    calls = []
    assert parallel.over_ranges(0, lambda lo, hi: calls.append((lo, hi))) == []
    assert parallel.run_parallel([]) == [] and calls == []


def test_ranges_follow_the_unit_and_stay_in_a_task(two_threads):
    assert parallel.over_ranges(20, lambda lo, hi: (lo, hi), unit=8) == [(0, 8), (8, 20)]
    assert parallel.over_ranges(5, lambda lo, hi: (lo, hi), unit=8) == [(0, 5)]
    inside = parallel.run_parallel([lambda: parallel.over_ranges(20, lambda lo, hi: (lo, hi))] * 2)
    assert inside == [[(0, 20)], [(0, 20)]]
