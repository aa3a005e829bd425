"""Pooling: MAX (with mask top), AVE, STOCHASTIC, global pooling, Caffe's window-size rules."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from pycaffelite.layers.pooling import Pooler
from pycaffelite.proto import caffe_pb2
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer

FLT_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(autouse=True, params=[True, False], ids=["compiled", "array-module"])
def pooling_path(request, monkeypatch):
    """Every test runs on both CPU paths: the compiled loops and the array-module passes (the
    device path)."""
    monkeypatch.setattr(Pooler, "compiled", request.param)
    return request.param


def checker():
    return GradientChecker(stepsize=1e-2, threshold=1e-3)


def pooling(params, phase=caffe_pb2.TRAIN, dtype=np.float64):
    return make_layer(f'type: "Pooling" pooling_param {{ {params} }}', dtype=dtype, phase=phase)


def run(params, array, num_top=1, phase=caffe_pb2.TRAIN, dtype=np.float64):
    layer = pooling(params, phase=phase, dtype=dtype)
    bottom = blob_from(array, dtype=dtype)
    tops = empty_tops(num_top, dtype=dtype)
    layer.initialize([bottom], tops)
    layer.forward([bottom], tops)
    return layer, bottom, tops


def separated_blob(shape, seed=0):
    """Distinct values at least 0.1 apart, so a +-1e-2 step never changes a window's argmax."""
    values = np.random.default_rng(seed).permutation(int(np.prod(shape))) * 0.1 - 1.0
    return blob_from(values.reshape(shape))


# Caffe's 3x5 test image and its 2x2 stride-1 max pooling, worked out by hand.
SQUARE = np.array([[1, 2, 5, 2, 3],
                   [9, 4, 1, 4, 8],
                   [1, 2, 5, 2, 3]], dtype=float)


# -- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, in_hw, out_hw", [
    ("kernel_size: 3 stride: 2", (6, 5), (3, 2)),
    ("pool: AVE kernel_size: 3 stride: 2 pad: 1", (6, 5), (4, 3)),
    # ceil((9 + 2 - 2) / 2) + 1 = 6 rows, but the 6th window would start in the padding.
    ("kernel_size: 2 stride: 2 pad: 1", (9, 10), (5, 6)),
    ("kernel_size: 3 stride: 2", (9, 10), (4, 5)),
    ("kernel_size: 3 stride: 2 round_mode: FLOOR", (9, 10), (4, 4)),
    ("pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 2 pad_h: 1 pad_w: 1", (9, 10), (5, 6)),
    ("kernel_size: 3 stride: 4", (5, 9), (2, 3)),
    ("pool: AVE global_pooling: true", (5, 9), (1, 1)),
])
def test_output_shape(params, in_hw, out_hw):
    _, _, tops = run(params, np.zeros((2, 3) + in_hw), num_top=1)
    assert tops[0].shape == (2, 3) + out_hw


def test_mask_top_has_the_output_shape():
    _, _, (top, mask) = run("kernel_size: 3 stride: 2", np.zeros((2, 3, 6, 5)), num_top=2)
    assert top.shape == mask.shape == (2, 3, 3, 2)


def test_reshape_follows_a_new_input_size():
    layer, bottom, tops = run("pool: AVE kernel_size: 2 stride: 2", np.ones((1, 1, 4, 4)))
    bottom.reshape(1, 1, 6, 2)
    bottom.data[...] = 3.0
    layer.reshape([bottom], tops)
    layer.forward([bottom], tops)
    assert tops[0].shape == (1, 1, 3, 1)
    np.testing.assert_array_equal(tops[0].data, 3.0)


