"""2-D im2col and col2im compiled with numba (see `pycaffelite.layers.im2col` for the layout):

    column[c, i, j, oh, ow, n] = padded[c, oh sh + i dh, ow sw + j dw, n]

for views of any strides. One call moves a whole chunk without the GIL (numpy's version is one
call per kernel offset, each taking and releasing it, which stalls threads running side by
side). The innermost loop runs along whichever of ow and n is closer together in the column.
"""
from numba import njit

_COMPILE = dict(nogil=True, cache=True, error_model="numpy")


@njit(**_COMPILE)
def im2col_2d(padded, stride, dilation, column):
    """Fill column (C, KH, KW, OH, OW, N) from padded (C, Hp, Wp, N)."""
    channels, kernel_h, kernel_w, out_h, out_w, images = column.shape
    (sh, sw), (dh, dw) = stride, dilation
    images_inner = column.strides[5] <= column.strides[4]
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                for oh in range(out_h):
                    h = oh * sh + i * dh
                    if images_inner:
                        for ow in range(out_w):
                            w = ow * sw + j * dw
                            for n in range(images):
                                column[c, i, j, oh, ow, n] = padded[c, h, w, n]
                    else:
                        for n in range(images):
                            for ow in range(out_w):
                                column[c, i, j, oh, ow, n] = padded[c, h, ow * sw + j * dw, n]


@njit(**_COMPILE)
def col2im_2d(column, stride, dilation, padded):
    """Set padded (C, Hp, Wp, N) to the sum of column's (C, KH, KW, OH, OW, N) entries at the
    places im2col_2d reads them from, kernel offsets in row-major order."""
    channels, kernel_h, kernel_w, out_h, out_w, images = column.shape
    (sh, sw), (dh, dw) = stride, dilation
    images_inner = padded.strides[3] <= padded.strides[2]
    padded[...] = 0
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                for oh in range(out_h):
                    h = oh * sh + i * dh
                    if images_inner:
                        for ow in range(out_w):
                            w = ow * sw + j * dw
                            for n in range(images):
                                padded[c, h, w, n] += column[c, i, j, oh, ow, n]
                    else:
                        for n in range(images):
                            for ow in range(out_w):
                                padded[c, h, ow * sw + j * dw, n] += column[c, i, j, oh, ow, n]
