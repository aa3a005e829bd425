"""Eltwise: PROD, SUM (with coefficients), MAX."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, make_layer

A = [[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]]
B = [[2.0, 2.0, -1.0], [4.0, 0.25, -3.0]]
C = [[-1.0, 3.0, 2.0], [1.0, 1.0, 5.0]]


def run(text, arrays, dtype=np.float64):
    layer = make_layer(f'type: "Eltwise" eltwise_param {{ {text} }}', dtype=dtype)
    bottoms = [blob_from(a, dtype=dtype) for a in arrays]
    tops = empty_tops(1, dtype=dtype)
    layer.initialize(bottoms, tops)
    layer.forward(bottoms, tops)
    return layer, bottoms, tops[0]


def test_prod_forward():
    _, _, top = run("operation: PROD", [A, B, C])
    assert top.shape == (2, 3)
    np.testing.assert_allclose(top.data, [[-2.0, -12.0, -6.0], [2.0, 1.0, 15.0]])


def test_sum_default_coefficients():
    _, _, top = run("operation: SUM", [A, B])
    np.testing.assert_allclose(top.data, [[3.0, 0.0, 2.0], [4.5, 4.25, -4.0]])


def test_sum_with_coefficients():
    _, _, top = run("operation: SUM coeff: 1 coeff: -0.5 coeff: 2", [A, B, C])
    np.testing.assert_allclose(top.data, [[-2.0, 3.0, 7.5], [0.5, 5.875, 10.5]])


def test_max_forward_and_mask_backward():
    layer, bottoms, top = run("operation: MAX", [A, B, C])
    np.testing.assert_allclose(top.data, [[2.0, 3.0, 3.0], [4.0, 4.0, 5.0]])
    top.diff[...] = [[10, 20, 30], [40, 50, 60]]
    layer.backward([top], [True] * 3, bottoms)
    np.testing.assert_array_equal(bottoms[0].diff, [[0, 0, 30], [0, 50, 0]])
    np.testing.assert_array_equal(bottoms[1].diff, [[10, 0, 0], [40, 0, 0]])
    np.testing.assert_array_equal(bottoms[2].diff, [[0, 20, 0], [0, 0, 60]])


def test_max_ties_follow_caffe():
    """Bottom 1 wins a tie against bottom 0; later bottoms must be strictly larger to win."""
    layer, bottoms, top = run("operation: MAX", [[1.0, 2.0], [1.0, 0.0], [1.0, 2.0]])
    top.diff[...] = 1.0
    layer.backward([top], [True] * 3, bottoms)
    np.testing.assert_array_equal(bottoms[0].diff, [0, 1])
    np.testing.assert_array_equal(bottoms[1].diff, [1, 0])
    np.testing.assert_array_equal(bottoms[2].diff, [0, 0])


def test_prod_backward_unstable_divides_by_the_bottom():
    layer, bottoms, top = run("operation: PROD stable_prod_grad: false", [A, B])
    top.diff[...] = 1.0
    layer.backward([top], [True, True], bottoms)
    np.testing.assert_allclose(bottoms[0].diff, B)
    np.testing.assert_allclose(bottoms[1].diff, A)


def test_prod_stable_gradient_handles_zeros():
    layer, bottoms, top = run("operation: PROD", [[0.0, 2.0], [3.0, 0.0], [5.0, 7.0]])
    top.diff[...] = 1.0
    layer.backward([top], [True] * 3, bottoms)
    np.testing.assert_allclose(bottoms[0].diff, [15.0, 0.0])
    np.testing.assert_allclose(bottoms[1].diff, [0.0, 14.0])
    np.testing.assert_allclose(bottoms[2].diff, [0.0, 0.0])


def test_float32_stays_float32():
    layer, bottoms, top = run("operation: SUM coeff: 0.8 coeff: -0.6", [A, B], dtype=np.float32)
    assert top.data.dtype == np.float32
    expected = np.float32(0.8) * np.float32(A) + np.float32(-0.6) * np.float32(B)
    np.testing.assert_array_equal(top.data, expected)


@pytest.mark.parametrize("text", [
    "operation: PROD",
    "operation: PROD stable_prod_grad: false",
    "operation: SUM",
    "operation: SUM coeff: 1.5 coeff: -0.5 coeff: 2",
    "operation: MAX",
])
def test_gradient(text):
    layer = make_layer(f'type: "Eltwise" eltwise_param {{ {text} }}')
    # At each position the three bottoms take the levels -2, 0.7, 1.6 (plus a little noise) in a
    # random order: away from 0 for PROD's division, apart from each other for MAX, and each
    # bottom wins MAX somewhere.
    rng = np.random.default_rng(0)
    levels = np.array([-2.0, 0.7, 1.6])
    order = np.argsort(rng.random((3, 2, 3)), axis=0)
    values = levels[order] + rng.uniform(-0.1, 0.1, size=(3, 2, 3))
    bottoms = [blob_from(v) for v in values]
    GradientChecker(1e-2, 1e-3).check_gradient(layer, bottoms, empty_tops(1))


def test_shape_mismatch_names_both_shapes():
    expected = r'"test" \(Eltwise\): bottom 1 has shape \(2, 4\) but bottom 0 has shape \(2, 3\)'
    with pytest.raises(PclError, match=expected):
        run("operation: SUM", [np.zeros((2, 3)), np.zeros((2, 4))])


def test_coefficient_count_must_match_bottoms():
    with pytest.raises(PclError, match="2 coeff values for 3 bottoms"):
        run("operation: SUM coeff: 1 coeff: 2", [A, B, C])


def test_coefficients_are_refused_for_prod():
    with pytest.raises(PclError, match="only applies to operation SUM"):
        run("operation: PROD coeff: 1 coeff: 2", [A, B])


def test_one_bottom_is_refused():
    with pytest.raises(PclError, match="at least 2 bottom"):
        run("operation: SUM", [A])


@pytest.mark.parametrize("op", ["PROD", "SUM coeff: 2 coeff: -1", "MAX"])
def test_same_result_in_both_modes(any_mode, op):
    layer, bottoms, top = run(f"operation: {op}", [A, B])
    expected = {"PROD": np.multiply(A, B), "MAX": np.maximum(A, B)}.get(op, 2 * np.array(A) - np.array(B))
    np.testing.assert_allclose(top.data, expected)
    top.diff[...] = 1.0
    layer.backward([top], [True, True], bottoms)
    expected_a = {"PROD": np.array(B), "MAX": (np.array(A) > np.array(B)) * 1.0}.get(op, np.full((2, 3), 2.0))
    np.testing.assert_allclose(bottoms[0].diff, expected_a)
