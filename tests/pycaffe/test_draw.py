"""caffe.draw and `pcl draw`: the DOT graph of a net (nodes, edges, labels, layout, phases,
learning rate multipliers), DOT text without Graphviz, rendering through Graphviz (skipped where
it is not installed), and the one-line errors for a missing Graphviz, a bad extension or a bad net."""
import shutil

import pytest

import caffe.draw
from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2

needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None,
                                    reason="Graphviz's dot program is not installed")

LENET = """
name: "LeNet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  data_param { source: "train_lmdb" batch_size: 64 } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  data_param { source: "test_lmdb" batch_size: 100 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 stride: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  param { lr_mult: 0 } param { lr_mult: 0 } inner_product_param { num_output: 500 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss"
  exclude { phase: TEST } }
"""

V1_NET = """
name: "old"
input: "data" input_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
"""


def lenet():
    return protoio.parse_text_proto(LENET, caffe_pb2.NetParameter())


def node_labels(graph):
    return {node.get_name().strip('"'): node.get("label").strip('"') for node in graph.get_nodes()}


def edge_list(graph):
    return [(e.get_source().strip('"'), e.get_destination().strip('"'),
             (e.get("label") or "").strip('"')) for e in graph.get_edges()]


def test_lenet_nodes_and_edges():
    graph = caffe.draw.get_pydot_graph(lenet(), "LR", phase=caffe.TRAIN)
    labels = node_labels(graph)
    assert labels["conv1_Convolution"] == r"conv1\n(Convolution)\nkernel size: 5\nstride: 1\npad: 0"
    assert labels["pool1_Pooling"] == r"pool1\n(Pooling MAX)\nkernel size: 2\nstride: 2\npad: 0"
    assert labels["relu1_ReLU"] == r"relu1\n(ReLU)"
    assert {name for name in labels if name.endswith("_blob")} == {
        "data_blob", "label_blob", "conv1_blob", "pool1_blob", "ip1_blob", "ip2_blob", "loss_blob"}
    assert edge_list(graph) == [
        ("mnist_Data", "data_blob", "Batch 64"), ("mnist_Data", "label_blob", "Batch 64"),
        ("data_blob", "conv1_Convolution", ""), ("conv1_Convolution", "conv1_blob", "20"),
        ("conv1_blob", "pool1_Pooling", ""), ("pool1_Pooling", "pool1_blob", ""),
        ("pool1_blob", "ip1_InnerProduct", ""), ("ip1_InnerProduct", "ip1_blob", "500"),
        ("ip1_blob", "relu1_ReLU", ""), ("relu1_ReLU", "ip1_blob", ""),
        ("ip1_blob", "ip2_InnerProduct", ""), ("ip2_InnerProduct", "ip2_blob", "10"),
        ("ip2_blob", "loss_SoftmaxWithLoss", ""), ("label_blob", "loss_SoftmaxWithLoss", ""),
        ("loss_SoftmaxWithLoss", "loss_blob", "")]


def test_styles_follow_layer_types():
    graph = caffe.draw.get_pydot_graph(lenet(), "LR")
    nodes = {n.get_name().strip('"'): n for n in graph.get_nodes()}
    assert nodes["conv1_Convolution"].get("fillcolor") == "#FF5050"
    assert nodes["pool1_Pooling"].get("fillcolor") == "#FF9900"
    assert nodes["ip1_InnerProduct"].get("fillcolor") == "#CC33FF"
    assert nodes["relu1_ReLU"].get("fillcolor") == "#90EE90"  # in place
    assert nodes["loss_blob"].get("shape") == "octagon"
    assert caffe.draw.choose_color_by_layertype("Deconvolution") == "#FF5050"
    assert caffe.draw.choose_color_by_layertype("Eltwise") == "#6495ED"


