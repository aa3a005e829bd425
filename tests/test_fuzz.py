"""A standing fuzz test: the project's own files, mutated at random (seeded), fed to `pcl`.

Families: net prototxts (a training net scored with `pcl test`, deploy nets timed with `pcl
time`), solver prototxts and solver states (binary, ours with a run state, HDF5) trained with
`pcl train` for at most a second or so, caffemodels (binary and HDF5) read by `pcl test`, a mean
binaryproto read by a net timed with `pcl time`, an LMDB averaged by `pcl compute_image_mean`. Mutations: byte flips, truncations,
deleted and duplicated lines, numbers replaced by extremes, a zeroed block. Every case runs
through tests/pcl_driver.py (children that a crash or a hang cannot take down, two at a time) and
must end in exit status 0 or 1 (a PclError) without a traceback: a signal, a hang, a traceback or
any other exit status fails, naming the case, which `--fuzz-seed` and the case number repeat.

A bounded number of cases runs by default (`--fuzz-cases`, or the environment variable
PCL_FUZZ_CASES, for more: e.g. `pytest tests/test_fuzz.py --fuzz-cases 2000`). Each case is its
own folder under the test's tmp_path, kept for a failing run.
"""
import os
import random
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pycaffelite as pcl
from pcl_driver import run_cases

ROOT = Path(__file__).resolve().parent.parent
SOLVERS = ROOT / "tests" / "data" / "caffe_ref" / "solvers"
FILES = ROOT / "tests" / "data" / "files"
DEFAULT_CASES = 160  # about 5-10 s on 2 cores
TRAIN_BUDGET = 1.5  # seconds of training before the case is interrupted (SIGINT: stop)
EXTREMES = ["0", "-1", "1", "2147483647", "2147483648", "-2147483648", "4294967296",
            "9223372036854775807", "99999999", "1e38", "-1e38", "3.5e38", "1e-45", "nan", "inf",
            "-inf", "0.5"]
NUMBER = re.compile(rb"(?<![\w.])-?\d+(\.\d*)?([eE][-+]?\d+)?(?![\w.])")


def fuzz_count(config):
    option = config.getoption("fuzz_cases")
    return int(option if option is not None else os.environ.get("PCL_FUZZ_CASES", DEFAULT_CASES))


# -- mutations: bytes -> bytes ---------------------------------------------------------------

def flip_bytes(data, rng):
    data = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def truncate(data, rng):
    return data[:rng.randrange(len(data) + 1)]


def zero_block(data, rng):
    size = rng.choice([8, 64, 4096])
    start = rng.randrange(max(1, len(data)))
    return data[:start] + bytes(min(size, len(data) - start)) + data[start + size:]


def delete_line(data, rng):
    lines = data.splitlines(keepends=True)
    if lines:
        del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def duplicate_line(data, rng):
    lines = data.splitlines(keepends=True)
    if lines:
        index = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines) + 1), lines[index])
    return b"".join(lines)


def extreme_number(data, rng):
    numbers = list(NUMBER.finditer(data))
    if not numbers:
        return flip_bytes(data, rng)
    match = rng.choice(numbers)
    return data[:match.start()] + rng.choice(EXTREMES).encode() + data[match.end():]


TEXT = [delete_line, duplicate_line, extreme_number, extreme_number, truncate, flip_bytes]
BINARY = [flip_bytes, flip_bytes, truncate, zero_block]


# -- the corpus: files and the commands that read them -----------------------------------------

MEAN_NET = """
layer { name: "data" type: "Data" top: "data" top: "label"
  transform_param { mean_file: "mean.binaryproto" crop_size: 24 }
  data_param { source: "%s" batch_size: 4 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Folders of files to mutate: the sgd_step and hdf5_snapshot reference cases (plus a solver
    state of ours, with its run state), the LeNet and CIFAR-10 deploy nets, a net reading a mean
    file, and Caffe's MNIST LMDB."""
    root = tmp_path_factory.mktemp("corpus")
    for case in ("sgd_step", "hdf5_snapshot"):
        shutil.copytree(SOLVERS / case, root / case, ignore=shutil.ignore_patterns("*.log", "*.npz"))
    cwd = os.getcwd()
    os.chdir(root / "sgd_step")
    try:
        solver = pcl.get_solver("solver.prototxt")
        solver.param.snapshot_prefix = "ours"
        solver.step(2)
        solver.snapshot()
    finally:
        os.chdir(cwd)
    (root / "deploy").mkdir()
    for net in ("lenet/lenet_deploy.prototxt", "cifar10_quick/cifar10_quick.prototxt"):
        shutil.copy(ROOT / "models" / net, root / "deploy")
    (root / "mean").mkdir()
    shutil.copy(FILES / "mean.binaryproto", root / "mean")
    (root / "mean" / "net.prototxt").write_text(MEAN_NET % (FILES / "lmdb_rgb" / "db"))
    shutil.copytree(FILES / "mnist_lmdb" / "db", root / "lmdb")
    return root


