"""Embed: lookup of weight rows by integer index, param gradients, index errors."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, make_layer

INDICES = [[0.0, 4.0], [2.0, 2.0]]
WEIGHT = np.arange(20.0).reshape(5, 4)
BIAS = [0.1, 0.2, 0.3, 0.4]


def embed(params="num_output: 4 input_dim: 5", dtype=np.float64):
    return make_layer(f'type: "Embed" embed_param {{ {params} }}', dtype=dtype)


def set_up(indices=INDICES, params="num_output: 4 input_dim: 5", dtype=np.float64):
    layer = embed(params, dtype)
    bottom = blob_from(indices, dtype)
    tops = empty_tops(1, dtype)
    layer.initialize([bottom], tops)
    return layer, bottom, tops


def test_shapes():
    layer, _, tops = set_up()
    assert tops[0].shape == (2, 2, 4)
    assert [b.shape for b in layer.blobs] == [(5, 4), (4,)]
    layer, _, _ = set_up(params="num_output: 4 input_dim: 5 bias_term: false")
    assert [b.shape for b in layer.blobs] == [(5, 4)]


def test_forward_hand_computed():
    layer, bottom, tops = set_up()
    layer.blobs[0].data[...] = WEIGHT
    layer.blobs[1].data[...] = BIAS
    layer.forward([bottom], tops)
    np.testing.assert_allclose(tops[0].data, [
        [[0.1, 1.2, 2.3, 3.4], [16.1, 17.2, 18.3, 19.4]],
        [[8.1, 9.2, 10.3, 11.4], [8.1, 9.2, 10.3, 11.4]]])


def test_backward_adds_up_repeated_indices_and_accumulates():
    layer, bottom, tops = set_up()
    layer.forward([bottom], tops)
    tops[0].diff[...] = np.arange(16.0).reshape(2, 2, 4)
    for _ in range(2):
        layer.backward(tops, [False], [bottom])
    expected = np.zeros((5, 4))
    expected[0] = [0, 1, 2, 3]
    expected[4] = [4, 5, 6, 7]
    expected[2] = [8 + 12, 9 + 13, 10 + 14, 11 + 15]
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * expected)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * np.array([24.0, 28.0, 32.0, 36.0]))


@pytest.mark.parametrize("bias", ["true", "false"])
def test_param_gradient(bias):
    layer = embed(f'num_output: 3 input_dim: 4 bias_term: {bias} '
                  'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" }')
    indices = blob_from([[3.0, 0.0, 3.0], [1.0, 3.0, 2.0]])
    # check_bottom -2: the param blobs only (an index has no gradient)
    GradientChecker(1e-2, 1e-3).check_gradient(layer, [indices], empty_tops(1), check_bottom=-2)


def test_no_gradient_for_the_indices():
    layer, bottom, tops = set_up()
    assert layer.allow_force_backward(0) is False
    layer.forward([bottom], tops)
    with pytest.raises(PclError, match="indices"):
        layer.backward(tops, [True], [bottom])


@pytest.mark.parametrize("bad, message", [(5.0, "index 5 is out of range"),
                                          (-1.0, "index -1 is out of range"),
                                          (1.5, "integer indices, found 1.5"),
                                          (np.nan, "integer indices, found nan")])
def test_bad_index_is_an_error(bad, message):
    layer, bottom, tops = set_up([[0.0, bad]])
    with pytest.raises(PclError, match=message):
        layer.forward([bottom], tops)


@pytest.mark.parametrize("params, missing", [("input_dim: 5", "num_output"),
                                             ("num_output: 4", "input_dim")])
def test_missing_sizes_are_errors(params, missing):
    with pytest.raises(PclError, match=missing):
        set_up(params=params)


def test_cpu_and_gpu_give_the_same_result(any_mode):
    layer, bottom, tops = set_up(dtype=np.float32)
    layer.blobs[0].data[...] = WEIGHT
    layer.blobs[1].data[...] = BIAS
    layer.forward([bottom], tops)
    tops[0].diff[...] = 1.0
    layer.backward(tops, [False], [bottom])
    assert tops[0].data.dtype == np.float32
    np.testing.assert_allclose(tops[0].data[1, 1], [8.1, 9.2, 10.3, 11.4], rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[0].diff[:, 0], [1, 0, 2, 0, 1])
    np.testing.assert_allclose(layer.blobs[1].diff, [4, 4, 4, 4])
