"""`mpiexec -n 2 pcl train`: the ranks stay equal and match one solver with iter_size 2; MPI
snapshots resume under MPI and alone; a rank failing alone ends the job with its message."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from parallel_cases import (TOLERANCE, make_folder, max_difference, mpi_launcher, needs_mpi,
                            run_pcl, run_ranks, train_alone, weights, write_solver)
from pycaffelite import distributed
from pycaffelite.distributed import launch
from pycaffelite.errors import PclError

SCRIPT = Path(__file__).resolve().parent / "script_data_parallel.py"


def rank_processes(folder):
    """Ids of the processes running pycaffelite's command line in `folder`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or os.readlink(f"/proc/{entry}/cwd") != str(folder):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"pycaffelite.cli" in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


@needs_mpi
def test_two_ranks_equal_one_solver_with_iter_size_2(tmp_path):
    make_folder(tmp_path)
    write_solver(tmp_path, "alone", max_iter=5, iter_size=2)
    write_solver(tmp_path, "ranks", max_iter=5)
    done = run_ranks(tmp_path, "train", "--solver", "ranks.prototxt")
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = weights(tmp_path / "rank0.caffemodel"), weights(tmp_path / "rank1.caffemodel")
    assert max_difference(rank0, rank1) == 0  # every rank applies the same update
    alone = train_alone(tmp_path, "alone.prototxt")
    difference = max_difference(rank0, alone)
    print("max difference from one solver with iter_size 2:", difference)
    assert difference < TOLERANCE, difference
    assert max_difference(rank0, weights(tmp_path / "ranks_iter_5.caffemodel")) == 0
    lines = [line for line in done.stderr.splitlines() if "Iteration 4 (" in line]
    assert len(lines) == 1  # rank 0 alone logs


@needs_mpi
def test_a_script_trains_data_parallel_under_mpiexec(tmp_path):
    make_folder(tmp_path)
    write_solver(tmp_path, "ranks", max_iter=3)
    write_solver(tmp_path, "alone", max_iter=3, iter_size=2)
    done = subprocess.run([mpi_launcher(), "-n", "2", sys.executable, str(SCRIPT)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = weights(tmp_path / "script0.caffemodel"), weights(tmp_path / "script1.caffemodel")
    assert max_difference(rank0, rank1) == 0
    assert max_difference(rank0, train_alone(tmp_path, "alone.prototxt")) < TOLERANCE


@needs_mpi
def test_mpi_snapshots_resume_under_mpi_and_alone(tmp_path):
    make_folder(tmp_path)
    write_solver(tmp_path, "ranks", max_iter=4, snapshot=2)
    done = run_pcl(tmp_path, "train", "--solver", "ranks.prototxt", ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    uninterrupted = weights(tmp_path / "ranks_iter_4.caffemodel")
    os.remove(tmp_path / "ranks_iter_4.caffemodel")
    resumed = run_pcl(tmp_path, "train", "--solver", "ranks.prototxt", "--snapshot",
                      "ranks_iter_2.solverstate", ranks=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert max_difference(weights(tmp_path / "ranks_iter_4.caffemodel"), uninterrupted) == 0
    # alone with iter_size 2, from the records the two ranks would read next
    write_solver(tmp_path, "alone", max_iter=4, iter_size=2)
    os.replace(tmp_path / "ranks_iter_2.solverstate", tmp_path / "alone_iter_2.solverstate")
    alone = run_pcl(tmp_path, "train", "--solver", "alone.prototxt", "--snapshot",
                    "alone_iter_2.solverstate")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert max_difference(weights(tmp_path / "alone_iter_4.caffemodel"), uninterrupted) < TOLERANCE


@needs_mpi
def test_a_rank_failing_alone_ends_the_job_with_its_message(tmp_path):
    make_folder(tmp_path, broken={5})  # rank 1's 3rd record; rank 0 never reads it
    write_solver(tmp_path, "ranks", max_iter=50)
    start = time.monotonic()
    done = run_pcl(tmp_path, "train", "--solver", "ranks.prototxt", ranks=2, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - start < 60
    errors = [line for line in done.stderr.splitlines() if line.startswith("pcl: error:")]
    assert len(errors) == 1 and errors[0].startswith("pcl: error: rank 1: "), done.stderr[-3000:]
    assert 'record "00000005"' in errors[0]


@needs_mpi
def test_a_setup_error_every_rank_meets_is_reported_once(tmp_path):
    make_folder(tmp_path)
    write_solver(tmp_path, "ranks", max_iter=2)
    (tmp_path / "net.prototxt").write_text(
        (tmp_path / "net.prototxt").read_text(encoding="utf-8").replace('"db"', '"no_db"'),
        encoding="utf-8")
    done = run_pcl(tmp_path, "train", "--solver", "ranks.prototxt", ranks=2)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("pcl: error: "), done.stderr[-3000:]
    assert "no_db" in errors[0] and "rank" not in errors[0]


@needs_mpi
def test_sighup_to_one_rank_snapshots_and_sigint_stops_every_rank(tmp_path):
    make_folder(tmp_path)
    write_solver(tmp_path, "ranks", max_iter=100000)
    command = [mpi_launcher(), "-n", "2", sys.executable, "-m", "pycaffelite.cli", "train",
               "--solver", "ranks.prototxt"]
    job = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    for line in job.stderr:  # glog's prefix: I<date> <time> <pid> file:line]
        if "Iteration 20 (" in line:
            break
    logging_rank = int(line.split()[2])
    ranks = [pid for pid in rank_processes(tmp_path) if pid != job.pid]
    assert len(ranks) == 2 and logging_rank in ranks
    os.kill(next(pid for pid in ranks if pid != logging_rank), signal.SIGHUP)
    for line in job.stderr:
        if "Snapshotting solver state" in line:
            break
    job.send_signal(signal.SIGINT)  # mpiexec passes it on to every rank
    rest = job.stderr.read()
    assert job.wait(timeout=60) == 0, rest[-3000:]
    assert "Optimization stopped early." in rest
    assert len(list(tmp_path.glob("ranks_iter_*.caffemodel"))) == 2  # the SIGHUP and the stop


def test_mpiexec_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(PclError, match=r"pip install 'pycaffelite\[mpi\]'"):
        launch.current_job()
    with pytest.raises(PclError, match="mpi4py is not installed"):
        distributed.init()
    monkeypatch.setenv("PMI_RANK", "1")  # the other ranks end quietly
    with pytest.raises(click.exceptions.Exit):
        launch.current_job()
