"""caffe.io's BlobProto and Datum conversions: pycaffe's shapes, dtypes and errors."""
from pathlib import Path

import numpy as np
import pytest

from caffe import io as caffe_io
from pycaffelite.errors import PclError
from pycaffelite.proto import caffe_pb2

FILES = Path(__file__).resolve().parents[1] / "data" / "files"


def _blob(values, shape=None, legacy=None):
    blob = caffe_pb2.BlobProto()
    blob.data.extend(values)
    if shape is not None:
        blob.shape.dim.extend(shape)
    if legacy is not None:
        blob.num, blob.channels, blob.height, blob.width = legacy
    return blob


def test_blobproto_shapes_legacy_new_and_scalar():
    values = np.arange(12.0) / 4
    legacy = caffe_io.blobproto_to_array(_blob(values, legacy=(1, 1, 3, 4)))
    assert legacy.shape == (1, 1, 3, 4) and legacy.dtype == np.float64
    assert np.array_equal(legacy.ravel(), values)
    assert caffe_io.blobproto_to_array(_blob(values, shape=(3, 4))).shape == (3, 4)
    scalar = caffe_io.blobproto_to_array(_blob([123.0]))
    assert scalar.shape == () and scalar == 123


def test_blobproto_without_a_shape_is_a_value_error():
    with pytest.raises(ValueError, match="shape") as raised:
        caffe_io.blobproto_to_array(_blob(np.zeros(100)))
    assert isinstance(raised.value, PclError)


def test_blobproto_diff_and_double_data():
    blob = caffe_io.array_to_blobproto(np.ones((2, 3)), diff=np.full((2, 3), -2.0))
    assert np.array_equal(caffe_io.blobproto_to_array(blob, return_diff=True), np.full((2, 3), -2.0))
    with pytest.raises(ValueError, match="diff"):
        caffe_io.blobproto_to_array(_blob([1.0, 2.0], shape=(2,)), return_diff=True)
    doubles = caffe_pb2.BlobProto()
    doubles.shape.dim.append(2)
    doubles.double_data.extend([0.1, 0.2])
    assert caffe_io.blobproto_to_array(doubles).tolist() == [0.1, 0.2]


def test_array_to_blobproto_writes_shape_and_float_data():
    arr = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 8
    blob = caffe_io.array_to_blobproto(arr)
    assert list(blob.shape.dim) == [2, 3, 4] and not blob.HasField("num")
    assert np.array_equal(np.array(blob.data), arr.ravel()) and len(blob.diff) == 0
    with pytest.raises(PclError, match="diff"):
        caffe_io.array_to_blobproto(arr, diff=np.zeros((2, 3)))


def test_blobprotovector_round_trip():
    arrays = [np.arange(6.0).reshape(2, 3), np.array([[[1.5]]]), np.zeros(4)]
    serialized = caffe_io.arraylist_to_blobprotovector_str(arrays)
    assert isinstance(serialized, bytes)
    back = caffe_io.blobprotovector_str_to_arraylist(serialized)
    assert [a.shape for a in back] == [a.shape for a in arrays]
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back))
    with pytest.raises(PclError, match="BlobProtoVector"):
        caffe_io.blobprotovector_str_to_arraylist(b"\xff\xff\xff")


def test_mean_binaryproto_written_by_caffe():
    blob = caffe_pb2.BlobProto.FromString((FILES / "mean.binaryproto").read_bytes())
    assert np.array_equal(caffe_io.blobproto_to_array(blob), np.load(FILES / "mean.npy"))


def test_array_to_datum_uint8_float_and_label():
    image = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    datum = caffe_io.array_to_datum(image)
    assert (datum.channels, datum.height, datum.width) == (2, 3, 4)
    assert datum.data == image.tobytes() and len(datum.float_data) == 0
    assert not datum.HasField("label") and not datum.HasField("encoded")
    assert caffe_io.array_to_datum(image, label=7).label == 7
    assert len(caffe_io.array_to_datum(image, label=0).SerializeToString()) > \
        len(datum.SerializeToString())
    floats = caffe_io.array_to_datum(image.astype(np.float64) / 2)
    assert not floats.data and np.array_equal(np.array(floats.float_data), image.ravel() / 2)
    with pytest.raises(ValueError, match="C x H x W"):
        caffe_io.array_to_datum(np.zeros((3, 4)))


def test_datum_round_trips():
    image = np.random.default_rng(0).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    back = caffe_io.datum_to_array(caffe_io.array_to_datum(image, label=3))
    assert back.dtype == np.uint8 and np.array_equal(back, image)
    back[0, 0, 0] = 1  # a writable copy
    floats = image / 7.0
    back = caffe_io.datum_to_array(caffe_io.array_to_datum(floats))
    assert back.dtype == np.float64 and np.allclose(back, floats, rtol=1e-7)
