"""Start-up: how long the README's first command takes to reach its first iteration, fresh and warm.

A fresh clone of this repository (git clone into a temporary folder: no numba cache, no MNIST
LMDBs yet) runs `pcl train --solver models/lenet/lenet_solver.prototxt` until its "Iteration 0 ("
line, the end of the first training step (after the iteration-0 test of 10 batches), and is then
stopped; the same again in the same clone is the warm start (kernels in numba's cache, LMDBs
made). Wall time from launch and the process's CPU time are printed for each run, with the load
average, and also `pcl --help` and `python -c "import pycaffelite"`.

A fresh start is dominated by numba compiling the kernels for this CPU (the convolutions' image
GEMM the most); each later start loads them from the cache.

Usage: python bench/bench_start.py [--rounds 2]
Never used for assertions: timings depend on the machine and its load.
"""
import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = ["-c", "from pycaffelite.cli import main; main()"]


def _env(clone):
    env = dict(os.environ, PYTHONPATH=clone)
    env.pop("NUMBA_CACHE_DIR", None)  # the clone's own kernels/__pycache__, empty when fresh
    return env


def timed_until(args, clone, marker=None):
    """(wall s until `marker` is printed, or the end; CPU s of the child) for python ARGS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable] + args, cwd=clone, env=_env(clone), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = None
    for line in child.stdout:
        if marker and seen is None and re.search(marker, line):
            seen = time.perf_counter() - start
            child.terminate()
    child.wait()
    wall = seen if marker else time.perf_counter() - start
    if marker and seen is None:
        raise RuntimeError(f"no line matching {marker!r}: the run failed (exit {child.returncode})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="fresh + warm pairs")
    args = parser.parse_args(argv)
    train = COMMAND + ["train", "--solver", "models/lenet/lenet_solver.prototxt"]
    rows = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            clone = os.path.join(folder, "clone")
            subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
            for kind in ("fresh", "warm"):
                wall, cpu = timed_until(train, clone, r"Iteration 0 \(")
                rows.append((f"pcl train (LeNet) to iteration 0, {kind}", wall, cpu))
            rows.append(("pcl --help", *timed_until(COMMAND + ["--help"], clone)))
            rows.append(("import pycaffelite", *timed_until(["-c", "import pycaffelite"], clone)))
        print("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    print()
    print("| what | wall s | CPU s |")
    print("| --- | --- | --- |")
    for what, wall, cpu in rows:
        print(f"| {what} | {wall:.2f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
