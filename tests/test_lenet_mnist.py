"""The README's main job, shortened: `pcl train` on models/lenet with the bundled MNIST digits
learns (the full 5000-iteration run and its accuracy are recorded in models/lenet/README.md)."""
import pathlib
import re
import subprocess
import sys

from pycaffelite.io import protoio

ROOT = pathlib.Path(__file__).resolve().parent.parent
ITERATIONS = 300


def test_lenet_learns_the_bundled_digits(tmp_path):
    solver = protoio.read_solver_param(str(ROOT / "models" / "lenet" / "lenet_solver.prototxt"))
    solver.max_iter = ITERATIONS
    solver.test_interval = ITERATIONS
    solver.display = 100
    solver.snapshot = 0
    solver.snapshot_prefix = str(tmp_path / "lenet")
    solver.random_seed = 1
    path = tmp_path / "solver.prototxt"
    protoio.write_text_proto(str(path), solver)
    run = subprocess.run([sys.executable, "-m", "pycaffelite.cli", "train", "--solver", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    tests = re.findall(r"Iteration (\d+), Testing net \(#0\)\n.*?Test net output #0: accuracy = ([\d.]+)",
                       run.stderr, re.S)
    assert [int(i) for i, _ in tests] == [0, ITERATIONS]
    before, after = (float(a) for _, a in tests)
    assert before < 0.3, "an untrained net should be near chance (0.1)"
    print(f"accuracy {before} -> {after}")
    assert after >= 0.93, f"LeNet reached only {after} after {ITERATIONS} iterations"
    assert (tmp_path / f"lenet_iter_{ITERATIONS}.caffemodel").exists()
