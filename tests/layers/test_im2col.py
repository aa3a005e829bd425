"""The im2col/col2im helpers and the Im2col layer."""
import numpy as np
import pytest

from layer_testing import empty_tops, gaussian_blob, make_layer
from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from pycaffelite.layers import im2col as im2col_module
from pycaffelite.layers.im2col import col2im, conv_output_size, deconv_output_size, im2col, interior


def test_output_sizes():
    assert conv_output_size(227, 11, 0, 4, 1) == 55
    assert conv_output_size(10, 3, 0, 2, 1) == 4       # floor
    assert conv_output_size(9, 3, 2, 1, 2) == 9        # dilated extent 5
    assert deconv_output_size(5, 4, 1, 2, 1) == 10
    assert deconv_output_size(5, 3, 0, 3, 2) == 17     # 3 * 4 + 5


def test_im2col_hand_computed():
    # one 3 x 3 image 0..8, 2 x 2 kernel, stride 1: each kernel offset sees a 2 x 2 window
    image = np.arange(9.0).reshape(1, 3, 3, 1)
    column = np.empty((1, 2, 2, 2, 2, 1))
    im2col(image, (2, 2), (1, 1), (1, 1), column)
    np.testing.assert_array_equal(column.reshape(4, 4), [[0, 1, 3, 4],
                                                         [1, 2, 4, 5],
                                                         [3, 4, 6, 7],
                                                         [4, 5, 7, 8]])


def test_im2col_padded_strided_dilated():
    # 1-d: x = [1 2 3 4 5] padded by 1 -> [0 1 2 3 4 5 0]; kernel 2 dilated by 2 (taps 0 and 2),
    # stride 2: outputs start at 0, 2, 4 -> tap 0 reads [0, 2, 4], tap 1 reads [2, 4, 0]
    padded = np.zeros((1, 7, 1))
    interior(padded, (1,))[..., 0] = [1, 2, 3, 4, 5]
    column = np.empty((1, 2, conv_output_size(5, 2, 1, 2, 2), 1))
    im2col(padded, (2,), (2,), (2,), column)
    np.testing.assert_array_equal(column.reshape(2, 3), [[0, 2, 4], [2, 4, 0]])


def test_col2im_sums_back_where_values_were_read():
    column = np.ones((1, 2, 2, 2, 2, 1))
    image = np.full((1, 3, 3, 1), 7.0)
    col2im(column, (2, 2), (1, 1), (1, 1), image)
    # each pixel counts the windows covering it
    np.testing.assert_array_equal(image.reshape(3, 3), [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize("size,kernel,stride,dilation", [
    ((6, 7), (3, 2), (2, 1), (1, 2)),
    ((5, 4, 6), (2, 3, 1), (1, 2, 3), (2, 1, 1)),
    ((9,), (4,), (3,), (1,)),
])
def test_col2im_is_the_adjoint_of_im2col(size, kernel, stride, dilation):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3,) + size + (2,))
    out = tuple(conv_output_size(s, k, 0, st, d) for s, k, st, d in zip(size, kernel, stride, dilation))
    column = np.empty((3,) + kernel + out + (2,))
    im2col(image, kernel, stride, dilation, column)
    other = rng.normal(size=column.shape)
    back = np.empty_like(image)
    col2im(other, kernel, stride, dilation, back)
    np.testing.assert_allclose(np.vdot(column, other), np.vdot(image, back), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size,kernel,stride,dilation", [
    ((7, 9), (3, 3), (1, 1), (1, 1)),
    ((11, 10), (3, 2), (4, 2), (1, 2)),
])
def test_compiled_2d_routines_match_numpy_with_images_outermost(monkeypatch, dtype, size, kernel,
                                                                stride, dilation):
    """Images outermost in memory (the layout the compiled routines take): both directions give
    numpy's results exactly."""
    rng = np.random.default_rng(1)
    out = tuple(conv_output_size(s, k, 0, st, d) for s, k, st, d in zip(size, kernel, stride, dilation))

    def images_last(physical):   # (C, n, ...) in memory, logically (C, ..., n)
        return np.moveaxis(physical, 1, -1)

    def column_images_last(physical):   # (C, K.., n, O..) in memory, logically (C, K.., O.., n)
        return np.moveaxis(physical, 1 + len(kernel), -1)

    image = images_last(rng.normal(size=(3, 2) + size).astype(dtype))
    other = column_images_last(rng.normal(size=(3,) + kernel + (2,) + out).astype(dtype))
    results = []
    for compiled in (True, False):
        monkeypatch.setattr(im2col_module, "compiled", compiled)
        column = column_images_last(np.empty((3,) + kernel + (2,) + out, dtype))
        assert im2col_module._compiled(column, kernel) == compiled
        im2col(image, kernel, stride, dilation, column)
        back = images_last(np.full((3, 2) + size, 5, dtype))
        col2im(other, kernel, stride, dilation, back)
        results.append((column.copy(), back.copy()))
    (column, back), (column_np, back_np) = results
    np.testing.assert_array_equal(column, column_np)
    np.testing.assert_allclose(back, back_np, rtol=1e-6)


