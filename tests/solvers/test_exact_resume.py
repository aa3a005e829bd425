"""Exact resume: train 0 -> N equals train 0 -> k, snapshot, resume k -> N in a fresh solver, byte
for byte in the final caffemodel and in every iteration's loss, for nets whose data layers read
ahead and draw random numbers (LMDB/LevelDB Data with mirror and crop, HDF5Data with shuffle,
ImageData with shuffle, WindowData), Dropout, DummyData's gaussian refills, stochastic pooling and
an LSTM's carried state; once through `pcl train --snapshot` in a subprocess. Caffe's own solver
states still load, with a notice that the data restarts."""
import logging
import os
import re
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from google.protobuf import text_format

import pycaffelite as pcl
from pycaffelite.errors import PclError
from pycaffelite.io import db, images as image_io
from pycaffelite.io.datum import array_to_datum
from pycaffelite.layers.prefetch import Prefetcher
from pycaffelite.proto import caffe_pb2


FILES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "files")
IMAGES = os.path.join(FILES, "images")
N, K = 13, 6  # batches of 5 over 24 records: the snapshot falls inside an epoch

def classify(classes):
    """A small conv + inner product classifier on "data" and "label"."""
    return f"""
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 3 kernel_size: 3 stride: 2 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param {{ num_output: {classes} weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
layer {{ name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include {{ phase: TEST }} }}
"""


def lmdb_net(tmp_path, backend="LMDB"):
    source = os.path.join(FILES, "lmdb_rgb", "db")
    if backend == "LEVELDB":
        source = str(tmp_path / "leveldb")
        with db.AtomicWriter(source, db.LEVELDB) as out:
            for key, value in db.iterate(os.path.join(FILES, "lmdb_rgb", "db"), db.LMDB):
                out.put(key, value)
    data = "".join(f"""
layer {{ name: "data" type: "Data" top: "data" top: "label" include {{ phase: {phase} }}
  transform_param {{ mirror: true crop_size: 27 scale: 0.0039 }}
  data_param {{ source: "{source}" batch_size: {batch} backend: {backend} }} }}"""
                   for phase, batch in (("TRAIN", 5), ("TEST", 3)))
    return data + classify(4), True


def hdf5_net(tmp_path):
    rng = np.random.default_rng(3)
    names = []
    for index, rows in enumerate((7, 5, 9)):
        name = str(tmp_path / f"part{index}.h5")
        with h5py.File(name, "w") as f:
            f["data"] = rng.normal(size=(rows, 2, 9, 9)).astype(np.float32)
            f["label"] = rng.integers(0, 3, rows).astype(np.float32)
        names.append(name)
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    data = f"""
layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "{tmp_path / 'list.txt'}" batch_size: 4 shuffle: true }} }}"""
    return data + classify(3), False


def image_data_net(tmp_path):
    data = f"""
layer {{ name: "data" type: "ImageData" top: "data" top: "label"
  transform_param {{ mirror: true crop_size: 14 scale: 0.0039 }}
  image_data_param {{ source: "{IMAGES}/list.txt" root_folder: "{IMAGES}/" batch_size: 5
                      shuffle: true new_height: 16 new_width: 16 }} }}"""
    return data + classify(4), False


def window_data_net(tmp_path):
    image = np.random.default_rng(4).integers(0, 255, (3, 40, 50)).astype(np.uint8)
    (tmp_path / "w.png").write_bytes(image_io.encode(image, "png"))
    windows = ["1 0.9 5 5 30 30", "2 0.8 10 2 45 38", "1 0.7 0 0 20 25", "0 0.1 20 10 49 39",
               "0 0.2 3 8 25 35"]
    (tmp_path / "windows.txt").write_text("\n".join(["# 0", "w.png", "3", "40", "50", "5", *windows]))
    data = f"""
layer {{ name: "data" type: "WindowData" top: "data" top: "label"
  transform_param {{ mirror: true crop_size: 12 }}
  window_data_param {{ source: "{tmp_path / 'windows.txt'}" root_folder: "{tmp_path}/" batch_size: 4
                       fg_fraction: 0.5 context_pad: 2 scale: 0.004 }} }}"""
    return data + classify(3), False


def dropout_net(tmp_path):
    net, _ = hdf5_net(tmp_path)
    net = net.replace("shuffle: true", "shuffle: false").replace('bottom: "conv" top: "ip"',
                                                                  'bottom: "drop" top: "ip"')
    return net.replace('layer { name: "ip"', """layer { name: "drop" type: "Dropout" bottom: "conv" top: "drop"
  dropout_param { dropout_ratio: 0.4 } }
layer { name: "ip\"""", 1), False


def dummy_data_net(tmp_path):
    return """
layer { name: "data" type: "DummyData" top: "data" top: "target"
  dummy_data_param { shape { dim: 4 dim: 2 dim: 9 dim: 9 } shape { dim: 4 dim: 3 }
                     data_filler { type: "gaussian" std: 0.5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
""", False


