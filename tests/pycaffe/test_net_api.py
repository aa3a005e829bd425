"""pycaffe's Net surface: index and name views, passes by layer name, batched passes, callbacks,
weights in and out, and the anonymous top of a loss layer given none (Caffe's AutoTopBlobs)."""
import collections
import logging

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
import pycaffelite as pcl
from pycaffelite.proto import caffe_pb2

BODY = """
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "constant" value: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip" top: "out"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 } } }
"""
NET = """
name: "small"
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 4 } } }
""" + BODY + """
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "label" top: "loss" }
"""
DEPLOY = """
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 3 } } }
""" + BODY


def make_net(text=NET, phase=pcl.TRAIN):
    return pcl.Net(text_format.Parse(text, caffe_pb2.NetParameter()), phase)


@pytest.fixture
def net():
    net = make_net()
    net.blobs["label"].data[...] = [0, 1, 1, 0]
    return net


def test_index_views_match_the_name_views(net):
    assert net._layer_names == ["data", "label", "ip", "relu", "ip2", "loss"]
    assert net._blob_names == ["data", "label", "ip", "out", "loss"]
    assert [net._blob_names[i] for i in net._inputs] == net.inputs == ["data", "label"]
    assert [net._blob_names[i] for i in net._outputs] == net.outputs == ["loss"]
    assert net._blobs[2] is net.blobs["ip"]
    assert net._top_ids(3) == net._bottom_ids(3) == [2]  # in place
    assert list(net.layer_dict) == net._layer_names
    assert net.layers[2].type == "InnerProduct" and len(net.layers[2].blobs) == 2


def test_top_and_bottom_names_and_loss_weights(net):
    assert net.top_names == collections.OrderedDict([
        ("data", ["data"]), ("label", ["label"]), ("ip", ["ip"]), ("relu", ["ip"]),
        ("ip2", ["out"]), ("loss", ["loss"])])
    assert net.bottom_names["loss"] == ["out", "label"] and net.bottom_names["data"] == []
    assert net.blob_loss_weights == collections.OrderedDict(
        [("data", 0), ("label", 0), ("ip", 0), ("out", 0), ("loss", 1)])
    assert net._blob_loss_weights == [0, 0, 0, 0, 1]


def test_forward_with_inputs_returns_outputs_and_extra_blobs(net):
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    out = net.forward(blobs=["ip"], data=x)
    assert set(out) == {"loss", "ip"}
    w, b = (p.data for p in net.params["ip"])
    np.testing.assert_allclose(out["ip"], np.maximum(x @ w.T + b, 0), rtol=1e-5)
    np.testing.assert_array_equal(net.blobs["data"].data, x)


def test_forward_start_end_returns_the_end_layers_tops(net):
    net.forward()
    net.blobs["ip"].data[...] = 1
    out = net.forward(start="ip2", end="ip2")
    assert set(out) == {"out"}
    w = net.params["ip2"][0].data
    np.testing.assert_allclose(out["out"], np.ones((4, 5)) @ w.T + net.params["ip2"][1].data, rtol=1e-5)


def test_backward_returns_inputs_or_the_end_layers_bottoms(net):
    net.forward()
    diffs = net.backward()
    assert set(diffs) == {"data", "label"}
    top_diff = np.arange(8, dtype=np.float32).reshape(4, 2)
    net.blobs["out"].diff[...] = top_diff
    diffs = net.backward(start="ip2", end="ip2", diffs=["out"])
    assert set(diffs) == {"ip", "out"}
    np.testing.assert_allclose(diffs["ip"], top_diff @ net.params["ip2"][0].data, rtol=1e-5)


def test_index_passes(net):
    net._forward(0, len(net.layers) - 1)
    loss = float(net.blobs["loss"].data)
    assert loss > 0
    net._backward(len(net.layers) - 1, 0)
    assert np.abs(net.blobs["data"].diff).sum() > 0


@pytest.mark.parametrize("call,match", [
    (lambda n: n.forward(nope=np.zeros((4, 3))), '"nope" is not an input.*its inputs: data, label'),
    (lambda n: n.forward(data=np.zeros((3, 3))), 'input "data" has 3 items but the blob holds a batch of 4'),
    (lambda n: n.backward(ip=np.zeros((4, 5))), '"ip" is not an output'),
    (lambda n: n.forward(end="fc9"), 'no layer "fc9"; its layers: data, label'),
    (lambda n: n.forward_all(), "forward_all needs the inputs"),
    (lambda n: n.forward_all(data=np.zeros((5, 3)), label=np.zeros(4)), "different numbers of items"),
])
def test_mistakes_are_clear(net, call, match):
    with pytest.raises(pcl.PclError, match=match):
        call(net)


def test_backward_before_any_forward_is_explained():
    net = make_net()
    with pytest.raises(pcl.PclError, match=r'layer "loss" \(SoftmaxWithLoss\): backward\(\) was called '
                                            r"before any forward\(\).*call net.forward\(\) first"):
        net.backward()


def deploy_net():
    return make_net(DEPLOY, pcl.TEST)


def test_forward_all_pads_the_last_batch_and_drops_it():
    net = deploy_net()
    assert net.blobs["data"].shape == (3, 3) and net.outputs == ["out"]
    x = np.random.default_rng(1).normal(size=(7, 3)).astype(np.float32)
    result = net.forward_all(blobs=["ip"], data=x)
    assert set(result) == {"out", "ip"} and result["out"].shape == (7, 2) and result["ip"].shape == (7, 5)
    for i in range(7):
        batch = np.zeros((3, 3), np.float32)
        batch[0] = x[i]
        np.testing.assert_allclose(result["out"][i], net.forward(data=batch)["out"][0], rtol=1e-6)


