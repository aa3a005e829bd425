"""Bad values end in one clear message, never a traceback (issue 13, items 5 and 6).

Through the Python API each case is one PclError naming the file, the layer and what to do; a
few go through `pcl` (in this process, and two in a subprocess) to see exit status 1 and one
`pcl: error:` line. Huge sizes are refused before anything is allocated: the machine's memory is
set to 1 GiB here, so the tests behave alike on every machine and allocate nothing big.
"""
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from pycaffelite import memory
from pycaffelite.cli import main as pcl_main
from pycaffelite.commands.time import check_data_sources
from pycaffelite.errors import PclError
from pycaffelite.io import images, protoio
from pycaffelite.layers import layer_factory
from pycaffelite.net import Net
from pycaffelite.proto import caffe_pb2
from pycaffelite.solvers import get_solver, lr_policy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30

INPUT = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }\n'
VECTORS = ('layer { name: "in" type: "Input" top: "x" top: "label" '
           'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }\n')


@pytest.fixture(autouse=True)
def one_gib_machine(monkeypatch):
    monkeypatch.setattr(memory, "machine_bytes", lambda: GIB)


def build(text, name="bad.prototxt"):
    """A Net from prototxt text, as read from a file called `name`."""
    return Net(protoio.parse_text_proto(text, caffe_pb2.NetParameter(), name), "TEST", source=name)


def refused(text, pattern, name="bad.prototxt"):
    """Building `text` ends in one PclError matching `pattern`; returns its message."""
    with pytest.raises(PclError) as info:
        build(text, name)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert message.startswith(f"{name}:") and "\n" not in message
    return message


def conv(fields, filler=""):
    return INPUT + (f'layer {{ name: "conv" type: "Convolution" bottom: "x" top: "y" '
                    f"convolution_param {{ {fields} {filler} }} }}")


def run_pcl(capsys, *args):
    """`pcl ARGS` in this process: (exit status, stderr)."""
    try:
        pcl_main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("pcl: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# -- fillers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("filler,pattern", [
    ('type: "gaussian" std: -1', r"the gaussian filler's std must not be negative, found -1"),
    ('type: "uniform" min: 1 max: -1', r"the uniform filler's min \(1\) is above its max \(-1\); swap"),
    ('type: "xavier" sparse: 3', r'sparse applies to the gaussian filler only.*type "xavier"'),
    ('type: "gaussian" sparse: -4', r"sparse must be a count >= 0"),
    ('type: "gausian"', r'unknown filler type "gausian"'),
])
def test_bad_fillers_name_the_layer_and_the_param(filler, pattern):
    message = refused(conv("num_output: 4 kernel_size: 3", f"weight_filler {{ {filler} }}"), pattern)
    assert 'layer "conv" (Convolution): the filler of param 0 (shape (4, 3, 3, 3))' in message


@pytest.mark.parametrize("kind", ["xavier", "msra"])
def test_fan_fillers_on_a_blob_without_values(kind):
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 0 } } }\n'
            f'layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
            f'{{ num_output: 4 weight_filler {{ type: "{kind}" }} }} }}')
    refused(text, rf'layer "ip".*param 0 \(shape \(4, 0\)\): the {kind} filler divides by the '
                  r"blob's fans, and this blob holds no values")


def test_bilinear_filler_needs_a_square_kernel():
    refused(INPUT + 'layer { name: "up" type: "Deconvolution" bottom: "x" top: "y" convolution_param '
                    '{ num_output: 3 kernel_h: 3 kernel_w: 4 weight_filler { type: "bilinear" } } }',
            r"bilinear filler needs a 4-d blob with a square kernel")


def test_a_nan_filler_number_given_in_python_is_refused():
    net = protoio.parse_text_proto(conv("num_output: 4 kernel_size: 3"), caffe_pb2.NetParameter())
    net.layer[1].convolution_param.weight_filler.type = "gaussian"
    net.layer[1].convolution_param.weight_filler.std = float("nan")
    with pytest.raises(PclError, match=r"std must be a finite number, found nan"):
        Net(net, "TEST", source="py")


def test_dummy_data_filler_is_checked_for_its_top():
    text = ('layer { name: "d" type: "DummyData" top: "x" dummy_data_param { shape { dim: 3 } '
            'data_filler { type: "gaussian" std: -2 } } }')
    refused(text, r'layer "d" \(DummyData\): the data_filler of top 0 \(shape \(3,\)\): the '
                  r"gaussian filler's std must not be negative")


