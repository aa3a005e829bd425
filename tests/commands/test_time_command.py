"""`pcl time` (Caffe's `caffe time`): Caffe's log wording, the table, --json, the flags, the
reference nets under models/, and the timing arithmetic (with a fake clock; no real timing is
asserted anywhere)."""
import glob
import json
import os
import re

import numpy as np
import pytest

from pycaffelite import device, timing
from pycaffelite.commands.time import check_data_sources
from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.net import Net
from pycaffelite.proto import caffe_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUMBER = r"-?[0-9.]+(e[+-][0-9]+)?"

SMALL_NET = """
name: "small"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 2 dim: 6 dim: 6 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fast_only" type: "ReLU" bottom: "conv1" top: "conv1"
  include { stage: "fast" } }
layer { name: "deep_only" type: "ReLU" bottom: "conv1" top: "conv1"
  include { min_level: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""


@pytest.fixture
def small_net(tmp_path):
    path = tmp_path / "small.prototxt"
    path.write_text(SMALL_NET)
    return str(path)




# -- Caffe's wording, the table, JSON --------------------------------------------------------------
def test_text_output_has_caffes_lines_in_caffes_order(run_pcl, small_net):
    code, out, _ = run_pcl("time", "--model", small_net, "--iterations", "2")
    assert code == 0
    lines = out.splitlines()
    expected = [r"Use CPU\.", r"Performing Forward", rf"Initial loss: {NUMBER}", r"Performing Backward",
                r"\*\*\* Benchmark begins \*\*\*", r"Testing for 2 iterations\.",
                rf"Iteration: 1 forward-backward time: {NUMBER} ms\.",
                rf"Iteration: 2 forward-backward time: {NUMBER} ms\.", r"Average time per layer: "]
    for layer in ("data", "conv1", "relu1", "ip1", "loss"):
        expected += [rf"{layer:>10}\tforward: {NUMBER} ms\.", rf"{layer:>10}\tbackward: {NUMBER} ms\."]
    expected += [rf"Average Forward pass: {NUMBER} ms\.", rf"Average Backward pass: {NUMBER} ms\.",
                 rf"Average Forward-Backward: {NUMBER} ms\.", rf"Total Time: {NUMBER} ms\.",
                 r"\*\*\* Benchmark ends \*\*\*"]
    assert len(lines) > len(expected)
    for pattern, line in zip(expected, lines):
        assert re.fullmatch(pattern, line), (pattern, line)
    table = "\n".join(lines[len(expected):])
    assert re.search(r"layer\s+type\s+forward ms\s+backward ms\s+total ms\s+share", table)
    assert re.search(r"conv1\s+Convolution\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+%", table)


def test_json_output_parses_and_lists_every_layer(run_pcl, small_net):
    code, out, _ = run_pcl("time", "--model", small_net, "--iterations", "3", "--json")
    assert code == 0
    report = json.loads(out)
    assert [layer["name"] for layer in report["layers"]] == ["data", "conv1", "relu1", "ip1", "loss"]
    assert report["iterations"] == 3 and len(report["iteration_ms"]) == 3
    assert report["phase"] == "TRAIN" and report["mode"] == "CPU" and report["net"] == "small"
    for layer in report["layers"]:
        assert layer["forward_ms"] >= 0 and layer["backward_ms"] >= 0
    assert report["average_forward_backward_ms"] >= 0 and report["total_ms"] >= 0
    # 3 labels of 0 against 3 equal scores: the initial loss is log(3).
    assert report["initial_loss"] == pytest.approx(np.log(3), rel=1e-5)


def test_caffe_single_dash_flags_and_stage_and_level(run_pcl, small_net):
    code, out, _ = run_pcl("time", "-model", small_net, "-iterations", "1", "-phase", "TEST",
                           "-stage", "fast,other", "-level", "2", "--json")
    assert code == 0
    report = json.loads(out)
    names = [layer["name"] for layer in report["layers"]]
    assert "fast_only" in names and "deep_only" in names
    assert report["phase"] == "TEST" and report["stages"] == ["fast", "other"] and report["level"] == 2
    code, out, _ = run_pcl("time", "--model", small_net, "--iterations", "1", "--json")
    names = [layer["name"] for layer in json.loads(out)["layers"]]
    assert "fast_only" not in names and "deep_only" not in names


def test_format_number_prints_like_a_cpp_stream():
    assert timing.format_number(0) == "0"
    assert timing.format_number(0.123456789) == "0.123457"
    assert timing.format_number(12.5) == "12.5"
    assert timing.format_number(1234567.0) == "1.23457e+06"


# -- the arithmetic, with a fake clock -----------------------------------------------------------
class FakeClock:
    """Advances 1 ms per reading."""

    def __init__(self):
        self.ticks = 0

    def __call__(self):
        self.ticks += 1
        return self.ticks * 1e-3


def test_averages_follow_caffes_definitions(small_net):
    net = Net(small_net, "TRAIN")
    layers = len(net.layers)
    lines = []
    result = timing.time_net(net, 4, log=lines.append, clock=FakeClock())
    # Each layer's forward and backward sit between two consecutive clock readings: 1 ms each.
    for layer in result.layers:
        assert layer.forward_ms == pytest.approx(1.0) and layer.backward_ms == pytest.approx(1.0)
    # A pass spans its layers' 2 readings each plus the reading that closes it.
    assert result.forward_ms == pytest.approx(2 * layers + 1)
    assert result.backward_ms == pytest.approx(2 * layers + 1)
    assert result.iteration_ms == pytest.approx([4 * layers + 2] * 4)
    # The whole run also counts the reading that opens each iteration, and the one that opens it.
    total = 4 * (4 * layers + 3) + 1
    assert result.total_ms == pytest.approx(total)
    assert result.forward_backward_ms == pytest.approx(total / 4)
    assert lines[-5:] == [f"Average Forward pass: {2 * layers + 1} ms.",
                          f"Average Backward pass: {2 * layers + 1} ms.",
                          f"Average Forward-Backward: {timing.format_number(total / 4)} ms.",
                          f"Total Time: {total} ms.", "*** Benchmark ends ***"]


class CountingDevice(device.Device):
    """A numpy stand-in GPU that counts synchronize() calls."""

    name = "counting"

    def __init__(self):
        super().__init__(np)
        self.synchronized = 0

    def to_device(self, host_array):
        return np.array(host_array, copy=True)

    def to_host(self, device_array, out):
        out[...] = device_array

    def copy_into_device(self, host_array, out):
        out[...] = host_array

    def synchronize(self):
        self.synchronized += 1


def test_gpu_mode_synchronizes_before_every_clock_reading(small_net):
    dev = CountingDevice()
    device.install_device(dev)
    device.set_mode_gpu()
    net = Net(small_net, "TRAIN")
    clock = FakeClock()
    timing.time_net(net, 2, clock=clock)
    assert dev.synchronized == clock.ticks > 0


def test_timing_in_cpu_and_stand_in_gpu_mode(any_mode, small_net):
    result = timing.time_net(Net(small_net, "TRAIN"), 1)
    assert [layer.type for layer in result.layers] == ["Input", "Convolution", "ReLU", "InnerProduct",
                                                       "SoftmaxWithLoss"]
    assert result.initial_loss == pytest.approx(np.log(3), rel=1e-5)


# -- user mistakes ---------------------------------------------------------------------------------
def test_missing_model_is_one_clear_error(run_pcl):
    code, out, err = run_pcl("time", "--iterations", "2")
    assert code == 1 and "need a model definition to time" in err and "Traceback" not in err


def test_missing_model_file_is_one_clear_error(run_pcl, tmp_path):
    code, _, err = run_pcl("time", "--model", str(tmp_path / "nope.prototxt"))
    assert code == 1 and "nope.prototxt" in err and "Traceback" not in err


def test_missing_data_source_is_named_with_advice(run_pcl, tmp_path):
    net = tmp_path / "with_data.prototxt"
    net.write_text('name: "n" layer { name: "mnist" type: "Data" top: "data" top: "label" '
                   'data_param { source: "no/such_lmdb" batch_size: 4 backend: LMDB } }')
    code, _, err = run_pcl("time", "--model", str(net))
    assert code == 1
    assert '"no/such_lmdb"' in err and 'layer "mnist"' in err and "Input layers" in err


def test_missing_mean_file_is_named(tmp_path):
    source = tmp_path / "lmdb"
    source.mkdir()
    net = tmp_path / "with_mean.prototxt"
    net.write_text(f'name: "n" layer {{ name: "d" type: "Data" top: "data" top: "label" '
                   f'transform_param {{ mean_file: "no_mean.binaryproto" }} '
                   f'data_param {{ source: "{source}" batch_size: 4 backend: LMDB }} }}')
    with pytest.raises(PclError, match="mean_file \"no_mean.binaryproto\""):
        check_data_sources(str(net), caffe_pb2.NetState(phase=caffe_pb2.TRAIN))


def test_a_source_with_a_recipe_counts_as_present(tmp_path):
    """Databases that are made from `<path>.recipe` on first read (e.g. MNIST) are not missing."""
    (tmp_path / "digits_lmdb.recipe").write_text("# made on first read\n")
    net = tmp_path / "with_recipe.prototxt"
    net.write_text(f'name: "n" layer {{ name: "d" type: "Data" top: "data" top: "label" '
                   f'data_param {{ source: "{tmp_path / "digits_lmdb"}" batch_size: 4 backend: LMDB }} }}')
    check_data_sources(str(net), caffe_pb2.NetState(phase=caffe_pb2.TRAIN))


def test_bad_gpu_flag_is_a_clear_error_and_leaves_cpu_mode(run_pcl, small_net):
    code, _, err = run_pcl("time", "--model", small_net, "--gpu", "first")
    assert code == 1 and "--gpu expects device ids" in err
    assert device.mode() == device.CPU


def test_gpu_without_a_gpu_is_a_clear_error_and_leaves_cpu_mode(run_pcl, small_net):
    code, _, err = run_pcl("time", "--model", small_net, "--gpu", "0")
    assert code == 1 and "GPU" in err and "Traceback" not in err
    assert device.mode() == device.CPU


def test_iterations_must_be_positive(run_pcl, small_net):
    code, _, err = run_pcl("time", "--model", small_net, "--iterations", "0")
    assert code == 2 and "iterations" in err


# -- every net under models/ -------------------------------------------------------------------------
# CaffeNet at its real batch (16 x 3x227x227) takes seconds per pass on a 2-core machine; its nets
# are timed here at batch 2 (same layers and shapes otherwise), the others as they are.
SHRINK_BATCH = {"caffenet": 2}


def model_nets():
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "**", "*.prototxt"), recursive=True))
    return [os.path.relpath(p, ROOT) for p in paths if "solver" not in os.path.basename(p)]


def _shrunk_copy(path, batch, tmp_path):
    net = protoio.read_net_param(path)
    for layer in net.layer:
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                shape.dim[0] = batch
    copy = tmp_path / os.path.basename(path)
    protoio.write_text_proto(str(copy), net)
    return str(copy)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
@pytest.mark.parametrize("model", model_nets())
def test_every_reference_net_times_in_both_phases(run_pcl, monkeypatch, tmp_path, model, phase):
    monkeypatch.chdir(ROOT)  # data paths in the nets are relative to the repository root
    state = caffe_pb2.NetState(phase=caffe_pb2.Phase.Value(phase))
    try:
        check_data_sources(model, state)
    except PclError as exc:
        pytest.skip(f"its data is not in this checkout: {exc}")
    folder = os.path.basename(os.path.dirname(model))
    path = _shrunk_copy(model, SHRINK_BATCH[folder], tmp_path) if folder in SHRINK_BATCH else model
    code, out, err = run_pcl("time", "--model", path, "--phase", phase, "--iterations", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    expected = Net(path, phase).layer_names
    assert [layer["name"] for layer in report["layers"]] == expected
    assert np.isfinite(report["initial_loss"])


def test_reference_nets_are_present():
    nets = set(model_nets())
    for path in ("models/lenet/lenet_time.prototxt", "models/cifar10_quick/cifar10_quick.prototxt",
                 "models/cifar10_quick/cifar10_quick_time.prototxt",
                 "models/cifar10_quick/cifar10_quick_train_test.prototxt",
                 "models/caffenet/deploy.prototxt", "models/caffenet/caffenet_time.prototxt",
                 "models/caffenet/train_val.prototxt"):
        assert path in nets


def test_train_test_nets_point_at_data_a_user_creates(monkeypatch):
    monkeypatch.chdir(ROOT)
    for model, source in (("models/cifar10_quick/cifar10_quick_train_test.prototxt",
                           "data/cifar10/cifar10_train_lmdb"),
                          ("models/caffenet/train_val.prototxt", "data/ilsvrc12/ilsvrc12_train_lmdb")):
        if os.path.exists(source):
            continue
        with pytest.raises(PclError, match=re.escape(f'"{source}"')):
            check_data_sources(model, caffe_pb2.NetState(phase=caffe_pb2.TRAIN))


def test_reference_net_shapes_match_caffes_architectures():
    """Top shapes of the time nets, from the published architectures (worked out by hand)."""
    lenet = Net(os.path.join(ROOT, "models/lenet/lenet_time.prototxt"), "TRAIN")
    assert lenet.blobs["conv1"].shape == (64, 20, 24, 24) and lenet.blobs["pool2"].shape == (64, 50, 4, 4)
    cifar = Net(os.path.join(ROOT, "models/cifar10_quick/cifar10_quick_time.prototxt"), "TRAIN")
    # 32 -(pool 3/2, ceil)-> 16 -> 8 -> 4; 64 maps of 4x4 feed ip1.
    assert cifar.blobs["pool1"].shape == (100, 32, 16, 16)
    assert cifar.blobs["pool3"].shape == (100, 64, 4, 4)
    assert cifar.params["ip1"][0].shape == (64, 1024)
    caffenet = protoio.read_net_param(os.path.join(ROOT, "models/caffenet/caffenet_time.prototxt"))
    groups = {layer.name: layer.convolution_param.group for layer in caffenet.layer
              if layer.type == "Convolution"}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert [layer.type for layer in caffenet.layer].count("LRN") == 2
