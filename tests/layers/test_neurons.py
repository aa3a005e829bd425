"""Tests of the neuron layers: ReLU, PReLU, ELU, Sigmoid, TanH, AbsVal, Power, Exp, Log, BNLL,
Threshold, Clip, Swish."""
import math

import numpy as np
import pytest

from layer_testing import blob_from, empty_tops, gaussian_blob, make_layer
from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker

LN2, LN3 = math.log(2), math.log(3)
E = math.e

# (prototxt, x, y, dy/dx): every y and dy/dx derived by hand from the layer's formula. Parameters
# are float32 in the schema (0.1 is 0.100000001...), hence the 1e-7 tolerance in float64.
CASES = {
    "relu": ('type: "ReLU"',
             [-2, -0.5, 0.5, 1.5], [0, 0, 0.5, 1.5], [0, 0, 1, 1]),
    "relu_leaky": ('type: "ReLU" relu_param { negative_slope: 0.1 }',
                   [-2, -0.5, 0.5, 1.5], [-0.2, -0.05, 0.5, 1.5], [0.1, 0.1, 1, 1]),
    "elu": ('type: "ELU" elu_param { alpha: 0.5 }',
            [-1, 2], [0.5 * (1 / E - 1), 2], [0.5 / E, 1]),
    "sigmoid": ('type: "Sigmoid"',
                [0, LN3, -LN3], [0.5, 0.75, 0.25], [0.25, 0.1875, 0.1875]),
    "tanh": ('type: "TanH"', [0, LN2, -LN2], [0, 0.6, -0.6], [1, 0.64, 0.64]),
    "absval": ('type: "AbsVal"', [-3, 0, 2], [3, 0, 2], [-1, 0, 1]),
    "power_square": ('type: "Power" power_param { power: 2 scale: 0.5 shift: 0.3 }',
                     [1, -2], [0.64, 0.49], [0.8, -0.7]),
    "power_sqrt": ('type: "Power" power_param { power: 0.5 scale: 2 shift: 1 }',
                   [4, 0], [3, 1], [1 / 3, 1]),
    "power_no_shift": ('type: "Power" power_param { power: 3 scale: 2 }',
                       [1, -0.5], [8, -1], [24, 6]),
    "power_linear": ('type: "Power" power_param { power: 1 scale: -0.7 shift: 0.2 }',
                     [1, -1], [-0.5, 0.9], [-0.7, -0.7]),
    "power_zero": ('type: "Power" power_param { power: 0 scale: 3 shift: 2 }',
                   [5, -5], [1, 1], [0, 0]),
    "power_zero_scale": ('type: "Power" power_param { power: 3 scale: 0 shift: 2 }',
                         [5, -5], [8, 8], [0, 0]),
    "exp_base2": ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }',
                  [2, -2], [4, 1], [2 * LN2, 0.5 * LN2]),
    "exp_e": ('type: "Exp"', [0, 1], [1, E], [1, E]),
    "exp_e_shift": ('type: "Exp" exp_param { shift: 1 scale: 2 }', [0, -0.5], [E, 1], [2 * E, 2]),
    "log_base10": ('type: "Log" log_param { base: 10 scale: 2 }',
                   [50, 0.05], [2, -1], [1 / (50 * math.log(10)), 1 / (0.05 * math.log(10))]),
    "log_e_shift": ('type: "Log" log_param { shift: 1 }', [E - 1, 0], [1, 0], [1 / E, 1]),
    "bnll": ('type: "BNLL"', [0, LN3, -LN3, 60],
             [LN2, math.log(4), math.log(4 / 3), 60], [0.5, 0.75, 0.25, 1]),
    # Both bounds are exact in float32, so the inputs -0.5 and 0.75 sit exactly on them.
    "clip": ('type: "Clip" clip_param { min: -0.5 max: 0.75 }',
             [-1, -0.5, 0.3, 0.75, 2], [-0.5, -0.5, 0.3, 0.75, 0.75], [0, 1, 1, 1, 0]),
    "swish": ('type: "Swish"', [0, LN3], [0, 0.75 * LN3], [0.5, 0.75 + 0.1875 * LN3]),
    "swish_beta2": ('type: "Swish" swish_param { beta: 2 }',
                    [LN3 / 2], [0.375 * LN3], [0.75 + 0.1875 * LN3]),
}


