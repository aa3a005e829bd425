"""Text/binary proto I/O: Caffe files load, user mistakes become PclErrors with file:line:col,
writes are atomic."""
import os
from pathlib import Path

import pytest

from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2 as pb

REF = Path(__file__).resolve().parents[1] / "data" / "caffe_ref"


def _net_error(text):
    with pytest.raises(PclError) as info:
        protoio.parse_text_proto(text, pb.NetParameter(), "net.prototxt")
    return str(info.value)


def test_reads_caffe_text_net_and_solver():
    net = protoio.read_net_param(REF / "layers/lenet/net.prototxt")
    assert net.name == "LeNetRef"
    assert [layer.name for layer in net.layer][:3] == ["input", "conv1", "pool1"]
    solver = protoio.read_solver_param(REF / "solvers/sgd_step/solver.prototxt")
    assert (solver.type, solver.lr_policy, solver.stepsize) == ("SGD", "step", 6)
    assert solver.solver_mode == pb.SolverParameter.CPU


def test_reads_binary_files():
    blob = protoio.read_blob_proto(REF / "files/blobproto/blob_4d_shape.binaryproto")
    assert tuple(blob.shape.dim) == (2, 3, 4, 5)
    weights = protoio.read_net_param_binary(REF / "layers/lenet/weights.caffemodel")
    conv1 = next(layer for layer in weights.layer if layer.name == "conv1")
    assert [tuple(b.shape.dim) for b in conv1.blobs] == [(8, 1, 5, 5), (8,)]


def test_unknown_field_names_line_col_and_suggests():
    text = 'name: "n"\nlayer {\n  name: "c"\n  convolution_param { kernal_size: 3 }\n}\n'
    message = _net_error(text)
    assert message.startswith("net.prototxt:4:23: ")
    assert 'unknown field "kernal_size" in ConvolutionParameter' in message
    assert 'did you mean "kernel_size"?' in message


def test_field_in_wrong_message_points_to_its_home():
    message = _net_error("layer {\n  kernel_size: 3\n}")
    assert message.startswith("net.prototxt:2:3: ")
    assert "convolution_param or pooling_param" in message


def test_bad_enum_value_lists_choices():
    message = _net_error("layer { pooling_param { pool: MAXIMUM } }")
    assert message.startswith("net.prototxt:1:")
    assert "PoolingParameter.PoolMethod" in message
    assert "MAX, AVE, STOCHASTIC" in message


def test_unquoted_type_string_hints_at_quotes():
    message = _net_error("layer {\n  type: Convolution\n}")
    assert message.startswith("net.prototxt:2:9: ")
    assert 'type: "Convolution"' in message


def test_syntax_error_and_repeated_scalar():
    assert _net_error('layer { name: "a" ').startswith("net.prototxt:1:")
    assert "more than once" in _net_error('layer { name: "a" name: "b" }')


def test_missing_required_field_names_the_layer():
    message = _net_error('layer { name: "clip1" type: "Clip" clip_param { min: 0 } }')
    assert 'layer "clip1" clip_param.max' in message


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.prototxt"
    with pytest.raises(PclError, match="nope.prototxt: no such file"):
        protoio.read_net_param(missing)
    with pytest.raises(PclError, match="nope.prototxt: no such file"):
        protoio.read_blob_proto(missing)


def test_non_utf8_text_is_reported(tmp_path):
    path = tmp_path / "binary.prototxt"
    path.write_bytes(b'name: "x"\n\xff\xfe')
    with pytest.raises(PclError, match=r"binary.prototxt:2: not UTF-8"):
        protoio.read_net_param(path)


def test_garbage_binary_names_file_and_expected_type(tmp_path):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(b"\xff\xff\xff\xff not a proto")
    with pytest.raises(PclError) as info:
        protoio.read_net_param_binary(path)
    assert "bad.caffemodel" in str(info.value)
    assert "NetParameter" in str(info.value)


def test_binary_round_trip_is_byte_exact(tmp_path):
    source = REF / "layers/lenet/weights.caffemodel"
    net = protoio.read_binary_proto(source, pb.NetParameter())
    target = tmp_path / "copy.caffemodel"
    protoio.write_binary_proto(target, net)
    assert target.read_bytes() == source.read_bytes()


def test_text_round_trip(tmp_path):
    net = protoio.read_net_param(REF / "layers/lenet/net.prototxt")
    target = tmp_path / "out.prototxt"
    protoio.write_text_proto(target, net)
    assert protoio.read_net_param(target) == net


def test_write_replaces_existing_file(tmp_path):
    target = tmp_path / "state.solverstate"
    protoio.write_binary_proto(target, pb.SolverState(iter=1))
    protoio.write_binary_proto(target, pb.SolverState(iter=2))
    assert protoio.read_binary_proto(target, pb.SolverState()).iter == 2
    assert os.listdir(tmp_path) == ["state.solverstate"]


def test_failed_serialisation_leaves_no_file(tmp_path):
    incomplete = pb.NetParameter()
    incomplete.layer.add(name="clip1").clip_param.min = 0   # max is required
    target = tmp_path / "model.caffemodel"
    with pytest.raises(PclError, match="clip_param.max"):
        protoio.write_binary_proto(target, incomplete)
    with pytest.raises(PclError):
        protoio.write_text_proto(tmp_path / "net.prototxt", incomplete)
    assert os.listdir(tmp_path) == []


def test_failure_mid_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "model.caffemodel"
    protoio.write_binary_proto(target, pb.NetParameter(name="old"))

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(PclError, match="model.caffemodel: cannot write the file: no space left on device"):
        protoio.write_binary_proto(target, pb.NetParameter(name="new"))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.caffemodel"]
    assert protoio.read_binary_proto(target, pb.NetParameter()).name == "old"


def test_write_into_missing_folder_is_a_pcl_error(tmp_path):
    with pytest.raises(PclError, match="cannot write"):
        protoio.write_binary_proto(tmp_path / "no" / "such" / "x.caffemodel", pb.NetParameter())