def lstm_net(tmp_path):
    return """
layer { name: "x" type: "DummyData" top: "x" top: "target"
  dummy_data_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 dim: 5 }
                     data_filler { type: "gaussian" std: 1 } } }
layer { name: "cont" type: "DummyData" top: "cont"
  dummy_data_param { shape { dim: 3 dim: 2 } data_filler { type: "constant" value: 1 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
  recurrent_param { num_output: 5 weight_filler { type: "uniform" min: -0.3 max: 0.3 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "h" bottom: "target" top: "loss" }
""", False


NETS = {"lmdb": lmdb_net, "leveldb": lambda p: lmdb_net(p, "LEVELDB"), "hdf5": hdf5_net,
        "image_data": image_data_net, "window_data": window_data_net, "dropout": dropout_net,
        "dummy_data": dummy_data_net, "lstm": lstm_net}


def solver_param(net_text, tested, prefix, max_iter=N, hdf5=False):
    param = text_format.Parse(f"""
        base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 lr_policy: "step" gamma: 0.5 stepsize: 4
        max_iter: {max_iter} display: 1 average_loss: 3 random_seed: 7 snapshot_prefix: "{prefix}"
        snapshot_format: {"HDF5" if hdf5 else "BINARYPROTO"}""", caffe_pb2.SolverParameter())
    param.net_param.CopyFrom(text_format.Parse(net_text, caffe_pb2.NetParameter()))
    if tested:
        param.test_iter.append(2)
        param.test_interval = 4
    return param


