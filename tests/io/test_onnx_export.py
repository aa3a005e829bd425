"""ONNX export (pycaffelite.onnx_export) checked against onnxruntime: one small net per layer type
and setting (pooling's ceil rounding, dropped windows and AVE divisors at the borders among
them), the reference nets as whole nets, the opsets, and the refusals. See tests/onnx_check.py
for how results are compared."""
import numpy as np
import pytest

from onnx_check import (assert_matches, export_and_run, fill_from, net_from_text, onnx, ort,
                        randomize_statistics, relative_error)
import pycaffelite as pcl
from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.onnx_export import DEFAULT_OPSET, export_onnx, supported_opsets

ROOT = __file__.rsplit("/tests/", 1)[0]


def _input(*shapes, names=("data", "second", "third")):
    tops = "".join(f'top: "{name}" ' for name in names[:len(shapes)])
    dims = "".join("shape { " + "".join(f"dim: {d} " for d in shape) + "} " for shape in shapes)
    return f'layer {{ name: "input" type: "Input" {tops} input_param {{ {dims} }} }}\n'


def _check(tmp_path, text, feeds=None, phase=pcl.TEST, opset=None, expected=(), seed=0):
    net = net_from_text(text, phase)
    randomize_statistics(net, np.random.default_rng(seed))
    pairs = export_and_run(net, tmp_path / "net.onnx", feeds=feeds, opset=opset, seed=seed)
    assert_matches(pairs, expected)
    return pairs


GAUSS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'

