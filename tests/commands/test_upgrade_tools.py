"""`pcl upgrade_net_proto_text`, `upgrade_net_proto_binary` and `upgrade_solver_proto_text`:
the upgraded files byte for byte as Caffe's tools write them (expected text written by hand,
binary checked against hand-encoded bytes), Caffe's log lines, the upgraded nets building to the
layers of the old files, the no-upgrade case and the errors."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from pycaffelite.io.cpp_text_format import double_text, float_text
from pycaffelite.net import Net
from pycaffelite.proto import caffe_pb2 as pb

from tiny_training import pcl_logger_restored  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("pcl_logger_restored", "glog_defaults")

LENET_V1 = Path(__file__).resolve().parents[1] / "data" / "caffe_ref" / "layers" / "lenet_v1"
V1 = pb.V1LayerParameter
GLOG_PREFIX = r"[IWE]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] "


@pytest.fixture
def glog_defaults(monkeypatch):
    """Every log line on stderr, whatever the environment says."""
    for name in ("GLOG_minloglevel", "GLOG_log_dir", "GLOG_logtostderr", "GLOG_alsologtostderr"):
        monkeypatch.delenv(name, raising=False)


def log_messages(err):
    """The messages of the glog-prefixed lines on stderr, each as (severity letter, text)."""
    return [(line[0], re.sub(GLOG_PREFIX, "", line)) for line in err.splitlines()
            if re.match(GLOG_PREFIX, line)]


def layer_table(net):
    return [(name, layer.type, [net.blob_names[i] for i in bottoms],
             [net.blob_names[i] for i in tops])
            for name, layer, bottoms, tops in zip(net.layer_names, net.layers, net.bottom_ids,
                                                  net.top_ids)]


# -- numbers as C++ prints them ----------------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (0.0001, "0.0001"), (1e-05, "1e-05"), (1.0, "1"), (0.1, "0.1"), (0.75, "0.75"),
    (1e6, "1e+06"), (1234567.0, "1234567"), (-2.5, "-2.5"), (-0.0, "-0"),
    # %.6g does not read back as the same float32: %.9g
    (1.0000001, "1.00000012"), (0.0039215684, "0.00392156839"), (2 ** -10, "0.0009765625"),
    (3.4028234663852886e38, "3.40282347e+38"),
    (float("inf"), "inf"), (float("-inf"), "-inf"), (float("nan"), "nan"),
])
def test_float_text(value, text):
    assert float_text(float(np.float32(value))) == text


@pytest.mark.parametrize("value, text", [
    (0.1, "0.1"), (1.0, "1"), (1e-05, "1e-05"), (1 / 3, "0.33333333333333331"),
    (2.0 ** 60, "1.152921504606847e+18"), (float("nan"), "nan"),
])
def test_double_text(value, text):
    assert double_text(value) == text


# -- upgrade_net_proto_text --------------------------------------------------------------------

V0_NET = """name: "tiny_v0"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }
layers {
  layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 1
          weight_filler { type: "gaussian" std: 0.01 }
          blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 }
  bottom: "pad1" top: "conv1"
}
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 2 stride: 2 }
         bottom: "conv1" top: "pool1" }
layers { layer { name: "ip" type: "innerproduct" num_output: 10 biasterm: false }
         bottom: "pool1" top: "ip" }