# -- MAX ---------------------------------------------------------------------------------------
def test_max_forward_and_mask():
    x = np.stack([SQUARE, -SQUARE])[None]          # (1, 2, 3, 5)
    _, _, (top, mask) = run("kernel_size: 2 stride: 1", x, num_top=2)
    np.testing.assert_array_equal(top.data[0, 0], [[9, 5, 5, 8], [9, 5, 5, 8]])
    np.testing.assert_array_equal(mask.data[0, 0], [[5, 2, 2, 9], [5, 12, 12, 9]])
    np.testing.assert_array_equal(top.data[0, 1], [[-1, -1, -1, -2], [-1, -1, -1, -2]])
    np.testing.assert_array_equal(mask.data[0, 1], [[0, 7, 7, 3], [10, 7, 7, 13]])


def test_max_ties_go_to_the_first_element_in_scan_order():
    x = np.full((1, 1, 3, 3), 7.0)
    layer, bottom, (top, mask) = run("kernel_size: 2 stride: 1", x, num_top=2)
    np.testing.assert_array_equal(mask.data[0, 0], [[0, 1], [3, 4]])
    top.diff[...] = [[[[1, 2], [3, 4]]]]
    layer.backward([top, mask], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff[0, 0], [[1, 2, 0], [3, 4, 0], [0, 0, 0]])


def test_max_padded_ignores_the_padding():
    x = np.array([[1, 2, 4], [2, 3, 2], [4, 2, 1]], dtype=float)[None, None]
    _, _, (top, mask) = run("kernel_size: 3 stride: 2 pad: 2", x, num_top=2)
    np.testing.assert_array_equal(top.data[0, 0], [[1, 4, 4], [4, 4, 4], [4, 4, 1]])
    np.testing.assert_array_equal(mask.data[0, 0], [[0, 2, 2], [6, 2, 2], [6, 6, 8]])


def test_max_of_negative_values_with_padding():
    x = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2)        # [[-1, -2], [-3, -4]]
    _, _, (top, mask) = run("kernel_size: 2 stride: 1 pad: 1", x, num_top=2)
    np.testing.assert_array_equal(top.data[0, 0], [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]])
    np.testing.assert_array_equal(mask.data[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])


def test_max_backward_routes_to_the_argmax_and_adds_overlaps():
    x = SQUARE[None, None]
    layer, bottom, (top,) = run("kernel_size: 2 stride: 1", x)
    top.diff[...] = [[[[1, 2, 3, 4], [5, 6, 7, 8]]]]
    layer.backward([top], [True], [bottom])
    expected = np.zeros((3, 5))
    expected[1, 0] = 1 + 5
    expected[0, 2] = 2 + 3
    expected[1, 4] = 4 + 8
    expected[2, 2] = 6 + 7
    np.testing.assert_array_equal(bottom.diff[0, 0], expected)


def test_max_overlapping_windows_sum_in_caffes_order():
    """The centre of a 5x5 image is the maximum of all four 3x3 stride-2 windows. Caffe adds
    their diffs to it window by window: ((1e8 + 1) - 1e8) + 1 = 1 in float32 (1e8 + 1 rounds to
    1e8); any other grouping, e.g. (1e8 - 1e8) + (1 + 1), gives 2."""
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 9.0
    layer, bottom, (top,) = run("kernel_size: 3 stride: 2", x, dtype=np.float32)
    top.diff[...] = np.array([[1e8, 1.0], [-1e8, 1.0]], dtype=np.float32)
    layer.backward([top], [True], [bottom])
    expected = np.zeros((5, 5), dtype=np.float32)
    expected[2, 2] = 1.0
    np.testing.assert_array_equal(bottom.diff[0, 0], expected)


