"""SPP: spatial pyramid pooling (levels of 2^l x 2^l bins, flattened and concatenated)."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer


def spp(params):
    return make_layer(f'type: "SPP" spp_param {{ {params} }}')


def run(params, array):
    layer = spp(params)
    bottom = blob_from(array)
    tops = empty_tops(1)
    layer.initialize([bottom], tops)
    layer.forward([bottom], tops)
    return layer, bottom, tops[0]


def separated_blob(shape, seed=0):
    """Distinct values at least 0.1 apart, so a +-1e-2 step never changes a window's argmax."""
    values = np.random.default_rng(seed).permutation(int(np.prod(shape))) * 0.1 - 1.0
    return blob_from(values.reshape(shape))


def test_shape_three_levels():
    # 9x8 input: level 0 is 1x1; level 1 (kernel 5x4, pad 1x0) is 2x2; level 2 (kernel 3x2,
    # pad 2x0) is 4x4 after the padding rule drops a fifth row: 3 * (1 + 4 + 16) = 63.
    _, _, top = run("pyramid_height: 3", np.zeros((2, 3, 9, 8)))
    assert top.shape == (2, 63)


def test_shape_one_level_is_not_flattened():
    _, _, top = run("pyramid_height: 1 pool: AVE", np.ones((2, 3, 5, 4)))
    assert top.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(top.data, 1.0)


def test_forward_max_and_ave_two_levels():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    _, _, top = run("pyramid_height: 2", x)
    np.testing.assert_array_equal(top.data, [[15, 5, 7, 13, 15]])
    _, _, top = run("pyramid_height: 2 pool: AVE", x)
    np.testing.assert_allclose(top.data, [[7.5, 2.5, 4.5, 10.5, 12.5]])


def test_forward_order_is_level_then_channel():
    x = np.stack([np.arange(16.0), 100 + np.arange(16.0)]).reshape(1, 2, 4, 4)
    _, _, top = run("pyramid_height: 2", x)
    np.testing.assert_array_equal(top.data, [[15, 115, 5, 7, 13, 15, 105, 107, 113, 115]])


def test_forward_padded_level_averages_over_the_padded_window():
    # 3x3 input, level 1: kernel 2, pad 1, windows start at -1 and 1; every window is 2x2 of
    # the padded image, so each divides by 4.
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    _, _, top = run("pyramid_height: 2 pool: AVE", x)
    np.testing.assert_allclose(top.data, [[4, 0 / 4, (1 + 2) / 4, (3 + 6) / 4, (4 + 5 + 7 + 8) / 4]])


def test_backward_adds_the_levels():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    layer, bottom, top = run("pyramid_height: 2", x)
    top.diff[...] = [[10, 1, 2, 3, 4]]
    layer.backward([top], [True], [bottom])
    expected = np.zeros((4, 4))
    expected[1, 1], expected[1, 3], expected[3, 1] = 1, 2, 3
    expected[3, 3] = 4 + 10
    np.testing.assert_array_equal(bottom.diff[0, 0], expected)


def test_stochastic_picks_window_elements():
    x = np.random.default_rng(0).uniform(0.1, 1.0, size=(2, 2, 4, 4))
    layer, bottom, top = run("pyramid_height: 3 pool: STOCHASTIC", x)
    assert top.shape == (2, 2 * (1 + 4 + 16))
    # level 2 has 1x1 bins: the elements themselves
    np.testing.assert_array_equal(top.data[:, 10:], x.reshape(2, 32))
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    np.testing.assert_allclose(bottom.diff.sum(), top.count)


def test_reshape_to_a_new_input_size():
    layer, bottom, top = run("pyramid_height: 2", np.zeros((1, 1, 4, 4)))
    bottom.reshape(1, 1, 2, 6)
    bottom.data[...] = np.arange(12.0).reshape(1, 1, 2, 6)
    layer.reshape([bottom], [top])
    layer.forward([bottom], [top])
    np.testing.assert_array_equal(top.data, [[11, 2, 5, 8, 11]])


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_gradient(method):
    layer = spp(f"pyramid_height: 3 pool: {method}")
    checker = GradientChecker(stepsize=1e-2, threshold=1e-3)
    checker.check_gradient(layer, [separated_blob((2, 2, 9, 8))], empty_tops(1))


def test_gradient_exhaustive_small():
    layer = spp("pyramid_height: 2 pool: AVE")
    checker = GradientChecker(stepsize=1e-2, threshold=1e-3)
    checker.check_gradient_exhaustive(layer, [gaussian_blob((1, 2, 3, 5))], empty_tops(1))


def test_same_result_in_cpu_and_gpu_mode(any_mode):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    layer, bottom, top = run("pyramid_height: 2", x)
    np.testing.assert_array_equal(top.data, [[15, 5, 7, 13, 15]])
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    assert bottom.diff[0, 0, 3, 3] == 2.0
    assert bottom.diff.sum() == 5.0


@pytest.mark.parametrize("params, shape, message", [
    ("pyramid_height: 0", (1, 1, 4, 4), "at least 1"),
    ("", (1, 1, 4, 4), "at least 1"),
    ("pyramid_height: 3", (1, 1, 3, 3), "too small"),
    ("pyramid_height: 2 pool: STOCHASTIC", (1, 1, 5, 4), "cannot pad"),
    ("pyramid_height: 2", (1, 4, 4), "4-axis"),
    ("pyramid_height: 2", (1, 1, 0, 4), "non-empty"),
])
def test_bad_parameters_and_shapes(params, shape, message):
    with pytest.raises(PclError, match=message):
        spp(params).initialize([blob_from(np.zeros(shape))], empty_tops(1))