layers { layer { name: "prob" type: "softmax" } bottom: "ip" top: "prob" }
"""

V0_UPGRADED = """name: "tiny_v0"
layer {
  name: "input"
  type: "Input"
  top: "data"
  input_param {
    shape {
      dim: 1
      dim: 3
      dim: 8
      dim: 8
    }
  }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param {
    lr_mult: 1
    decay_mult: 1
  }
  param {
    lr_mult: 2
    decay_mult: 0
  }
  convolution_param {
    num_output: 4
    pad: 1
    kernel_size: 3
    stride: 1
    weight_filler {
      type: "gaussian"
      std: 0.01
    }
  }
}
layer {
  name: "relu1"
  type: "ReLU"
  bottom: "conv1"
  top: "conv1"
}
layer {
  name: "pool1"
  type: "Pooling"
  bottom: "conv1"
  top: "pool1"
  pooling_param {
    pool: MAX
    kernel_size: 2
    stride: 2
  }
}
layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "pool1"
  top: "ip"
  inner_product_param {
    num_output: 10
    bias_term: false
  }
}
layer {
  name: "prob"
  type: "Softmax"
  bottom: "ip"
  top: "prob"
}
"""


def test_v0_net(tmp_path, run_pcl):
    old, new = tmp_path / "v0.prototxt", tmp_path / "new.prototxt"
    old.write_text(V0_NET)
    code, _, err = run_pcl("upgrade_net_proto_text", str(old), str(new))
    assert code == 0
    assert new.read_bytes() == V0_UPGRADED.encode()
    assert [text for _, text in log_messages(err)] == [
        f"Attempting to upgrade input file specified using deprecated V0LayerParameter: {old}",
        "Successfully upgraded file specified using deprecated V0LayerParameter",
        "Note that future Caffe releases will not support V0NetParameter; use "
        "pcl upgrade_net_proto_text for prototxt and pcl upgrade_net_proto_binary for model "
        "weights to upgrade this and any other net protos to the new format.",
        f"Attempting to upgrade input file specified using deprecated V1LayerParameter: {old}",
        "Successfully upgraded file specified using deprecated V1LayerParameter",
        f"Attempting to upgrade input file specified using deprecated input fields: {old}",
        "Successfully upgraded file specified using deprecated input fields.",
        "Note that future Caffe releases will only support input layers and not input fields.",
        f"Wrote upgraded NetParameter text proto to {new}",
    ]
    assert layer_table(Net(str(new), "TEST")) == layer_table(Net(str(old), "TEST"))


V1_NET = """name: "tiny_v1"
input: "extra"
input_dim: 2 input_dim: 3 input_dim: 1 input_dim: 1
layers {
  name: "data" type: DATA top: "data" top: "label"
  data_param { source: "train_lmdb" batch_size: 2 scale: 0.00390625 mirror: true backend: LMDB }
  include: { phase: TRAIN }
}
layers {
  name: "images" type: IMAGE_DATA top: "data" top: "label"
  image_data_param { source: "listé's.txt" batch_size: 2 }
  include { phase: TEST }
}
layers {
  name: "ip" type: INNER_PRODUCT bottom: "data" top: "ip"
  param: "ip_w" blob_share_mode: PERMISSIVE
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.0001 }
                        bias_filler { type: "constant" value: 1 } }
}
layers {
  name: "norm" type: LRN bottom: "ip" top: "norm"
  lrn_param { local_size: 3 alpha: 1e-05 beta: 0.75 }
}
layers {
  name: "loss" type: SOFTMAX_LOSS bottom: "norm" bottom: "label" top: "loss"
  loss_weight: 1.0000001
}
"""

# The data-transform upgrade leaves an empty transform_param on ImageData too, as Caffe's does;
# strings are C-escaped with octal bytes; floats as C++ prints them.
V1_UPGRADED = r"""name: "tiny_v1"
layer {
  name: "input"
  type: "Input"
  top: "extra"
  input_param {
    shape {
      dim: 2
      dim: 3
      dim: 1
      dim: 1
    }
  }
}
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include {
    phase: TRAIN
  }
  transform_param {
    scale: 0.00390625
    mirror: true
  }
  data_param {
    source: "train_lmdb"
    batch_size: 2
    backend: LMDB
  }
}
layer {
  name: "images"
  type: "ImageData"
  top: "data"
  top: "label"
  include {
    phase: TEST
  }
  transform_param {
  }
  image_data_param {
    source: "list\303\251\'s.txt"
    batch_size: 2
  }
}
layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  param {
    name: "ip_w"
    share_mode: PERMISSIVE
    lr_mult: 1
    decay_mult: 1
  }
  param {
    lr_mult: 2
    decay_mult: 0
  }
  inner_product_param {
    num_output: 3
    weight_filler {
      type: "gaussian"
      std: 0.0001
    }
    bias_filler {
      type: "constant"
      value: 1
    }
  }
}
layer {
  name: "norm"
  type: "LRN"
  bottom: "ip"
  top: "norm"
  lrn_param {
    local_size: 3
    alpha: 1e-05
    beta: 0.75
  }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "norm"
  bottom: "label"
  top: "loss"
  loss_weight: 1.00000012
}
"""


def test_v1_net_with_data_transform_fields(tmp_path, run_pcl):
    old, new = tmp_path / "v1.prototxt", tmp_path / "new.prototxt"
    old.write_text(V1_NET, encoding="utf-8")
    code, _, err = run_pcl("upgrade_net_proto_text", str(old), str(new))
    assert code == 0
    assert new.read_text(encoding="ascii") == V1_UPGRADED
    messages = [text for _, text in log_messages(err)]
    assert messages[:3] == [
        "Attempting to upgrade input file specified using deprecated transformation "
        f"parameters: {old}",
        "Successfully upgraded file specified using deprecated data transformation parameters.",
        "Note that future Caffe releases will only support transform_param messages for "
        "transformation fields.",
    ]


def test_lenet_v1_builds_the_layers_caffe_built(tmp_path, run_pcl):
    new = tmp_path / "lenet.prototxt"
    code, _, err = run_pcl("upgrade_net_proto_text", str(LENET_V1 / "net.prototxt"), str(new))
    assert code == 0
    assert ("I", f"Wrote upgraded NetParameter text proto to {new}") == log_messages(err)[-1]
    text = new.read_text()
    assert "layers {" not in text and "input_dim" not in text and "blobs_lr" not in text
    caffe_table = [(layer["name"], layer["type"], layer["bottoms"], layer["tops"])
                   for layer in json.loads((LENET_V1 / "meta.json").read_text())["net_layers"]]
    upgraded = layer_table(Net(str(new), "TRAIN"))
    assert upgraded == layer_table(Net(str(LENET_V1 / "net.prototxt"), "TRAIN")) == caffe_table


def test_file_already_current_is_written_unchanged(tmp_path, run_pcl):
    current, again = tmp_path / "current.prototxt", tmp_path / "again.prototxt"
    current.write_text(V0_UPGRADED)
    code, _, err = run_pcl("upgrade_net_proto_text", str(current), str(again))
    assert code == 0
    assert again.read_bytes() == current.read_bytes()
    assert log_messages(err) == [
        ("E", f"File already in latest proto format: {current}"),
        ("I", f"Wrote upgraded NetParameter text proto to {again}"),
    ]


LEGACY_INPUTS = """name: "deploy"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 4 input_dim: 4
input: "label"
input_dim: 2 input_dim: 1 input_dim: 1 input_dim: 1
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn"
        param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 1 decay_mult: 1 } }
