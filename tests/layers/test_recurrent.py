"""LSTM and RNN: shapes and Caffe's param layout, values against the formulas and against Caffe's
unrolled inner net (tests/layers/unrolled_recurrent.py), the carried and exposed state, gradients
(static input, expose_hidden, cont zeros mid-sequence), errors, modes and debug_info."""
import logging

import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, layer_param, make_layer
from tests.layers.unrolled_recurrent import UnrolledRecurrent

KINDS = ["LSTM", "RNN"]
STATES = {"LSTM": 2, "RNN": 1}
# cont per (step, stream): sequences start at step 0, mid-sequence for stream 0 at step 2 and
# stream 2 at step 3.
CONT = [[0, 0, 0], [1, 1, 1], [0, 1, 1], [1, 1, 0]]


def text(kind, hidden=3, expose=False, extra=""):
    return (f'type: "{kind}" name: "rec" recurrent_param {{ num_output: {hidden} '
            f'expose_hidden: {str(expose).lower()} weight_filler {{ type: "gaussian" std: 0.5 }} '
            f'bias_filler {{ type: "gaussian" std: 0.5 }} {extra} }}')


def bottoms_for(kind, steps=4, streams=3, features=(2,), static=False, expose=False, cont=CONT,
                hidden=3, dtype=np.float64, seed=0):
    bottoms = [gaussian_blob((steps, streams) + features, dtype, seed=seed),
               blob_from(np.array(cont, dtype=float)[:steps, :streams], dtype)]
    if static:
        bottoms.append(gaussian_blob((streams, 2, 2), dtype, seed=seed + 1))
    if expose:
        bottoms += [gaussian_blob((1, streams, hidden), dtype, seed=seed + 2 + i)
                    for i in range(STATES[kind])]
    return bottoms


def set_up(kind, bottoms, expose=False, hidden=3, dtype=np.float64, extra=""):
    layer = make_layer(text(kind, hidden, expose, extra), dtype)
    tops = empty_tops(1 + STATES[kind] * expose, dtype)
    layer.initialize(bottoms, tops)
    return layer, tops


def propagate(bottoms):
    return [True, False] + [True] * (len(bottoms) - 2)


# -- the formulas, written out plainly --------------------------------------------------------
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def reference_forward(kind, params, x, cont, static, h, c):
    """Tops of one call from states h, c (N, H); returns (outputs (T, N, H), h_T, c_T)."""
    steps, streams = cont.shape
    w_x, b = params[0], params[1]
    pre = x.reshape(steps, streams, -1) @ w_x.T + b
    if static is not None:
        pre = pre + static.reshape(streams, -1) @ params[2].T
    recurrent = params[2 + (static is not None):]
    outputs = []
    for t in range(steps):
        a = pre[t] + (cont[t][:, None] * h) @ recurrent[0].T
        if kind == "LSTM":
            i, f, o, g = np.split(a, 4, axis=1)
            c = cont[t][:, None] * sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            outputs.append(h)
        else:
            h = np.tanh(a)
            outputs.append(np.tanh(h @ recurrent[1].T + recurrent[2]))
    return np.array(outputs), h, c


# -- shapes and params -----------------------------------------------------------------------------
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("expose", [False, True])
def test_shapes_and_caffes_param_layout(static, expose):
    hidden, features, static_values = 5, (2, 3), 4  # D = 6, S = 4
    for kind in KINDS:
        bottoms = bottoms_for(kind, features=features, static=static, expose=expose, hidden=hidden)
        layer, tops = set_up(kind, bottoms, expose, hidden)
        assert [t.shape for t in tops] == [(4, 3, hidden)] + [(1, 3, hidden)] * (STATES[kind] * expose)
        rows = 4 * hidden if kind == "LSTM" else hidden
        expected = [(rows, 6), (rows,)] + [(rows, static_values)] * static
        expected += [(rows, hidden)] if kind == "LSTM" else [(hidden, hidden), (hidden, hidden), (hidden,)]
        assert [b.shape for b in layer.blobs] == expected


