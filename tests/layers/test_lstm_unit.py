"""LSTMUnit: shapes, hand-computed values, gradients (Caffe's two cont cases), errors, modes."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, make_layer


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def unit_bottoms(streams=3, hidden=4, cont=(1, 0, 1), seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [blob_from(rng.uniform(-1, 1, (1, streams, hidden)), dtype),
            blob_from(rng.uniform(-1, 1, (1, streams, 4 * hidden)), dtype),
            blob_from(np.array([cont], dtype=float), dtype)]


def set_up(bottoms, dtype=np.float64):
    layer = make_layer('type: "LSTMUnit"', dtype)
    tops = empty_tops(2, dtype)
    layer.initialize(bottoms, tops)
    return layer, tops


def test_shapes():
    _, tops = set_up(unit_bottoms(streams=3, hidden=4))
    assert [t.shape for t in tops] == [(1, 3, 4), (1, 3, 4)]


def test_forward_hand_computed():
    """Zero pre-activations: i = f = o = 1/2, g = 0, so c = cont * c_prev / 2, h = tanh(c) / 2."""
    bottoms = [blob_from([[[1.0], [2.0]]]), blob_from(np.zeros((1, 2, 4))), blob_from([[1.0, 0.0]])]
    layer, tops = set_up(bottoms)
    layer.forward(bottoms, tops)
    np.testing.assert_allclose(tops[0].data, [[[0.5], [0.0]]])
    np.testing.assert_allclose(tops[1].data, [[[0.5 * np.tanh(0.5)], [0.0]]])


def test_forward_matches_the_formulas():
    bottoms = unit_bottoms(cont=(1, 0, 0.5))
    layer, tops = set_up(bottoms)
    layer.forward(bottoms, tops)
    c_prev, x, cont = bottoms[0].data[0], bottoms[1].data[0].reshape(3, 4, 4), bottoms[2].data[0]
    i, f, o, g = sigmoid(x[:, 0]), cont[:, None] * sigmoid(x[:, 1]), sigmoid(x[:, 2]), np.tanh(x[:, 3])
    c = f * c_prev + i * g
    np.testing.assert_allclose(tops[0].data[0], c)
    np.testing.assert_allclose(tops[1].data[0], o * np.tanh(c))


def test_saturated_gates_give_the_limits_without_warnings(recwarn):
    bottoms = [blob_from([[[2.0], [2.0]]]), blob_from([[[1e3, -1e3, 1e3, -1e3], [-1e3, 1e3, -1e3, 1e3]]]),
               blob_from([[1.0, 1.0]])]
    layer, tops = set_up(bottoms)
    layer.forward(bottoms, tops)
    # stream 0: i = 1, f = 0, o = 1, g = -1; stream 1: i = 0, f = 1, o = 0, g = 1
    np.testing.assert_array_equal(tops[0].data, [[[-1.0], [2.0]]])
    np.testing.assert_allclose(tops[1].data, [[[np.tanh(-1.0)], [0.0]]])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("cont", [(0, 0, 0), (1, 0, 1)])
def test_gradient(cont):
    """As Caffe's test: exhaustively, for c_prev and the gates (never cont)."""
    checker = GradientChecker(1e-2, 1e-3)
    for check_bottom in (0, 1):
        bottoms = unit_bottoms(cont=cont)
        checker.check_gradient_exhaustive(make_layer('type: "LSTMUnit"'), bottoms, empty_tops(2),
                                          check_bottom)


def test_backward_only_to_c_prev_leaves_the_gate_diff_alone():
    bottoms = unit_bottoms()
    layer, tops = set_up(bottoms)
    layer.forward(bottoms, tops)
    for top in tops:
        top.diff[...] = 1.0
    layer.backward(tops, [True, True, False], bottoms)
    expected = bottoms[0].diff.copy()
    bottoms[0].diff[...] = 0
    bottoms[1].diff[...] = 7.0
    layer.backward(tops, [True, False, False], bottoms)
    np.testing.assert_array_equal(bottoms[0].diff, expected)
    assert (bottoms[1].diff == 7.0).all()


def test_gradient_to_cont_is_an_error():
    bottoms = unit_bottoms()
    layer, tops = set_up(bottoms)
    layer.forward(bottoms, tops)
    with pytest.raises(PclError, match=r'LSTMUnit.*cont.*propagate_down'):
        layer.backward(tops, [True, True, True], bottoms)


@pytest.mark.parametrize("shapes, match", [
    ([(3, 4), (1, 3, 16), (1, 3)], r"bottom 0 \(c_prev\) must be 1 x N x H"),
    ([(2, 3, 4), (2, 3, 16), (2, 3)], r"bottom 0 \(c_prev\) must be 1 x N x H"),
    ([(1, 3, 4), (1, 3, 12), (1, 3)], r"bottom 1 \(gates\) must have shape \(1, N, 4H\) = \(1, 3, 16\)"),
    ([(1, 3, 4), (1, 3, 16), (1, 2)], r"bottom 2 \(cont\) must have shape \(1, N\) = \(1, 3\)"),
])
def test_bad_shapes_are_errors(shapes, match):
    with pytest.raises(PclError, match=r'layer "test" \(LSTMUnit\): ' + match):
        set_up([blob_from(np.zeros(s)) for s in shapes])


def test_wrong_bottom_count_is_an_error():
    with pytest.raises(PclError, match=r"LSTMUnit.*exactly 3 bottom"):
        set_up(unit_bottoms()[:2])


def test_cpu_and_gpu_give_the_same_result(any_mode):
    bottoms = unit_bottoms(dtype=np.float32)
    layer, tops = set_up(bottoms, np.float32)
    layer.forward(bottoms, tops)
    tops[0].diff[...] = 0.5
    tops[1].diff[...] = -1.0
    layer.backward(tops, [True, True, False], bottoms)
    reference = unit_bottoms(dtype=np.float64)
    ref_layer, ref_tops = set_up(reference)
    ref_layer.forward(reference, ref_tops)
    ref_tops[0].diff[...] = 0.5
    ref_tops[1].diff[...] = -1.0
    ref_layer.backward(ref_tops, [True, True, False], reference)
    for mine, theirs in zip(tops, ref_tops):
        np.testing.assert_allclose(mine.data, theirs.data, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(bottoms[:2], reference[:2]):
        np.testing.assert_allclose(mine.diff, theirs.diff, rtol=1e-5, atol=1e-6)