def forward_backward(text, x, dtype=np.float64, in_place=False, dy=None):
    """Run one forward and backward (top diff dy, default ones); return (y, dx) as host arrays."""
    layer = make_layer(text, dtype)
    bottom = [blob_from(x, dtype)]
    top = bottom if in_place else empty_tops(1, dtype)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    y = top[0].data.copy()
    top[0].diff[...] = 1 if dy is None else dy
    layer.backward(top, [True], bottom)
    return y, bottom[0].diff.copy()


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_backward_against_hand_values(case):
    text, x, y, dx = CASES[case]
    got_y, got_dx = forward_backward(text, np.reshape(x, (1, -1)))
    np.testing.assert_allclose(got_y.ravel(), y, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got_dx.ravel(), dx, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("case", ["relu_leaky", "elu", "sigmoid", "power_sqrt", "exp_base2",
                                  "log_base10", "bnll", "clip", "swish_beta2"])
def test_float32_in_any_mode(any_mode, case):
    text, x, y, dx = CASES[case]
    got_y, got_dx = forward_backward(text, np.reshape(x, (1, -1)), dtype=np.float32)
    assert got_y.dtype == np.float32 and got_dx.dtype == np.float32
    np.testing.assert_allclose(got_y.ravel(), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_dx.ravel(), dx, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text", [CASES[c][0] for c in sorted(CASES)] + [
    'type: "PReLU"', 'type: "Threshold"'])
def test_top_has_the_bottom_shape(text):
    layer = make_layer(text)
    bottom, top = [gaussian_blob((2, 3, 4, 5))], empty_tops(1)
    layer.initialize(bottom, top)
    assert top[0].shape == (2, 3, 4, 5)
    bottom[0].reshape((4, 3))
    layer.reshape(bottom, top)
    assert top[0].shape == (4, 3)


def test_bnll_is_stable_for_large_inputs():
    y, dx = forward_backward('type: "BNLL"', [[-1000.0, 1000.0]])
    np.testing.assert_allclose(y, [[0.0, 1000.0]], atol=1e-300)
    np.testing.assert_allclose(dx, [[0.0, 1.0]], atol=1e-300)


def test_threshold_forward():
    layer = make_layer('type: "Threshold" threshold_param { threshold: 0.5 }')
    bottom, top = [blob_from([[0.4, 0.5, 0.6, -3.0]])], empty_tops(1)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, [[0, 0, 1, 0]])


def test_threshold_has_no_backward():
    layer = make_layer('type: "Threshold"')
    bottom, top = [blob_from([[1.0, -1.0]])], empty_tops(1)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    layer.backward(top, [False], bottom)  # nothing asked: fine
    with pytest.raises(PclError, match="no backward"):
        layer.backward(top, [True], bottom)


def test_skipped_backward_leaves_the_bottom_diff_alone():
    layer = make_layer('type: "Sigmoid"')
    bottom, top = [blob_from([[1.0, 2.0]])], empty_tops(1)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    bottom[0].diff[...] = 7
    layer.backward(top, [False], bottom)
    np.testing.assert_array_equal(bottom[0].diff, 7)


# -- in place ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["relu", "relu_leaky", "elu", "sigmoid", "tanh", "power_square",
                                  "power_sqrt", "power_no_shift", "exp_base2", "log_base10",
                                  "bnll", "clip", "swish_beta2"])
def test_in_place_gives_the_same_values_and_gradients(case):
    text, x, _, _ = CASES[case]
    x = np.reshape(x, (1, -1))
    dy = np.linspace(0.5, 1.5, x.size).reshape(x.shape)
    expected = forward_backward(text, x, dy=dy)
    got = forward_backward(text, x, in_place=True, dy=dy)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_relu_special_values_as_caffe(slope, in_place):
    """Caffe: y = max(x, 0) + slope * min(x, 0), dx = dy * ((x > 0) + slope * (x <= 0)): NaN is
    neither > 0 nor <= 0, so its gradient factor is 0; -inf and -0 take the slope."""
    x = np.array([[np.nan, -np.inf, -0.0, 0.0, -1.0, 2.0, np.inf]])
    text = f'type: "ReLU" relu_param {{ negative_slope: {slope} }}'
    y, dx = forward_backward(text, x, dtype=np.float32, in_place=in_place, dy=np.full(x.shape, 2.0))
    np.testing.assert_array_equal(y[0], [np.nan, -np.inf * slope if slope else 0, 0, 0, -slope, 2, np.inf])
    np.testing.assert_array_equal(dx[0], [0, 2 * slope, 2 * slope, 2 * slope, 2 * slope, 2, 2])


def test_absval_refuses_in_place():
    with pytest.raises(PclError, match="in place"):
        forward_backward('type: "AbsVal"', [[1.0, -2.0]], in_place=True)


# -- gradient checks ---------------------------------------------------------------------------