def test_forward_backward_all():
    net = deploy_net()
    x = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    g = np.random.default_rng(3).normal(size=(5, 2)).astype(np.float32)
    outs, diffs = net.forward_backward_all(data=x, out=g)
    assert outs["out"].shape == (5, 2) and diffs["data"].shape == (5, 3)
    mask = (x @ net.params["ip"][0].data.T + net.params["ip"][1].data) > 0
    expected = ((g @ net.params["ip2"][0].data) * mask) @ net.params["ip"][0].data
    np.testing.assert_allclose(diffs["data"], expected, rtol=1e-4, atol=1e-6)


def test_callbacks_run_around_each_layer_in_order(net):
    calls = []
    net.before_forward(lambda i: calls.append(("bf", i)))
    net.after_forward(lambda i: calls.append(("af", i)))
    net.before_backward(lambda i: calls.append(("bb", i)))
    net.after_backward(lambda i: calls.append(("ab", i)))
    net.forward(start="ip2")
    assert calls == [("bf", 4), ("af", 4), ("bf", 5), ("af", 5)]
    calls.clear()
    net.backward(end="ip2")
    assert calls == [("bb", 5), ("ab", 5), ("bb", 4), ("ab", 4)]


def test_save_copy_from_hdf5_under_any_name_and_share_with(net, tmp_path):
    net.save_hdf5(tmp_path / "weights.bin")
    other = make_net()
    other.load_hdf5(str(tmp_path / "weights.bin"))
    for name in net.params:
        for mine, theirs in zip(net.params[name], other.params[name]):
            np.testing.assert_array_equal(mine.data, theirs.data)
    third = make_net()
    third.share_with(net)
    net.params["ip"][0].data[...] = 7
    assert (third.params["ip"][0].data == 7).all()


def test_set_input_arrays_on_a_memory_data_net():
    text = """
    layer { name: "mem" type: "MemoryData" top: "data" top: "label"
            memory_data_param { batch_size: 2 channels: 1 height: 1 width: 3 } }
    layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 1 } }
    layer { name: "silence" type: "Silence" bottom: "label" }
    """
    net = make_net(text)
    data = np.arange(12, dtype=np.float32).reshape(4, 1, 1, 3)
    net.set_input_arrays(data, np.arange(4, dtype=np.float32))
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [0, 1])
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[2:])


LOSS_WITHOUT_TOP = """
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" }
"""


def test_a_loss_layer_without_a_top_gets_an_anonymous_one():
    net = make_net(LOSS_WITHOUT_TOP)
    assert net.top_names["loss"] == ["(automatic)"]
    assert net.outputs == []  # as in Caffe: the anonymous top is nobody's input and no output
    assert net._blob_loss_weights[-1] == 1
    net.blobs["x"].data[...] = 1
    net.blobs["y"].data[...] = 2
    loss = net.forward_from_to()
    p = net.blobs["p"].data
    assert loss == pytest.approx(((p - 2) ** 2).sum() / 2 / 2, rel=1e-6)
    net.backward_from_to()
    assert np.abs(net.params["ip"][0].diff).sum() > 0


def test_caffes_set_up_log_lines(caplog):
    with caplog.at_level(logging.INFO, logger="pycaffelite"):
        make_net()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Initializing net from parameters: \nname: \"small\"")
    for expected in ["Creating Layer ip", "ip <- data", "ip -> ip", "relu -> ip (in-place)",
                     "Setting up ip", "Top shape: 4 5 (20)", "Top shape: (1)",
                     "    with loss weight 1", "Memory required for data: 144",
                     "ip needs backward computation.", "label does not need backward computation.",
                     "This network produces output loss", "Network initialization done."]:
        assert expected in lines, expected
    # data 12 + label 4 + ip 20 + relu (in place) 20 + out 8 + loss 1 = 65 floats
    assert lines.index("Memory required for data: 260") > lines.index("Setting up loss")


def test_caffe_net_is_pycaffelites_net(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = caffe.Net(str(path), caffe.TEST)
    assert isinstance(net, pcl.Net) and net.phase == caffe.TEST
    net.save(str(tmp_path / "w.caffemodel"))
    legacy = caffe.Net(str(path), str(tmp_path / "w.caffemodel"), caffe.TEST)
    np.testing.assert_array_equal(legacy.params["ip"][0].data, net.params["ip"][0].data)


def test_fill_params_false_leaves_params_zero_but_checks_fillers():
    net = pcl.Net(text_format.Parse(NET, caffe_pb2.NetParameter()), pcl.TRAIN, fill_params=False)
    assert not net.params["ip"][0].data.any() and not net.params["ip"][1].data.any()
    bad = NET.replace("std: 1 }\n                              bias_filler", "std: -1 }\n                              bias_filler")
    with pytest.raises(pcl.PclError, match="std must not be negative"):
        pcl.Net(text_format.Parse(bad, caffe_pb2.NetParameter()), pcl.TRAIN, fill_params=False)


def test_to_onnx_writes_the_net(tmp_path):
    onnx = pytest.importorskip("onnx")
    net = deploy_net()
    model = net.to_onnx(str(tmp_path / "small.onnx"))
    assert onnx.load(str(tmp_path / "small.onnx")).graph.output[0].name == "out"
    assert [i.name for i in model.graph.input] == ["data"]