def test_rankdir_sets_layout_and_label_separator():
    text = caffe.draw.draw_net(lenet(), "TB", ext="dot").decode()
    assert text.startswith("digraph LeNet {") and "rankdir=TB;" in text
    assert '"conv1 (Convolution) kernel size: 5 stride: 1 pad: 0"' in text
    with pytest.raises(PclError, match="unknown rankdir 'UP'"):
        caffe.draw.draw_net(lenet(), "UP", ext="dot")


def test_phase_filtering():
    def layers_drawn(phase):
        return {name for name in node_labels(caffe.draw.get_pydot_graph(lenet(), "LR", phase=phase))
                if not name.endswith("_blob")}

    common = {"mnist_Data", "conv1_Convolution", "pool1_Pooling", "ip1_InnerProduct",
              "relu1_ReLU", "ip2_InnerProduct"}
    assert layers_drawn(caffe.TRAIN) == common | {"loss_SoftmaxWithLoss"}
    assert layers_drawn(caffe.TEST) == common | {"accuracy_Accuracy"}
    assert layers_drawn("TEST") == layers_drawn(caffe_pb2.TEST)
    assert layers_drawn(None) == common | {"loss_SoftmaxWithLoss", "accuracy_Accuracy"}
    # Both data layers share one node in an all-phase drawing; each keeps its batch label.
    edges = edge_list(caffe.draw.get_pydot_graph(lenet(), "LR"))
    assert [e[2] for e in edges if e[:2] == ("mnist_Data", "data_blob")] == ["Batch 64", "Batch 100"]


def test_both_rule_kinds_are_refused_when_filtering():
    net = lenet()
    net.layer[2].include.add(phase=caffe_pb2.TRAIN)
    net.layer[2].exclude.add(phase=caffe_pb2.TEST)
    with pytest.raises(PclError, match='layer "conv1" has both include and exclude rules'):
        caffe.draw.get_pydot_graph(net, "LR", phase=caffe.TRAIN)


def test_display_lrm():
    labels = node_labels(caffe.draw.get_pydot_graph(lenet(), "LR", display_lrm=True))
    assert labels["conv1_Convolution"].endswith(r"\nlr mult: 1.0, 2.0")
    assert labels["ip2_InnerProduct"].endswith(r"\nlr mult: 1.0, 1.0")  # no param specs
    assert "lr mult" not in labels["ip1_InnerProduct"]  # frozen: both multipliers 0
    assert "lr mult" not in node_labels(caffe.draw.get_pydot_graph(lenet(), "LR"))[
        "conv1_Convolution"]
    with pytest.raises(ValueError):
        caffe.draw.get_layer_lr_mult(lenet().layer[5])  # ReLU


def test_helpers_give_pycaffes_strings():
    net = lenet()
    assert caffe.draw.get_edge_label(net.layer[0]) == "Batch 64"
    assert caffe.draw.get_edge_label(net.layer[5]) == '""'
    assert caffe.draw.get_layer_label(net.layer[3], "BT") == (
        '"pool1 (Pooling MAX) kernel size: 2 stride: 2 pad: 0"')
    assert caffe.draw.get_layer_lr_mult(net.layer[2]) == (1.0, 2.0)


def test_awkward_names_are_quoted():
    net = caffe_pb2.NetParameter()
    net.layer.add(name="a:b|c", type="ReLU", bottom=["in:put"], top=["out"])
    text = caffe.draw.draw_net(net, "LR", ext="dot").decode()
    assert '"a:b|c_ReLU" [label="a:b\\|c\\n(ReLU)"' in text
    assert '"in:put_blob" -> "a:b|c_ReLU";' in text


def test_legacy_nets_are_upgraded():
    net = protoio.parse_text_proto(V1_NET, caffe_pb2.NetParameter())
    labels = node_labels(caffe.draw.get_pydot_graph(net, "LR"))
    assert {"conv_Convolution", "relu_ReLU"} <= set(labels)


def test_dot_text_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for ext in ("dot", "gv", "raw"):
        caffe.draw.draw_net_to_file(lenet(), tmp_path / f"lenet.{ext}", phase=caffe.TEST)
        assert (tmp_path / f"lenet.{ext}").read_text().startswith("digraph LeNet {")