def test_compiled_routines_refuse_mismatched_shapes():
    """The compiled loops do not check bounds, so their caller does."""
    image = np.moveaxis(np.zeros((3, 2, 5, 5), np.float32), 1, -1)
    column = np.moveaxis(np.zeros((3, 3, 3, 2, 4, 4), np.float32), 3, -1)  # needs 6 x 6
    with pytest.raises(ValueError, match="do not fit"):
        im2col(image, (3, 3), (1, 1), (1, 1), column)
    with pytest.raises(ValueError, match="do not fit"):
        col2im(column, (3, 3), (1, 1), (1, 1), image)


# -- the Im2col layer ------------------------------------------------------------------------------
def im2col_layer(params, dtype=np.float64):
    return make_layer(f'type: "Im2col" convolution_param {{ {params} }}', dtype)


@pytest.mark.parametrize("params,shape,expected", [
    ("kernel_size: 3", (2, 3, 6, 5), (2, 27, 4, 3)),
    ("kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1", (2, 3, 6, 5), (2, 18, 3, 4)),
    ("kernel_size: 2 dilation: 2 pad: 1", (1, 2, 5, 5), (1, 8, 5, 5)),
    ("kernel_size: 2 stride: 2", (1, 2, 4, 4, 6), (1, 16, 2, 2, 3)),
    ("kernel_size: 2 axis: 2", (2, 3, 2, 4, 4), (2, 3, 8, 3, 3)),
])
def test_im2col_layer_shapes(params, shape, expected):
    layer = im2col_layer(params)
    top = empty_tops(1)
    layer.initialize([gaussian_blob(shape)], top)
    assert top[0].shape == expected


def test_im2col_layer_forward_hand_computed(any_mode):
    # per image n and channel c, row c * 4 + (kh * 2 + kw), column (oh, ow) holds x[oh + kh, ow + kw]
    x = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3)
    bottom = [gaussian_blob(x.shape, dtype=np.float32)]
    bottom[0].data[...] = x
    top = empty_tops(1, np.float32)
    layer = im2col_layer("kernel_size: 2", np.float32)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    windows = np.array([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=np.float32)
    expected = np.stack([np.concatenate([windows + 9 * (2 * n + c) for c in range(2)]) for n in range(2)])
    np.testing.assert_array_equal(top[0].data.reshape(2, 8, 4), expected)
    # backward: an all-ones top diff counts how many windows cover each pixel
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.broadcast_to([[1, 2, 1], [2, 4, 2], [1, 2, 1]], x.shape))


def test_im2col_layer_padded_forward_and_backward_agree_after_repeats():
    """The zero border survives a backward pass (which col2im's into its own buffer)."""
    layer = im2col_layer("kernel_size: 3 pad: 1")
    bottom, top = [gaussian_blob((1, 1, 2, 2))], empty_tops(1)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    first = top[0].data.copy()
    top[0].diff[...] = 5
    layer.backward(top, [True], bottom)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, first)
    assert first[0, 0, 0, 0] == 0 and first[0, 4, 0, 0] == bottom[0].data[0, 0, 0, 0]


@pytest.mark.parametrize("params,shape", [
    ("kernel_size: 2 pad: 1 stride: 2", (2, 2, 3, 3)),
    ("kernel_h: 2 kernel_w: 3 dilation: 2 stride_h: 1 stride_w: 2", (1, 2, 4, 5)),
    ("kernel_size: 2", (1, 2, 3, 2, 3)),
])
def test_im2col_layer_gradient(params, shape):
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(im2col_layer(params), [gaussian_blob(shape)],
                                                          empty_tops(1))


@pytest.mark.parametrize("params,shape,message", [
    ("kernel_size: 3", (2, 3), "at least 1 spatial axis"),
    ("kernel_size: 4", (1, 1, 3, 3), "larger than the padded input"),
    ("kernel_size: 2 stride: 0", (1, 1, 3, 3), "stride must be positive"),
    ("kernel_size: 2 kernel_h: 2 kernel_w: 2", (1, 1, 3, 3), "not both"),
    ("stride: 1", (1, 1, 3, 3), "kernel_size must be given"),
])
def test_im2col_layer_bad_parameters(params, shape, message):
    with pytest.raises(PclError, match=message) as info:
        im2col_layer(params).initialize([gaussian_blob(shape)], empty_tops(1))
    assert "(Im2col)" in str(info.value)