def test_positive_unitball_on_a_vector_is_a_warning(caplog):
    text = VECTORS + ('layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
                      '{ num_output: 4 bias_filler { type: "positive_unitball" } } }')
    with caplog.at_level(logging.WARNING, logger="pycaffelite"):
        net = build(text)
    np.testing.assert_array_equal(net.params["ip"][1].data, 1)  # Caffe's result
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and 'layer "ip" (InnerProduct): the filler of param 1' in warnings[0]
    assert "every value becomes 1" in warnings[0]


# -- sizes: checked before anything is allocated ----------------------------------------------------
def test_a_kernel_larger_than_the_input_is_refused_before_its_weights():
    refused(conv("num_output: 4 kernel_size: 99999999"),
            r'layer "conv" \(Convolution\): the kernel \(extent 99999999 with dilation 1\) is larger '
            r"than the padded input \(8 \+ 2 x 0\)")


@pytest.mark.parametrize("text,pattern", [
    (VECTORS + 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
               'inner_product_param { num_output: 2147483648 } }',
     r'layer "ip" \(InnerProduct\): a float32 blob of shape \(2147483648, 3\) would need 24 GiB'),
    (conv("num_output: 4 kernel_size: 3 pad: 100000"),
     r'layer "conv" \(Convolution\): a float32 blob of shape \(2, 4, 200006, 200006\) would need'),
    ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2000000000 '
     'dim: 2000000000 dim: 2000000000 dim: 2000000000 dim: 2000000000 } } }',
     r'layer "in" \(Input\): a float32 blob of shape \(2000000000, .*\) would need 1.3e\+47 bytes'),
    ('layer { name: "d" type: "DummyData" top: "x" dummy_data_param { shape { dim: 200000 '
     'dim: 300000 dim: 80000 dim: 80000 } } }',
     r'layer "d" \(DummyData\): a float32 blob of shape \(200000, 300000, 80000, 80000\)'),
    (INPUT + 'layer { name: "t" type: "Tile" bottom: "x" top: "y" tile_param { tiles: 2147483647 } }',
     r'layer "t" \(Tile\): a float32 blob of shape \(2, 6442450941, 8, 8\) would need 3 TiB'),
    (INPUT + 'layer { name: "n" type: "LRN" bottom: "x" top: "y" lrn_param { local_size: 99999999 } }',
     r'layer "n" \(LRN\): a work buffer of shape \(2, 100000001, 8, 8\) would need 47.7 GiB'),
])
def test_sizes_beyond_the_machine_name_the_layer_and_the_size(text, pattern):
    message = refused(text, pattern)
    assert "more than this machine's memory (1 GiB)" in message


def test_blobs_adding_up_beyond_the_machine_name_the_layer_where_they_do():
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 100 dim: 1000 '
            'dim: 1000 } } }\n')  # 400 MB each: three of them do not fit in 1 GiB
    for name in ("a", "b", "c"):
        text += f'layer {{ name: "{name}" type: "Sigmoid" bottom: "x" top: "{name}" }}\n'
    refused(text, r'layer "b" \(Sigmoid\): the blobs of the layers up to here need 1.12 GiB of '
                  r"memory in all, more than this machine has \(1 GiB\)")


def test_in_place_and_shared_blobs_count_once(monkeypatch):
    monkeypatch.setattr(memory, "machine_bytes", lambda: 500_000_000)
    text = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 100 dim: 1000 '
            'dim: 1000 } } }\n'
            'layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }\n'
            'layer { name: "flat" type: "Flatten" bottom: "x" top: "flat" }\n')
    assert build(text).blobs["flat"].shape == (100, 1000000)


def test_running_out_of_memory_in_a_pass_names_the_layer(monkeypatch):
    net = build(INPUT + 'layer { name: "s" type: "Sigmoid" bottom: "x" top: "y" }')

    def exhausted(bottom, top):
        raise MemoryError("Unable to allocate 9.00 GiB")

    monkeypatch.setattr(net.layers[1], "forward", exhausted)
    with pytest.raises(PclError, match=r'^bad.prototxt: layer "s" \(Sigmoid\) ran out of memory '
                                       r"\(forward: Unable to allocate 9.00 GiB\); lower the batch size"):
        net.forward()


def test_a_huge_pooling_kernel_is_refused_at_once():
    refused(INPUT + 'layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param '
                    '{ kernel_size: 99999999 } }',
            r'layer "p" \(Pooling\): the kernel \(99999999, 99999999\) .* does not fit the input')


