"""The schema: generated module is current, has Caffe's numbers/defaults, reads Caffe's files."""
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from pycaffelite.proto import caffe_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "tests" / "data" / "caffe_ref"
COMMITTED = ROOT / "pycaffelite" / "proto" / "caffe_pb2.py"


def _gen_proto():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "tools" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _protoc_version(source):
    return re.search(rb"Protobuf Python Version: (\S+)", source).group(1).decode()


def test_generated_module_is_current(tmp_path):
    pytest.importorskip("grpc_tools")
    fresh = _gen_proto().generate(tmp_path).read_bytes()
    committed = COMMITTED.read_bytes()
    if _protoc_version(fresh) != _protoc_version(committed):
        pytest.skip(f"installed protoc {_protoc_version(fresh)} differs from the one that made "
                    f"the committed module ({_protoc_version(committed)})")
    assert fresh == committed, "caffe_pb2.py is stale: run `python tools/gen_proto.py`"


def _field(message, name):
    return message.DESCRIPTOR.fields_by_name[name]


@pytest.mark.parametrize("message, name, number", [
    (pb.LayerParameter, "convolution_param", 106),
    (pb.LayerParameter, "transform_param", 100),
    (pb.LayerParameter, "clip_param", 148),
    (pb.LayerParameter, "swish_param", 147),
    (pb.NetParameter, "layer", 100),
    (pb.NetParameter, "layers", 2),
    (pb.SolverParameter, "base_lr", 5),
    (pb.SolverParameter, "type", 40),
    (pb.SolverParameter, "solver_type", 30),
    (pb.BlobProto, "shape", 7),
    (pb.BlobProto, "data", 5),
    (pb.BlobProto, "double_diff", 9),
    (pb.V1LayerParameter, "param", 1001),
    (pb.V1LayerParameter, "layer", 1),
    (pb.V0LayerParameter, "hdf5_output_param", 1001),
    (pb.PoolingParameter, "round_mode", 13),
])
def test_field_numbers(message, name, number):
    assert _field(message, name).number == number


def test_datum_fields():
    numbers = {f.name: f.number for f in pb.Datum.DESCRIPTOR.fields}
    assert numbers == {"channels": 1, "height": 2, "width": 3, "data": 4, "label": 5,
                       "float_data": 6, "encoded": 7}


def test_defaults_and_enums():
    assert pb.ConvolutionParameter().bias_term is True
    assert pb.SolverParameter().type == "SGD"
    assert pb.SolverParameter().solver_mode == pb.SolverParameter.GPU
    assert pb.SolverParameter().random_seed == -1
    assert pb.PoolingParameter().round_mode == pb.PoolingParameter.CEIL
    assert pb.PoolingParameter.FLOOR == 1
    assert pb.LossParameter().normalization == pb.LossParameter.VALID
    assert pb.NetState().phase == pb.TEST
    assert (pb.TRAIN, pb.TEST) == (0, 1)
    assert pb.FillerParameter().type == "constant"
    assert pb.V1LayerParameter.CONVOLUTION == 4
    assert pb.V1LayerParameter.DECONVOLUTION == 39
    assert _field(pb.BlobShape, "dim").GetOptions().packed
    assert _field(pb.BlobProto, "data").GetOptions().packed


def test_blobproto_files_parse():
    expected = np.load(REF / "files/blobproto/blob_4d.npy")
    expected_diff = np.load(REF / "files/blobproto/blob_4d_diff.npy")
    for name in ("blob_4d_shape", "blob_4d_legacy", "blob_4d_shape_with_diff"):
        blob = pb.BlobProto.FromString((REF / f"files/blobproto/{name}.binaryproto").read_bytes())
        shape = (tuple(blob.shape.dim) if blob.HasField("shape")
                 else (blob.num, blob.channels, blob.height, blob.width))
        assert shape == expected.shape
        np.testing.assert_array_equal(np.array(blob.data, np.float32).reshape(shape), expected)
        if name.endswith("with_diff"):
            np.testing.assert_array_equal(np.array(blob.diff, np.float32).reshape(shape),
                                          expected_diff)


def test_caffemodel_parses_and_reserialises_identically():
    raw = (REF / "layers/lenet/weights.caffemodel").read_bytes()
    net = pb.NetParameter.FromString(raw)
    conv1 = next(layer for layer in net.layer if layer.name == "conv1")
    assert conv1.type == "Convolution"
    assert tuple(conv1.blobs[0].shape.dim) == (8, 1, 5, 5)
    assert net.SerializeToString() == raw


def test_solverstate_parses():
    state = pb.SolverState.FromString(
        (REF / "solvers/sgd_step/sgd_step_iter_10.solverstate").read_bytes())
    assert state.iter == 10
    assert state.current_step == 1
    assert state.learned_net == "sgd_step_iter_10.caffemodel"
    assert len(state.history) == 6


def test_runtime_is_new_enough_for_gencode():
    """pyproject's protobuf bound must cover the protoc that generated caffe_pb2."""
    gencode = _protoc_version(COMMITTED.read_bytes())
    pyproject = (ROOT / "pyproject.toml").read_text()
    bound = re.search(r'"protobuf>=([\d.]+)"', pyproject).group(1)
    assert _version_tuple(bound) >= _version_tuple(gencode)


def _version_tuple(version):
    return tuple(int(part) for part in version.split("."))