@pytest.mark.parametrize("kind", KINDS)
def test_forward_matches_the_formulas_across_calls(kind):
    """Two calls: the second starts from the state the first left (used where cont[0] = 1)."""
    bottoms = bottoms_for(kind, static=True, cont=[[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]])
    layer, tops = set_up(kind, bottoms)
    params = [b.data for b in layer.blobs]
    h = c = np.zeros((3, 3))
    for call in range(2):
        bottoms[0].data[...] = np.random.default_rng(call).normal(size=bottoms[0].shape)
        layer.forward(bottoms, tops)
        expected, h, c = reference_forward(kind, params, bottoms[0].data, bottoms[1].data,
                                           bottoms[2].data, h, c)
        np.testing.assert_allclose(tops[0].data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("expose", [False, True])
def test_matches_caffes_unrolled_net(kind, static, expose):
    """Forward over two calls (carried state), then every bottom diff and param diff, against the
    unrolled net of pycaffelite layers that Caffe would build for the same layer."""
    bottoms = bottoms_for(kind, static=static, expose=expose, cont=[[1, 0, 1], [1, 1, 1], [0, 1, 1],
                                                                    [1, 0, 1]])
    layer, tops = set_up(kind, bottoms, expose)
    unrolled, unrolled_tops = UnrolledRecurrent(layer_param(text(kind, 3, expose)), np.float64), \
        empty_tops(len(tops))
    unrolled.setup(bottoms, unrolled_tops)
    for mine, theirs in zip(unrolled.params, layer.blobs):
        mine.data[...] = theirs.data
    for call in range(2):
        bottoms[0].data[...] = np.random.default_rng(call).normal(size=bottoms[0].shape)
        layer.forward(bottoms, tops)
        unrolled.forward(bottoms, unrolled_tops)
        for mine, theirs in zip(tops, unrolled_tops):
            np.testing.assert_allclose(mine.data, theirs.data, rtol=1e-12, atol=1e-12)
    top_diff = np.random.default_rng(9).normal(size=tops[0].shape)
    tops[0].diff[...] = top_diff
    layer.backward(tops, propagate(bottoms), bottoms)
    diffs = [b.diff.copy() for b in bottoms]
    for blob in bottoms:
        blob.diff[...] = 0
    unrolled_tops[0].diff[...] = top_diff
    unrolled.backward()
    for index, (mine, blob) in enumerate(zip(diffs, bottoms)):
        np.testing.assert_allclose(mine, blob.diff, rtol=1e-12, atol=1e-12, err_msg=f"bottom {index}")
    for index, (mine, theirs) in enumerate(zip(layer.blobs, unrolled.params)):
        np.testing.assert_allclose(mine.diff, theirs.diff, rtol=1e-12, atol=1e-12, err_msg=f"param {index}")


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_at_a_time_equals_the_whole_sequence(kind):
    """As Caffe's TestForward: T steps in one call equal T calls of one step (state carried), and
    with every cont 0 the calls differ from the sequence after the first step."""
    bottoms = bottoms_for(kind, steps=3, cont=[[0, 0, 0], [1, 1, 1], [1, 1, 1]])
    layer, tops = set_up(kind, bottoms)
    layer.forward(bottoms, tops)
    whole = tops[0].data.copy()
    for cont_value, equal_after_first in ((1.0, True), (0.0, False)):
        step = [blob_from(bottoms[0].data[:1]), blob_from(np.zeros((1, 3)))]
        one, one_tops = set_up(kind, step)
        for mine, theirs in zip(one.blobs, layer.blobs):
            mine.data[...] = theirs.data
        for t in range(3):
            step[0].data[...] = bottoms[0].data[t:t + 1]
            step[1].data[...] = cont_value if t else 0.0
            one.forward(step, one_tops)
            if t == 0 or equal_after_first:
                np.testing.assert_allclose(one_tops[0].data[0], whole[t], rtol=1e-12, atol=1e-12)
            else:
                assert not np.isclose(one_tops[0].data[0], whole[t]).any()


@pytest.mark.parametrize("kind", KINDS)
def test_state_restarts_from_zero_when_the_streams_change(kind):
    bottoms = bottoms_for(kind, cont=np.ones((4, 3)))
    layer, tops = set_up(kind, bottoms)
    layer.forward(bottoms, tops)
    fewer = [blob_from(bottoms[0].data[:, :2]), blob_from(np.ones((4, 2)))]
    layer.forward_loss(fewer, tops)
    fresh, fresh_tops = set_up(kind, fewer)
    for mine, theirs in zip(fresh.blobs, layer.blobs):
        mine.data[...] = theirs.data
    fresh.forward(fewer, fresh_tops)
    np.testing.assert_allclose(tops[0].data, fresh_tops[0].data, rtol=1e-12)


# -- expose_hidden -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_exposed_state_as_caffe_shares_it(kind):
    """h0 (, c0) set the first step's state; hT (, cT) are the last step's; like Caffe, the initial
    states get zero diffs and diffs written into the final-state tops are ignored."""
    bottoms = bottoms_for(kind, expose=True, cont=np.ones((4, 3)))
    layer, tops = set_up(kind, bottoms, expose=True)
    layer.forward(bottoms, tops)
    params = [b.data for b in layer.blobs]
    c0 = bottoms[3].data[0] if kind == "LSTM" else None
    expected, h_last, c_last = reference_forward(kind, params, bottoms[0].data, bottoms[1].data,
                                                 None, bottoms[2].data[0], c0)
    np.testing.assert_allclose(tops[0].data, expected, rtol=1e-12)
    np.testing.assert_allclose(tops[1].data[0], h_last, rtol=1e-12)
    if kind == "LSTM":
        np.testing.assert_allclose(tops[2].data[0], c_last, rtol=1e-12)
    diffs = []
    for final_diff in (0.0, 5.0):
        for top in tops[1:]:
            top.diff[...] = final_diff
        tops[0].diff[...] = 1.0
        for blob in bottoms[2:]:
            blob.diff[...] = 3.0
        layer.backward(tops, propagate(bottoms), bottoms)
        diffs.append(bottoms[0].diff.copy())
        for blob in bottoms[2:]:
            assert not blob.diff.any()
    np.testing.assert_array_equal(diffs[0], diffs[1])


@pytest.mark.parametrize("kind", KINDS)
def test_exposed_wrong_state_shape_is_an_error(kind):
    bottoms = bottoms_for(kind, expose=True)
    bottoms[2] = gaussian_blob((1, 3, 4))
    with pytest.raises(PclError, match=rf'"rec" \({kind}\): bottom 2 \(h0\) must have shape \(1, 3, 3\)'):
        set_up(kind, bottoms, expose=True)


# -- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("static", [False, True])
def test_gradient(kind, static):
    """Sum-of-squares objective; cont zeros at the start (so the carried state is zero on every
    call) and mid-sequence; x, x_static and every param."""
    checker = GradientChecker(1e-2, 1e-3)
    bottoms = bottoms_for(kind, steps=4, static=static)
    layer = make_layer(text(kind))
    tops = empty_tops(1)
    layer.initialize(bottoms, tops)
    for check_bottom in (0, 2) if static else (0,):
        checker.check_gradient_single(layer, bottoms, tops, check_bottom)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("static", [False, True])
def test_gradient_with_exposed_state(kind, static):
    """Every element of the output as its own objective (the final-state tops take no diff, as in
    Caffe); the initial states are set by h0 (, c0) and used at step 0 for streams 0 and 2."""
    checker = GradientChecker(1e-2, 1e-3)
    bottoms = bottoms_for(kind, steps=3, streams=2, static=static, expose=True,
                          cont=[[1, 0], [0, 1], [1, 1]], hidden=2)
    layer = make_layer(text(kind, hidden=2, expose=True))
    tops = empty_tops(1 + STATES[kind])
    layer.initialize(bottoms, tops)
    for check_bottom in (0, 2) if static else (0,):
        for element in range(tops[0].count):
            checker.check_gradient_single(layer, bottoms, tops, check_bottom, 0, element)


@pytest.mark.parametrize("kind", KINDS)
def test_saturated_units_stay_finite_without_warnings(kind, recwarn):
    bottoms = bottoms_for(kind)
    bottoms[0].data[...] *= 1e4
    layer, tops = set_up(kind, bottoms)
    layer.forward(bottoms, tops)
    tops[0].diff[...] = 1.0
    layer.backward(tops, [True, False], bottoms)
    assert np.isfinite(tops[0].data).all() and np.isfinite(bottoms[0].diff).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("kind", KINDS)
def test_param_diffs_accumulate_and_follow_param_propagate_down(kind):
    bottoms = bottoms_for(kind)
    layer, tops = set_up(kind, bottoms)
    layer.forward(bottoms, tops)
    tops[0].diff[...] = 1.0
    layer.backward(tops, [True, False], bottoms)
    once = [b.diff.copy() for b in layer.blobs]
    layer.backward(tops, [True, False], bottoms)
    for blob, first in zip(layer.blobs, once):
        np.testing.assert_allclose(blob.diff, 2 * first, rtol=1e-12)
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.param_propagate_down = [False] * len(layer.blobs)
    layer.backward(tops, [True, False], bottoms)
    assert not any(b.diff.any() for b in layer.blobs)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_matches_float64(kind):
    wide = bottoms_for(kind, static=True)
    narrow = bottoms_for(kind, static=True, dtype=np.float32)
    layer, tops = set_up(kind, wide)
    layer32, tops32 = set_up(kind, narrow, dtype=np.float32)
    for mine, theirs in zip(layer32.blobs, layer.blobs):
        mine.data[...] = theirs.data
    for lay, top, bottom in ((layer, tops, wide), (layer32, tops32, narrow)):
        lay.forward(bottom, top)
        top[0].diff[...] = 1.0
        lay.backward(top, propagate(bottom), bottom)
    assert tops32[0].data.dtype == np.float32
    np.testing.assert_allclose(tops32[0].data, tops[0].data, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(narrow, wide):
        np.testing.assert_allclose(mine.diff, theirs.diff, rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(layer32.blobs, layer.blobs):
        np.testing.assert_allclose(mine.diff, theirs.diff, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_cpu_and_gpu_give_the_same_result(kind, any_mode):
    bottoms = bottoms_for(kind, static=True, dtype=np.float32)
    layer, tops = set_up(kind, bottoms, dtype=np.float32)
    weights = [np.random.default_rng(i).normal(0, 0.5, b.shape) for i, b in enumerate(layer.blobs)]
    for blob, value in zip(layer.blobs, weights):
        blob.data[...] = value
    layer.forward(bottoms, tops)
    tops[0].diff[...] = 1.0
    layer.backward(tops, propagate(bottoms), bottoms)
    expected, _, _ = reference_forward(kind, weights, bottoms[0].data, bottoms[1].data,
                                       bottoms[2].data, np.zeros((3, 3)), np.zeros((3, 3)))
    np.testing.assert_allclose(tops[0].data, expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(bottoms[0].diff).all() and bottoms[0].diff.any()


@pytest.mark.parametrize("kind, layer_name, blob", [("LSTM", "unit", "h"), ("RNN", "h_neuron", "h")])
def test_debug_info_logs_each_step(kind, layer_name, blob, caplog):
    bottoms = bottoms_for(kind, steps=2)
    layer, tops = set_up(kind, bottoms, extra="debug_info: true")
    with caplog.at_level(logging.INFO, logger="pycaffelite"):
        layer.forward(bottoms, tops)
        tops[0].diff[...] = 1.0
        layer.backward(tops, [True, False], bottoms)
    text_logged = caplog.text
    assert f"[Forward] Layer rec_{layer_name}_2, top blob {blob}_2 data:" in text_logged
    assert f"[Backward] Layer rec_{layer_name}_1, bottom blob" in text_logged


# -- user mistakes -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_missing_num_output_is_an_error(kind):
    layer = make_layer(f'type: "{kind}" name: "rec"')
    with pytest.raises(PclError, match=rf'"rec" \({kind}\): needs recurrent_param {{ num_output'):
        layer.initialize(bottoms_for(kind), empty_tops(1))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("expose, bottoms, tops, match", [
    (False, 1, 1, r"takes bottoms x, cont, \[x_static\] and one top: 2 or 3 bottoms and 1 top\(s\), "
                  r"found 1 bottoms"),
    (False, 4, 1, r"takes .* 2 or 3 bottoms .* found 4 bottoms .*expose_hidden: true"),
    (False, 2, 2, r"takes .* found 2 bottoms and 2 top\(s\)"),
    (True, 2, 1, r"takes bottoms x, cont, \[x_static,\] h0"),
])
def test_wrong_blob_counts_are_errors(kind, expose, bottoms, tops, match):
    available = bottoms_for(kind, static=True) + [gaussian_blob((1, 3, 3))] * 2
    layer = make_layer(text(kind, expose=expose))
    with pytest.raises(PclError, match=rf'"rec" \({kind}\): ' + match):
        layer.initialize(available[:bottoms], empty_tops(tops))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("x_shape, cont_shape, static_shape, match", [
    ((4, 3, 2), (4, 2), None, r"bottom 1 \(cont\) must have shape \(T, N\) = \(4, 3\) to match x"),
    ((4, 3, 2), (3, 3), None, r"bottom 1 \(cont\) must have shape \(T, N\) = \(4, 3\)"),
    ((4, 3), (4, 3), None, r"bottom 0 \(x\) must be T x N x features \(at least 3 axes\)"),
    ((4, 3, 2), (4, 3), (2, 5), r"bottom 2 \(x_static\) must be N x features with N = 3"),
    ((4, 3, 2), (4, 3), (3,), r"bottom 2 \(x_static\) must be N x features"),
])
def test_bad_shapes_are_errors(kind, x_shape, cont_shape, static_shape, match):
    bottoms = [gaussian_blob(x_shape), blob_from(np.ones(cont_shape))]
    if static_shape:
        bottoms.append(gaussian_blob(static_shape))
    with pytest.raises(PclError, match=rf'"rec" \({kind}\): ' + match):
        set_up(kind, bottoms)


@pytest.mark.parametrize("kind", KINDS)
def test_changed_steps_or_input_size_are_errors(kind):
    bottoms = bottoms_for(kind)
    layer, tops = set_up(kind, bottoms)
    with pytest.raises(PclError, match=r"set up for T = 4 time steps.*keep T fixed"):
        layer.reshape([gaussian_blob((5, 3, 2)), blob_from(np.ones((5, 3)))], tops)
    with pytest.raises(PclError, match=r"x has 3 values per step .* made for 2"):
        layer.reshape([gaussian_blob((4, 3, 3)), bottoms[1]], tops)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_to_cont_is_an_error(kind):
    bottoms = bottoms_for(kind)
    layer, tops = set_up(kind, bottoms)
    layer.forward(bottoms, tops)
    with pytest.raises(PclError, match=rf'"rec" \({kind}\): cannot backpropagate to the sequence '
                                       r"continuation flags"):
        layer.backward(tops, [True, True], bottoms)


@pytest.mark.parametrize("kind", KINDS)
def test_in_place_is_refused(kind):
    bottoms = bottoms_for(kind, features=(3,))
    with pytest.raises(PclError, match="in place"):
        make_layer(text(kind)).initialize(bottoms, [bottoms[0]])