def test_max_window_without_a_value_above_minus_flt_max():
    """Caffe starts each window at -FLT_MAX and keeps the first strictly greater element: NaN
    and -inf never win, nor does -FLT_MAX itself. A window with no winner gives -FLT_MAX, mask -1
    and no gradient; a NaN beside numbers is skipped."""
    nan, inf = np.nan, np.inf
    x = np.array([[nan, nan, -inf, 2.0],
                  [nan, nan, -FLT_MAX, nan]])[None, None]
    layer, bottom, (top, mask) = run("kernel_size: 2 stride: 2", x, num_top=2)
    np.testing.assert_array_equal(top.data[0, 0], [[-FLT_MAX, 2.0]])
    np.testing.assert_array_equal(mask.data[0, 0], [[-1, 3]])
    top.diff[...] = [[[[5.0, 7.0]]]]
    layer.backward([top, mask], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff[0, 0], [[0, 0, 0, 7], [0, 0, 0, 0]])


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_kernel_smaller_than_stride_skips_cells(method):
    """Kernel 1, stride 2 on 3x5: windows at rows 0, 2 and columns 0, 2, 4; the other cells
    belong to no window and get no gradient."""
    x = np.arange(15.0).reshape(1, 1, 3, 5)
    layer, bottom, (top,) = run(f"pool: {method} kernel_size: 1 stride: 2", x)
    np.testing.assert_array_equal(top.data[0, 0], [[0, 2, 4], [10, 12, 14]])
    top.diff[...] = [[[[1, 2, 3], [4, 5, 6]]]]
    bottom.diff[...] = 9.0
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff[0, 0], [[1, 0, 2, 0, 3], [0, 0, 0, 0, 0],
                                                      [4, 0, 5, 0, 6]])


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_floor_mode_leaves_the_last_cells_out(method):
    """5x5, kernel 2, stride 2, FLOOR: windows cover rows and columns 0..3 only."""
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    layer, bottom, (top,) = run(f"pool: {method} kernel_size: 2 stride: 2 round_mode: FLOOR", x)
    if method == "MAX":
        np.testing.assert_array_equal(top.data[0, 0], [[6, 8], [16, 18]])
    else:
        np.testing.assert_array_equal(top.data[0, 0], [[3, 5], [13, 15]])
    top.diff[...] = 4.0
    bottom.diff[...] = 9.0
    layer.backward([top], [True], [bottom])
    cell = 4.0 if method == "MAX" else 1.0
    expected = np.zeros((5, 5))
    if method == "MAX":
        expected[1::2, 1::2][:2, :2] = cell
    else:
        expected[:4, :4] = cell
    np.testing.assert_array_equal(bottom.diff[0, 0], expected)


def test_max_kernel_wider_than_a_byte_of_offsets():
    """A 1x300 global window: the winning column (270) does not fit in one byte."""
    x = np.zeros((1, 2, 1, 300))
    x[0, 0, 0, 270] = 5.0
    x[0, 1, 0, 3] = 1.0
    layer, bottom, (top, mask) = run("global_pooling: true", x, num_top=2)
    np.testing.assert_array_equal(mask.data.ravel(), [270, 3])
    top.diff[...] = 2.0
    layer.backward([top, mask], [True], [bottom])
    assert bottom.diff[0, 0, 0, 270] == 2.0 and bottom.diff[0, 1, 0, 3] == 2.0
    assert bottom.diff.sum() == 4.0


def test_ceil_mode_window_past_the_edge_matches_caffe():
    """W = 9, kernel 2, stride 3, pad 0: ceil(7/3) + 1 = 4 columns, the last one starts at
    column 9, outside the image: Caffe gives -FLT_MAX with mask -1 (MAX) and 0/0 = NaN (AVE)."""
    x = np.arange(18.0).reshape(1, 1, 2, 9)
    params = "kernel_size: 2 stride_h: 2 stride_w: 3"
    _, _, (top, mask) = run(params, x, num_top=2)
    np.testing.assert_array_equal(top.data[0, 0], [[10, 13, 16, -FLT_MAX]])
    np.testing.assert_array_equal(mask.data[0, 0], [[10, 13, 16, -1]])
    layer, bottom, (ave,) = run("pool: AVE " + params, x)
    np.testing.assert_array_equal(ave.data[0, 0, 0, :3], [5, 8, 11])
    assert np.isnan(ave.data[0, 0, 0, 3])
    ave.diff[...] = 1.0
    layer.backward([ave], [True], [bottom])
    assert np.all(np.isfinite(bottom.diff))