# -- one net per layer type and setting ------------------------------------------------------------
CASES = {
    "conv_groups_dilation_stride_pad": _input((2, 4, 9, 8)) + f"""
        layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{
          num_output: 6 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 2 pad_w: 1
          dilation: 2 group: 2 {GAUSS} }} }}""",
    "conv_depthwise_no_bias_two_bottoms": _input((1, 3, 6, 6), (1, 3, 6, 6)) + """
        layer { name: "c" type: "Convolution" bottom: "data" bottom: "second" top: "c" top: "c2"
          convolution_param { num_output: 3 kernel_size: 3 pad: 1 group: 3 bias_term: false
          weight_filler { type: "gaussian" std: 0.5 } } }""",
    "conv_3d": _input((1, 2, 5, 6, 4)) + f"""
        layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{
          num_output: 3 kernel_size: 3 kernel_size: 2 kernel_size: 2 stride: 2 pad: 1 {GAUSS} }} }}""",
    "conv_channel_axis_2": _input((2, 3, 4, 7)) + f"""
        layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{
          axis: 2 num_output: 5 kernel_size: 3 {GAUSS} }} }}""",
    "deconvolution": _input((2, 4, 5, 4)) + f"""
        layer {{ name: "d" type: "Deconvolution" bottom: "data" top: "d" convolution_param {{
          num_output: 6 kernel_size: 3 stride: 2 pad: 1 dilation: 2 group: 2 {GAUSS} }} }}""",
    "pool_max_ceil_partial_window": _input((2, 3, 6, 7)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p"
          pooling_param { pool: MAX kernel_size: 3 stride: 2 } }""",
    "pool_max_drops_window_in_padding": _input((2, 3, 5, 5)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p"
          pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 } }""",
    "pool_ave_padding_divisor_at_borders": _input((2, 3, 6, 9)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p"
          pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }""",
    "pool_ave_drops_window_in_padding": _input((2, 3, 5, 5)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p"
          pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 } }""",
    "pool_ave_rectangular": _input((1, 2, 7, 10)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE
          kernel_h: 3 kernel_w: 4 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 2 } }""",
    "pool_floor_rounding": _input((1, 2, 7, 7)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p"
          pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR } }""",
    "pool_windows_wholly_outside": _input((1, 2, 5, 5)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p"
          pooling_param { pool: MAX kernel_size: 1 stride: 3 } }
        layer { name: "q" type: "Pooling" bottom: "data" top: "q"
          pooling_param { pool: AVE kernel_size: 1 stride: 3 } }""",
    "pool_global": _input((2, 3, 5, 4)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p"
          pooling_param { pool: MAX global_pooling: true } }
        layer { name: "q" type: "Pooling" bottom: "data" top: "q"
          pooling_param { pool: AVE global_pooling: true } }""",
    "pool_max_with_mask": _input((2, 3, 7, 6)) + """
        layer { name: "p" type: "Pooling" bottom: "data" top: "p" top: "mask"
          pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }""",
    "pool_stochastic_test": _input((2, 3, 6, 7)) + """
        layer { name: "a" type: "AbsVal" bottom: "data" top: "a" }
        layer { name: "p" type: "Pooling" bottom: "a" top: "p"
          pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 } }""",
    "spp": _input((2, 3, 8, 9)) + """
        layer { name: "s" type: "SPP" bottom: "data" top: "s" spp_param { pyramid_height: 3 } }
        layer { name: "t" type: "SPP" bottom: "data" top: "t"
          spp_param { pyramid_height: 2 pool: AVE } }""",
    "lrn_across_and_within": _input((2, 7, 5, 5)) + """
        layer { name: "a" type: "LRN" bottom: "data" top: "a"
          lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 } }
        layer { name: "w" type: "LRN" bottom: "data" top: "w"
          lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }""",
    "batch_norm_scale_bias": _input((2, 4, 3, 3), (3, 5)) + """
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }
        layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true
          filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
        layer { name: "bn2" type: "BatchNorm" bottom: "second" top: "bn2"
          batch_norm_param { eps: 0.01 } }""",
    "batch_norm_zero_scale_factor": _input((2, 4, 3)) + """
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }""",
    "batch_norm_one_axis": _input((6,)) + """
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }""",
    "batch_norm_batch_statistics": _input((3, 4, 2, 5)) + """
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn"
          batch_norm_param { use_global_stats: false } }""",
    "scale_bias_axes_and_bottoms": _input((2, 3, 4, 5), (3, 4), (2, 3)) + """
        layer { name: "s1" type: "Scale" bottom: "data" top: "s1"
          scale_param { axis: 1 num_axes: 2 filler { type: "gaussian" std: 1 } } }
        layer { name: "s2" type: "Scale" bottom: "data" bottom: "second" top: "s2"
          scale_param { axis: 1 bias_term: true bias_filler { type: "gaussian" std: 1 } } }
        layer { name: "s3" type: "Scale" bottom: "data" top: "s3"
          scale_param { num_axes: 0 filler { type: "gaussian" std: 1 } } }
        layer { name: "b1" type: "Bias" bottom: "data" bottom: "third" top: "b1" bias_param { axis: 0 } }
        layer { name: "b2" type: "Bias" bottom: "data" top: "b2"
          bias_param { axis: -1 filler { type: "gaussian" std: 1 } } }""",
    "eltwise": _input((2, 3, 4), (2, 3, 4), (2, 3, 4)) + """
        layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "second" bottom: "third"
          top: "sum" eltwise_param { operation: SUM coeff: 0.5 coeff: -1 coeff: 2 } }
        layer { name: "prod" type: "Eltwise" bottom: "data" bottom: "second" top: "prod"
          eltwise_param { operation: PROD } }
        layer { name: "max" type: "Eltwise" bottom: "data" bottom: "second" bottom: "third"
          top: "max" eltwise_param { operation: MAX } }""",
    "concat_slice_split_crop": _input((2, 6, 5, 5), (2, 3, 5, 5), (1, 1, 3, 2)) + """
        layer { name: "cat" type: "Concat" bottom: "data" bottom: "second" top: "cat" }
        layer { name: "cat0" type: "Concat" bottom: "data" bottom: "data" top: "cat0"
          concat_param { axis: 0 } }
        layer { name: "sl" type: "Slice" bottom: "cat" top: "s1" top: "s2" top: "s3"
          slice_param { slice_point: 2 slice_point: 7 } }
        layer { name: "sl2" type: "Slice" bottom: "data" top: "t1" top: "t2" slice_param { axis: 3
          slice_point: 1 } }
        layer { name: "eq" type: "Slice" bottom: "data" top: "e1" top: "e2" }
        layer { name: "crop" type: "Crop" bottom: "cat" bottom: "third" top: "crop"
          crop_param { axis: 2 offset: 1 offset: 2 } }
        layer { name: "crop1" type: "Crop" bottom: "cat" bottom: "third" top: "crop1"
          crop_param { axis: 3 offset: 3 } }""",
    "inner_product_axis_transpose": _input((2, 3, 4, 5)) + f"""
        layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
          inner_product_param {{ num_output: 7 {GAUSS} }} }}
        layer {{ name: "ip2" type: "InnerProduct" bottom: "data" top: "ip2"
          inner_product_param {{ num_output: 6 axis: 2 transpose: true {GAUSS} }} }}
        layer {{ name: "ip3" type: "InnerProduct" bottom: "data" top: "ip3"
          inner_product_param {{ num_output: 3 axis: -1 bias_term: false {GAUSS} }} }}""",
    "softmax_axes": _input((2, 3, 4, 5)) + """
        layer { name: "s" type: "Softmax" bottom: "data" top: "s" }
        layer { name: "t" type: "Softmax" bottom: "data" top: "t" softmax_param { axis: -1 } }
        layer { name: "u" type: "Softmax" bottom: "data" top: "u" softmax_param { axis: 2 } }""",
    "neurons": _input((2, 3, 4, 5)) + """
        layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" }
        layer { name: "leaky" type: "ReLU" bottom: "data" top: "leaky" relu_param { negative_slope: 0.1 } }
        layer { name: "prelu" type: "PReLU" bottom: "data" top: "prelu"
          prelu_param { filler { type: "gaussian" std: 1 } } }
        layer { name: "prelu_shared" type: "PReLU" bottom: "data" top: "prelu_shared"
          prelu_param { channel_shared: true } }
        layer { name: "elu" type: "ELU" bottom: "data" top: "elu" elu_param { alpha: 0.7 } }
        layer { name: "sigmoid" type: "Sigmoid" bottom: "data" top: "sigmoid" }
        layer { name: "tanh" type: "TanH" bottom: "data" top: "tanh" }
        layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
        layer { name: "bnll" type: "BNLL" bottom: "data" top: "bnll" }
        layer { name: "clip" type: "Clip" bottom: "data" top: "clip" clip_param { min: -0.5 max: 0.7 } }
        layer { name: "threshold" type: "Threshold" bottom: "data" top: "threshold"
          threshold_param { threshold: 0.2 } }
        layer { name: "swish" type: "Swish" bottom: "data" top: "swish" swish_param { beta: 1.5 } }
        layer { name: "drop" type: "Dropout" bottom: "data" top: "drop" }""",
    "power_exp_log": _input((2, 3, 4)) + """
        layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
        layer { name: "pow" type: "Power" bottom: "data" top: "pow"
          power_param { power: 2 scale: 0.5 shift: 1 } }
        layer { name: "sqrt" type: "Power" bottom: "abs" top: "sqrt" power_param { power: 0.5 } }
        layer { name: "affine" type: "Power" bottom: "data" top: "affine"
          power_param { scale: -2 shift: 0.5 } }
        layer { name: "const" type: "Power" bottom: "data" top: "const"
          power_param { power: 3 scale: 0 shift: 2 } }
        layer { name: "exp" type: "Exp" bottom: "data" top: "exp" }
        layer { name: "exp2" type: "Exp" bottom: "data" top: "exp2"
          exp_param { base: 2 scale: 0.5 shift: 1 } }
        layer { name: "log" type: "Log" bottom: "abs" top: "log" }
        layer { name: "log10" type: "Log" bottom: "abs" top: "log10"
          log_param { base: 10 scale: 2 shift: 1 } }""",
    "reshape_flatten_tile": _input((2, 3, 4, 5)) + """
        layer { name: "r" type: "Reshape" bottom: "data" top: "r"
          reshape_param { shape { dim: 0 dim: -1 dim: 5 } } }
        layer { name: "r2" type: "Reshape" bottom: "data" top: "r2"
          reshape_param { axis: 1 num_axes: 2 shape { dim: 12 } } }
        layer { name: "f" type: "Flatten" bottom: "data" top: "f" }
        layer { name: "f2" type: "Flatten" bottom: "data" top: "f2" flatten_param { axis: 1 end_axis: 2 } }
        layer { name: "t" type: "Tile" bottom: "data" top: "t" tile_param { axis: 1 tiles: 3 } }""",
    "reduction": _input((2, 3, 4)) + """
        layer { name: "sum" type: "Reduction" bottom: "data" top: "sum" }
        layer { name: "asum" type: "Reduction" bottom: "data" top: "asum"
          reduction_param { operation: ASUM axis: 1 coeff: 0.5 } }
        layer { name: "sumsq" type: "Reduction" bottom: "data" top: "sumsq"
          reduction_param { operation: SUMSQ axis: -1 } }
        layer { name: "mean" type: "Reduction" bottom: "data" top: "mean"
          reduction_param { operation: MEAN axis: 1 coeff: 2 } }""",
    "mvn": _input((2, 3, 4, 5), (2, 6)) + """
        layer { name: "m" type: "MVN" bottom: "data" top: "m" }
        layer { name: "m2" type: "MVN" bottom: "data" top: "m2"
          mvn_param { across_channels: true eps: 0.01 } }
        layer { name: "m3" type: "MVN" bottom: "second" top: "m3" mvn_param { normalize_variance: false } }""",
    "lstm_unit": _input((1, 3, 4), (1, 3, 16), (1, 3)) + """
        layer { name: "u" type: "LSTMUnit" bottom: "data" bottom: "second" bottom: "third"
          top: "c" top: "h" }""",
    "lstm_static_input": _input((4, 3, 2, 2), (4, 3), (3, 5)) + """
        layer { name: "lstm" type: "LSTM" bottom: "data" bottom: "second" bottom: "third"
          top: "h" recurrent_param { num_output: 6 weight_filler { type: "gaussian" std: 0.5 }
          bias_filler { type: "gaussian" std: 0.5 } } }""",
    "lstm_expose_hidden": _input((3, 2, 4), (3, 2), (1, 2, 5)) + """
        layer { name: "lstm" type: "LSTM" bottom: "data" bottom: "second" bottom: "third"
          bottom: "third" top: "h" top: "hT" top: "cT" recurrent_param { num_output: 5
          expose_hidden: true weight_filler { type: "gaussian" std: 0.5 } } }""",
    "rnn": _input((4, 3, 2), (4, 3), (1, 3, 5)) + """
        layer { name: "rnn" type: "RNN" bottom: "data" bottom: "second" top: "o"
          recurrent_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 }
          bias_filler { type: "gaussian" std: 0.5 } } }
        layer { name: "rnn2" type: "RNN" bottom: "data" bottom: "second" bottom: "third"
          top: "o2" top: "hT" recurrent_param { num_output: 5 expose_hidden: true
          weight_filler { type: "gaussian" std: 0.5 } } }""",
    "sources_and_sinks": _input((2, 3)) + """
        layer { name: "dummy" type: "DummyData" top: "dummy"
          dummy_data_param { shape { dim: 2 dim: 3 } data_filler { type: "constant" value: 1.5 } } }
        layer { name: "param" type: "Parameter" top: "param" parameter_param { shape { dim: 2 dim: 3 } } }
        layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "dummy" bottom: "param" top: "sum" }
        layer { name: "mute" type: "Silence" bottom: "sum" }
        layer { name: "out" type: "Power" bottom: "data" top: "out" power_param { scale: 3 } }""",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_onnxruntime(tmp_path, case):
    _check(tmp_path, CASES[case])