def test_pycaffe_reshape_to_a_huge_shape_names_the_layer():
    net = build(INPUT + 'layer { name: "s" type: "Sigmoid" bottom: "x" top: "y" }')
    net.blobs["x"].reshape(2, 3, 8, 8)
    with pytest.raises(PclError, match=r"a float32 blob of shape \(1000000, 3, 1000, 1000\)"):
        net.blobs["x"].reshape(1000000, 3, 1000, 1000)
    assert net.blobs["x"].shape == (2, 3, 8, 8)  # a refused reshape changes nothing


# -- values where a positive (or sensible) one is needed ---------------------------------------------
@pytest.mark.parametrize("text,pattern", [
    (conv("num_output: 0 kernel_size: 3"), r"num_output: N \} with N > 0, found 0"),
    (conv("num_output: 4 kernel_size: 3 stride: 0"), r"every stride must be positive"),
    (conv("num_output: 4 kernel_size: 3 dilation: 0"), r"every dilation must be positive"),
    (conv("num_output: 4 kernel_size: 3 group: 2"), r"group 2 must divide both the input channels \(3\)"),
    (INPUT + 'layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { kernel_size: 3 '
             'stride: 0 } }', r"strides must be positive"),
    (VECTORS + 'layer { name: "a" type: "Accuracy" bottom: "x" bottom: "label" top: "y" '
               'accuracy_param { top_k: 0 } }', r"accuracy_param.top_k must be at least 1"),
    (INPUT + 'layer { name: "b" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { eps: -1 } }',
     r"batch_norm_param.eps must not be negative"),
    (INPUT + 'layer { name: "b" type: "BatchNorm" bottom: "x" top: "y" '
             'batch_norm_param { moving_average_fraction: -0.5 } }',
     r"moving_average_fraction must be a fraction in \[0, 1\]"),
    (INPUT + 'layer { name: "m" type: "MVN" bottom: "x" top: "y" mvn_param { eps: -1 } }',
     r"mvn_param.eps must not be negative"),
    (INPUT + 'layer { name: "t" type: "Tile" bottom: "x" top: "y" tile_param { tiles: 0 } }',
     r"tiles must be set to a positive count"),
])
def test_zero_and_negative_values_are_refused(text, pattern):
    refused(text, pattern)


# -- the parser: unclosed braces, fork fields, ranges, nan -----------------------------------------
def parse_error(text, name="net.prototxt"):
    with pytest.raises(PclError) as info:
        protoio.parse_text_proto(text, caffe_pb2.NetParameter(), name)
    return str(info.value)


LAYER_THEN_RELU = """name: "x"
layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 }%s
}
layer {
  name: "relu"
  type: "ReLU"
  bottom: "data"
  top: "data"
}
"""


def test_an_unclosed_inner_brace_is_found_by_its_indentation():
    message = parse_error(LAYER_THEN_RELU % "")
    assert message == ('net.prototxt:6:15: the "{" of input_param opened here is not closed, so '
                       '"layer" on line 8 is read inside layer { }, where it is not a field; add '
                       'the missing "}"')


def test_an_unclosed_layer_is_found_where_the_next_one_starts():
    text = LAYER_THEN_RELU.replace("dim: 8 }%s\n}", "dim: 8 } }", 1)
    assert parse_error(text).startswith('net.prototxt:2:7: the "{" of layer opened here is not '
                                        'closed, so "layer" on line 7 is read inside layer { }')


def test_the_end_of_the_file_inside_blocks_lists_them():
    text = 'layer {\n  name: "a"\n  input_param { shape { dim: 1 }\n'
    assert parse_error(text) == ('net.prototxt:3:15: the file ends inside input_param { } opened at '
                                 'line 3 col 15; layer { } opened at line 1 col 7: 2 "}" are '
                                 'missing (look first at the block opened here)')


def test_a_field_of_an_outer_message_without_indentation_evidence():
    text = 'layer { name: "a" type: "Input" input_param { shape { dim: 1 } top: "x" } }'
    assert parse_error(text) == ('net.prototxt:1:64: "top" is a field of LayerParameter, not of '
                                 'InputParameter (input_param { }, opened at line 1 col 45); a "}" '
                                 'is missing before it, or it is misplaced')


def test_a_stray_closing_brace():
    assert 'this "}" closes no open "{"; remove it' in parse_error('layer { name: "a" } }')


