"""Legacy nets and solvers upgrade the way Caffe's upgrade_proto does."""
from pathlib import Path

import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.io.upgrade import upgrade_net_param, upgrade_solver_param
from pycaffelite.proto import caffe_pb2 as pb

REF = Path(__file__).resolve().parents[1] / "data" / "caffe_ref"


def _net(text):
    return protoio.parse_text_proto(text, pb.NetParameter(), "test.prototxt")


def _summary(layer):
    params = [(p.name, p.lr_mult, p.decay_mult) for p in layer.param]
    return layer.name, layer.type, list(layer.bottom), list(layer.top), params


def test_v1_lenet_upgrades_to_the_v2_lenet():
    v1 = protoio.read_net_param(REF / "layers/lenet_v1/net.prototxt")
    v2 = protoio.read_net_param(REF / "layers/lenet/net.prototxt")
    assert len(v1.layers) == 0 and len(v1.input) == 0 and len(v1.input_dim) == 0
    assert [_summary(layer) for layer in v1.layer] == [_summary(layer) for layer in v2.layer]
    for old, new in zip(v1.layer[1:], v2.layer[1:]):
        # Everything but the name of the net and the label shape is identical.
        assert old == new
    # input_dim gives 4-d shapes; the V2 net declares the label as 1-d.
    assert [list(s.dim) for s in v1.layer[0].input_param.shape] == [[4, 1, 28, 28], [4, 1, 1, 1]]
    assert [list(s.dim) for s in v2.layer[0].input_param.shape] == [[4, 1, 28, 28], [4]]
    assert list(v1.layer[8].include) == [pb.NetStateRule(phase=pb.TEST)]


def test_v1_caffemodel_upgrades_to_the_same_blobs():
    old = protoio.read_net_param_binary(REF / "layers/lenet_v1/weights_v1.caffemodel")
    new = protoio.read_net_param_binary(REF / "layers/lenet/weights.caffemodel")
    old_layers = {layer.name: layer for layer in old.layer}
    assert old_layers["conv1"].type == "Convolution"
    checked = 0
    for layer in (layer for layer in new.layer if len(layer.blobs)):
        for old_blob, new_blob in zip(old_layers[layer.name].blobs, layer.blobs, strict=True):
            legacy_shape = (old_blob.num, old_blob.channels, old_blob.height, old_blob.width)
            shape = tuple(new_blob.shape.dim)
            assert np.prod(legacy_shape) == np.prod(shape)
            assert tuple(d for d in legacy_shape if d != 1) == tuple(d for d in shape if d != 1)
            np.testing.assert_array_equal(np.array(old_blob.data, np.float32),
                                          np.array(new_blob.data, np.float32))
            checked += 1
    assert checked == 8


def test_v1_params_share_modes_rules_and_transform():
    net = upgrade_net_param(_net("""
        layers {
          name: "d" type: DATA top: "data" top: "label"
          data_param { source: "db" batch_size: 4 scale: 0.5 mean_file: "m.binaryproto"
                       crop_size: 3 mirror: true }
          exclude { phase: TEST }
        }
        layers {
          name: "ip" type: INNER_PRODUCT bottom: "data" top: "ip"
          param: "w" param: "b" blob_share_mode: PERMISSIVE
          blobs_lr: 1 blobs_lr: 2 weight_decay: 0
          inner_product_param { num_output: 3 }
        }
        layers { name: "loss" type: SOFTMAX_LOSS bottom: "ip" bottom: "label" loss_weight: 2 }
    """), "test.prototxt")
    data, ip, loss = net.layer
    assert data.type == "Data"
    assert data.transform_param == pb.TransformationParameter(
        scale=0.5, mean_file="m.binaryproto", crop_size=3, mirror=True)
    assert data.data_param == pb.DataParameter(source="db", batch_size=4)
    assert list(data.exclude) == [pb.NetStateRule(phase=pb.TEST)]
    assert [(p.name, p.share_mode, p.lr_mult, p.decay_mult) for p in ip.param] == [
        ("w", pb.ParamSpec.PERMISSIVE, 1.0, 0.0), ("b", pb.ParamSpec.STRICT, 2.0, 1.0)]
    assert not ip.param[1].HasField("share_mode") and not ip.param[1].HasField("decay_mult")
    assert ip.inner_product_param.num_output == 3
    assert (loss.type, list(loss.loss_weight)) == ("SoftmaxWithLoss", [2.0])


