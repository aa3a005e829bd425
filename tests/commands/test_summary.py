"""`pcl summary`: per-layer params, multiply-adds, activation memory and receptive fields checked
by hand on LeNet and CaffeNet; data layers without their files; --weights, --json, --batch; the
table on every net under models/ and every zoo net pcl can build."""
import glob
import importlib.util
import json
import logging
import os
import shutil

import pytest

from pycaffelite import summary, training_log
from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.layers import layer_factory

from tiny_training import run_pcl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
ZOO = os.path.join(os.path.dirname(ROOT), "shared", "zoo")
LENET = os.path.join(MODELS, "lenet", "lenet_time.prototxt")
CAFFENET = os.path.join(MODELS, "caffenet", "deploy.prototxt")


def layers_by_name(result):
    return {layer.name: layer for layer in result.layers}


def field(layer):
    """(size, jump, start) of a layer's square receptive field."""
    (first, *others) = layer.field
    assert all(axis == first for axis in others)
    return first.size, first.jump, first.start


# -- numbers by hand ---------------------------------------------------------------------------------

def test_lenet_by_hand():
    result = summary.summarize(summary.build_net(LENET)[0])
    layers = layers_by_name(result)
    n = 64
    # params: weights + biases
    assert layers["conv1"].params == 20 * 1 * 5 * 5 + 20 == 520
    assert layers["conv2"].params == 50 * 20 * 5 * 5 + 50 == 25050
    assert layers["ip1"].params == 50 * 4 * 4 * 500 + 500 == 400500
    assert layers["ip2"].params == 500 * 10 + 10 == 5010
    assert result.params == 431080
    # forward MACs: output positions x kernel volume, rows x inputs x outputs
    assert layers["conv1"].macs_forward == n * (20 * 24 * 24) * (1 * 5 * 5)
    assert layers["conv2"].macs_forward == n * (50 * 8 * 8) * (20 * 5 * 5)
    assert layers["ip1"].macs_forward == n * 800 * 500
    assert layers["ip2"].macs_forward == n * 500 * 10
    assert layers["pool1"].macs_forward == layers["relu1"].macs_forward == 0
    assert result.macs_forward / n == 288000 + 1600000 + 400000 + 5000
    # backward: conv1 only its weight gradient (the data needs none), the others also their input's
    assert layers["conv1"].macs_backward == layers["conv1"].macs_forward
    for name in ("conv2", "ip1", "ip2"):
        assert layers[name].macs_backward == 2 * layers[name].macs_forward
    # activations: float32 tops; ReLU runs in place
    assert layers["data"].activation_bytes == 4 * (n * 28 * 28 + n)
    assert layers["conv1"].activation_bytes == 4 * n * 20 * 24 * 24
    assert layers["pool2"].activation_bytes == 4 * n * 50 * 4 * 4
    assert layers["relu1"].activation_bytes == 0 and layers["relu1"].tops[0][2]
    # receptive fields: conv 5 (size 5, centre 2); pool 2/2 (6, jump 2, 2.5); conv 5 (6 + 4 x 2 = 14,
    # 2.5 + 2 x 2 = 6.5); pool 2/2 (14 + 2 = 16, jump 4, 6.5 + 0.5 x 2 = 7.5)
    assert field(layers["conv1"]) == (5, 1, 2)
    assert field(layers["pool1"]) == (6, 2, 2.5)
    assert field(layers["conv2"]) == (14, 2, 6.5)
    assert field(layers["pool2"]) == (16, 4, 7.5)
    assert layers["ip1"].field is None and result.field_layer.name == "pool2"


