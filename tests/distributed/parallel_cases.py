"""A small LMDB, net and solvers for the data-parallel tests, and `pcl train` under mpiexec.

The net has no batch-dependent layer (Data, Convolution, InnerProduct, SoftmaxWithLoss), so two
ranks reading records 0, 2, 4, ... and 1, 3, 5, ... compute, between them, the gradient one
solver with iter_size 2 computes from records 0, 1, 2, ...
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pycaffelite.io import protoio
from pycaffelite.io.datum import array_to_datum
from pycaffelite.io.db import AtomicWriter

from pycaffelite.solvers import get_solver

HERE = Path(__file__).resolve().parent

# float32 rounding of a few updates: the ranks' sum g0 + g1 against one solver accumulating g0
# then g1 into its diffs (the products add in another order).
TOLERANCE = 1e-6
RUN_RANKS = HERE / "run_pcl_ranks.py"

NET = """name: "small"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "db" batch_size: 4 backend: LMDB } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.1
momentum: 0.9
weight_decay: 0.001
lr_policy: "fixed"
display: 1
max_iter: {max_iter}
iter_size: {iter_size}
snapshot: {snapshot}
snapshot_prefix: "{prefix}"
random_seed: 5
"""


def mpi_launcher():
    """The mpiexec of mpi4py's MPI (beside this Python), or None; None too without mpi4py."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(mpi_launcher() is None,
                               reason="mpi4py or mpiexec missing: pip install -e '.[mpi]'")


def make_folder(folder, records=48, broken=()):
    """net.prototxt and an LMDB `db` of `records` 1x6x6 images with labels 0..2 (the records
    numbered in `broken` hold bytes that are no Datum)."""
    rng = np.random.default_rng(0)
    with AtomicWriter(os.path.join(folder, "db")) as db:
        for i in range(records):
            image = rng.integers(0, 256, size=(1, 6, 6), dtype=np.uint8)
            value = array_to_datum(image, label=i % 3).SerializeToString()
            db.put(f"{i:08d}", b"\x08" if i in broken else value)
    Path(folder, "net.prototxt").write_text(NET, encoding="utf-8")


def write_solver(folder, name, max_iter, iter_size=1, snapshot=0):
    """`name`.prototxt in `folder`, snapshotting to `name`_iter_N."""
    Path(folder, f"{name}.prototxt").write_text(
        SOLVER.format(max_iter=max_iter, iter_size=iter_size, snapshot=snapshot, prefix=name),
        encoding="utf-8")
    return f"{name}.prototxt"


def run_ranks(folder, *pcl_args, ranks=2, timeout=120):
    """`mpiexec -n RANKS pcl ARGS` in `folder`, each rank saving its final train-net weights to
    rank<r>.caffemodel; the finished process (output in .stdout/.stderr)."""
    command = [mpi_launcher(), "-n", str(ranks), sys.executable, str(RUN_RANKS), *pcl_args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout,
                          check=False)


def run_pcl(folder, *pcl_args, ranks=None, timeout=120):
    """The `pcl` command itself, under `mpiexec -n RANKS` when RANKS is given."""
    pcl = [sys.executable, "-m", "pycaffelite.cli", *pcl_args]
    command = [mpi_launcher(), "-n", str(ranks), *pcl] if ranks else pcl
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout,
                          check=False)


def weights(path):
    """{(layer name, blob index): float32 array} of a .caffemodel."""
    net = protoio.read_net_param_binary(str(path))
    return {(layer.name, i): np.array(blob.data, dtype=np.float32)
            for layer in net.layer for i, blob in enumerate(layer.blobs)}


def train_alone(folder, solver_file):
    """Train one solver from `solver_file` in `folder`, in this process; its weights as by
    `weights`."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        solver = get_solver(solver_file)
        solver.solve()
        return {(name, i): np.array(blob.data).ravel() for name, blobs in solver.net.params.items()
                for i, blob in enumerate(blobs)}
    finally:
        os.chdir(cwd)


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[key] - b[key]))) for key in a)
