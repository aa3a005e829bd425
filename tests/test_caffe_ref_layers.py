"""Whole nets against real BVLC Caffe: every blob's data and diff, every param diff, the layer
table as Caffe built it (phase filtering, V1 upgrade, Split insertion) and the saved caffemodel.

The reference data (tests/data/caffe_ref/layers, see its README) was recorded with pycaffe from
BVLC Caffe master 9b8915401, CPU, float32.
"""
import json
import pathlib

import numpy as np
import pytest

import pycaffelite as pcl
from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2

REF = pathlib.Path(__file__).parent / "data" / "caffe_ref" / "layers"
CASES = ["lenet", "lenet_v1", "conv_pool_edges", "deconv_crop", "neurons", "norm", "structure",
         "losses", "recurrent", "dropout_train"]
FORWARD_TOL = dict(rtol=1e-4, atol=1e-5)
GRAD_TOL = dict(rtol=1e-3, atol=1e-4)


def load_case(case):
    folder = REF / case
    meta = json.loads((folder / "meta.json").read_text())
    ref = dict(np.load(folder / "io.npz"))
    net = pcl.Net(str(folder / "net.prototxt"), meta["phase"], weights=str(folder / "weights.caffemodel"))
    return net, meta, ref


def run_case(net, meta, ref):
    for name in meta["inputs"]:
        net.blobs[name].data[...] = ref["input/" + name]
    net.forward_from_to()
    for name in meta["topdiff_blobs"]:
        net.blobs[name].diff[...] = ref["topdiff/" + name]
    net.backward_from_to()


@pytest.mark.parametrize("case", CASES)
def test_net_structure_matches_caffe(case):
    net, meta, ref = load_case(case)
    run_case(net, meta, ref)  # shapes as recorded after the pass (Filter's top follows its selector)
    built = [{"name": n, "type": l.type, "bottoms": [net.blob_names[i] for i in b],
              "tops": [net.blob_names[i] for i in t]}
             for n, l, b, t in zip(net.layer_names, net.layers, net.bottom_ids, net.top_ids)]
    assert built == meta["net_layers"]
    assert list(net.blobs) == list(meta["blob_shapes"])
    for name, shape in meta["blob_shapes"].items():
        assert net.blobs[name].shape == tuple(shape), name
    assert net.outputs == meta["outputs"]


@pytest.mark.parametrize("case", [c for c in CASES if c != "dropout_train"])
def test_forward_backward_match_caffe(case):
    net, meta, ref = load_case(case)
    run_case(net, meta, ref)
    compared = 0
    for key, expected in ref.items():
        kind, _, name = key.partition("/")
        if kind == "data":
            np.testing.assert_allclose(net.blobs[name].data, expected, err_msg=key, **FORWARD_TOL)
        elif kind == "diff":
            np.testing.assert_allclose(net.blobs[name].diff, expected, err_msg=key, **GRAD_TOL)
        elif kind in ("paramdiff", "param_after"):
            layer, index = name.rsplit("/", 1)
            blob = net.params[layer][int(index)]
            actual = blob.diff if kind == "paramdiff" else blob.data
            np.testing.assert_allclose(actual, expected, err_msg=key, **GRAD_TOL)
        else:
            continue
        compared += 1
    assert compared > len(meta["blob_shapes"])


def test_dropout_train_mask_is_consistent():
    """Caffe's RNG is not reproduced: derive our mask from our output and check the scaling."""
    net, meta, ref = load_case("dropout_train")
    run_case(net, meta, ref)
    checked = 0
    for layer_name, layer in zip(net.layer_names, net.layers):
        if layer.type != "Dropout":
            continue
        ratio = layer.param.dropout_param.dropout_ratio
        bottom = net.bottom_vecs[net.layer_names.index(layer_name)][0]
        top = net.top_vecs[net.layer_names.index(layer_name)][0]
        x = ref["input/" + net.inputs[0]] if bottom is net.blobs[net.inputs[0]] else bottom.data
        mask = top.data != 0
        np.testing.assert_allclose(top.data, x * mask / (1 - ratio), rtol=1e-5)
        assert 0.2 < mask.mean() / (1 - ratio) < 1.8
        checked += 1
    assert checked


def test_v1_weights_upgrade_to_the_v2_weights():
    v1 = protoio.read_net_param_binary(str(REF / "lenet_v1" / "weights_v1.caffemodel"))
    net, meta, ref = load_case("lenet_v1")
    net.copy_from(v1)
    for key, expected in ref.items():
        if key.startswith("param/"):
            layer, index = key[len("param/"):].rsplit("/", 1)
            np.testing.assert_array_equal(net.params[layer][int(index)].data, expected)


def test_saved_caffemodel_is_byte_identical_to_caffes(tmp_path):
    """Net.save right after loading writes what Caffe's Net::save wrote for the same net."""
    for case in ("lenet", "norm", "structure", "recurrent"):
        net, _, _ = load_case(case)
        out = tmp_path / f"{case}.caffemodel"
        net.save(str(out))
        assert out.read_bytes() == (REF / case / "weights.caffemodel").read_bytes(), case


def test_hdf5_weights_round_trip(tmp_path):
    net, meta, ref = load_case("lenet")
    path = tmp_path / "w.caffemodel.h5"
    net.save(str(path))
    fresh = pcl.Net(str(REF / "lenet" / "net.prototxt"), pcl.TRAIN, weights=str(path))
    for layer, blobs in net.params.items():
        for mine, theirs in zip(blobs, fresh.params[layer]):
            np.testing.assert_array_equal(mine.data, theirs.data)


def test_caffemodel_with_wrong_shape_names_layer_and_fix(tmp_path):
    net, _, _ = load_case("lenet")
    proto = net.to_proto()
    layer = next(l for l in proto.layer if l.name == "ip2")
    layer.blobs[1].shape.dim[0] = 7
    del layer.blobs[1].data[:]
    layer.blobs[1].data.extend([0.0] * 7)
    path = tmp_path / "bad.caffemodel"
    protoio.write_binary_proto(str(path), proto)
    with pytest.raises(pcl.PclError, match=r'layer "ip2".*\(7,\).*\(10,\).*rename the layer'):
        net.copy_from(str(path))


def test_unknown_bottom_is_one_clear_error(tmp_path):
    text = (REF / "lenet" / "net.prototxt").read_text().replace('bottom: "ip1"\n  top: "ip2"',
                                                                  'bottom: "ip9"\n  top: "ip2"')
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    with pytest.raises(pcl.PclError, match=r'bad.prototxt: layer "ip2": bottom "ip9" is not produced'):
        pcl.Net(str(path), pcl.TRAIN)


def test_pycaffe_argument_order_and_forward_api():
    folder = REF / "lenet"
    net = pcl.Net(str(folder / "net.prototxt"), str(folder / "weights.caffemodel"), pcl.TRAIN)
    meta = json.loads((folder / "meta.json").read_text())
    ref = dict(np.load(folder / "io.npz"))
    out = net.forward(data=ref["input/data"], label=ref["input/label"])
    assert set(out) == set(meta["outputs"])
    np.testing.assert_allclose(out["loss"], ref["data/loss"], rtol=1e-4)
    diffs = net.backward()
    assert set(diffs) == {"data", "label"}
    assert net.phase == caffe_pb2.TRAIN