@pytest.mark.parametrize("text,pattern", [
    ('layer { name: "n" type: "Normalize" norm_param { across_spatial: false } }',
     r'unknown field "norm_param" in LayerParameter: this field is not BVLC Caffe\'s: it comes from '
     r"the SSD fork \(weiliu89/caffe, branch ssd\)$"),
    ('layer { name: "p" type: "Permute" permute_param { order: 0 } }', r"the SSD fork"),
    ('layer { name: "p" type: "PriorBox" prior_box_param { min_size: 30 } }', r"the SSD fork"),
    ('layer { name: "d" type: "DetectionOutput" detection_output_param { num_classes: 2 } }',
     r"the SSD fork"),
    ('layer { name: "d" type: "Data" transform_param { resize_param { prob: 1 } } }', r"the SSD fork"),
    ('layer { name: "b" type: "BN" bn_param { } }',
     r"the SegNet fork .* and PSPNet's .*; BVLC Caffe's BatchNorm followed by a Scale layer"),
    ('layer { name: "r" type: "ROIPooling" roi_pooling_param { pooled_h: 7 } }',
     r"the Fast/Faster R-CNN fork \(rbgirshick/caffe-fast-rcnn\)"),
    ('layer { name: "s" type: "ShuffleChannel" shuffle_channel_param { group: 3 } }',
     r"ShuffleNet's add-on layer \(farmingyard/ShuffleNet\)"),
    ('layer { name: "p" type: "Pooling" pooling_param { kernel_size: 2 ceil_mode: false } }',
     r"pull request #3057.*round_mode: FLOOR for ceil_mode: false"),
])
def test_fork_fields_say_where_they_come_from(text, pattern):
    message = parse_error(text)
    assert "did you mean" not in message
    assert re.search(pattern, message), message


def test_a_value_out_of_range_names_the_field_and_its_range():
    text = 'layer { name: "d" type: "DummyData" dummy_data_param { num: -3 } }'
    assert parse_error(text).endswith("num in DummyDataParameter takes a whole number from 0 to "
                                      "4294967295 (uint32), found -3")


def test_nan_is_refused_with_its_line():
    text = 'layer {\n  name: "c" type: "Clip"\n  clip_param { min: nan max: 1 }\n}'
    assert parse_error(text) == 'net.prototxt:3:21: layer "c" clip_param.min is nan; give a number'


# -- layer types -----------------------------------------------------------------------------------
@pytest.mark.parametrize("type_name,expected", [
    ("Convolutoin", 'the nearest known types are "Convolution", "Deconvolution"'),
    ("convolution", 'did you mean "Convolution"? (type strings are case-sensitive)'),
    ("Normalise", '"Normalize" from the SSD fork'),
    ("Xyzzy", "no BVLC Caffe layer type is close to it"),
    ("DepthwiseConvolution", 'type "Convolution" with group set to the number of channels'),
] + [(name, "this layer type is not BVLC Caffe's: it comes from") for name in (
    "Normalize", "PriorBox", "DetectionOutput", "Permute", "ROIPooling", "Upsample", "ShuffleChannel",
    "BN", "Interp")])
def test_unknown_layer_types(type_name, expected):
    with pytest.raises(PclError) as info:
        layer_factory(type_name, "l")
    message = str(info.value)
    assert expected in message and message.count('"') < 20  # the nearest, not the whole list


