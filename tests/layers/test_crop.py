"""Crop: shapes from bottom 1, offsets per axis, gradients and errors."""
import numpy as np
import pytest

from layer_testing import empty_tops, gaussian_blob, make_layer
from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker


def crop_layer(params="", dtype=np.float64):
    return make_layer(f'type: "Crop" crop_param {{ {params} }}', dtype)


@pytest.mark.parametrize("params,data,ref,expected", [
    ("", (2, 4, 10, 8), (1, 1, 7, 5), (2, 4, 7, 5)),                   # default axis 2
    ("axis: 2 offset: 1 offset: 2", (2, 6, 10, 8), (1, 1, 7, 5), (2, 6, 7, 5)),
    ("axis: 1 offset: 1", (2, 3, 17, 9), (2, 2, 12, 6), (2, 2, 12, 6)),
    ("axis: 0", (3, 3, 4), (2, 1, 2), (2, 1, 2)),
    ("axis: -1 offset: 2", (2, 3, 6), (1, 1, 3), (2, 3, 3)),
])
def test_crop_shapes(params, data, ref, expected):
    top = empty_tops(1)
    crop_layer(params).initialize([gaussian_blob(data), gaussian_blob(ref)], top)
    assert top[0].shape == expected


def test_crop_forward_hand_computed(any_mode):
    # 1 x 1 x 4 x 5 holding 0..19; crop 2 x 3 from offsets (1, 2): rows 1-2, columns 2-4
    x = np.arange(20.0, dtype=np.float32).reshape(1, 1, 4, 5)
    bottom = [gaussian_blob(x.shape, dtype=np.float32), gaussian_blob((9, 9, 2, 3), dtype=np.float32)]
    bottom[0].data[...] = x
    top = empty_tops(1, np.float32)
    layer = crop_layer("offset: 1 offset: 2", np.float32)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, [[[[7, 8, 9], [12, 13, 14]]]])
    top[0].diff[...] = [[[[1, 2, 3], [4, 5, 6]]]]
    bottom[0].diff[...] = 99
    bottom[1].diff[...] = 99
    layer.backward(top, [True, True], bottom)
    expected = np.zeros((4, 5))
    expected[1:3, 2:5] = [[1, 2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(bottom[0].diff[0, 0], expected)
    assert not bottom[1].diff.any()


def test_crop_single_offset_applies_to_every_cropped_axis():
    x = np.arange(4 * 4 * 4.0).reshape(4, 4, 4)
    bottom = [gaussian_blob(x.shape), gaussian_blob((2, 2, 2))]
    bottom[0].data[...] = x
    top = empty_tops(1)
    layer = crop_layer("axis: 1 offset: 1")
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, x[:, 1:3, 1:3])  # axis 0 is kept whole


def test_crop_gradient():
    layer = crop_layer("axis: 1 offset: 1 offset: 0 offset: 2")
    bottom = [gaussian_blob((2, 3, 3, 5)), gaussian_blob((1, 2, 2, 3), seed=1)]
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, bottom, empty_tops(1), check_bottom=0)


@pytest.mark.parametrize("params,data,ref,message", [
    ("axis: 4", (2, 3, 4, 4), (2, 3, 2, 2), "axis 4 is out of range"),
    ("offset: 1 offset: 1 offset: 1", (2, 3, 4, 4), (2, 3, 2, 2), "one per cropped axis"),
    ("offset: 3", (2, 3, 4, 4), (2, 3, 2, 2), "does not fit"),
    ("axis: 1", (2, 3, 4, 4), (2, 4, 2, 2), "does not fit"),
    ("", (2, 3, 4, 4), (2, 3, 2), "at least as many axes"),
])
def test_crop_bad_parameters(params, data, ref, message):
    with pytest.raises(PclError, match=message) as info:
        crop_layer(params).initialize([gaussian_blob(data), gaussian_blob(ref)], empty_tops(1))
    assert "(Crop)" in str(info.value)
