"""Softmax: values along an axis, numerical stability, exact backward."""
import math

import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, forward_one, gaussian_blob, make_layer


def softmax(params="", dtype=np.float64):
    return make_layer(f'type: "Softmax" softmax_param {{ {params} }}', dtype=dtype)


def run(params, x, dtype=np.float64):
    return forward_one(softmax(params, dtype), x, dtype)


def test_shape():
    _, _, top = run("", np.zeros((2, 3, 4)))
    assert top.shape == (2, 3, 4)


def test_forward_default_axis():
    _, _, top = run("", [[0.0, math.log(2), math.log(3)], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(top.data, [[1 / 6, 2 / 6, 3 / 6], [1 / 3, 1 / 3, 1 / 3]])


@pytest.mark.parametrize("axis", ["0", "-2"])
def test_forward_other_axis(axis):
    _, _, top = run(f"axis: {axis}", [[0.0, 1.0], [math.log(3), 1.0]])
    np.testing.assert_allclose(top.data, [[0.25, 0.5], [0.75, 0.5]])


def test_forward_middle_axis_of_three():
    x = np.zeros((2, 2, 3))
    x[:, 1, :] = math.log(4)
    _, _, top = run("axis: 1", x)
    np.testing.assert_allclose(top.data[:, 0, :], 0.2)
    np.testing.assert_allclose(top.data[:, 1, :], 0.8)


def test_large_values_do_not_overflow():
    _, _, top = run("", [[1000.0, 1000.0 + math.log(3)], [-1000.0, -1000.0]])
    np.testing.assert_allclose(top.data, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-6)


def test_backward_hand_computed():
    layer, bottom, top = run("", [[0.0, math.log(3)]])  # y = (1/4, 3/4)
    top.diff[...] = [[1.0, 0.0]]
    layer.backward([top], [True], [bottom])
    # dx = (dy - sum(dy * y)) * y = (1 - 1/4, -1/4) * (1/4, 3/4)
    np.testing.assert_allclose(bottom.diff, [[3 / 16, -3 / 16]])


@pytest.mark.parametrize("params", ["", "axis: 2", "axis: -1", "axis: 0"])
def test_gradient(params):
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(
        softmax(params), [gaussian_blob((2, 3, 2, 2), seed=6)], empty_tops(1))


def test_in_place_matches_out_of_place():
    x = np.random.default_rng(4).normal(size=(3, 4))
    layer, bottom, top = run("", x)
    top.diff[...] = np.arange(12.0).reshape(3, 4)
    layer.backward([top], [True], [bottom])

    blob = blob_from(x)
    inplace = softmax()
    inplace.initialize([blob], [blob])
    inplace.forward([blob], [blob])
    np.testing.assert_allclose(blob.data, top.data)
    blob.diff[...] = top.diff
    inplace.backward([blob], [True], [blob])
    np.testing.assert_allclose(blob.diff, bottom.diff)


@pytest.mark.parametrize("axis", ["2", "-3"])
def test_axis_out_of_range_is_an_error(axis):
    with pytest.raises(PclError, match="axis"):
        run(f"axis: {axis}", np.zeros((2, 3)))


def test_cpu_and_gpu_give_the_same_result(any_mode):
    layer, bottom, top = run("", [[0.0, math.log(3)]], dtype=np.float32)
    top.diff[...] = [[1.0, 0.0]]
    layer.backward([top], [True], [bottom])
    assert top.data.dtype == np.float32
    np.testing.assert_allclose(top.data, [[0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(bottom.diff, [[3 / 16, -3 / 16]], rtol=1e-5)