# -- AVE ---------------------------------------------------------------------------------------
def test_ave_padded_constant_input():
    _, _, (top,) = run("pool: AVE kernel_size: 3 stride: 1 pad: 1", np.full((1, 1, 3, 3), 2.0))
    np.testing.assert_allclose(top.data[0, 0], [[8 / 9, 4 / 3, 8 / 9], [4 / 3, 2, 4 / 3],
                                                [8 / 9, 4 / 3, 8 / 9]])


def test_ave_divides_by_the_window_clipped_to_the_padded_image():
    """4x4 input, kernel 3, stride 2, pad 1: windows start at -1, 1, 3; the last one reaches
    row 5 but the padded image ends at row 4, so it counts 2 rows (one image row, one pad)."""
    params = "pool: AVE kernel_size: 3 stride: 2 pad: 1"
    _, _, (top,) = run(params, np.ones((1, 1, 4, 4)))
    np.testing.assert_allclose(top.data[0, 0], [[4 / 9, 6 / 9, 2 / 6], [6 / 9, 1, 3 / 6],
                                                [2 / 6, 3 / 6, 1 / 4]])
    _, _, (top,) = run(params, np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_allclose(top.data[0, 0], [[10 / 9, 24 / 9, 10 / 6], [51 / 9, 10, 33 / 6],
                                                [25 / 6, 7, 15 / 4]])


def test_ave_ceil_overhang_without_pad_divides_by_the_clipped_window():
    x = np.arange(36.0).reshape(1, 1, 6, 6)
    _, _, (top,) = run("pool: AVE kernel_size: 3 stride: 2", x)
    assert top.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(top.data[0, 0, 2, 2], (28 + 29 + 34 + 35) / 4)
    np.testing.assert_allclose(top.data[0, 0, 0, 2], (4 + 5 + 10 + 11 + 16 + 17) / 6)
    np.testing.assert_allclose(top.data[0, 0, 1, 1], 21.0)
    _, _, (floor,) = run("pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR", x)
    np.testing.assert_allclose(floor.data[0, 0], [[7, 9], [19, 21]])


def test_ave_backward_spreads_by_the_divisor():
    layer, bottom, (top,) = run("pool: AVE kernel_size: 2 stride: 1 pad: 1", np.zeros((1, 1, 2, 2)))
    assert top.shape == (1, 1, 3, 3)
    top.diff[...] = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    layer.backward([top], [True], [bottom])
    # Every window is 2x2 inside the padded image; cell (0, 0) is in windows (0,0),(0,1),(1,0),(1,1).
    np.testing.assert_allclose(bottom.diff[0, 0], [[(1 + 2 + 4 + 5) / 4, (2 + 3 + 5 + 6) / 4],
                                                   [(4 + 5 + 7 + 8) / 4, (5 + 6 + 8 + 9) / 4]])


# -- global pooling ----------------------------------------------------------------------------
def test_global_pooling_max_and_ave():
    x = np.array([[[[1, 5, 2], [4, 5, 0]]], [[[-1, -3, -2], [-6, -5, -4]]]], dtype=float)
    _, _, (top, mask) = run("global_pooling: true", x, num_top=2)
    np.testing.assert_array_equal(top.data.ravel(), [5, -1])
    np.testing.assert_array_equal(mask.data.ravel(), [1, 0])
    _, _, (ave,) = run("pool: AVE global_pooling: true", x)
    np.testing.assert_allclose(ave.data.ravel(), [17 / 6, -21 / 6])


# -- STOCHASTIC --------------------------------------------------------------------------------
def test_stochastic_test_phase_is_the_weighted_average():
    x = np.array([[1, 2, 0], [3, 4, 0], [0, 0, 0]], dtype=float)[None, None]
    _, _, (top,) = run("pool: STOCHASTIC kernel_size: 2 stride: 2", x, phase=caffe_pb2.TEST)
    # windows: [1 2; 3 4], [0; 0] (clipped), [0 0], [0]
    np.testing.assert_allclose(top.data[0, 0], [[(1 + 4 + 9 + 16) / 10, 0], [0, 0]])


def test_stochastic_train_samples_in_proportion_to_the_values():
    """Windows [1, 3]: the 3 should come out about 3/4 of the time."""
    x = np.tile(np.array([1.0, 3.0]), (1, 1, 4000, 1))
    layer, bottom, (top,) = run("pool: STOCHASTIC kernel_h: 1 kernel_w: 2 stride: 1", x)
    values = top.data.ravel()
    assert set(np.unique(values)) <= {1.0, 3.0}
    assert abs(np.mean(values == 3.0) - 0.75) < 0.03
    top.diff[...] = 1.0
    layer.backward([top], [True], [bottom])
    picked_three = bottom.diff[0, 0, :, 1] == 1
    np.testing.assert_array_equal(picked_three, values == 3.0)
    np.testing.assert_array_equal(bottom.diff.sum(axis=-1), 1.0)


def test_stochastic_train_all_zero_window_picks_the_first_element():
    layer, bottom, (top,) = run("pool: STOCHASTIC kernel_size: 2 stride: 2", np.zeros((1, 1, 2, 2)))
    top.diff[...] = 5.0
    layer.backward([top], [True], [bottom])
    np.testing.assert_array_equal(bottom.diff[0, 0], [[5, 0], [0, 0]])


# -- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [(3, 3), (3, 4)])
def test_gradient_max_padded(kernel):
    layer = pooling(f"kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride: 2 pad: 1")
    checker().check_gradient_exhaustive(layer, [separated_blob((1, 2, 6, 5))], empty_tops(1))


def test_gradient_max_with_mask_top():
    layer = pooling("kernel_h: 3 kernel_w: 2 stride: 2")
    checker().check_gradient_exhaustive(layer, [separated_blob((2, 2, 6, 5), seed=1)], empty_tops(2))


@pytest.mark.parametrize("kernel", [(3, 3), (3, 4)])
def test_gradient_ave_padded(kernel):
    layer = pooling(f"pool: AVE kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride: 2 pad: 2")
    checker().check_gradient_exhaustive(layer, [gaussian_blob((1, 2, 6, 5))], empty_tops(1))


def test_gradient_ave_floor_rectangular():
    layer = pooling("pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 round_mode: FLOOR")
    checker().check_gradient_exhaustive(layer, [gaussian_blob((2, 2, 4, 6))], empty_tops(1))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_gradient_global(method):
    layer = pooling(f"pool: {method} global_pooling: true")
    checker().check_gradient_exhaustive(layer, [separated_blob((2, 3, 3, 4))], empty_tops(1))


def test_gradient_stochastic_test_phase():
    layer = pooling("pool: STOCHASTIC kernel_size: 3 stride: 2", phase=caffe_pb2.TEST)
    bottom = gaussian_blob((1, 2, 5, 5), mean=2.0, std=0.5)
    checker().check_gradient_exhaustive(layer, [bottom], empty_tops(1))


def test_gradient_stochastic_train_phase():
    """The checker re-seeds before each forward, so every pass samples the same elements."""
    layer = pooling("pool: STOCHASTIC kernel_size: 2 stride: 2")
    bottom = blob_from(np.random.default_rng(3).uniform(0.1, 1.0, size=(2, 2, 4, 4)))
    checker().check_gradient(layer, [bottom], empty_tops(1))


# -- modes and dtypes --------------------------------------------------------------------------
@pytest.mark.parametrize("params, num_top", [("kernel_size: 2 stride: 1", 2),
                                             ("pool: AVE kernel_size: 3 stride: 2 pad: 1", 1)])
def test_same_result_in_cpu_and_gpu_mode(any_mode, params, num_top):
    x = SQUARE[None, None]
    layer, bottom, tops = run(params, x, num_top=num_top)
    tops[0].diff[...] = 1.0
    layer.backward(tops, [True], [bottom])
    if num_top == 2:
        np.testing.assert_array_equal(tops[0].data[0, 0], [[9, 5, 5, 8], [9, 5, 5, 8]])
        np.testing.assert_array_equal(tops[1].data[0, 0], [[5, 2, 2, 9], [5, 12, 12, 9]])
        np.testing.assert_array_equal(bottom.diff[0, 0], [[0, 0, 2, 0, 0], [2, 0, 0, 0, 2],
                                                          [0, 0, 2, 0, 0]])
    else:
        np.testing.assert_allclose(tops[0].data[0, 0], [[16 / 9, 2, 17 / 9], [16 / 9, 2, 17 / 9]])
        # each window hands 1/9 to each of its image cells: (4 + 6 + 4) * 2 cells in all
        np.testing.assert_allclose(bottom.diff.sum(), 28 / 9)


def test_float32_stays_float32():
    x = np.random.default_rng(0).normal(size=(2, 3, 7, 7)).astype(np.float32)
    for params in ("kernel_size: 3 stride: 2", "pool: AVE kernel_size: 3 stride: 2 pad: 1"):
        _, _, (top,) = run(params, x, dtype=np.float32)
        assert top.data.dtype == np.float32
    _, _, (top,) = run("pool: AVE kernel_size: 2 stride: 2", x[:, :, :6, :6], dtype=np.float32)
    corners = [x[:, :, i:6:2, j:6:2] for i in (0, 1) for j in (0, 1)]
    expected = (corners[0] + corners[1] + corners[2] + corners[3]) / np.float32(4)
    np.testing.assert_allclose(top.data, expected, rtol=1e-6)


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, message", [
    ("stride: 2", "kernel"),
    ("kernel_size: 2 kernel_h: 2 kernel_w: 2", "not both"),
    ("kernel_h: 2", "kernel"),
    ("kernel_size: 0", "positive"),
    ("kernel_size: 2 stride: 0", "positive"),
    ("kernel_size: 2 pad: 2", "smaller than the kernel"),
    ("kernel_size: 3 pad_h: 1", "pad_h and pad_w"),
    ("kernel_size: 3 pad: 1 pad_h: 1 pad_w: 1", "pad_h and pad_w"),
    ("kernel_size: 3 stride_w: 2", "stride_h and stride_w"),
    ("pool: STOCHASTIC kernel_size: 3 pad: 1", "only for MAX and AVE"),
    ("global_pooling: true kernel_size: 2", "global_pooling"),
    ("global_pooling: true pad: 1", "global_pooling"),
    ("global_pooling: true stride: 2", "global_pooling"),
    ("kernel_size: 7", "does not fit"),
])
def test_bad_parameters(params, message):
    layer = pooling(params)
    with pytest.raises(PclError, match=message):
        layer.initialize([blob_from(np.zeros((1, 1, 5, 5)))], empty_tops(1))


def test_bottom_must_have_four_axes():
    with pytest.raises(PclError, match="4-axis"):
        pooling("kernel_size: 2").initialize([blob_from(np.zeros((2, 5, 5)))], empty_tops(1))


def test_mask_top_only_for_max():
    with pytest.raises(PclError, match="at most 1 top"):
        pooling("pool: AVE kernel_size: 2").initialize([blob_from(np.zeros((1, 1, 4, 4)))],
                                                       empty_tops(2))


def test_not_in_place():
    blob = blob_from(np.zeros((1, 1, 4, 4)))
    with pytest.raises(PclError, match="in place"):
        pooling("kernel_size: 2").initialize([blob], [blob])

