"""Interrupted and failed writes leave nothing behind: a training run killed (SIGKILL) at random
moments while it snapshots every iteration leaves only loadable snapshots, and the next run that
writes into the folder removes the killed runs' temporary files; a full disk (a small tmpfs,
mounted where the test may) ends snapshots (binary and HDF5), convert_imageset, convert_mnist,
extract_features (HDF5) and an HDF5Output layer in one "no space left on device" error naming
the file, with the earlier snapshots intact and no temporary file or folder left."""
import gzip
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pycaffelite as pcl
from pcl_driver import run_cases
from pycaffelite.io import atomic
from pycaffelite.proto import caffe_pb2
from pycaffelite.solvers import solverstate

FILES = Path(__file__).resolve().parent.parent / "data" / "files"

NET = """
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 2 dim: 64 } shape { dim: 2 }
                     data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: %d weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def write_solver(folder, prefix, outputs, max_iter, snapshot_format="BINARYPROTO"):
    (folder / "net.prototxt").write_text(NET % outputs)
    solver = folder / f"solver_{snapshot_format}.prototxt"
    solver.write_text(f'net: "{folder / "net.prototxt"}" base_lr: 0.01 lr_policy: "fixed" '
                      f"momentum: 0.9 max_iter: {max_iter} snapshot: 1 "
                      f'snapshot_prefix: "{prefix}" snapshot_format: {snapshot_format}')
    return solver


def partials(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".partial"))


def check_snapshots_load(folder, solver):
    """Every snapshot in `folder` reads back: weights into the net, states through restore."""
    trainer = pcl.get_solver(str(solver))
    names = sorted(os.listdir(folder))
    for name in names:
        path = str(folder / name)
        if ".caffemodel" in name and not name.endswith(".partial"):
            trainer.net.copy_from(path)
        elif ".solverstate" in name and not name.endswith(".partial"):
            state = solverstate.read_solverstate(path)
            assert state.iter >= 1 and len(state.history) == 2
    return names


def dead_pid():
    """The id of a process that has just ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_killed_runs_leave_loadable_snapshots_and_their_temporaries_go(tmp_path):
    folder = tmp_path / "snapshots"
    folder.mkdir()
    # A temporary of a process that ended while writing (the random kills below may or may not
    # catch one in the act) and one of a process still running (which must stay).
    stale = folder / f".net_iter_3.caffemodel.{atomic._HOST}-{dead_pid()}-0123abcd.partial"
    stale.write_bytes(b"half a snapshot")
    live = folder / f".other.caffemodel.{atomic._HOST}-{os.getppid()}-0123abcd.partial"
    live.write_bytes(b"being written")
    rng = random.Random(13)
    killed_while_writing = 0
    for snapshot_format in ("BINARYPROTO", "HDF5", "BINARYPROTO"):
        solver = write_solver(tmp_path, folder / "net", 8000, 100000, snapshot_format)
        child = subprocess.Popen([sys.executable, "-m", "pycaffelite.cli", "train", "--no-progress",
                                  "--solver", str(solver)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not any("_iter_1.caffemodel" in name and not name.endswith(".partial") for name in os.listdir(folder)):
            assert child.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.01)
        # Kill at a random moment, or as soon as the child is seen writing a snapshot.
        deadline = time.monotonic() + rng.uniform(0.1, 1.0)
        while time.monotonic() < deadline and not any(f"-{child.pid}-" in name
                                                      for name in partials(folder)):
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed_while_writing += any(f"-{child.pid}-" in name for name in partials(folder))
        assert stale.name not in partials(folder)  # the first run removed it at its start
        check_snapshots_load(folder, solver)
    assert killed_while_writing  # at least one kill left a partly written snapshot behind
    short = write_solver(tmp_path, folder / "net", 8000, 2, "HDF5")
    subprocess.run([sys.executable, "-m", "pycaffelite.cli", "train", "--no-progress", "--solver",
                    str(short)], check=True, capture_output=True, timeout=120)
    assert partials(folder) == [live.name]
    assert "net_iter_2.caffemodel.h5" in check_snapshots_load(folder, short)


@pytest.fixture
def small_disks(tmp_path):
    """`make(name)`: a new 320 KiB tmpfs at tmp_path/name (skipped where mounting is not
    permitted); all are unmounted at the end."""
    mounted = []

    def make(name):
        disk = tmp_path / name
        disk.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs to fill needs root")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(disk)],
                                capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(disk)
        return disk

    yield make
    for disk in mounted:
        subprocess.run(["umount", str(disk)], check=False)


def idx_files(folder, count):
    expected = np.load(FILES / "mnist_lmdb" / "expected.npz")
    images = np.resize(expected["images"][:, 0].astype(np.uint8), (count, 28, 28))
    labels = np.resize(expected["labels"].astype(np.uint8), count)
    (folder / "images.gz").write_bytes(gzip.compress(struct.pack(">IIII", 2051, count, 28, 28)
                                                     + images.tobytes()))
    (folder / "labels.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, count)
                                                     + labels.tobytes()))
    return folder / "images.gz", folder / "labels.gz"


