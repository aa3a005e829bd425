import numpy as np
import pytest

from pycaffelite import device
from pycaffelite.blob import Blob
from pycaffelite.errors import PclError
from pycaffelite.proto import caffe_pb2


def test_shape_count_axes_and_legacy_dims():
    blob = Blob((2, 3, 4, 5))
    assert blob.shape == (2, 3, 4, 5) and blob.num_axes == 4
    assert blob.count == 120 and blob.count(1) == 60 and blob.count(1, 3) == 12
    assert (blob.num, blob.channels, blob.height, blob.width) == (2, 3, 4, 5)
    assert blob.canonical_axis_index(-1) == 3
    with pytest.raises(PclError):
        blob.canonical_axis_index(4)
    assert Blob((7,)).height == 1
    with pytest.raises(PclError):
        Blob((1, 1, 1, 1, 1)).num


def test_reshape_keeps_memory_when_shrinking_and_rejects_negative():
    blob = Blob((4, 5))
    blob.data[...] = 1
    mem = blob.data_mem
    blob.reshape(2, 5)
    assert blob.data_mem is mem and blob.data.shape == (2, 5)
    blob.reshape((30,))
    assert blob.data_mem is not mem
    with pytest.raises(PclError):
        blob.reshape(-1, 2)


def test_data_and_diff_views_are_writable_in_place():
    blob = Blob((2, 2))
    blob.data[0, 1] = 3
    blob.diff[...] = 2
    assert blob.cpu_data()[0, 1] == 3 and blob.cpu_diff().sum() == 8


def test_share_data_and_diff():
    a, b = Blob((2, 3)), Blob((6,))
    b.share_data(a)
    a.data[...] = 5
    assert b.data.sum() == 30
    b.share_diff(a)
    b.diff[...] = 1
    assert a.diff.sum() == 6
    with pytest.raises(PclError):
        Blob((5,)).share_data(a)


def test_mode_accessors_go_through_the_device(stand_in_device):
    blob = Blob((3,))
    blob.data[...] = [1, 2, 3]
    device.set_mode_gpu()
    on_device = blob.read_data()
    assert on_device.base is not blob.cpu_data().base
    blob.write_data()[...] *= 2
    device.set_mode_cpu()
    np.testing.assert_array_equal(blob.data, [2, 4, 6])
    assert stand_in_device.to_device_count == 1 and stand_in_device.to_host_count == 1


def test_proto_round_trip_shape_and_legacy():
    blob = Blob((2, 3))
    blob.data[...] = np.arange(6).reshape(2, 3)
    blob.diff[...] = -1
    proto = blob.to_proto(write_diff=True)
    assert list(proto.shape.dim) == [2, 3] and len(proto.diff) == 6
    back = Blob().from_proto(proto)
    np.testing.assert_array_equal(back.data, blob.data)
    np.testing.assert_array_equal(back.diff, blob.diff)

    legacy = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=3, data=list(range(6)))
    assert Blob.shape_of_proto(legacy) == (1, 1, 2, 3)
    assert blob.matches_proto_shape(legacy)
    blob.from_proto(legacy, reshape=False)
    assert blob.shape == (2, 3)
    wrong = caffe_pb2.BlobProto(data=[0.0] * 6)
    wrong.shape.dim.extend([3, 2])
    with pytest.raises(PclError):
        blob.from_proto(wrong, reshape=False)


def test_float64_blobs_write_double_data():
    blob = Blob((2,), dtype=np.float64)
    blob.data[...] = [0.1, 0.2]
    proto = blob.to_proto()
    assert list(proto.double_data) == [0.1, 0.2] and len(proto.data) == 0