layer { name: "silence" type: "Silence" bottom: "label" }
"""

BN_PARAMS = "  param {\n    lr_mult: 0\n    decay_mult: 0\n  }\n" * 3
LEGACY_INPUTS_UPGRADED = f"""name: "deploy"
layer {{
  name: "input"
  type: "Input"
  top: "data"
  top: "label"
  input_param {{
    shape {{
      dim: 2
      dim: 3
      dim: 4
      dim: 4
    }}
    shape {{
      dim: 2
      dim: 1
      dim: 1
      dim: 1
    }}
  }}
}}
layer {{
  name: "bn"
  type: "BatchNorm"
  bottom: "data"
  top: "bn"
{BN_PARAMS}}}
layer {{
  name: "silence"
  type: "Silence"
  bottom: "label"
}}
"""


def test_legacy_inputs_and_batch_norm_params(tmp_path, run_pcl):
    old, new, again = (tmp_path / f"{name}.prototxt" for name in ("old", "new", "again"))
    old.write_text(LEGACY_INPUTS)
    code, _, err = run_pcl("upgrade_net_proto_text", str(old), str(new))
    assert code == 0
    assert new.read_text() == LEGACY_INPUTS_UPGRADED
    assert [text for _, text in log_messages(err)][-3:] == [
        f"Attempting to upgrade batch norm layers using deprecated params: {old}",
        "Successfully upgraded batch norm layers using deprecated params.",
        f"Wrote upgraded NetParameter text proto to {new}",
    ]
    assert layer_table(Net(str(new), "TEST")) == layer_table(Net(str(old), "TEST"))
    # Three BatchNorm param specs always count as the old form (as in Caffe): upgraded again.
    code, _, err = run_pcl("upgrade_net_proto_text", str(new), str(again))
    assert code == 0 and again.read_bytes() == new.read_bytes()
    assert "File already in latest proto format" not in err


# -- upgrade_solver_proto_text -----------------------------------------------------------------

OLD_SOLVER = """base_lr: 0.01
lr_policy: "step" gamma: 0.1 stepsize: 1000
momentum: 0.9
weight_decay: 0.0005
max_iter: 5000
solver_type: NESTEROV
solver_mode: CPU
train_net_param { layers { name: "r" type: RELU } }
"""

# Only the type changes: Caffe's tool leaves an inline net as it is.
SOLVER_UPGRADED = """base_lr: 0.01
max_iter: 5000
lr_policy: "step"
gamma: 0.1
momentum: 0.9
weight_decay: 0.0005
stepsize: 1000
solver_mode: CPU
train_net_param {
  layers {
    name: "r"
    type: RELU
  }
}
type: "Nesterov"
"""


def test_solver_type(tmp_path, run_pcl):
    old, new, again = (tmp_path / f"{name}.prototxt" for name in ("old", "new", "again"))
    old.write_text(OLD_SOLVER)
    code, _, err = run_pcl("upgrade_solver_proto_text", str(old), str(new))
    assert code == 0
    assert new.read_text() == SOLVER_UPGRADED
    assert log_messages(err) == [
        ("I", "Attempting to upgrade input file specified using deprecated 'solver_type' field "
              f"(enum)': {old}"),
        ("I", "Successfully upgraded file specified using deprecated 'solver_type' field (enum) "
              "to 'type' field (string)."),
        ("W", "Note that future Caffe releases will only support 'type' field (string) for a "
              "solver's type."),
        ("I", f"Wrote upgraded SolverParameter text proto to {new}"),
    ]
    code, _, err = run_pcl("upgrade_solver_proto_text", str(new), str(again))
    assert code == 0 and again.read_bytes() == new.read_bytes()
    assert ("E", f"File already in latest proto format: {new}") in log_messages(err)


# -- upgrade_net_proto_binary ------------------------------------------------------------------

def test_tiny_binary_net_bytes_by_hand(tmp_path, run_pcl):
    old, new = tmp_path / "old.caffemodel", tmp_path / "new.caffemodel"
    v1 = pb.NetParameter()
    layer = v1.layers.add(name="ip", type=V1.INNER_PRODUCT, blobs_lr=[2])
    layer.blobs.add(width=1, data=[0.5])
    old.write_bytes(v1.SerializeToString())
    assert run_pcl("upgrade_net_proto_binary", str(old), str(new))[0] == 0
    # NetParameter.layer (field 100) { name (1), type (2), param (6) { lr_mult (3) },
    # blobs (7) { width (4), data (5, packed floats) } }, in field-number order.
    expected = (b"\xa2\x06\x23" + b"\x0a\x02ip" + b"\x12\x0cInnerProduct"
                + b"\x32\x05" + b"\x1d\x00\x00\x00\x40"
                + b"\x3a\x08" + b"\x20\x01" + b"\x2a\x04\x00\x00\x00\x3f")
    assert new.read_bytes() == expected


DEPLOY = """name: "tiny"
layer { name: "input" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 1 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def test_v1_caffemodel_with_blobs(tmp_path, run_pcl):
    old, new = tmp_path / "old.caffemodel", tmp_path / "new.caffemodel"
    weights = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    bias = np.array([0.5, -0.5], np.float32)
    v1 = pb.NetParameter(name="tiny", input=["data"], input_dim=[1, 1, 1, 3])
    ip = v1.layers.add(name="ip", type=V1.INNER_PRODUCT, bottom=["data"], top=["ip"],
                       blobs_lr=[1, 2], weight_decay=[1, 0])
    ip.inner_product_param.num_output = 2
    ip.blobs.add(num=1, channels=1, height=2, width=3, data=weights.ravel().tolist())
    ip.blobs.add(num=1, channels=1, height=1, width=2, data=bias.tolist())
    v1.layers.add(name="prob", type=V1.SOFTMAX, bottom=["ip"], top=["prob"])
    old.write_bytes(v1.SerializeToString())

    code, _, err = run_pcl("upgrade_net_proto_binary", str(old), str(new))
    assert code == 0
    assert ("I", f"Wrote upgraded NetParameter binary proto to {new}") == log_messages(err)[-1]
    expected = pb.NetParameter(name="tiny")
    expected.layer.add(name="input", type="Input", top=["data"]).input_param.shape.add(
        dim=[1, 1, 1, 3])
    layer = expected.layer.add(name="ip", type="InnerProduct", bottom=["data"], top=["ip"])
    layer.param.add(lr_mult=1, decay_mult=1)
    layer.param.add(lr_mult=2, decay_mult=0)
    layer.blobs.extend(ip.blobs)  # legacy 4-d dims stay, as in Caffe
    layer.inner_product_param.num_output = 2
    expected.layer.add(name="prob", type="Softmax", bottom=["ip"], top=["prob"])
    assert new.read_bytes() == expected.SerializeToString()

    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(DEPLOY)
    net = Net(str(deploy), "TEST", weights=str(new))
    np.testing.assert_array_equal(net.params["ip"][0].data, weights)
    np.testing.assert_array_equal(net.params["ip"][1].data, bias)
    # An upgraded model needs no more upgrading.
    code, _, err = run_pcl("upgrade_net_proto_binary", str(new), str(tmp_path / "again.caffemodel"))
    assert code == 0 and ("E", f"File already in latest proto format: {new}") in log_messages(err)
    assert (tmp_path / "again.caffemodel").read_bytes() == new.read_bytes()


def test_lenet_v1_caffemodel_loads_as_the_v2_one(tmp_path, run_pcl):
    new = tmp_path / "lenet.caffemodel"
    assert run_pcl("upgrade_net_proto_binary", str(LENET_V1 / "weights_v1.caffemodel"),
                   str(new))[0] == 0
    upgraded = Net(str(LENET_V1 / "net.prototxt"), "TRAIN", weights=str(new))
    reference = Net(str(LENET_V1 / "net.prototxt"), "TRAIN",
                    weights=str(LENET_V1 / "weights.caffemodel"))
    assert list(upgraded.params) == list(reference.params) == ["conv1", "conv2", "ip1", "ip2"]
    for name, blobs in reference.params.items():
        for got, want in zip(upgraded.params[name], blobs, strict=True):
            np.testing.assert_array_equal(got.data, want.data)


# -- errors ------------------------------------------------------------------------------------

def _missing_max():
    net = pb.NetParameter()
    net.layer.add(name="clip", type="Clip").clip_param.min = 0
    return net.SerializePartialToString()


@pytest.mark.parametrize("tool, content, message", [
    ("upgrade_net_proto_text", 'layer { name: "a"\n  type: ReLU }\n',
     r"in\.file:2:\d+: Expected string"),
    ("upgrade_net_proto_text", "base_lr: 0.1\n", r'in\.file:1:1: unknown field "base_lr"'),
    ("upgrade_net_proto_text", 'layers { layer { name: "w" type: "warp" } }',
     r'in\.file: layer "w" \(0\): unknown V0 layer type "warp"'),
    ("upgrade_net_proto_text", 'layer { name: "a" } layers { name: "b" type: RELU }',
     r"in\.file: the net mixes `layer \{ \}` and legacy `layers \{ \}`"),
    ("upgrade_net_proto_text", 'input: "a" input_dim: 1 input_dim: 2',
     r"in\.file: 1 input\(s\) need 4 input_dim values"),
    ("upgrade_net_proto_binary", 'name: "text"', r"in\.file: not a binary NetParameter"),
    ("upgrade_net_proto_binary", _missing_max(),
     r"in\.file: not a complete binary NetParameter: required field\(s\) "
     r"layer\[0\]\.clip_param\.max missing"),
    ("upgrade_solver_proto_text", 'solver_type: ADAM type: "SGD"',
     r'in\.file: solver_type: ADAM \(deprecated\) contradicts type: "SGD"'),
    ("upgrade_solver_proto_text", 'layer { name: "a" }', r'unknown field "layer"'),
])
def test_errors_leave_no_output(tmp_path, run_pcl, tool, content, message):
    source = tmp_path / "in.file"
    if isinstance(content, str):
        source.write_text(content)
    else:
        source.write_bytes(content)
    code, _, err = run_pcl(tool, str(source), str(tmp_path / "out.file"))
    assert code == 1
    error_lines = [line for line in err.splitlines() if line.startswith("pcl: error:")]
    assert len(error_lines) == 1 and re.search(message, error_lines[0]), err
    assert sorted(os.listdir(tmp_path)) == ["in.file"]


def test_missing_input_and_output_folder(tmp_path, run_pcl):
    code, _, err = run_pcl("upgrade_net_proto_text", str(tmp_path / "none.prototxt"),
                           str(tmp_path / "out.prototxt"))
    assert code == 1 and f"pcl: error: {tmp_path / 'none.prototxt'}: no such file" in err
    source = tmp_path / "v0.prototxt"
    source.write_text(V0_NET)
    code, _, err = run_pcl("upgrade_net_proto_text", str(source),
                           str(tmp_path / "missing" / "out.prototxt"))
    assert code == 1 and "cannot write the NetParameter text proto" in err
    assert sorted(os.listdir(tmp_path)) == ["v0.prototxt"]