def test_pooling_edge_cases_take_the_decomposed_forms(tmp_path):
    """The cases above meant to reach the AVE divisor correction and the explicit Pad do."""
    for case, piece in (("pool_ave_padding_divisor_at_borders", "divisor_correction"),
                        ("pool_windows_wholly_outside", "Pad")):
        net = net_from_text(CASES[case])
        model = export_onnx(net, tmp_path / "pool.onnx")
        names = [node.op_type for node in model.graph.node] + [i.name for i in model.graph.initializer]
        assert any(piece in name for name in names), case


def test_wholly_outside_windows_give_caffes_values(tmp_path):
    pairs = _check(tmp_path, CASES["pool_windows_wholly_outside"])
    assert (pairs["p"][1][..., 2, :] == -np.finfo(np.float32).max).all()


def test_argmax_breaks_ties_as_caffe(tmp_path):
    text = _input((2, 3, 4)) + """
        layer { name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param { top_k: 3 } }
        layer { name: "b" type: "ArgMax" bottom: "data" top: "b"
          argmax_param { top_k: 2 out_max_val: true } }
        layer { name: "c" type: "ArgMax" bottom: "data" top: "c" argmax_param { axis: 1 top_k: 2 } }
        layer { name: "d" type: "ArgMax" bottom: "data" top: "d"
          argmax_param { axis: 2 out_max_val: true } }"""
    ties = np.random.default_rng(3).integers(0, 3, (2, 3, 4)).astype(np.float32)
    pairs = _check(tmp_path, text, feeds={"data": ties})
    for name in "abc":
        np.testing.assert_array_equal(*pairs[name])


