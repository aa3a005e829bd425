"""`pcl train --gpu 0,1`'s route (one worker process per device, the launcher waiting) with a
stand-in communicator between processes on the CPU: the same result as mpiexec and as one solver
with iter_size 2; a worker failing ends the others."""
import sys

import click
import pytest

from parallel_cases import TOLERANCE, make_folder, max_difference, train_alone, weights, write_solver
from pipe_standin import PipeConnector
from pycaffelite.distributed import launch


def test_two_worker_processes_equal_one_solver_with_iter_size_2(tmp_path, monkeypatch):
    make_folder(tmp_path)
    write_solver(tmp_path, "workers", max_iter=5)
    write_solver(tmp_path, "alone", max_iter=5, iter_size=2)
    monkeypatch.chdir(tmp_path)
    launch.spawn(2, ["train", "--solver", "workers.prototxt"], PipeConnector(2))
    trained = weights(tmp_path / "workers_iter_5.caffemodel")
    difference = max_difference(trained, train_alone(tmp_path, "alone.prototxt"))
    assert difference < TOLERANCE, difference


def test_a_failing_worker_ends_the_others(tmp_path, monkeypatch, capfd):
    make_folder(tmp_path, broken={5})  # rank 1's 3rd record
    write_solver(tmp_path, "workers", max_iter=100000)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(click.exceptions.Exit):
        launch.spawn(2, ["train", "--solver", "workers.prototxt"], PipeConnector(2))
    errors = [line for line in capfd.readouterr().err.splitlines() if "pcl: error" in line]
    assert len(errors) == 1 and errors[0].startswith("pcl: error: rank 1: ")


def test_several_gpus_without_cupy_say_what_to_install(tmp_path, monkeypatch, run_pcl):
    make_folder(tmp_path)
    write_solver(tmp_path, "workers", max_iter=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "cupy.cuda", None)
    code, _, err = run_pcl("train", "--solver", "workers.prototxt", "--gpu", "0,1")
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("pcl: error")] == [
        "pcl: error: training on several GPUs needs cupy with NCCL; install it with: pip install "
        "'pycaffelite[gpu]' (cupy, with the NCCL library for its CUDA)"]