def run(param, resume_from=None, stop_after=None):
    """Train; returns (raw losses, smoothed losses, test scores) per iteration and the solver."""
    solver = pcl.get_solver(param)
    raw, smoothed = [], []

    def record():
        raw.append(float(solver.net.blobs["loss"].data))
        smoothed.append(solver.smoothed_loss)

    solver.add_callback(on_gradients_ready=record)
    if stop_after is None:
        solver.solve(resume_from)
    else:
        solver.step(stop_after)
        solver.snapshot()
    return raw, smoothed, solver


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("name", list(NETS))
def test_resumed_run_repeats_the_uninterrupted_one(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net_text, tested = NETS[name](tmp_path)
    hdf5 = name in ("hdf5", "dummy_data")  # both snapshot formats carry the run state
    suffix = ".h5" if hdf5 else ""
    raw, smoothed, straight = run(solver_param(net_text, tested, "straight", hdf5=hdf5))
    first_raw, first_smoothed, _ = run(solver_param(net_text, tested, "first", hdf5=hdf5), stop_after=K)
    resumed_raw, resumed_smoothed, resumed = run(solver_param(net_text, tested, "resumed", hdf5=hdf5),
                                                 resume_from=f"first_iter_{K}.solverstate{suffix}")
    assert first_raw + resumed_raw == raw
    assert first_smoothed + resumed_smoothed == smoothed
    assert len(set(raw)) > N // 2  # the losses do change from batch to batch
    assert read_bytes(f"resumed_iter_{N}.caffemodel{suffix}") == \
        read_bytes(f"straight_iter_{N}.caffemodel{suffix}")
    assert resumed.mean_scores == straight.mean_scores


def test_snapshot_before_any_batch_and_twice_in_a_row(tmp_path, monkeypatch):
    """A snapshot taken before the net has read anything, and a resume of a resume."""
    monkeypatch.chdir(tmp_path)
    net_text, tested = lmdb_net(tmp_path)
    raw, _, _ = run(solver_param(net_text, tested, "straight"))
    run(solver_param(net_text, tested, "zero"), stop_after=0)
    first, _, _ = run(solver_param(net_text, tested, "a", max_iter=3), resume_from="zero_iter_0.solverstate")
    second, _, _ = run(solver_param(net_text, tested, "b"), resume_from="a_iter_3.solverstate")
    assert first + second == raw
    assert read_bytes(f"b_iter_{N}.caffemodel") == read_bytes(f"straight_iter_{N}.caffemodel")


LOSS_LINE = re.compile(r"Iteration (\d+) .*loss = (\S+)")


def pcl_train(*args):
    result = subprocess.run([sys.executable, "-m", "pycaffelite.cli", "train", "--no-progress", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return {int(i): loss for i, loss in LOSS_LINE.findall(result.stderr)}, result.stderr


def test_pcl_train_snapshot_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net_text, tested = lmdb_net(tmp_path)
    for prefix, max_iter in (("straight", N), ("first", K), ("resumed", N)):
        param = solver_param(net_text, tested, prefix, max_iter=max_iter)
        param.snapshot = K
        (tmp_path / f"{prefix}.prototxt").write_text(text_format.MessageToString(param))
    straight, _ = pcl_train("--solver", "straight.prototxt")
    first, _ = pcl_train("--solver", "first.prototxt")
    resumed, log = pcl_train("--solver", "resumed.prototxt", "--snapshot", f"first_iter_{K}.solverstate")
    assert "holds no data positions" not in log
    assert {**{i: v for i, v in first.items() if i < K}, **resumed} == straight
    assert read_bytes(f"resumed_iter_{N}.caffemodel") == read_bytes(f"straight_iter_{N}.caffemodel")


def test_caffe_solverstate_restarts_the_data_with_a_notice(case_dir, caplog):
    case_dir("sgd_step")
    solver = pcl.get_solver("solver.prototxt")
    with caplog.at_level(logging.WARNING, logger="pycaffelite"):
        solver.restore("sgd_step_iter_10.solverstate")
    notices = [r.getMessage() for r in caplog.records if "holds no data positions" in r.getMessage()]
    assert len(notices) == 1 and "as in Caffe" in notices[0]
    assert solver.iter == 10


def test_changed_data_is_named_and_restarts(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    net_text, _ = hdf5_net(tmp_path)
    run(solver_param(net_text, False, "first"), stop_after=K)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'part0.h5'}\n")
    solver = pcl.get_solver(solver_param(net_text, False, "resumed"))
    with caplog.at_level(logging.WARNING, logger="pycaffelite"):
        solver.restore(f"first_iter_{K}.solverstate")
    assert any('layer "data" (HDF5Data) of the train net: its saved file order does not fit the 1 '
               "files it reads now; it starts from its beginning" in r.getMessage()
               for r in caplog.records)
    solver.step(2)


def test_run_state_is_invisible_to_caffe(tmp_path, monkeypatch):
    """Caffe's SolverState parser sees only its four fields; the HDF5 layout gains one group."""
    monkeypatch.chdir(tmp_path)
    net_text, _ = dummy_data_net(tmp_path)
    run(solver_param(net_text, False, "bin"), stop_after=2)
    run(solver_param(net_text, False, "h5", hdf5=True), stop_after=2)
    state = caffe_pb2.SolverState.FromString(read_bytes("bin_iter_2.solverstate"))
    assert state.HasField("run_state") and state.iter == 2
    fields = {field.number for field, _ in state.ListFields()}
    assert fields == {1, 2, 3, 4, 1000}
    with h5py.File("h5_iter_2.solverstate.h5", "r") as f:
        assert sorted(f) == ["current_step", "history", "iter", "learned_net", "pycaffelite"]
        assert list(f["pycaffelite"]) == ["run_state"]


def test_a_vanished_record_key_restarts_the_data_layer(tmp_path, caplog):
    """A saved position whose record is gone (the database was rebuilt) reads from the first record,
    with a warning naming the key; a saved state of another database is refused."""
    source = tmp_path / "db"
    with db.AtomicWriter(source) as out:
        for index in range(6):
            out.put(f"{index:02d}".encode(), array_to_datum(np.full((1, 2, 2), index, np.uint8),
                                                         label=index).SerializeToString())
    net = pcl.Net(text_format.Parse(f"""
        layer {{ name: "data" type: "Data" top: "data" top: "label"
                 data_param {{ source: "{source}" batch_size: 2 backend: LMDB }} }}""",
                                    caffe_pb2.NetParameter()), phase=caffe_pb2.TRAIN)
    layer = net.layer_dict["data"]
    net.forward()
    state = layer.get_run_state()
    assert state.key == b"02" and state.source == str(source)
    net.forward()
    state.key = b"99"
    with caplog.at_level(logging.WARNING):
        layer.set_run_state(state)
    assert any('record "99"' in r.getMessage() and "first record" in r.getMessage()
               for r in caplog.records)
    net.forward()
    assert list(net.blobs["label"].data) == [0, 1]
    state.source = "elsewhere"
    with pytest.raises(PclError, match='it read "elsewhere" when the snapshot was taken'):
        layer.set_run_state(state)


def test_prefetcher_restart_keeps_its_batches():
    """A restart while the thread is filling a batch, or after a failure, loses no buffer: a
    prefetcher of depth 1 goes on delivering."""
    class Counting:
        def __init__(self):
            self.next_value, self.fail_at = 0, 3

        def load(self, batch):
            time.sleep(0.01)
            if self.next_value == self.fail_at:
                self.fail_at = None
                raise PclError("broken record")
            batch[0][...] = self.next_value
            self.next_value += 1

        def position(self):
            return self.next_value

        def seek(self, position):
            self.next_value = position

        def close(self):
            pass

    prefetcher = Prefetcher(Counting(), [np.zeros(2)], depth=1)
    seen = []
    for _ in range(3):
        batch = prefetcher.next()
        seen.append(int(batch[0][0]))
        prefetcher.release(batch)
    with pytest.raises(PclError, match="broken record"):
        prefetcher.next()
    for position in (1, 7, 7):
        prefetcher.restart(position)
        batch = prefetcher.next()
        seen.append(int(batch[0][0]))
        assert prefetcher.position == seen[-1] + 1
        prefetcher.release(batch)
    prefetcher.close()
    assert seen == [0, 1, 2, 1, 7, 7]