# (prototxt, kink, kink_range, offset): with an offset the inputs are |x| + offset, for Power with
# a fractional exponent and Log, which need shift + scale * x > 0.
GRADIENT_CASES = [
    ('type: "ReLU"', 0.0, 0.01, None),
    ('type: "ReLU" relu_param { negative_slope: 0.01 }', 0.0, 0.01, None),
    ('type: "ELU" elu_param { alpha: 0.7 }', 0.0, 0.01, None),
    ('type: "ELU"', 0.0, -1.0, None),  # alpha 1: the derivative is continuous at 0
    ('type: "Sigmoid"', 0.0, -1.0, None),
    ('type: "TanH"', 0.0, -1.0, None),
    ('type: "AbsVal"', 0.0, 0.01, None),
    ('type: "Power" power_param { power: 0.37 scale: 0.83 shift: -2.4 }', 0.0, -1.0, 3.5),
    ('type: "Power" power_param { power: 2 scale: 0.34 shift: -2.4 }', 0.0, -1.0, None),
    ('type: "Power" power_param { power: 1.5 scale: 2 }', 0.0, -1.0, 0.5),
    ('type: "Power" power_param { power: -1 scale: 0.5 shift: 0.1 }', 0.0, -1.0, 0.5),
    ('type: "Power" power_param { power: 1 scale: 0.83 shift: -2.4 }', 0.0, -1.0, None),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 1 }', 0.0, -1.0, None),
    ('type: "Exp" exp_param { scale: -1.5 shift: 0.5 }', 0.0, -1.0, None),
    ('type: "Log" log_param { base: 10 scale: 1.5 shift: 0.2 }', 0.0, -1.0, 0.5),
    ('type: "Log"', 0.0, -1.0, 0.5),
    ('type: "BNLL"', 0.0, -1.0, None),
    ('type: "Clip" clip_param { min: -0.6 max: 0.6 }', 0.6, 0.011, None),
    ('type: "Swish" swish_param { beta: 1.5 }', 0.0, -1.0, None),
]


@pytest.mark.parametrize("text,kink,kink_range,offset", GRADIENT_CASES)
def test_gradient(text, kink, kink_range, offset):
    x = np.random.default_rng(3).normal(size=(2, 3, 2, 2))
    if offset is not None:
        x = np.abs(x) + offset
    checker = GradientChecker(1e-2, 1e-3, kink=kink, kink_range=kink_range)
    checker.check_gradient_eltwise(make_layer(text), [blob_from(x)], empty_tops(1))


# -- PReLU ---------------------------------------------------------------------------------------

def _prelu(text, x, slopes=None, in_place=False, dy=None):
    layer = make_layer(text)
    bottom = [blob_from(x)]
    top = bottom if in_place else empty_tops(1)
    layer.initialize(bottom, top)
    if slopes is not None:
        layer.blobs[0].data[...] = slopes
    layer.forward(bottom, top)
    y = top[0].data.copy()
    top[0].diff[...] = 1 if dy is None else dy
    layer.blobs[0].diff[...] = 0
    layer.backward(top, [True], bottom)
    return layer, y, bottom[0].diff.copy()


PRELU_X = [[[[-1.0, 2.0]], [[-4.0, 3.0]]]]  # (1, 2, 1, 2): channel 0 = (-1, 2), channel 1 = (-4, 3)


def test_prelu_default_slope_is_a_quarter_per_channel():
    layer, y, dx = _prelu('type: "PReLU"', PRELU_X)
    assert layer.blobs[0].shape == (2,)
    np.testing.assert_array_equal(layer.blobs[0].data, [0.25, 0.25])
    np.testing.assert_allclose(y, [[[[-0.25, 2]], [[-1, 3]]]])
    np.testing.assert_allclose(dx, [[[[0.25, 1]], [[0.25, 1]]]])
    # dE/da_c = sum of dy * x where x <= 0: channel 0 -> -1, channel 1 -> -4
    np.testing.assert_allclose(layer.blobs[0].diff, [-1, -4])


def test_prelu_per_channel_slopes():
    layer, y, dx = _prelu('type: "PReLU"', PRELU_X, slopes=[0.5, 0.1], dy=[[[[2, 1]], [[3, 1]]]])
    np.testing.assert_allclose(y, [[[[-0.5, 2]], [[-0.4, 3]]]])
    np.testing.assert_allclose(dx, [[[[1.0, 1]], [[0.3, 1]]]])
    np.testing.assert_allclose(layer.blobs[0].diff, [-2, -12])


def test_prelu_channel_shared_has_one_scalar_slope():
    layer, y, _ = _prelu('type: "PReLU" prelu_param { channel_shared: true }', PRELU_X, slopes=0.5)
    assert layer.blobs[0].shape == ()
    np.testing.assert_allclose(y, [[[[-0.5, 2]], [[-2, 3]]]])
    np.testing.assert_allclose(layer.blobs[0].diff, -5)