def test_caffenet_by_hand():
    result = summary.summarize(summary.build_net(CAFFENET)[0])
    layers = layers_by_name(result)
    n = 16
    params = {"conv1": 96 * 3 * 11 * 11 + 96, "conv2": 256 * (96 // 2) * 5 * 5 + 256,
              "conv3": 384 * 256 * 3 * 3 + 384, "conv4": 384 * (384 // 2) * 3 * 3 + 384,
              "conv5": 256 * (384 // 2) * 3 * 3 + 256, "fc6": 256 * 6 * 6 * 4096 + 4096,
              "fc7": 4096 * 4096 + 4096, "fc8": 4096 * 1000 + 1000}
    assert {name: layers[name].params for name in params} == params
    assert result.params == sum(params.values()) == 60965224
    # conv1: 55 x 55 outputs ((227 - 11) / 4 + 1) of 96 maps, each 3 x 11 x 11 products
    assert layers["conv1"].macs_forward == n * 96 * 55 * 55 * 3 * 11 * 11 == n * 105415200
    # conv2 in two groups: each output sees 48 of the 96 input maps
    assert layers["conv2"].macs_forward == n * 256 * 27 * 27 * 48 * 5 * 5
    assert layers["fc6"].macs_forward == n * 9216 * 4096 == n * 37748736
    assert result.macs_backward == 0  # a deploy net: no loss, no backward
    assert layers["conv1"].activation_bytes == 4 * n * 96 * 55 * 55
    assert layers["norm1"].activation_bytes == 4 * n * 96 * 27 * 27
    # receptive fields: conv1 11/4 (11, 4, 5); pool1 3/2 (11 + 2 x 4 = 19, 8, 5 + 4 = 9);
    # conv2 5 pad 2 (19 + 4 x 8 = 51, 8, 9); pool2 (51 + 16 = 67, 16, 9 + 8 = 17); conv3-5 3 pad 1
    # (+32 each: 99, 131, 163; centre 17); pool5 (163 + 32 = 195, 32, 17 + 16 = 33)
    expected = {"conv1": (11, 4, 5), "pool1": (19, 8, 9), "conv2": (51, 8, 9), "pool2": (67, 16, 17),
                "conv3": (99, 16, 17), "conv4": (131, 16, 17), "conv5": (163, 16, 17),
                "pool5": (195, 32, 33)}
    assert {name: field(layers[name]) for name in expected} == expected
    assert result.field_layer.name == "pool5"


def test_caffes_memory_figure_matches_the_set_up_log(caplog):
    caplog.set_level(logging.INFO, logger=training_log.LOGGER_NAME)
    result = summary.summarize(summary.build_net(LENET)[0])
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Memory required")]
    assert logged[-1] == f"Memory required for data: {result.caffe_memory_bytes}"


def test_table_and_json(capsys):
    assert run_pcl("summary", CAFFENET, "--batch", "1") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params", "MACs", "fwd", "MACs",
                                "bwd", "activations", "field/jump"]
    assert lines[2].split() == ["data", "Input", "1x3x227x227", "0", "0", "0", "618", "KB", "1/1"]
    assert lines[3].split() == ["conv1", "Convolution", "1x96x55x55", "34,944", "105M", "0", "1.16",
                                "MB", "11/4"]
    assert "relu1  ReLU          1x96x55x55 (in place)" in out
    assert ("receptive field of pool5 (the last spatial layer) on data: 195 x 195 pixels, jump 32, "
            "first unit centred at (33, 33)") in out
    assert "params: 60,965,224 (244 MB)" in out

    assert run_pcl("summary", LENET, "--json", "--phase", "test") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["phase"] == "TEST" and report["batch"] == 64
    assert report["inputs"] == {"data": [64, 1, 28, 28], "label": [64]}
    assert report["totals"]["params"] == 431080
    assert report["totals"]["param_bytes"] == 4 * 431080
    assert report["receptive_field"] == {"layer": "pool2", "input": "data", "size": [16, 16],
                                         "jump": [4, 4], "start": [7.5, 7.5]}
    conv1 = report["layers"][1]
    assert conv1["name"] == "conv1" and conv1["tops"] == [
        {"name": "conv1", "shape": [64, 20, 24, 24], "in_place": False}]


# -- data layers without their files -----------------------------------------------------------------

def test_missing_data_takes_shapes_from_the_params_or_a_deploy_net(tmp_path, monkeypatch, capsys):
    shutil.copy(os.path.join(MODELS, "lenet", "lenet_train_test.prototxt"), tmp_path)
    monkeypatch.chdir(tmp_path)  # where data/mnist/... is not
    with pytest.raises(PclError, match=r'layer "mnist" \(Data\) reads files that are not here .*'
                                       r"--input-shape data=N,C,H,W"):
        summary.build_net("lenet_train_test.prototxt")
    shutil.copy(LENET, tmp_path)
    net, notes = summary.build_net("lenet_train_test.prototxt", "TEST")
    assert net.blobs["data"].shape == (100, 1, 28, 28) and net.blobs["label"].shape == (100,)
    assert notes == ['layer "mnist" (Data) reads "data/mnist/mnist_test_lmdb", which is not here: '
                     "taken as an Input of 100x1x28x28, 100 (sizes from lenet_time.prototxt)"]
    net, notes = summary.build_net("lenet_train_test.prototxt",
                                   input_shapes={"data": (2, 1, 20, 20), "label": (2,)})
    assert net.blobs["conv1"].shape == (2, 20, 16, 16) and "(--input-shape)" in notes[0]

    (tmp_path / "images.prototxt").write_text(
        'layer { name: "img" type: "ImageData" top: "data" top: "label" transform_param { crop_size: 32 } '
        'image_data_param { source: "list.txt" batch_size: 5 is_color: false new_height: 40 new_width: 40 } }')
    net, notes = summary.build_net("images.prototxt")
    assert net.blobs["data"].shape == (5, 1, 32, 32) and "shapes from its parameters" in notes[0]

    assert run_pcl("summary", "lenet_train_test.prototxt", "--input-shape", "data=2,1,28") == 1
    assert 'layer "pool1" (Pooling): needs a 4-axis' in capsys.readouterr().err  # the net says what
    assert run_pcl("summary", "lenet_train_test.prototxt", "--input-shape", "data=2,x") == 1
    assert 'expected a blob name and positive sizes' in capsys.readouterr().err
    assert run_pcl("summary", "lenet_train_test.prototxt", "--input-shape", "pixels=2,1,28,28") == 1
    assert "--input-shape names pixels, which no input" in capsys.readouterr().err


def test_weights_are_loaded_and_their_coverage_noted(tmp_path, capsys):
    net, _ = summary.build_net(LENET)
    full = str(tmp_path / "lenet.caffemodel")
    net.save(full)
    assert run_pcl("summary", LENET, "--weights", full) == 0
    assert f"note: weights {full} cover every layer with params" in capsys.readouterr().out
    partial = net.to_proto()
    del partial.layer[-2:]  # no ip2 (nor the loss)
    protoio.write_binary_proto(str(tmp_path / "partial.caffemodel"), partial)
    assert run_pcl("summary", LENET, "--weights", str(tmp_path / "partial.caffemodel")) == 0
    assert "cover every layer with params but ip2" in capsys.readouterr().out
    assert run_pcl("summary", CAFFENET, "--weights", full) == 1
    assert "cannot copy param 0 of layer" in capsys.readouterr().err


# -- every net -------------------------------------------------------------------------------------

def net_files(folder):
    """The net prototxts (not the solvers) under `folder`."""
    for path in sorted(glob.glob(os.path.join(folder, "*", "*.prototxt"))):
        try:
            protoio.read_net_param(path)
        except PclError:
            continue
        yield path


def phases(path):
    """TRAIN, and TEST where some layer's rules name a phase (otherwise the nets are the same)."""
    rules = [rule for layer in protoio.read_net_param(path).layer
             for rule in list(layer.include) + list(layer.exclude)]
    return ("TRAIN", "TEST") if any(rule.HasField("phase") for rule in rules) else ("TRAIN",)


def small_batch(path):
    """--batch 1 (small blobs, quick to build: the numbers scale with the batch), except for
    recurrent nets, whose inputs have time steps along axis 0."""
    types = {layer.type for layer in protoio.read_net_param(path).layer}
    return [] if types & {"LSTM", "RNN"} else ["--batch", "1"]


@pytest.mark.parametrize("path", list(net_files(MODELS)), ids=lambda p: os.path.relpath(p, MODELS))
def test_every_model_net_prints_its_table(path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the nets' data paths are relative to the repository
    for phase in phases(path):
        if run_pcl("summary", path, "--phase", phase, *small_batch(path)) != 0:
            error = capsys.readouterr().err
            if "neither its parameters nor an Input of that name" in error:
                pytest.skip(f"its data is not made yet and nothing else gives its shapes: {error}")
            pytest.fail(error)
        out = capsys.readouterr().out
        assert out.startswith("layer  ") and "\nparams: " in out


# Zoo nets whose inputs come from files that nothing describes, and the stages a phase needs.
ZOO_ARGS = {
    "cifar10_full_sigmoid_bn/cifar10_full_sigmoid_train_test_bn.prototxt": ["--input-shape", "data=100,3,32,32"],
    "hdf5_nonlinear/nonlinear_train_val.prototxt": ["--input-shape", "data=10,4", "--input-shape", "label=10"],
    "mnist_autoencoder/mnist_autoencoder.prototxt": ["--input-shape", "data=100,1,28,28",
                                                     "--stage", "test-on-test"],
    "mnist_siamese/mnist_siamese_train_test.prototxt": ["--input-shape", "pair_data=64,2,28,28"],
    "lrcn_word_to_preds/lrcn.prototxt": [
        "--stage", "factored,test-on-val", "--input-shape", "cont_sentence=20,100",
        "--input-shape", "input_sentence=20,100", "--input-shape", "target_sentence=20,100"],
    "lstm_lm/lstm_language_model.prototxt": [
        "--stage", "test-on-val", "--input-shape", "cont_sentence=20,100",
        "--input-shape", "input_sentence=20,100", "--input-shape", "target_sentence=20,100"],
}
def zoo_nets():
    return [os.path.relpath(p, ZOO) for p in net_files(ZOO)] if os.path.isdir(ZOO) else []


def missing_pieces(path):
    """Why pcl cannot build a zoo net here (a layer type it lacks, a Python layer's module that
    is not in the zoo), or None."""
    for layer in protoio.read_net_param(path).layer:
        try:
            layer_factory(layer.type)
        except PclError:
            return f'layer type "{layer.type}" is not in pycaffelite (yet)'
        module = layer.python_param.module
        if layer.type == "Python" and importlib.util.find_spec(module) is None:
            return f'its Python layer "{layer.name}" needs the module {module}.py, which the zoo lacks'
    return None


@pytest.mark.skipif(not os.path.isdir(ZOO), reason="../shared/zoo is absent")
@pytest.mark.parametrize("name", zoo_nets())
def test_every_zoo_net_pcl_can_build_prints_its_table(name, capsys):
    path = os.path.join(ZOO, name)
    reason = missing_pieces(path)
    if reason:
        pytest.skip(reason)
    for phase in phases(path):
        assert run_pcl("summary", path, "--phase", phase, *small_batch(path), *ZOO_ARGS.get(name, [])) == 0, \
            capsys.readouterr().err
        out = capsys.readouterr().out
        assert out.startswith("layer  ") and "\nparams: " in out
