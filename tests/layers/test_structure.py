"""Concat, Slice, Split, Flatten, Reshape, Tile."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer


def checker():
    return GradientChecker(stepsize=1e-2, threshold=1e-3)


def run(text, bottoms, num_top=1):
    layer = make_layer(text)
    tops = empty_tops(num_top)
    layer.initialize(bottoms, tops)
    layer.forward(bottoms, tops)
    return layer, tops


# -- Concat -------------------------------------------------------------------------------------
def test_concat_channels_shape_and_values():
    a = blob_from(np.arange(12).reshape(2, 3, 2))
    b = blob_from(100 + np.arange(4).reshape(2, 1, 2))
    _, (top,) = run('type: "Concat"', [a, b])
    assert top.shape == (2, 4, 2)
    np.testing.assert_array_equal(top.data[0], [[0, 1], [2, 3], [4, 5], [100, 101]])
    np.testing.assert_array_equal(top.data[1], [[6, 7], [8, 9], [10, 11], [102, 103]])


def test_concat_num_with_legacy_concat_dim():
    a = blob_from([[1, 2]])
    b = blob_from([[3, 4], [5, 6]])
    _, (top,) = run('type: "Concat" concat_param { concat_dim: 0 }', [a, b])
    np.testing.assert_array_equal(top.data, [[1, 2], [3, 4], [5, 6]])


def test_concat_negative_axis():
    a = blob_from([[1], [2]])
    b = blob_from([[3, 4], [5, 6]])
    _, (top,) = run('type: "Concat" concat_param { axis: -1 }', [a, b])
    np.testing.assert_array_equal(top.data, [[1, 3, 4], [2, 5, 6]])


def test_concat_single_bottom_shares_memory():
    a = gaussian_blob((2, 3))
    _, (top,) = run('type: "Concat"', [a])
    a.data[0, 0] = 42.0
    assert top.data[0, 0] == 42.0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_concat_gradient(axis):
    bottoms = [gaussian_blob((2, 3, 2), seed=1), gaussian_blob((2, 3, 2), seed=2)]
    shape = list(bottoms[1].shape)
    shape[axis] = 1
    bottoms[1] = gaussian_blob(tuple(shape), seed=2)
    layer = make_layer(f'type: "Concat" concat_param {{ axis: {axis} }}')
    checker().check_gradient(layer, bottoms, empty_tops(1))


def test_concat_mismatched_shapes_name_both():
    with pytest.raises(PclError, match=r"bottom 1 has shape \(2, 3, 5\).*\(2, 3, 4\)"):
        run('type: "Concat"', [gaussian_blob((2, 3, 4)), gaussian_blob((2, 3, 5))])


def test_concat_axis_and_concat_dim_together_is_an_error():
    with pytest.raises(PclError, match="both axis and concat_dim"):
        run('type: "Concat" concat_param { axis: 1 concat_dim: 1 }', [gaussian_blob((2, 2))] * 2)


def test_concat_axis_out_of_range():
    with pytest.raises(PclError, match=r'"test" \(Concat\): concat_param.axis 3 is out of range'):
        run('type: "Concat" concat_param { axis: 3 }', [gaussian_blob((2, 2))] * 2)


def test_concat_matches_in_both_modes(any_mode):
    a, b = gaussian_blob((2, 1, 3), seed=1), gaussian_blob((2, 2, 3), seed=2)
    layer, (top,) = run('type: "Concat"', [a, b])
    np.testing.assert_array_equal(top.data, np.concatenate([a.data, b.data], axis=1))
    top.diff[...] = np.arange(18).reshape(top.shape)
    layer.backward([top], [True, True], [a, b])
    np.testing.assert_array_equal(a.diff, np.arange(18).reshape(2, 3, 3)[:, :1])
    np.testing.assert_array_equal(b.diff, np.arange(18).reshape(2, 3, 3)[:, 1:])


# -- Slice --------------------------------------------------------------------------------------
def test_slice_points_shapes_and_values():
    x = blob_from(np.arange(12).reshape(2, 6))
    _, tops = run('type: "Slice" slice_param { axis: 1 slice_point: 1 slice_point: 4 }', [x], 3)
    assert [t.shape for t in tops] == [(2, 1), (2, 3), (2, 2)]
    np.testing.assert_array_equal(tops[0].data, [[0], [6]])
    np.testing.assert_array_equal(tops[1].data, [[1, 2, 3], [7, 8, 9]])
    np.testing.assert_array_equal(tops[2].data, [[4, 5], [10, 11]])


def test_slice_equal_pieces_with_legacy_slice_dim():
    x = blob_from(np.arange(8).reshape(4, 2))
    _, tops = run('type: "Slice" slice_param { slice_dim: 0 }', [x], 2)
    np.testing.assert_array_equal(tops[0].data, [[0, 1], [2, 3]])
    np.testing.assert_array_equal(tops[1].data, [[4, 5], [6, 7]])


@pytest.mark.parametrize("text, num_top", [
    ('slice_param { axis: 1 slice_point: 1 slice_point: 3 }', 3),
    ('slice_param { axis: 0 }', 2),
    ('slice_param { axis: -1 slice_point: 1 }', 2),
])
def test_slice_gradient(text, num_top):
    layer = make_layer(f'type: "Slice" {text}')
    checker().check_gradient(layer, [gaussian_blob((2, 4, 3))], empty_tops(num_top))


@pytest.mark.parametrize("points, num_top, message", [
    ("slice_point: 3 slice_point: 2", 3, "strictly increasing"),
    ("slice_point: 0", 2, "strictly increasing"),
    ("slice_point: 7", 2, "at most the axis size 6"),
    ("slice_point: 2", 3, "one slice_point fewer than tops"),
    ("", 4, "4 equal pieces"),
])
def test_slice_bad_points(points, num_top, message):
    with pytest.raises(PclError, match=message):
        run(f'type: "Slice" slice_param {{ {points} }}', [gaussian_blob((2, 6))], num_top)


def test_slice_matches_in_both_modes(any_mode):
    x = gaussian_blob((3, 4))
    layer, tops = run('type: "Slice" slice_param { slice_point: 3 }', [x], 2)
    np.testing.assert_array_equal(tops[1].data, x.data[:, 3:])
    tops[0].diff[...] = 1.0
    tops[1].diff[...] = 2.0
    layer.backward(tops, [True], [x])
    np.testing.assert_array_equal(x.diff, [[1, 1, 1, 2]] * 3)


# -- Split --------------------------------------------------------------------------------------
def test_split_tops_share_data_and_sum_diffs():
    x = blob_from([[1.0, 2.0]])
    layer, tops = run('type: "Split"', [x], 3)
    assert all(t.shape == (1, 2) for t in tops)
    x.data[0, 1] = 5.0
    assert all(t.data[0, 1] == 5.0 for t in tops)
    for k, t in enumerate(tops):
        t.diff[...] = [[k + 1, 10 * (k + 1)]]
    layer.backward(tops, [True], [x])
    np.testing.assert_array_equal(x.diff, [[6, 60]])


def test_split_gradient():
    checker().check_gradient(make_layer('type: "Split"'), [gaussian_blob((2, 3))], empty_tops(3))


def test_split_in_place_is_refused():
    x = gaussian_blob((2, 2))
    with pytest.raises(PclError, match="in place"):
        make_layer('type: "Split"').initialize([x], [x])


def test_split_matches_in_both_modes(any_mode):
    x = gaussian_blob((2, 2))
    layer, tops = run('type: "Split"', [x], 2)
    np.testing.assert_array_equal(tops[1].data, x.data)
    tops[0].diff[...] = 1.0
    tops[1].diff[...] = 0.5
    layer.backward(tops, [True], [x])
    np.testing.assert_array_equal(x.diff, np.full((2, 2), 1.5))


# -- Flatten ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, shape", [
    ('', (2, 60)),
    ('flatten_param { axis: 2 }', (2, 3, 20)),
    ('flatten_param { axis: 1 end_axis: 2 }', (2, 12, 5)),
    ('flatten_param { axis: 0 end_axis: -2 }', (24, 5)),
])
def test_flatten_shapes(text, shape):
    x = gaussian_blob((2, 3, 4, 5))
    _, (top,) = run(f'type: "Flatten" {text}', [x])
    assert top.shape == shape
    np.testing.assert_array_equal(top.data.reshape(-1), x.data.reshape(-1))


def test_flatten_shares_data_and_diff():
    x = gaussian_blob((2, 3, 2))
    layer, (top,) = run('type: "Flatten"', [x])
    x.data[1, 2, 1] = 9.0
    assert top.data[1, 5] == 9.0
    top.diff[...] = np.arange(12).reshape(2, 6)
    layer.backward([top], [True], [x])
    np.testing.assert_array_equal(x.diff, np.arange(12).reshape(2, 3, 2))


def test_flatten_gradient():
    checker().check_gradient(make_layer('type: "Flatten"'), [gaussian_blob((2, 2, 3))], empty_tops(1))


def test_flatten_end_before_start_is_an_error():
    with pytest.raises(PclError, match="end_axis"):
        run('type: "Flatten" flatten_param { axis: 2 end_axis: 1 }', [gaussian_blob((2, 3, 4))])


# -- Reshape ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, shape", [
    ('shape { dim: 0 dim: -1 dim: 3 }', (2, 8, 3)),
    ('shape { dim: 6 dim: 8 }', (6, 8)),
    ('shape { dim: -1 }', (48,)),
    ('shape { dim: 2 dim: -1 } axis: 2 num_axes: 2', (2, 3, 2, 4)),
    ('shape { dim: 1 } axis: 1 num_axes: 0', (2, 1, 3, 2, 4)),
    ('shape { dim: 1 dim: 1 } axis: -1', (2, 3, 2, 4, 1, 1)),
    ('shape { dim: 0 dim: 0 dim: -1 } axis: 1', (2, 3, 2, 4)),
    ('shape { } axis: 3 num_axes: 0', (2, 3, 2, 4)),
])
def test_reshape_shapes(text, shape):
    x = gaussian_blob((2, 3, 2, 4))
    _, (top,) = run(f'type: "Reshape" reshape_param {{ {text} }}', [x])
    assert top.shape == shape
    np.testing.assert_array_equal(top.data.reshape(-1), x.data.reshape(-1))


def test_reshape_shares_data_and_diff_without_copy():
    x = gaussian_blob((2, 6))
    layer, (top,) = run('type: "Reshape" reshape_param { shape { dim: 3 dim: 4 } }', [x])
    assert top.data_mem is x.data_mem and top.diff_mem is x.diff_mem
    top.diff[...] = np.arange(12).reshape(3, 4)
    layer.backward([top], [True], [x])
    np.testing.assert_array_equal(x.diff, np.arange(12).reshape(2, 6))


def test_reshape_follows_a_new_bottom_shape():
    x = gaussian_blob((2, 6))
    layer, (top,) = run('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 2 } }', [x])
    x.reshape(5, 6)
    layer.reshape([x], [top])
    assert top.shape == (5, 3, 2)
    assert top.data_mem is x.data_mem


def test_reshape_gradient():
    layer = make_layer('type: "Reshape" reshape_param { shape { dim: -1 dim: 2 } }')
    checker().check_gradient(layer, [gaussian_blob((2, 3, 2))], empty_tops(1))


@pytest.mark.parametrize("text, message", [
    ('shape { dim: 5 dim: 5 }', r"holds 25 elements but the bottom \(2, 3, 4\) holds 24"),
    ('shape { dim: 5 dim: -1 }', "not divisible"),
    ('shape { dim: -1 dim: -1 }', "more than one -1"),
    ('shape { dim: -2 dim: 12 }', "below -1"),
    ('shape { dim: 0 dim: 0 dim: 0 dim: 0 }', "no axis 3 to copy"),
    ('shape { dim: 24 } axis: 4', "axis 4 is out of range"),
    ('shape { dim: 24 } axis: 1 num_axes: 3', "beyond the 3 axes"),
    ('shape { dim: 24 } num_axes: -2', "num_axes is -2"),
])
def test_reshape_bad_parameters(text, message):
    with pytest.raises(PclError, match=message):
        run(f'type: "Reshape" reshape_param {{ {text} }}', [gaussian_blob((2, 3, 4))])


def test_reshape_matches_in_both_modes(any_mode):
    x = gaussian_blob((4, 3))
    _, (top,) = run('type: "Reshape" reshape_param { shape { dim: 2 dim: -1 } }', [x])
    np.testing.assert_array_equal(top.data, x.data.reshape(2, 6))


# -- Tile ---------------------------------------------------------------------------------------
def test_tile_axis_1_values():
    x = blob_from([[[1, 2]], [[3, 4]]])  # (2, 1, 2)
    _, (top,) = run('type: "Tile" tile_param { tiles: 3 }', [x])
    assert top.shape == (2, 3, 2)
    np.testing.assert_array_equal(top.data, [[[1, 2]] * 3, [[3, 4]] * 3])


def test_tile_repeats_the_whole_block_from_the_axis():
    x = blob_from([[1, 2], [3, 4]])
    _, (top,) = run('type: "Tile" tile_param { axis: 0 tiles: 2 }', [x])
    np.testing.assert_array_equal(top.data, [[1, 2], [3, 4], [1, 2], [3, 4]])


def test_tile_backward_sums_the_copies():
    x = blob_from([[1, 2]])
    layer, (top,) = run('type: "Tile" tile_param { axis: -1 tiles: 3 }', [x])
    np.testing.assert_array_equal(top.data, [[1, 2, 1, 2, 1, 2]])
    top.diff[...] = [[1, 10, 100, 1000, 10000, 100000]]
    layer.backward([top], [True], [x])
    np.testing.assert_array_equal(x.diff, [[10101, 101010]])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_tile_gradient(axis):
    layer = make_layer(f'type: "Tile" tile_param {{ axis: {axis} tiles: 2 }}')
    checker().check_gradient(layer, [gaussian_blob((2, 2, 3))], empty_tops(1))


@pytest.mark.parametrize("text", ['tile_param { axis: 1 }', 'tile_param { tiles: 0 }'])
def test_tile_needs_positive_tiles(text):
    with pytest.raises(PclError, match="tiles must be set to a positive count"):
        run(f'type: "Tile" {text}', [gaussian_blob((2, 2))])


def test_tile_matches_in_both_modes(any_mode):
    x = gaussian_blob((2, 3))
    layer, (top,) = run('type: "Tile" tile_param { tiles: 2 }', [x])
    np.testing.assert_array_equal(top.data, np.tile(x.data, (1, 2)))
    top.diff[...] = 1.0
    layer.backward([top], [True], [x])
    np.testing.assert_array_equal(x.diff, np.full((2, 3), 2.0))
