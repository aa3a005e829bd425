"""NetState filtering, Split insertion and Net bookkeeping on small hand-written nets."""
import numpy as np
import pytest
from google.protobuf import text_format

import pycaffelite as pcl
from pycaffelite import net_build
from pycaffelite.proto import caffe_pb2


def net_param(text):
    return text_format.Parse(text, caffe_pb2.NetParameter())


def state(phase=caffe_pb2.TRAIN, level=0, stages=()):
    return caffe_pb2.NetState(phase=phase, level=level, stage=list(stages))


RULES = """
layer { name: "always" type: "Input" top: "a" input_param { shape { dim: 1 } } }
layer { name: "test_only" type: "Input" top: "b" include { phase: TEST } input_param { shape { dim: 1 } } }
layer { name: "not_train" type: "Input" top: "c" exclude { phase: TRAIN } input_param { shape { dim: 1 } } }
layer { name: "level2" type: "Input" top: "d" include { min_level: 2 } input_param { shape { dim: 1 } } }
layer { name: "staged" type: "Input" top: "e" include { stage: "x" stage: "y" } input_param { shape { dim: 1 } } }
layer { name: "no_z" type: "Input" top: "f" include { not_stage: "z" } input_param { shape { dim: 1 } } }
"""


@pytest.mark.parametrize("st,expected", [
    (state(), ["always", "no_z"]),
    (state(caffe_pb2.TEST), ["always", "test_only", "not_train", "no_z"]),
    (state(level=2), ["always", "level2", "no_z"]),
    (state(stages=["x"]), ["always", "no_z"]),
    (state(stages=["x", "y", "z"]), ["always", "staged"]),
])
def test_filter_by_state(st, expected):
    kept = net_build.filter_by_state(net_param(RULES), st, "rules")
    assert [layer.name for layer in kept.layer] == expected


def test_include_and_exclude_together_is_an_error():
    bad = net_param('layer { name: "x" type: "Input" include { phase: TEST } exclude { phase: TRAIN } }')
    with pytest.raises(pcl.PclError, match='layer "x" has both include and exclude'):
        net_build.filter_by_state(bad, state(), "bad.prototxt")


