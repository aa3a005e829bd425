import math

import numpy as np
import pytest

from pycaffelite.blob import Blob
from pycaffelite.errors import PclError
from pycaffelite.filler import fill
from pycaffelite.proto import caffe_pb2


def filled(shape, **kwargs):
    blob = Blob(shape)
    fill(blob, caffe_pb2.FillerParameter(**kwargs))
    return blob.data


def test_constant_and_default_type():
    np.testing.assert_array_equal(filled((2, 3), value=1.5), np.full((2, 3), 1.5))
    np.testing.assert_array_equal(filled((4,)), np.zeros(4))


def test_uniform_range():
    values = filled((1000,), type="uniform", min=-2, max=3)
    assert values.min() >= -2 and values.max() < 3 and abs(values.mean() - 0.5) < 0.2


def test_gaussian_moments_and_sparse():
    values = filled((200, 100), type="gaussian", mean=1, std=2)
    assert abs(values.mean() - 1) < 0.05 and abs(values.std() - 2) < 0.05
    sparse = filled((50, 400), type="gaussian", std=1, sparse=10)
    assert abs((sparse != 0).mean() - 10 / 50) < 0.02


def test_positive_unitball_rows_sum_to_one():
    values = filled((5, 2, 3), type="positive_unitball")
    assert (values >= 0).all()
    np.testing.assert_allclose(values.reshape(5, -1).sum(axis=1), 1, rtol=1e-6)


@pytest.mark.parametrize("norm,n", [(0, 3 * 4 * 5), (1, 6 * 4 * 5), (2, (60 + 120) / 2)])
def test_xavier_and_msra_scale_from_fans(norm, n):
    shape = (6, 3, 4, 5)  # fan_in = 60, fan_out = 120
    xavier = filled(shape, type="xavier", variance_norm=norm)
    assert np.abs(xavier).max() <= math.sqrt(3 / n)
    many = filled((600, 3, 4, 5), type="msra", variance_norm=norm)
    fan_in, fan_out = 60, 600 * 20
    n_many = {0: fan_in, 1: fan_out, 2: (fan_in + fan_out) / 2}[norm]
    assert abs(many.std() - math.sqrt(2 / n_many)) < 0.05 * math.sqrt(2 / n_many)


def test_bilinear_kernel_values():
    # size 4: f = 2, c = (2*2 - 1 - 0) / 4 = 0.75; ramp = 1 - |x/2 - 0.75| = .25 .75 .75 .25
    kernel = filled((1, 1, 4, 4), type="bilinear")[0, 0]
    ramp = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(kernel, np.outer(ramp, ramp))
    with pytest.raises(PclError):
        filled((1, 1, 3, 4), type="bilinear")


def test_unknown_filler_is_a_clear_error():
    with pytest.raises(PclError, match='unknown filler type "gausian"'):
        filled((2,), type="gausian")
