"""Reduction: SUM, ASUM, SUMSQ, MEAN over the axes from `axis` on."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer

X = [[[1.0, -2.0], [3.0, 0.5]],
     [[-1.0, 0.0], [2.0, -4.0]]]   # (2, 2, 2)


def run(text, data=X, dtype=np.float64):
    x = blob_from(data, dtype=dtype)
    layer = make_layer(f'type: "Reduction" reduction_param {{ {text} }}', dtype=dtype)
    tops = empty_tops(1, dtype=dtype)
    layer.initialize([x], tops)
    layer.forward([x], tops)
    return layer, x, tops[0]


@pytest.mark.parametrize("text, shape, expected", [
    ("operation: SUM", (), -0.5),
    ("operation: SUM axis: 1", (2,), [2.5, -3.0]),
    ("operation: ASUM axis: 1", (2,), [6.5, 7.0]),
    ("operation: SUMSQ axis: 1", (2,), [14.25, 21.0]),
    ("operation: MEAN axis: 1", (2,), [0.625, -0.75]),
    ("operation: SUM axis: -1 coeff: 2", (2, 2), [[-2.0, 7.0], [-2.0, -4.0]]),
    ("operation: MEAN axis: 2 coeff: -1.5", (2, 2), [[0.75, -2.625], [0.75, 1.5]]),
    ("operation: SUMSQ coeff: 0.5", (), 17.625),
])
def test_forward_shapes_and_values(text, shape, expected):
    _, _, top = run(text)
    assert top.shape == shape
    np.testing.assert_allclose(top.data, expected)


@pytest.mark.parametrize("op, expected", [
    ("SUM", [[[2, 2], [2, 2]], [[-1, -1], [-1, -1]]]),
    ("MEAN", [[[0.5, 0.5], [0.5, 0.5]], [[-0.25, -0.25], [-0.25, -0.25]]]),
    ("ASUM", [[[2, -2], [2, 2]], [[1, 0], [-1, 1]]]),
    ("SUMSQ", [[[4, -8], [12, 2]], [[2, 0], [-4, 8]]]),
])
def test_backward_values(op, expected):
    layer, x, top = run(f"operation: {op} axis: 1")
    top.diff[...] = [2.0, -1.0]
    layer.backward([top], [True], [x])
    np.testing.assert_allclose(x.diff, expected)


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis, coeff", [(0, 1.0), (1, -0.7), (2, 2.0)])
def test_gradient(op, axis, coeff):
    layer = make_layer(f'type: "Reduction" reduction_param {{ operation: {op} axis: {axis} coeff: {coeff} }}')
    x = gaussian_blob((2, 3, 2), seed=axis)
    # ASUM has a kink at 0; keep the checked values away from it.
    GradientChecker(1e-2, 1e-3, kink=0.0, kink_range=0.02).check_gradient(layer, [x], empty_tops(1))


def test_float32_stays_float32():
    _, _, top = run("operation: MEAN axis: 1 coeff: 0.3", dtype=np.float32)
    assert top.data.dtype == np.float32
    np.testing.assert_allclose(top.data, [0.1875, -0.225], rtol=1e-6)


def test_axis_out_of_range():
    with pytest.raises(PclError, match=r'"test" \(Reduction\): reduction_param.axis 3 is out of range'):
        run("axis: 3")


def test_same_result_in_both_modes(any_mode):
    layer, x, top = run("operation: SUMSQ axis: 2")
    np.testing.assert_allclose(top.data, [[5.0, 9.25], [1.0, 20.0]])
    top.diff[...] = 1.0
    layer.backward([top], [True], [x])
    np.testing.assert_allclose(x.diff, 2 * np.array(X))