def _train(snapshot=None):
    args = ["train", "--no-progress", "--solver", "solver.prototxt"]
    return args + (["--snapshot", snapshot] if snapshot else [])


# (family, folder, file to mutate, mutations, pcl arguments, training budget or None)
FAMILIES = [
    ("net prototxt", "sgd_step", "net.prototxt", TEXT,
     ["test", "--model", "net.prototxt", "--weights", "sgd_step_iter_10.caffemodel",
      "--iterations", "2"], None),
    ("deploy prototxt", "deploy", "lenet_deploy.prototxt", TEXT,
     ["time", "--model", "lenet_deploy.prototxt", "--iterations", "1"], None),
    ("deploy prototxt", "deploy", "cifar10_quick.prototxt", TEXT,
     ["time", "--model", "cifar10_quick.prototxt", "--iterations", "1"], None),
    ("solver prototxt", "sgd_step", "solver.prototxt", TEXT, _train(), TRAIN_BUDGET),
    ("solver prototxt", "hdf5_snapshot", "solver.prototxt", TEXT, _train(), TRAIN_BUDGET),
    ("caffemodel", "sgd_step", "sgd_step_iter_10.caffemodel", BINARY,
     ["test", "--model", "net.prototxt", "--weights", "sgd_step_iter_10.caffemodel",
      "--iterations", "1"], None),
    ("caffemodel.h5", "hdf5_snapshot", "hdf5_snapshot_iter_10.caffemodel.h5", BINARY,
     ["test", "--model", "net.prototxt", "--weights", "hdf5_snapshot_iter_10.caffemodel.h5",
      "--iterations", "1"], None),
    ("Caffe's solverstate", "sgd_step", "sgd_step_iter_10.solverstate", BINARY,
     _train("sgd_step_iter_10.solverstate"), TRAIN_BUDGET),
    ("our solverstate", "sgd_step", "ours_iter_2.solverstate", BINARY,
     _train("ours_iter_2.solverstate"), TRAIN_BUDGET),
    ("solverstate.h5", "hdf5_snapshot", "hdf5_snapshot_iter_10.solverstate.h5", BINARY,
     _train("hdf5_snapshot_iter_10.solverstate.h5"), TRAIN_BUDGET),
    ("binaryproto", "mean", "mean.binaryproto", BINARY,
     ["time", "--model", "net.prototxt", "--iterations", "1"], None),
    ("LMDB", "lmdb", "data.mdb", BINARY, ["compute_image_mean", "."], None),
]


def make_case(corpus, cases_dir, seed, number):
    """Case `number`: a copy of its family's folder with one file mutated; (name, argv, options)."""
    family, folder, target, mutations, argv, budget = FAMILIES[number % len(FAMILIES)]
    rng = random.Random(f"{seed}/{number}")
    mutation = rng.choice(mutations)
    where = cases_dir / f"{number:05d}"
    shutil.copytree(corpus / folder, where)
    path = where / target
    path.write_bytes(mutation(path.read_bytes(), rng))
    name = f"case {number} (seed {seed}): {family} {target}, {mutation.__name__}, in {where}"
    options = {"cwd": str(where)}
    if budget:
        options["interrupt_after"] = budget
    return name, argv, options


def problem(result):
    """What is wrong with a case's result, or None (exit 0, or 1 with one pcl: error line)."""
    if "crash" in result:
        return result["crash"]
    if "traceback" in result:
        return result["traceback"]
    if "Traceback (most recent call last)" in result["stderr"]:
        return f"a traceback was printed:\n{result['stderr'][-3000:]}"
    errors = [line for line in result["stderr"].splitlines() if line.startswith("pcl: error:")]
    if result["code"] == 0 and not errors or result["code"] == 1 and len(errors) == 1:
        return None
    return f"exit status {result['code']} with {len(errors)} error lines:\n{result['stderr'][-2000:]}"


def test_mutated_files_never_crash_pcl(corpus, tmp_path, request):
    seed = request.config.getoption("fuzz_seed")
    count = fuzz_count(request.config)
    cases = [make_case(corpus, tmp_path, seed, number) for number in range(count)]
    shards = [cases[i::2] for i in range(2)]  # two children side by side
    with ThreadPoolExecutor(2) as pool:
        results = [r for shard in pool.map(lambda s: run_cases(s, timeout=60,
                                                               memory_bytes=2 << 30), shards)
                   for r in shard]
    problems = [f"{r['name']}: {problem(r)}" for r in results if problem(r)]
    assert not problems, "\n\n".join(problems)
    assert len(results) == count
    assert sum(r["code"] == 0 for r in results) > count // 10  # many mutants are still valid input