def test_prelu_filler_is_used():
    layer, _, _ = _prelu('type: "PReLU" prelu_param { filler { type: "constant" value: 0.5 } }',
                         PRELU_X)
    np.testing.assert_array_equal(layer.blobs[0].data, [0.5, 0.5])


def test_prelu_param_diff_accumulates():
    layer = make_layer('type: "PReLU"')
    bottom, top = [blob_from(PRELU_X)], empty_tops(1)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.blobs[0].diff[...] = 10
    layer.backward(top, [False], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, [9, 6])


def test_prelu_frozen_slope_gets_no_diff():
    layer = make_layer('type: "PReLU"')
    bottom, top = [blob_from(PRELU_X)], empty_tops(1)
    layer.initialize(bottom, top)
    layer.set_param_propagate_down(0, False)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.blobs[0].diff[...] = 0
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(layer.blobs[0].diff, 0)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_in_place_matches_out_of_place(shared):
    text = f'type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}'
    x = np.random.default_rng(5).normal(size=(2, 3, 2, 2))
    dy = np.random.default_rng(6).normal(size=x.shape)
    slopes = 0.3 if shared else [0.1, 0.2, 0.3]
    expected = _prelu(text, x, slopes, dy=dy)
    got = _prelu(text, x, slopes, in_place=True, dy=dy)
    np.testing.assert_allclose(got[1], expected[1])
    np.testing.assert_allclose(got[2], expected[2])
    np.testing.assert_allclose(got[0].blobs[0].diff, expected[0].blobs[0].diff)


@pytest.mark.parametrize("text", [
    'type: "PReLU" prelu_param { filler { type: "gaussian" mean: 0.25 std: 0.1 } }',
    'type: "PReLU" prelu_param { channel_shared: true filler { type: "constant" value: 0.3 } }'])
def test_prelu_gradient(text):
    checker = GradientChecker(1e-2, 1e-3, kink=0.0, kink_range=0.01)
    checker.check_gradient_exhaustive(make_layer(text), [gaussian_blob((2, 3, 2, 2), seed=4)],
                                      empty_tops(1))


def test_prelu_any_mode(any_mode):
    layer = make_layer('type: "PReLU"', np.float32)
    bottom, top = [blob_from(PRELU_X, np.float32)], empty_tops(1, np.float32)
    layer.initialize(bottom, top)
    layer.blobs[0].data[...] = [0.5, 0.1]
    layer.forward(bottom, top)
    top[0].diff[...] = [[[[2, 1]], [[3, 1]]]]
    layer.blobs[0].diff[...] = 0
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(top[0].data, [[[[-0.5, 2]], [[-0.4, 3]]]], rtol=1e-6)
    np.testing.assert_allclose(bottom[0].diff, [[[[1.0, 1]], [[0.3, 1]]]], rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].diff, [-2, -12], rtol=1e-6)


# -- bad parameters and shapes -------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ('type: "Exp" exp_param { base: 0 }', "base must be a positive"),
    ('type: "Exp" exp_param { base: -2 }', "base must be a positive"),
    ('type: "Log" log_param { base: -0.5 }', "base must be a positive"),
    ('type: "Log" log_param { base: 1 }', "base 1"),
    ('type: "Clip" clip_param { min: -1 }', "both bounds are required"),
    ('type: "Clip"', "both bounds are required"),
    ('type: "Clip" clip_param { min: 1 max: -1 }', "greater than"),
])
def test_bad_parameters(text, message):
    layer = make_layer(text)
    with pytest.raises(PclError, match=message):
        layer.initialize([gaussian_blob((2, 3))], empty_tops(1))


def test_prelu_needs_a_channel_axis():
    with pytest.raises(PclError, match="at least 2 axes"):
        make_layer('type: "PReLU"').initialize([gaussian_blob((5,))], empty_tops(1))


def test_prelu_channels_must_match_the_slopes():
    layer = make_layer('type: "PReLU"')
    bottom, top = [gaussian_blob((2, 3, 2))], empty_tops(1)
    layer.initialize(bottom, top)
    bottom[0].reshape((2, 4, 2))
    with pytest.raises(PclError, match="3 slopes|4 slopes"):
        layer.reshape(bottom, top)


@pytest.mark.parametrize("text", ['type: "ReLU"', 'type: "Sigmoid"'])
def test_neuron_layers_take_one_bottom_and_one_top(text):
    with pytest.raises(PclError, match="exactly 1 bottom"):
        make_layer(text).initialize([gaussian_blob((2,)), gaussian_blob((2,))], empty_tops(1))
    with pytest.raises(PclError, match="exactly 1 top"):
        make_layer(text).initialize([gaussian_blob((2,))], empty_tops(2))