def test_v1_all_enum_types_have_strings():
    for value in pb.V1LayerParameter.LayerType.values():
        net = pb.NetParameter(layers=[pb.V1LayerParameter(type=value)])
        assert upgrade_net_param(net).layer[0].type or value == pb.V1LayerParameter.NONE
    assert upgrade_net_param(pb.NetParameter(layers=[pb.V1LayerParameter(
        type=pb.V1LayerParameter.DECONVOLUTION)])).layer[0].type == "Deconvolution"


def test_mixed_layer_and_layers_is_an_error():
    with pytest.raises(PclError, match="test.prototxt: the net mixes"):
        upgrade_net_param(_net('layer { name: "a" } layers { name: "b" type: RELU }'),
                          "test.prototxt")


def test_v0_net_with_padding_layer():
    net = upgrade_net_param(_net("""
        name: "v0"
        input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
        layers {
          layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 2 biasterm: false
                  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                  weight_filler { type: "gaussian" std: 0.01 } }
          bottom: "pad1" top: "conv1"
        }
        layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 }
                 bottom: "conv1" top: "pool1" }
        layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.3 }
                 bottom: "pool1" top: "pool1" }
        layers { layer { name: "norm" type: "lrn" local_size: 3 alpha: 0.1 beta: 0.5 }
                 bottom: "pool1" top: "norm" }
        layers { layer { name: "ip" type: "innerproduct" num_output: 10 }
                 bottom: "norm" top: "ip" }
    """), "v0.prototxt")
    assert net.name == "v0"
    assert [(l.name, l.type) for l in net.layer] == [
        ("input", "Input"), ("conv1", "Convolution"), ("pool1", "Pooling"), ("drop", "Dropout"),
        ("norm", "LRN"), ("ip", "InnerProduct")]
    conv = net.layer[1]
    assert list(conv.bottom) == ["data"]
    assert conv.convolution_param == pb.ConvolutionParameter(
        num_output=4, kernel_size=[3], stride=[2], pad=[2], bias_term=False,
        weight_filler=pb.FillerParameter(type="gaussian", std=0.01))
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert net.layer[2].pooling_param == pb.PoolingParameter(
        pool=pb.PoolingParameter.AVE, kernel_size=2, stride=2)
    assert net.layer[3].dropout_param.dropout_ratio == pytest.approx(0.3)
    assert net.layer[4].lrn_param == pb.LRNParameter(local_size=3, alpha=0.1, beta=0.5)
    assert net.layer[5].inner_product_param.num_output == 10


def test_v0_data_layer_settings():
    layer = upgrade_net_param(_net("""
        layers { layer { name: "d" type: "data" source: "db" batchsize: 8 meanfile: "m"
                         cropsize: 4 mirror: true scale: 0.25 rand_skip: 3 }
                 top: "data" top: "label" }
    """)).layer[0]
    assert layer.type == "Data"
    assert layer.data_param == pb.DataParameter(source="db", batch_size=8, rand_skip=3)
    assert layer.transform_param == pb.TransformationParameter(
        mean_file="m", crop_size=4, mirror=True, scale=0.25)