def test_a_full_disk_is_named_and_harms_nothing(tmp_path, small_disks):
    binary, hdf5 = small_disks("binary"), small_disks("hdf5")
    images, labels = idx_files(tmp_path, 2000)
    outputs = {name: small_disks(name) / "db" for name in ("imageset", "mnist", "leveldb", "h5",
                                                           "features")}
    (tmp_path / "features.prototxt").write_text("""
layer { name: "data" type: "DummyData" top: "data" dummy_data_param { shape { dim: 64 dim: 1000 } } }""")
    pcl.Net(str(tmp_path / "features.prototxt"), phase=caffe_pb2.TEST).save(str(tmp_path / "w.caffemodel"))
    (tmp_path / "output.prototxt").write_text(f"""
layer {{ name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {{ shape {{ dim: 64 dim: 100 }} shape {{ dim: 64 }} }} }}
layer {{ name: "out" type: "HDF5Output" bottom: "data" bottom: "label"
  hdf5_output_param {{ file_name: "{outputs['h5']}" }} }}""")
    cases = [
        ("binary snapshots", ["train", "--no-progress", "--solver",
                              write_solver(tmp_path, binary / "net", 300, 50)]),
        ("HDF5 snapshots", ["train", "--no-progress", "--solver",
                            write_solver(tmp_path, hdf5 / "net", 300, 50, "HDF5")]),
        ("convert_imageset", ["convert_imageset", f"{FILES / 'images'}/", FILES / "images" / "list.txt",
                              outputs["imageset"]]),
        ("convert_mnist", ["convert_mnist", images, labels, outputs["mnist"]]),
        ("convert_mnist leveldb", ["convert_mnist", "--backend", "leveldb", images, labels,
                                   outputs["leveldb"]]),
        ("HDF5Output", ["time", "--model", tmp_path / "output.prototxt", "--iterations", "50"]),
        ("extract_features", ["extract_features", "--backend", "hdf5", tmp_path / "w.caffemodel",
                              tmp_path / "features.prototxt", "data", outputs["features"], "20"]),
    ]
    for (name, argv), result in zip(cases, run_cases(cases)):
        errors = [line for line in result["stderr"].splitlines() if "error" in line.lower()]
        assert result["code"] == 1, (name, result)
        assert len(errors) == 1 and errors[0].startswith("pcl: error: "), (name, result["stderr"])
        assert "no space left on device" in errors[0], (name, errors[0])
        assert "HDF5-DIAG" not in result["stderr"] and "#000" not in result["stderr"], name
        output = outputs["features"] if name == "extract_features" else Path(argv[-1])
        folder = {"binary snapshots": binary, "HDF5 snapshots": hdf5,
                  "HDF5Output": outputs["h5"].parent}.get(name, output.parent)
        if "snapshots" in name:
            assert f"{folder}/net_iter_" in errors[0]
            names = check_snapshots_load(folder, write_solver(tmp_path, folder / "net", 300, 50))
            assert len(names) >= 2
        elif name == "HDF5Output":  # it appends, as Caffe's layer writes: what it wrote stays
            assert f'layer "out" (HDF5Output): cannot write "{outputs["h5"]}"' in errors[0]
            continue
        else:
            assert str(output) in errors[0]
            assert os.listdir(folder) == []
        assert partials(folder) == []
