"""The recurrent models (models/lstm_lm, models/lrcn) on their made-up data
(tools/make_caption_data.py, written to a temp folder): training through the solver lowers the
loss clearly, the LRCN's captions use the image (test accuracy above what words alone allow), and
a saved caffemodel holds Caffe's LSTM param layout and reloads into a fresh net with identical
outputs."""
import importlib.util
import pathlib

import numpy as np
import pytest

import pycaffelite as pcl
from pycaffelite.io import protoio

ROOT = pathlib.Path(__file__).resolve().parents[2]


def data_tool():
    spec = importlib.util.spec_from_file_location("make_caption_data",
                                                  ROOT / "tools" / "make_caption_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def net_with_sources(model, sources):
    """The model's train/test NetParameter with its HDF5Data sources replaced: {(layer name,
    phase): list file}."""
    net = protoio.read_net_param(str(ROOT / "models" / model / f"{model}_train_test.prototxt"))
    for layer in net.layer:
        if layer.type == "HDF5Data":
            layer.hdf5_data_param.source = sources[layer.name, layer.include[0].phase]
    return net


def train(model, net_param, iterations, tmp_path):
    """Train `iterations` steps with the model's solver settings; returns (solver, loss of the
    first iteration, mean loss of the last 50)."""
    solver_param = protoio.read_solver_param(str(ROOT / "models" / model / f"{model}_solver.prototxt"))
    solver_param.ClearField("net")
    solver_param.net_param.CopyFrom(net_param)
    solver_param.ClearField("test_iter")
    solver_param.test_interval = 0
    solver_param.display = 0
    solver_param.snapshot = 0
    solver_param.snapshot_prefix = str(tmp_path / model)
    solver_param.average_loss = 50
    solver = pcl.get_solver(solver_param)
    solver.step(1)
    first = solver.smoothed_loss
    solver.step(iterations - 51)
    solver.step(50)
    return solver, first, solver.smoothed_loss


def outputs_per_batch(net, batches, blobs):
    """`blobs`' data after each of `batches` forward passes."""
    outputs = []
    for _ in range(batches):
        net.forward_from_to()
        outputs.append([net.blobs[name].data.copy() for name in blobs])
    return outputs


def reload_and_compare(solver, net_param, tmp_path, model, lstm_shapes):
    """Save, check Caffe's LSTM layout in the file, reload into a fresh TEST net and compare 10
    test batches with a TEST net sharing the trained weights; returns the mean test accuracy."""
    path = tmp_path / f"{model}.caffemodel"
    solver.net.save(str(path))
    saved = {layer.name: layer for layer in protoio.read_net_param_binary(str(path)).layer}
    assert [tuple(b.shape.dim) for b in saved["lstm1"].blobs] == lstm_shapes
    trained = pcl.Net(net_param, pcl.TEST, source=model)
    trained.share_trained_layers_with(solver.net)
    fresh = pcl.Net(net_param, pcl.TEST, weights=str(path), source=model)
    names = ["lstm1", "predict", "accuracy"]
    expected, actual = outputs_per_batch(trained, 10, names), outputs_per_batch(fresh, 10, names)
    for batch_expected, batch_actual in zip(expected, actual):
        for name, want, got in zip(names, batch_expected, batch_actual):
            np.testing.assert_array_equal(got, want, err_msg=name)
    return float(np.mean([batch[2] for batch in actual]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("caption_data")
    tool = data_tool()
    return tool.write_lm_data(str(folder / "lstm_lm")), tool.write_lrcn_data(str(folder / "lrcn"))


def test_lstm_language_model_learns_the_grammar(data, tmp_path):
    lists = data[0]
    net_param = net_with_sources("lstm_lm", {("data", pcl.TRAIN): lists["train"],
                                             ("data", pcl.TEST): lists["test"]})
    solver, first, last = train("lstm_lm", net_param, 300, tmp_path)
    print(f"lstm_lm loss {first:.3f} -> {last:.3f}")
    assert first > 2.5                # ln(16) = 2.77: untrained
    assert last < 1.5                 # the grammar's own entropy is about 1.17 nats a word
    accuracy = reload_and_compare(solver, net_param, tmp_path, "lstm_lm", [(128, 16), (128,), (128, 32)])
    assert accuracy > 0.3


def test_lrcn_captions_use_the_image(data, tmp_path):
    lists = data[1]
    net_param = net_with_sources("lrcn", {
        ("images", pcl.TRAIN): lists["train"][0], ("captions", pcl.TRAIN): lists["train"][1],
        ("images", pcl.TEST): lists["test"][0], ("captions", pcl.TEST): lists["test"][1]})
    solver, first, last = train("lrcn", net_param, 400, tmp_path)
    print(f"lrcn loss {first:.3f} -> {last:.3f}")
    assert first > 2.2                # ln(11) = 2.40: untrained
    assert last < 0.5
    accuracy = reload_and_compare(solver, net_param, tmp_path, "lrcn",
                                  [(128, 16), (128,), (128, 32), (128, 32)])
    print(f"lrcn test accuracy {accuracy:.3f}")
    # Words alone (no image) get at most about 0.76 of the caption words right (see
    # models/lrcn/README.md); more needs the image's static input.
    assert accuracy > 0.85