# -- solvers ---------------------------------------------------------------------------------------
TINY_NET = """
layer { name: "data" type: "DummyData" top: "x" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
                     data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def solver(text, **kwargs):
    param = protoio.parse_text_proto(text, caffe_pb2.SolverParameter(), "solver.prototxt")
    param.net_param.CopyFrom(protoio.parse_text_proto(TINY_NET, caffe_pb2.NetParameter()))
    for name, value in kwargs.items():
        setattr(param, name, value)
    return get_solver(param)


BASE_SOLVER = 'base_lr: 0.1 lr_policy: "fixed" max_iter: 2 solver_mode: CPU '


def test_test_iter_zero_tests_nothing_and_warns_once(caplog, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # solve() ends with a snapshot
    with caplog.at_level(logging.WARNING, logger="pycaffelite"):
        sgd = solver(BASE_SOLVER + "test_iter: 0 test_interval: 1 test_initialization: true")
        sgd.solve()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "test_iter is 0 for test net #0" in warnings[0]
    assert sgd.iter == 2 and sgd.mean_scores == [[]]


def test_negative_test_iter_is_refused():
    with pytest.raises(PclError, match=r"test_iter -1 \(test net #0\) must not be negative"):
        solver(BASE_SOLVER + "test_iter: -1 test_interval: 1")


@pytest.mark.parametrize("base_lr,says", [(-0.1, "moves the weights up the gradient"),
                                          (0.0, "leaves the weights as they are")])
def test_a_base_lr_that_cannot_train_is_warned_about_once(caplog, base_lr, says):
    with caplog.at_level(logging.WARNING, logger="pycaffelite"):
        solver(BASE_SOLVER, base_lr=base_lr).step(2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and says in warnings[0]


@pytest.mark.parametrize("field,value", [("iter", -2**31), ("current_step", -5)])
def test_a_solver_state_with_negative_counters_is_refused(tmp_path, field, value):
    sgd = solver(BASE_SOLVER)
    state = caffe_pb2.SolverState(iter=3, current_step=0)
    setattr(state, field, value)
    path = tmp_path / "bad.solverstate"
    protoio.write_binary_proto(str(path), state)
    with pytest.raises(PclError, match=rf"bad.solverstate: its {field} is {value}, and a solver "
                                       r"state counts from 0"):
        sgd.restore(str(path))
    assert sgd.iter == 0


def test_the_step_policy_overflows_to_infinity_as_caffe_does():
    param = caffe_pb2.SolverParameter(base_lr=0.1, lr_policy="step", gamma=10, stepsize=1)
    assert lr_policy.learning_rate(param, 10**6, 0)[0] == np.inf
    param.lr_policy = "exp"
    assert lr_policy.learning_rate(param, 10**6, 0)[0] == np.inf


def test_adam_rates_outside_zero_one_are_refused():
    with pytest.raises(PclError, match=r"momentum2 must lie in \[0, 1\) for Adam \(found 1.5\)"):
        solver(BASE_SOLVER + 'type: "Adam" momentum: 0.9 momentum2: 1.5')


def test_unsorted_multistep_values_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="pycaffelite"):
        solver(BASE_SOLVER.replace('"fixed"', '"multistep"') + "gamma: 0.1 stepvalue: 3 stepvalue: 1")
    assert any("the stepvalue list [3, 1] does not increase" in r.getMessage() for r in caplog.records)


# -- pcl time, images ---------------------------------------------------------------------------
def test_an_input_layer_with_a_stray_image_data_param_needs_no_data(tmp_path):
    net = tmp_path / "deploy.prototxt"
    net.write_text('layer { name: "input" type: "Input" top: "data" image_data_param { source: '
                   '"images.txt" batch_size: 1 } input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }')
    check_data_sources(str(net), caffe_pb2.NetState(phase=caffe_pb2.TEST))
    as_data = tmp_path / "data.prototxt"
    as_data.write_text(net.read_text().replace('"Input"', '"ImageData"'))
    with pytest.raises(PclError, match=r'reads its data from source "images.txt", which does not exist'):
        check_data_sources(str(as_data), caffe_pb2.NetState(phase=caffe_pb2.TEST))


def test_a_missing_image_is_read_without_opencvs_own_warning(capfd, tmp_path):
    assert images.read_image(str(tmp_path / "no_such.jpg")) is None
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_an_image_resized_beyond_the_machine_is_refused_before_opencv_tries():
    with pytest.raises(PclError, match=r"an image resized to 100000 x 100000 would need 27.9 GiB, "
                                       r"more than this machine's memory \(1 GiB\); check the size"):
        images.resize(np.zeros((3, 4, 4), np.uint8), 100000, 100000)


# -- the command line ------------------------------------------------------------------------------
def test_pcl_time_reports_one_error_line(capsys, tmp_path):
    model = tmp_path / "unclosed.prototxt"
    model.write_text(LAYER_THEN_RELU % "")
    code, err = run_pcl(capsys, "time", "--model", str(model))
    assert code == 1
    assert one_error_line(err).endswith('unclosed.prototxt:6:15: the "{" of input_param opened here '
                                        'is not closed, so "layer" on line 8 is read inside layer '
                                        '{ }, where it is not a field; add the missing "}"')


def test_pcl_time_refuses_a_huge_layer_in_one_line(capsys, tmp_path):
    model = tmp_path / "huge.prototxt"
    model.write_text(VECTORS + 'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
                               'inner_product_param { num_output: 2147483648 } }')
    code, err = run_pcl(capsys, "time", "--model", str(model))
    assert code == 1 and 'layer "ip" (InnerProduct): a float32 blob' in one_error_line(err)


@pytest.mark.parametrize("files,args,expected", [
    ({"net.prototxt": conv("num_output: 4 kernel_size: 3", 'weight_filler { type: "gaussian" std: -1 }')},
     ("time", "--model", "net.prototxt"), "std must not be negative"),
    ({"net.prototxt": TINY_NET,
      "solver.prototxt": 'net: "net.prototxt" base_lr: 0.1 lr_policy: "step" stepsize: 0 max_iter: 1'},
     ("train", "--solver", "solver.prototxt"), 'lr_policy "step" needs stepsize > 0'),
])
def test_pcl_in_a_subprocess_exits_1_with_one_line(tmp_path, files, args, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", "from pycaffelite.cli import main; main()", *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert expected in one_error_line(result.stderr)