def test_lstm_unit_with_sequence_starts(tmp_path):
    cont = np.array([[1, 0, 1]], np.float32)
    _check(tmp_path, CASES["lstm_unit"], feeds={"third": cont}, expected=("c", "h"))


@pytest.mark.parametrize("case", ["lstm_static_input", "lstm_expose_hidden", "rnn"])
def test_recurrent_layers_with_sequences_starting_mid_batch(tmp_path, case):
    steps, streams = net_from_text(CASES[case]).blobs["second"].shape
    cont = np.ones((steps, streams), np.float32)
    cont[0, 0] = cont[2, 1] = 0
    _check(tmp_path, CASES[case], feeds={"second": cont})


def test_carried_state_becomes_graph_inputs_and_outputs(tmp_path):
    """Without expose_hidden the state of one call is the next call's start: in ONNX it is
    fed back by hand, and the second call then matches the net's second forward."""
    net = net_from_text(CASES["lstm_static_input"])
    model = export_onnx(net, tmp_path / "lstm.onnx")
    assert [i.name for i in model.graph.input] == ["data", "second", "third", "lstm/h0", "lstm/c0"]
    assert [o.name for o in model.graph.output] == ["h", "lstm/hT", "lstm/cT"]
    session = ort.InferenceSession(str(tmp_path / "lstm.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    state = {"lstm/h0": np.zeros((1, 3, 6), np.float32), "lstm/c0": np.zeros((1, 3, 6), np.float32)}
    for call in range(2):
        feeds = {"data": rng.normal(0, 1, (4, 3, 2, 2)).astype(np.float32),
                 "second": np.ones((4, 3), np.float32), "third": rng.normal(0, 1, (3, 5)).astype(np.float32)}
        h, state["lstm/h0"], state["lstm/c0"] = session.run(None, {**feeds, **state})
        expected = net.forward(**feeds)["h"]
        assert relative_error(expected, h) <= 1e-4, call


def test_index_layers(tmp_path):
    text = _input((2, 5), (3,)) + """
        layer { name: "e" type: "Embed" bottom: "data" top: "e" embed_param { num_output: 4
          input_dim: 7 weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
        layer { name: "r" type: "BatchReindex" bottom: "e" bottom: "second" top: "r" }"""
    feeds = {"data": np.array([[0, 6, 3, 3, 1], [2, 5, 4, 0, 6]], np.float32),
             "second": np.array([1, 0, 1], np.float32)}
    _check(tmp_path, text, feeds=feeds, expected=("e", "r"))


@pytest.mark.parametrize("opset", [supported_opsets()[0], 17, 18, supported_opsets()[1]])
def test_opsets(tmp_path, opset):
    """The operators whose form changed (Reduce*, Split, ...) at the lowest, the default, the
    first with reduce axes as inputs, and the newest opset."""
    for case in ("batch_norm_batch_statistics", "reduction", "mvn", "concat_slice_split_crop",
                 "lrn_across_and_within"):
        _check(tmp_path, CASES[case], opset=opset)


# -- whole nets ----------------------------------------------------------------------------------
MODELS = {
    # name: (deploy net, net whose fillers fill it)
    "lenet": ("models/lenet/lenet_deploy.prototxt", "models/lenet/lenet_time.prototxt"),
    "caffenet": ("models/caffenet/deploy.prototxt", "models/caffenet/caffenet_time.prototxt"),
    "googlenet": ("models/googlenet/deploy.prototxt", "models/googlenet/googlenet_time.prototxt"),
    "resnet50": ("models/resnet50/deploy.prototxt", "models/resnet50/resnet50_time.prototxt"),
    "mobilenet_v1": ("models/mobilenet_v1/deploy.prototxt",
                     "models/mobilenet_v1/mobilenet_v1_time.prototxt"),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_reference_deploy_nets_match_onnxruntime(tmp_path, model):
    """The deploy nets at batch 1, weights from their training nets' fillers, random BatchNorm
    statistics and inputs; every blob of the graph compared."""
    deploy, fillers = (f"{ROOT}/{path}" for path in MODELS[model])
    net = pcl.Net(deploy, pcl.TEST)
    fill_from(net, fillers)
    randomize_statistics(net, np.random.default_rng(0))
    shapes = {name: (1,) + net.blobs[name].shape[1:] for name in net.inputs}
    pairs = export_and_run(net, tmp_path / f"{model}.onnx", input_shapes=shapes)
    assert_matches(pairs, net.outputs)


# -- what the exporter refuses --------------------------------------------------------------------
def test_refusal_names_every_layer_and_writes_nothing(tmp_path):
    text = _input((4, 3, 5, 5), (4,)) + """
        layer { name: "noise" type: "DummyData" top: "noise"
          dummy_data_param { shape { dim: 4 dim: 3 dim: 5 dim: 5 } data_filler { type: "gaussian" } } }
        layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "noise" top: "sum" }
        layer { name: "cols" type: "Im2col" bottom: "sum" top: "cols"
          convolution_param { kernel_size: 2 } }
        layer { name: "ip" type: "InnerProduct" bottom: "cols" top: "ip"
          inner_product_param { num_output: 3 } }
        layer { name: "kept" type: "Filter" bottom: "ip" bottom: "second" top: "kept" }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "second" top: "loss" }
        layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "second" top: "accuracy" }"""
    net = net_from_text(text)
    path = tmp_path / "refused.onnx"
    with pytest.raises(PclError) as error:
        export_onnx(net, path)
    message = str(error.value)
    for name, type_name in (("noise", "DummyData"), ("cols", "Im2col"), ("kept", "Filter"),
                            ("loss", "SoftmaxWithLoss"), ("accuracy", "Accuracy")):
        assert f'"{name}" ({type_name})' in message
    assert "5 layers have no exact ONNX form" in message
    assert "\n" not in message
    assert not list(tmp_path.iterdir())


def test_train_phase_and_bad_opsets_are_refused(tmp_path):
    text = _input((1, 2))
    with pytest.raises(PclError, match="TEST phase"):
        export_onnx(net_from_text(text, pcl.TRAIN), tmp_path / "a.onnx")
    lowest, highest = supported_opsets()
    for opset in (lowest - 1, highest + 1):
        with pytest.raises(PclError, match=f"opset {opset} is not supported"):
            export_onnx(net_from_text(text), tmp_path / "a.onnx", opset=opset)
    assert lowest <= DEFAULT_OPSET <= highest


def test_input_shapes_export_at_other_sizes_and_restore_the_net(tmp_path):
    net = pcl.Net(f"{ROOT}/models/lenet/lenet_deploy.prototxt", pcl.TEST)
    before = net.blobs["data"].shape
    model = export_onnx(net, tmp_path / "lenet.onnx", input_shapes={"data": (3, 1, 28, 28)})
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 1, 28, 28]
    assert net.blobs["data"].shape == before
    with pytest.raises(PclError, match='"images" is not an input'):
        export_onnx(net, tmp_path / "lenet.onnx", input_shapes={"images": (1, 1, 28, 28)})
    with pytest.raises(PclError, match="channels"):
        export_onnx(net, tmp_path / "lenet.onnx", input_shapes={"data": (1, 2, 28, 28)})
    assert net.blobs["data"].shape == before


def test_names_of_inputs_outputs_and_in_place_versions(tmp_path):
    text = _input((2, 4), (2, 4), names=("data", "unused")) + f"""
        layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
          inner_product_param {{ num_output: 3 {GAUSS} }} }}
        layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
        layer {{ name: "drop1" type: "Dropout" bottom: "ip1" top: "ip1" }}
        layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
          inner_product_param {{ num_output: 3 {GAUSS} }} }}
        layer {{ name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }}"""
    export_onnx(net_from_text(text), tmp_path / "net.onnx")
    model = onnx.load(str(tmp_path / "net.onnx"))
    assert model.producer_name == "pycaffelite"
    assert [i.name for i in model.graph.input] == ["data"]   # an unused input is left out
    assert [o.name for o in model.graph.output] == ["prob"]
    produced = [name for node in model.graph.node for name in node.output]
    # ip1's last writer, drop1, hands relu1's value on: no value is named "ip1".
    assert produced == ["ip1/ip1", "ip1/relu1", "ip2", "prob"]
    # Asked-for blobs become outputs under their names where free (an input's is taken).
    model = export_onnx(net_from_text(text), tmp_path / "net.onnx", outputs=["data", "ip1"])
    assert [o.name for o in model.graph.output] == ["prob", "data/output", "ip1"]
    assert [o.doc_string for o in model.graph.output] == ['blob "prob"', 'blob "data"', 'blob "ip1"']


def test_missing_onnx_package_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(PclError, match=r"pip install 'pycaffelite\[onnx\]'"):
        export_onnx(net_from_text(_input((1, 2))), tmp_path / "a.onnx")