def test_images_without_graphviz_say_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PclError, match=r"needs Graphviz's `dot` program.*apt install graphviz"
                                       r".*brew install graphviz.*conda.*\.dot file"):
        caffe.draw.draw_net(lenet(), "LR", ext="png")
    with pytest.raises(PclError, match="needs Graphviz"):
        caffe.draw.draw_net_to_file(lenet(), tmp_path / "lenet.svg")
    assert not (tmp_path / "lenet.svg").exists()


def test_unknown_format_and_missing_extension(tmp_path):
    with pytest.raises(PclError, match='unknown drawing format "txt"; use png, svg or pdf'):
        caffe.draw.draw_net_to_file(lenet(), tmp_path / "lenet.txt")
    with pytest.raises(PclError, match="no extension to tell the format"):
        caffe.draw.draw_net_to_file(lenet(), tmp_path / "lenet")


@needs_graphviz
def test_render_png_and_svg(tmp_path):
    assert caffe.draw.draw_net(lenet(), "LR").startswith(b"\x89PNG")
    caffe.draw.draw_net_to_file(lenet(), str(tmp_path / "lenet.svg"), "TB", caffe.TEST, True)
    svg = (tmp_path / "lenet.svg").read_text()
    assert "<svg" in svg and "lr mult: 1.0, 2.0" in svg


# -- pcl draw ----------------------------------------------------------------------------------



@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "lenet.prototxt"
    path.write_text(LENET)
    return path


def test_cli_writes_dot(run_pcl, tmp_path, net_file):
    out = tmp_path / "lenet.dot"
    code, _, err = run_pcl("draw", str(net_file), str(out), "--rankdir", "TB", "--phase", "TEST",
                           "-display_lrm")
    assert code == 0 and err == f"Drawing net to {out}\n"
    text = out.read_text()
    assert "rankdir=TB;" in text and "accuracy_Accuracy" in text and "loss_" not in text
    assert "lr mult: 1.0, 2.0" in text


def test_cli_upgrades_legacy_nets(run_pcl, tmp_path):
    net = tmp_path / "old.prototxt"
    net.write_text(V1_NET)
    code, _, _ = run_pcl("draw", str(net), str(tmp_path / "old.dot"))
    assert code == 0 and '"conv_Convolution"' in (tmp_path / "old.dot").read_text()


def test_cli_without_graphviz(run_pcl, tmp_path, monkeypatch, net_file):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run_pcl("draw", str(net_file), str(tmp_path / "lenet.png"))
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"pcl: error: {tmp_path / 'lenet.png'}: ")
    assert "apt install graphviz" in err
    assert run_pcl("draw", str(net_file), str(tmp_path / "lenet.dot"))[0] == 0


@pytest.mark.parametrize("output, message", [("lenet.txt", 'unknown drawing format "txt"'),
                                             ("lenet", "no extension")])
def test_cli_bad_extension(run_pcl, tmp_path, net_file, output, message):
    code, _, err = run_pcl("draw", str(net_file), str(tmp_path / output))
    assert code == 1 and err.count("\n") == 1 and err.startswith("pcl: error: ") and message in err


def test_cli_bad_net_files(run_pcl, tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "a" typo: "ReLU" }\n')
    code, _, err = run_pcl("draw", str(bad), str(tmp_path / "bad.dot"))
    assert code == 1 and err.startswith(f"pcl: error: {bad}:1:19: ") and err.count("\n") == 1
    code, _, err = run_pcl("draw", str(tmp_path / "missing.prototxt"), str(tmp_path / "m.dot"))
    assert code == 1 and "no such file" in err and err.count("\n") == 1


@needs_graphviz
def test_cli_renders_png(run_pcl, tmp_path, net_file):
    code, _, _ = run_pcl("draw", str(net_file), str(tmp_path / "lenet.png"))
    assert code == 0 and (tmp_path / "lenet.png").read_bytes().startswith(b"\x89PNG")
