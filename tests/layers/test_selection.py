"""Filter, BatchReindex, ArgMax."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer


def setup_layer(text, bottoms, num_top=1):
    layer = make_layer(text)
    tops = empty_tops(num_top)
    layer.initialize(bottoms, tops)
    return layer, tops


# -- Filter -------------------------------------------------------------------------------------
def test_filter_first_reshape_keeps_all_rows_then_forward_selects():
    x = blob_from(np.arange(8).reshape(4, 2))
    y = blob_from(10 + np.arange(4))
    sel = blob_from([[1], [0], [0], [2]])
    layer, tops = setup_layer('type: "Filter"', [x, y, sel], 2)
    assert [t.shape for t in tops] == [(4, 2), (4,)]
    layer.forward([x, y, sel], tops)
    np.testing.assert_array_equal(tops[0].data, [[0, 1], [6, 7]])
    np.testing.assert_array_equal(tops[1].data, [10, 13])


def test_filter_backward_zeroes_dropped_rows():
    x = blob_from(np.arange(8).reshape(4, 2))
    sel = blob_from([0, 1, 0, 1])
    layer, (top,) = setup_layer('type: "Filter"', [x, sel])
    layer.forward([x, sel], [top])
    top.diff[...] = [[1, 2], [3, 4]]
    x.diff[...] = 99
    layer.backward([top], [True, False], [x, sel])
    np.testing.assert_array_equal(x.diff, [[0, 0], [1, 2], [0, 0], [3, 4]])


def test_filter_selection_follows_the_selector_each_forward():
    x = blob_from(np.arange(3))
    sel = blob_from([1, 1, 1])
    layer, (top,) = setup_layer('type: "Filter"', [x, sel])
    layer.forward([x, sel], [top])
    assert top.shape == (3,)
    sel.data[...] = [0, 0, 1]
    layer.forward([x, sel], [top])
    np.testing.assert_array_equal(top.data, [2])


def test_filter_nothing_selected_gives_empty_tops_and_zero_diffs():
    x = gaussian_blob((3, 2))
    sel = blob_from([0, 0, 0])
    layer, (top,) = setup_layer('type: "Filter"', [x, sel])
    layer.forward([x, sel], [top])
    assert top.shape == (0, 2)
    x.diff[...] = 5
    layer.backward([top], [True, False], [x, sel])
    np.testing.assert_array_equal(x.diff, np.zeros((3, 2)))


def test_filter_gradient():
    x = gaussian_blob((4, 2, 3))
    sel = blob_from([1, 0, 1, 1])
    layer = make_layer('type: "Filter"')
    GradientChecker(1e-2, 1e-3).check_gradient(layer, [x, sel], empty_tops(1), check_bottom=0)


def test_filter_refuses_gradient_to_selector():
    x, sel = gaussian_blob((2, 2)), blob_from([1, 0])
    layer, (top,) = setup_layer('type: "Filter"', [x, sel])
    layer.forward([x, sel], [top])
    with pytest.raises(PclError, match="selector"):
        layer.backward([top], [True, True], [x, sel])
    assert not make_layer('type: "Filter" bottom: "x" bottom: "s" top: "y"').allow_force_backward(1)


@pytest.mark.parametrize("shapes, num_top, message", [
    ([(3, 2), (3,)], 2, "one top per bottom"),
    ([(3, 2), (4,)], 1, r"bottom 0 has shape \(3, 2\) but the selector has 4 items"),
    ([(3, 2), (3, 2)], 1, r"selector \(last bottom\) has shape \(3, 2\)"),
])
def test_filter_bad_shapes(shapes, num_top, message):
    with pytest.raises(PclError, match=message):
        setup_layer('type: "Filter"', [gaussian_blob(s) for s in shapes], num_top)


def test_filter_same_result_in_both_modes(any_mode):
    x = blob_from(np.arange(6).reshape(3, 2))
    sel = blob_from([[[1]], [[0]], [[1]]])
    layer, (top,) = setup_layer('type: "Filter"', [x, sel])
    layer.forward([x, sel], [top])
    np.testing.assert_array_equal(top.data, [[0, 1], [4, 5]])
    top.diff[...] = 1
    layer.backward([top], [True, False], [x, sel])
    np.testing.assert_array_equal(x.diff, [[1, 1], [0, 0], [1, 1]])


# -- BatchReindex -------------------------------------------------------------------------------
def test_batch_reindex_forward_and_accumulating_backward():
    x = blob_from([[1, 2], [3, 4], [5, 6]])
    idx = blob_from([2, 0, 2, 2.7])
    layer, (top,) = setup_layer('type: "BatchReindex"', [x, idx])
    assert top.shape == (4, 2)
    layer.forward([x, idx], [top])
    np.testing.assert_array_equal(top.data, [[5, 6], [1, 2], [5, 6], [5, 6]])
    top.diff[...] = [[1, 10], [2, 20], [3, 30], [4, 40]]
    layer.backward([top], [True, False], [x, idx])
    np.testing.assert_array_equal(x.diff, [[2, 20], [0, 0], [8, 80]])


def test_batch_reindex_gradient():
    x = gaussian_blob((3, 2, 2))
    idx = blob_from([1, 1, 0, 2, 1])
    layer = make_layer('type: "BatchReindex"')
    GradientChecker(1e-2, 1e-3).check_gradient(layer, [x, idx], empty_tops(1), check_bottom=0)


@pytest.mark.parametrize("value", [-1, 3, 3.5, np.nan])
def test_batch_reindex_index_out_of_range(value):
    x, idx = gaussian_blob((3, 2)), blob_from([0, value])
    layer, (top,) = setup_layer('type: "BatchReindex"', [x, idx])
    with pytest.raises(PclError, match="outside the batch of 3 items"):
        layer.forward([x, idx], [top])


def test_batch_reindex_index_must_be_1d():
    with pytest.raises(PclError, match="must be 1-D"):
        setup_layer('type: "BatchReindex"', [gaussian_blob((3, 2)), blob_from([[0, 1]])])


def test_batch_reindex_refuses_gradient_to_indices():
    x, idx = gaussian_blob((3, 2)), blob_from([0, 1])
    layer, (top,) = setup_layer('type: "BatchReindex"', [x, idx])
    layer.forward([x, idx], [top])
    with pytest.raises(PclError, match="index bottom"):
        layer.backward([top], [True, True], [x, idx])
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)


def test_batch_reindex_same_result_in_both_modes(any_mode):
    x, idx = blob_from([[1.0], [2.0]]), blob_from([1, 1, 0])
    layer, (top,) = setup_layer('type: "BatchReindex"', [x, idx])
    layer.forward([x, idx], [top])
    np.testing.assert_array_equal(top.data, [[2], [2], [1]])
    top.diff[...] = [[1], [2], [4]]
    layer.backward([top], [True, False], [x, idx])
    np.testing.assert_array_equal(x.diff, [[4], [3]])


# -- ArgMax -------------------------------------------------------------------------------------
X = [[[0.5, 3.0], [-1.0, 2.0], [3.0, 0.0]],
     [[1.0, 1.0], [1.0, 0.0], [-2.0, 1.0]]]   # (2, 3, 2); item 1 has four-way ties at 1.0


def forward(text, data):
    x = blob_from(data)
    layer, (top,) = setup_layer(f'type: "ArgMax" argmax_param {{ {text} }}', [x])
    layer.forward([x], [top])
    return top


def test_argmax_flat_top1_shape_and_ties_take_the_last_index():
    top = forward("", X)
    assert top.shape == (2, 1, 1)
    np.testing.assert_array_equal(top.data.reshape(-1), [4, 5])


def test_argmax_flat_top_k_with_values():
    top = forward("top_k: 3 out_max_val: true", X)
    assert top.shape == (2, 2, 3)
    np.testing.assert_array_equal(top.data[0], [[4, 1, 3], [3.0, 3.0, 2.0]])
    np.testing.assert_array_equal(top.data[1], [[5, 2, 1], [1.0, 1.0, 1.0]])


def test_argmax_keeps_trailing_axes_of_4d_bottoms():
    top = forward("top_k: 2", np.arange(24.0).reshape(2, 3, 2, 2))
    assert top.shape == (2, 1, 2, 1)
    np.testing.assert_array_equal(top.data.reshape(2, 2), [[11, 10], [11, 10]])


def test_argmax_along_axis_indices_and_values():
    top = forward("axis: 1 top_k: 2", X)
    assert top.shape == (2, 2, 2)
    np.testing.assert_array_equal(top.data, [[[2, 0], [0, 1]], [[1, 2], [0, 0]]])
    top = forward("axis: -1 out_max_val: true", X)
    assert top.shape == (2, 3, 1)
    np.testing.assert_array_equal(top.data.reshape(2, 3), [[3, 2, 3], [1, 1, 1]])


@pytest.mark.parametrize("text, message", [
    ("top_k: 7", "top_k 7 exceeds the 6 entries"),
    ("axis: 1 top_k: 4", "top_k 4 exceeds the size 3 of axis 1"),
    ("axis: 3", "argmax_param.axis 3 is out of range"),
    ("top_k: 0", "at least 1"),
])
def test_argmax_bad_parameters(text, message):
    with pytest.raises(PclError, match=message):
        forward(text, X)


def test_argmax_has_no_backward():
    x = blob_from(X)
    layer, (top,) = setup_layer('type: "ArgMax"', [x])
    with pytest.raises(PclError, match="no backward"):
        layer.backward([top], [True], [x])


def test_argmax_float32_top_and_both_modes(any_mode):
    x = blob_from(X, dtype=np.float32)
    layer = make_layer('type: "ArgMax" argmax_param { top_k: 2 out_max_val: true }', dtype=np.float32)
    tops = empty_tops(1, dtype=np.float32)
    layer.initialize([x], tops)
    layer.forward([x], tops)
    assert tops[0].data.dtype == np.float32
    np.testing.assert_array_equal(tops[0].data[0], [[4, 1], [3, 3]])
