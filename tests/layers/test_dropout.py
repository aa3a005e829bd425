"""Dropout: train-time mask and scaling, test-time identity, the ratio's range, gradients."""
import numpy as np
import pytest

from pycaffelite import device
from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from pycaffelite.proto import caffe_pb2
from tests.layer_testing import blob_from, empty_tops, forward_one, gaussian_blob, make_layer


def dropout(params="", phase=caffe_pb2.TRAIN, dtype=np.float64):
    return make_layer(f'type: "Dropout" dropout_param {{ {params} }}', dtype=dtype, phase=phase)


def run(params, x, phase=caffe_pb2.TRAIN, dtype=np.float64):
    return forward_one(dropout(params, phase, dtype), x, dtype)


def test_shape():
    _, _, top = run("", np.ones((2, 3, 4)))
    assert top.shape == (2, 3, 4)


def test_train_keeps_about_1_minus_p_and_scales_them():
    _, _, top = run("dropout_ratio: 0.25", np.ones(20000))
    np.testing.assert_allclose(np.unique(top.data), [0.0, 4.0 / 3.0])
    assert np.mean(top.data != 0) == pytest.approx(0.75, abs=0.02)


def test_default_ratio_is_one_half():
    _, _, top = run("", np.ones(20000))
    assert set(np.unique(top.data)) == {0.0, 2.0}
    assert np.mean(top.data != 0) == pytest.approx(0.5, abs=0.02)


def test_mask_keeps_uniform_draws_at_or_above_the_ratio():
    device.set_random_seed(5)
    _, _, top = run("dropout_ratio: 0.3", np.ones((4, 5)))
    uniform = np.random.default_rng(5).random((4, 5))
    np.testing.assert_allclose(top.data, (uniform >= 0.3) / 0.7)


def test_backward_uses_the_forward_mask():
    x = np.arange(1.0, 101.0)
    layer, bottom, top = run("dropout_ratio: 0.6", x)
    kept = top.data != 0
    np.testing.assert_allclose(top.data[kept], x[kept] / 0.4)
    top.diff[...] = 3.0
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff, np.where(kept, 3.0 / 0.4, 0.0))


def test_zero_ratio_is_the_identity_in_train():
    _, _, top = run("dropout_ratio: 0", [1.0, -2.0, 3.0])
    np.testing.assert_array_equal(top.data, [1.0, -2.0, 3.0])


def test_test_phase_is_the_identity():
    layer, bottom, top = run("dropout_ratio: 0.9", [[1.0, -2.0], [3.0, 4.0]], phase=caffe_pb2.TEST)
    np.testing.assert_array_equal(top.data, [[1.0, -2.0], [3.0, 4.0]])
    top.diff[...] = [[5.0, 6.0], [7.0, 8.0]]
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff, [[5.0, 6.0], [7.0, 8.0]])


@pytest.mark.parametrize("phase", [caffe_pb2.TRAIN, caffe_pb2.TEST])
def test_in_place_matches_out_of_place(phase):
    x = np.random.default_rng(3).normal(size=(3, 4))
    device.set_random_seed(9)
    layer, bottom, top = run("", x, phase)
    top.diff[...] = 2.0
    layer.backward([top], [True], [bottom])

    device.set_random_seed(9)
    blob = blob_from(x)
    inplace = dropout("", phase)
    inplace.initialize([blob], [blob])
    inplace.forward([blob], [blob])
    np.testing.assert_array_equal(blob.data, top.data)
    blob.diff[...] = 2.0
    inplace.backward([blob], [True], [blob])
    np.testing.assert_array_equal(blob.diff, bottom.diff)


@pytest.mark.parametrize("phase", [caffe_pb2.TRAIN, caffe_pb2.TEST])
def test_gradient(phase):
    layer = dropout("dropout_ratio: 0.4", phase)
    GradientChecker(1e-2, 1e-3).check_gradient_eltwise(layer, [gaussian_blob((2, 3, 4))], empty_tops(1))


@pytest.mark.parametrize("ratio", ["1", "1.5", "-0.1"])
def test_ratio_out_of_range_is_an_error(ratio):
    with pytest.raises(PclError, match="dropout_ratio"):
        run(f"dropout_ratio: {ratio}", [1.0])


def test_cpu_and_gpu_give_the_same_result(any_mode):
    device.set_random_seed(11)
    layer, bottom, top = run("dropout_ratio: 0.5", np.arange(1.0, 13.0).reshape(3, 4), dtype=np.float32)
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    uniform = np.random.default_rng(11).random((3, 4), dtype=np.float32)
    assert top.data.dtype == np.float32
    np.testing.assert_allclose(top.data, np.arange(1.0, 13.0).reshape(3, 4) * (uniform >= 0.5) * 2)
    np.testing.assert_allclose(bottom.diff, (uniform >= 0.5) * 2.0)
