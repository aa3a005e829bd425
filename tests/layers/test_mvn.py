"""MVN: per-plane / per-item normalisation, where eps goes, gradients."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, forward_one, gaussian_blob, make_layer

# One item, two channels of 2x2: channel 0 holds 1..4, channel 1 holds 5..8.
X = [[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]]


def mvn(params="", dtype=np.float64):
    return make_layer(f'type: "MVN" mvn_param {{ {params} }}', dtype=dtype)


def run(params, x, dtype=np.float64):
    return forward_one(mvn(params, dtype), x, dtype)


def test_shapes():
    _, _, top = run("", np.ones((2, 3, 4, 5)))
    assert top.shape == (2, 3, 4, 5)
    _, _, top = run("", np.ones((2, 3)))
    assert top.shape == (2, 3, 1, 1)


def test_mean_only():
    _, _, top = run("normalize_variance: false", X)
    np.testing.assert_allclose(top.data, [[[[-1.5, -0.5], [0.5, 1.5]]] * 2])


def test_mean_and_variance_per_channel():
    _, _, top = run("eps: 0", X)
    # each plane: mean 2.5 (resp. 6.5), variance 1.25
    expected = np.array([[-1.5, -0.5], [0.5, 1.5]]) / np.sqrt(1.25)
    np.testing.assert_allclose(top.data, [[expected, expected]])


def test_across_channels():
    _, _, top = run("across_channels: true eps: 0", X)
    # all eight values: mean 4.5, variance 5.25
    np.testing.assert_allclose(top.data.ravel(), (np.arange(1.0, 9.0) - 4.5) / np.sqrt(5.25))


def test_across_channels_mean_only():
    _, _, top = run("across_channels: true normalize_variance: false", X)
    np.testing.assert_allclose(top.data.ravel(), np.arange(1.0, 9.0) - 4.5)


def test_eps_is_added_to_the_standard_deviation():
    _, _, top = run("eps: 1", [[[[1.0, 3.0]]]])
    # sigma = 1, so the divisor is 1 + 1 (it would be sqrt(2) with eps inside the root)
    np.testing.assert_allclose(top.data.ravel(), [-0.5, 0.5])


def test_default_eps():
    layer = mvn()
    layer.initialize([gaussian_blob((1, 1, 2, 2))], empty_tops(1))
    assert layer.eps == pytest.approx(1e-9)


def test_backward_mean_only_subtracts_the_mean_diff():
    layer, bottom, top = run("normalize_variance: false", X)
    top.diff[...] = np.arange(8.0).reshape(1, 2, 2, 2)
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff, [[[[-1.5, -0.5], [0.5, 1.5]]] * 2])


@pytest.mark.parametrize("params", ["", "across_channels: true", "normalize_variance: false"])
def test_gradient(params):
    layer = mvn(params)
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_exhaustive(layer, [gaussian_blob((2, 2, 2, 3), seed=7)], empty_tops(1))


def test_two_axis_bottom_gradient():
    layer = mvn("across_channels: true")
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, [gaussian_blob((2, 4), seed=8)],
                                                          empty_tops(1))


def test_in_place_matches_out_of_place():
    layer, bottom, top = run("", X)
    top.diff[...] = np.random.default_rng(2).normal(size=top.shape)
    layer.backward([top], [True], [bottom])

    inplace = mvn()
    blob = blob_from(X)
    inplace.initialize([blob], [blob])
    inplace.forward([blob], [blob])
    np.testing.assert_allclose(blob.data, top.data)
    blob.diff[...] = top.diff
    inplace.backward([blob], [True], [blob])
    np.testing.assert_allclose(blob.diff, bottom.diff)


def test_more_than_four_axes_is_an_error():
    with pytest.raises(PclError, match="4 axes"):
        run("", np.ones((1, 2, 2, 2, 2)))


def test_cpu_and_gpu_give_the_same_result(any_mode):
    layer, bottom, top = run("eps: 0", X, np.float32)
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    assert top.data.dtype == np.float32
    expected = np.array([-1.5, -0.5, 0.5, 1.5]) / np.sqrt(1.25)
    np.testing.assert_allclose(top.data.ravel(), np.tile(expected, 2), rtol=1e-6)
    np.testing.assert_allclose(bottom.diff, 0.0, atol=1e-6)