@pytest.mark.parametrize("text, expected", [
    ('layers { layer { name: "x" type: "warp" } }', 'unknown V0 layer type "warp"'),
    ('layers { layer { name: "r" type: "relu" num_output: 3 } }',
     'layer "r" (0): V0 field "num_output" does not apply'),
    ('layers { layer { name: "r" type: "relu" } bottom: "nowhere" }',
     'layer "r" (0): bottom "nowhere"'),
    ('input: "d" layers { layer { name: "p" type: "padding" pad: 1 } bottom: "d" top: "p" }'
     'layers { layer { name: "r" type: "relu" } bottom: "p" top: "r" }',
     'layer "r" (1): a padding layer feeds a "relu" layer'),
])
def test_v0_errors_name_file_and_layer(text, expected):
    with pytest.raises(PclError, match="^old.prototxt: ") as info:
        upgrade_net_param(_net(text), "old.prototxt")
    assert expected in str(info.value)


def test_input_shape_becomes_input_layer_in_front():
    net = upgrade_net_param(_net("""
        input: "a" input_shape { dim: 2 dim: 3 }
        input: "b" input_shape { dim: 2 }
        layer { name: "ip" type: "InnerProduct" bottom: "a" top: "ip" }
    """))
    assert len(net.input) == len(net.input_shape) == 0
    first = net.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["a", "b"])
    assert [list(s.dim) for s in first.input_param.shape] == [[2, 3], [2]]
    assert net.layer[1].name == "ip"


def test_inputs_without_shape_are_dropped():
    net = upgrade_net_param(_net('input: "data" layer { name: "r" type: "ReLU" }'))
    assert len(net.input) == 0
    assert [layer.name for layer in net.layer] == ["r"]


@pytest.mark.parametrize("text", [
    'input: "a" input: "b" input_shape { dim: 1 }',
    'input: "a" input_dim: 1 input_dim: 2',
])
def test_inconsistent_inputs_are_errors(text):
    with pytest.raises(PclError, match="^deploy.prototxt: "):
        upgrade_net_param(_net(text), "deploy.prototxt")


def test_batch_norm_with_three_param_specs_is_frozen():
    net = upgrade_net_param(_net("""
        layer { name: "bn" type: "BatchNorm" param { name: "m" lr_mult: 1 } param { lr_mult: 1 }
                param { lr_mult: 1 decay_mult: 2 } }
        layer { name: "bn2" type: "BatchNorm" param { lr_mult: 1 } }
    """))
    assert [(p.name, p.lr_mult, p.decay_mult) for p in net.layer[0].param] == [
        ("m", 0, 0), ("", 0, 0), ("", 0, 0)]
    assert net.layer[1].param[0].lr_mult == 1


def test_upgrade_returns_a_copy():
    original = _net('input: "a" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1')
    upgrade_net_param(original)
    assert list(original.input) == ["a"]


@pytest.mark.parametrize("enum, name", [
    ("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"), ("RMSPROP", "RMSProp"),
    ("ADADELTA", "AdaDelta"), ("ADAM", "Adam"),
])
def test_solver_type_enum_becomes_string(enum, name):
    solver = protoio.parse_text_proto(f"solver_type: {enum}", pb.SolverParameter(), "s")
    upgraded = upgrade_solver_param(solver, "s")
    assert upgraded.type == name
    assert not upgraded.HasField("solver_type")


def test_solver_type_conflict_is_an_error():
    solver = pb.SolverParameter(solver_type=pb.SolverParameter.ADAM, type="SGD")
    with pytest.raises(PclError, match='^solver.prototxt: solver_type: ADAM .* type: "SGD"'):
        upgrade_solver_param(solver, "solver.prototxt")
    agreeing = pb.SolverParameter(solver_type=pb.SolverParameter.ADAM, type="Adam")
    assert upgrade_solver_param(agreeing).type == "Adam"


def test_solver_inline_nets_are_upgraded(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text('base_lr: 0.1 solver_type: NESTEROV\n'
                    'train_net_param { layers { name: "r" type: RELU } }\n'
                    'test_net_param { input: "x" input_dim: 1 input_dim: 1 input_dim: 2 '
                    'input_dim: 2 }\n')
    solver = protoio.read_solver_param(path)
    assert solver.type == "Nesterov"
    assert solver.train_net_param.layer[0].type == "ReLU"
    assert solver.test_net_param[0].layer[0].type == "Input"