SPLIT_NET = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "AbsVal" bottom: "x" top: "a" }
layer { name: "b" type: "TanH" bottom: "x" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" loss_weight: 2 }
layer { name: "r" type: "ReLU" bottom: "s" top: "r" loss_weight: 1 }
"""


def test_insert_splits_names_and_loss_weights():
    out = net_build.insert_splits(net_param(SPLIT_NET), "split")
    layers = [(l.name, list(l.bottom), list(l.top), list(l.loss_weight)) for l in out.layer]
    assert layers == [
        ("in", [], ["x"], []),
        ("x_in_0_split", ["x"], ["x_in_0_split_0", "x_in_0_split_1"], []),
        ("a", ["x_in_0_split_0"], ["a"], []),
        ("b", ["x_in_0_split_1"], ["b"], []),
        ("sum", ["a", "b"], ["s"], []),
        ("s_sum_0_split", ["s"], ["s_sum_0_split_0", "s_sum_0_split_1"], [2.0, 0.0]),
        ("r", ["s_sum_0_split_1"], ["r"], [1.0]),
    ]


def test_split_net_gradients_sum_over_consumers():
    net = pcl.Net(net_param("force_backward: true\n" + SPLIT_NET), pcl.TRAIN)
    x = np.array([[-1.0, 0.5, 2.0], [0.3, -0.2, 1.5]], np.float32)
    net.blobs["x"].data[...] = x
    loss = net.forward_from_to()
    s = np.abs(x) + np.tanh(x)
    assert loss == pytest.approx(2 * s.sum() + np.maximum(s, 0).sum(), rel=1e-5)
    net.backward_from_to()
    ds_dx = np.sign(x) + 1 - np.tanh(x) ** 2
    np.testing.assert_allclose(net.blobs["x"].diff, (2 + (s > 0)) * ds_dx, rtol=1e-5)
    plain = pcl.Net(net_param(SPLIT_NET), pcl.TRAIN)
    # Without force_backward nothing learnable sits below the losses: no backward at all.
    assert not any(plain.layer_need_backward)


def test_backward_is_skipped_below_no_loss_and_forced_when_asked():
    text = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
    layer { name: "t" type: "TanH" bottom: "x" top: "t" }
    """
    net = pcl.Net(net_param(text), pcl.TRAIN)
    assert net.layer_need_backward == [False, False]
    forced = pcl.Net(net_param("force_backward: true\n" + text), pcl.TRAIN)
    assert forced.layer_need_backward == [True, True]
    assert forced.bottom_need_backward[1] == [True]


SHARED = """
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "y1"
        param { name: "w" lr_mult: 1 } param { name: "b" }
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
layer { name: "ip2" type: "InnerProduct" bottom: "x" top: "y2"
        param { name: "w" } param { name: "b" decay_mult: 0 }
        inner_product_param { num_output: 4 } }
"""


def test_weight_sharing_by_param_name():
    net = pcl.Net(net_param(SHARED), pcl.TRAIN)
    w1, b1 = net.params["ip1"]
    w2, b2 = net.params["ip2"]
    np.testing.assert_array_equal(w1.data, w2.data)
    w1.data[0, 0] = 42
    assert w2.data[0, 0] == 42
    assert len(net.learnable_params) == 2
    assert net.param_owners == [-1, -1, 0, 1]
    assert net.params_weight_decay == [1.0, 0.0] and net.has_params_decay == [False, True]


def test_weight_sharing_shape_mismatch_and_lr_conflict_are_clear():
    bad_shape = SHARED.replace("num_output: 4 } }\n", "num_output: 5 } }\n")
    with pytest.raises(pcl.PclError, match=r'layer "ip2" shares param "w".*shapes differ'):
        pcl.Net(net_param(bad_shape), pcl.TRAIN)
    bad_lr = SHARED.replace('param { name: "w" }', 'param { name: "w" lr_mult: 3 }')
    with pytest.raises(pcl.PclError, match="different lr_mult"):
        pcl.Net(net_param(bad_lr), pcl.TRAIN)


def test_duplicate_top_and_too_many_param_specs_are_clear():
    dup = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }
    layer { name: "t" type: "TanH" bottom: "x" top: "x2" }
    layer { name: "u" type: "TanH" bottom: "x2" top: "x" }
    """
    with pytest.raises(pcl.PclError, match='top "x" is already produced'):
        pcl.Net(net_param(dup), pcl.TRAIN)
    extra = """
    layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }
    layer { name: "t" type: "TanH" bottom: "x" top: "y" param { lr_mult: 1 } }
    """
    with pytest.raises(pcl.PclError, match="param specs but only 0 param blobs"):
        pcl.Net(net_param(extra), pcl.TRAIN)


def test_unknown_layer_type_suggests_spelling():
    text = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n' \
           'layer { name: "r" type: "relu" bottom: "x" top: "x" }'
    with pytest.raises(pcl.PclError, match='layer "r": unknown layer type "relu"; did you mean "ReLU"'):
        pcl.Net(net_param(text), pcl.TRAIN)


def test_loss_layer_with_two_tops_needs_explicit_loss_weights():
    text = """
    layer { name: "in" type: "Input" top: "x" top: "y"
            input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
    layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "l" top: "p" }
    """
    with pytest.raises(pcl.PclError, match='"loss".*1 loss_weight value.*2 tops.*loss_weight: 1 loss_weight: 0'):
        pcl.Net(net_param(text), pcl.TRAIN)
    fixed = text.replace('top: "p" }', 'top: "p" loss_weight: 1 loss_weight: 0 }')
    net = pcl.Net(net_param(fixed), pcl.TRAIN)
    assert net.blob_loss_weights["l"] == 1.0


def test_set_input_arrays_goes_to_the_memory_data_layer():
    text = """
    layer { name: "mem" type: "MemoryData" top: "data" top: "label"
            memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }
    """
    net = pcl.Net(net_param(text), pcl.TEST)
    data = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2)
    net.set_input_arrays(data, np.array([0, 1, 2, 3], np.float32))
    net.forward_from_to()
    np.testing.assert_array_equal(net.blobs["data"].data, data[:2])
    np.testing.assert_array_equal(net.blobs["label"].data, [0, 1])
    other = pcl.Net(net_param(SHARED), pcl.TEST)
    with pytest.raises(pcl.PclError, match="needs a MemoryData first layer"):
        other.set_input_arrays(data, np.zeros(4))

