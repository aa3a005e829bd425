"""LRN: ACROSS_CHANNELS and WITHIN_CHANNEL local response normalisation."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer


def lrn(params, dtype=np.float64):
    return make_layer(f'type: "LRN" lrn_param {{ {params} }}', dtype=dtype)


def run(params, array, dtype=np.float64):
    layer = lrn(params, dtype=dtype)
    bottom = blob_from(array, dtype=dtype)
    tops = empty_tops(1, dtype=dtype)
    layer.initialize([bottom], tops)
    layer.forward([bottom], tops)
    return layer, bottom, tops[0]


def test_shape():
    _, _, top = run("", np.ones((2, 7, 3, 4)))
    assert top.shape == (2, 7, 3, 4)
    _, _, top = run("norm_region: WITHIN_CHANNEL", np.ones((2, 7, 3, 4)))
    assert top.shape == (2, 7, 3, 4)


def test_across_channels_forward():
    # one pixel, channels [1, 2, 3], n = 3, alpha / n = 1, k = 1:
    # s = 1 + [0 + 1 + 4, 1 + 4 + 9, 4 + 9 + 0] = [6, 15, 14]
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    _, _, top = run("local_size: 3 alpha: 3 beta: 0.75 k: 1", x)
    np.testing.assert_allclose(top.data.ravel(), [6 ** -0.75, 2 * 15 ** -0.75, 3 * 14 ** -0.75])


def test_across_channels_window_wider_than_the_channels():
    # n = 5 around any of 3 channels covers them all: s = k + alpha / 5 * (1 + 4 + 9)
    x = np.array([1.0, 2.0, 3.0, -1.0, 0.0, 2.0]).reshape(2, 3, 1, 1)
    _, _, top = run("local_size: 5 alpha: 0.5 beta: 0.5 k: 2", x)
    s0 = 2 + 0.1 * 14
    s1 = 2 + 0.1 * 5
    np.testing.assert_allclose(top.data.ravel(), np.array([1, 2, 3, -1, 0, 2]) / np.sqrt([s0] * 3 + [s1] * 3))


def test_across_channels_default_parameters():
    # local_size 5, alpha 1, beta 0.75, k 1; one channel: s = 1 + x^2 / 5
    x = np.array([2.0]).reshape(1, 1, 1, 1)
    _, _, top = run("", x)
    np.testing.assert_allclose(top.data.ravel(), [2 * 1.8 ** -0.75])


def test_within_channel_forward_uses_the_padded_window_size():
    # 3x3 window with pad 1: the corner sums 4 squares but still divides by 9. k is not used.
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)   # [[1 2 3] [4 5 6] [7 8 9]]
    _, _, top = run("norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.9 beta: 0.5 k: 5", x)
    corner = 1 * (1 + 0.9 * (1 + 4 + 16 + 25) / 9) ** -0.5        # 1 / sqrt(5.6)
    edge = 2 * (1 + 0.9 * (1 + 4 + 9 + 16 + 25 + 36) / 9) ** -0.5  # 2 / sqrt(10.1)
    centre = 5 * (1 + 0.9 * 285 / 9) ** -0.5                       # 5 / sqrt(29.5)
    np.testing.assert_allclose(top.data[0, 0, 0, 0], corner)
    np.testing.assert_allclose(top.data[0, 0, 0, 1], edge)
    np.testing.assert_allclose(top.data[0, 0, 1, 1], centre)
    np.testing.assert_allclose(top.data[0, 0, 2, 2], 9 * (1 + 0.9 * (25 + 36 + 64 + 81) / 9) ** -0.5)


def test_within_channel_channels_are_independent():
    x = np.stack([np.ones((2, 2)), np.zeros((2, 2))]).reshape(1, 2, 2, 2)
    _, _, top = run("norm_region: WITHIN_CHANNEL local_size: 3 alpha: 9 beta: 1", x)
    np.testing.assert_allclose(top.data[0, 0], 1 / (1 + 4))   # 4 ones in every 3x3 window
    np.testing.assert_array_equal(top.data[0, 1], 0)


def test_across_channels_backward_by_hand():
    # one channel, n = 1, alpha = 1, beta = 1, k = 1: y = x / (1 + x^2),
    # dy/dx = (1 - x^2) / (1 + x^2)^2
    x = np.array([0.5, 2.0]).reshape(2, 1, 1, 1)
    layer, bottom, top = run("local_size: 1 alpha: 1 beta: 1 k: 1", x)
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff.ravel(), [0.75 / 1.25 ** 2, -3 / 25])


@pytest.mark.parametrize("params", [
    "local_size: 3 alpha: 0.7 beta: 0.75 k: 1.5",
    "local_size: 5 alpha: 2 beta: 0.6 k: 1",
    "local_size: 3 alpha: 0.7 beta: 0.75 norm_region: WITHIN_CHANNEL",
    "local_size: 5 alpha: 2 beta: 0.6 norm_region: WITHIN_CHANNEL",
])
def test_gradient(params):
    checker = GradientChecker(stepsize=1e-2, threshold=1e-3)
    checker.check_gradient_exhaustive(lrn(params), [gaussian_blob((2, 4, 3, 3))], empty_tops(1))


def test_no_backward_unless_asked():
    layer, bottom, top = run("", np.ones((1, 2, 2, 2)))
    bottom.diff[...] = 7.0
    top.diff[...] = 1.0
    layer.backward([top], [False], [bottom])
    np.testing.assert_array_equal(bottom.diff, 7.0)


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_same_result_in_cpu_and_gpu_mode(any_mode, region):
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    layer, bottom, top = run(f"local_size: 3 alpha: 3 beta: 1 norm_region: {region}", x)
    if region == "ACROSS_CHANNELS":
        np.testing.assert_allclose(top.data.ravel(), [1 / 6, 2 / 15, 3 / 14])
    else:
        # a 1x1 image: the window sum is x^2, divided by 9
        np.testing.assert_allclose(top.data.ravel(), x.ravel() / (1 + 3 * x.ravel() ** 2 / 9))
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    assert np.all(np.isfinite(bottom.diff))


@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
def test_float32_stays_float32(region):
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 4)).astype(np.float32)
    layer, bottom, top = run(f"norm_region: {region}", x, dtype=np.float32)
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    assert top.data.dtype == bottom.diff.dtype == np.float32


@pytest.mark.parametrize("params", ["local_size: 4", "local_size: 0"])
def test_even_local_size_is_rejected(params):
    with pytest.raises(PclError, match="odd"):
        lrn(params).initialize([blob_from(np.ones((1, 2, 2, 2)))], empty_tops(1))


def test_bottom_must_have_four_axes():
    with pytest.raises(PclError, match="4-axis"):
        lrn("").initialize([blob_from(np.ones((2, 3)))], empty_tops(1))


def test_not_in_place():
    blob = blob_from(np.ones((1, 2, 2, 2)))
    with pytest.raises(PclError, match="in place"):
        lrn("").initialize([blob], [blob])
