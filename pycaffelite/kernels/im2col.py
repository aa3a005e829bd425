"""2-D im2col and col2im compiled with numba (see `pycaffelite.layers.im2col` for the layout):

    column[c, i, j, oh, ow, n] = padded[c, oh sh + i dh, ow sw + j dw, n]

for views of any strides, meant for the images outermost in memory (the innermost loop runs
along ow). One call moves a whole chunk without the GIL (numpy's version is one call per kernel
offset, each taking and releasing it, which stalls threads running side by side).
"""
from numba import njit

from . import CACHE

_COMPILE = dict(nogil=True, cache=CACHE, error_model="numpy")


@njit(**_COMPILE)
def im2col_2d(padded, stride, dilation, column):
    """Fill column (C, KH, KW, OH, OW, N) from padded (C, Hp, Wp, N)."""
    _move(padded, stride, dilation, column, False)


@njit(**_COMPILE)
def col2im_2d(column, stride, dilation, padded):
    """Set padded (C, Hp, Wp, N) to the sum of column's (C, KH, KW, OH, OW, N) entries at the
    places im2col_2d reads them from, kernel offsets in row-major order."""
    padded[...] = 0
    _move(padded, stride, dilation, column, True)


@njit(inline="always", **_COMPILE)
def _move(padded, stride, dilation, column, adjoint):
    """column[c, i, j, oh, ow, n] = padded[c, h, w, n] (adjoint: padded[c, h, w, n] += column[...])
    for h = oh sh + i dh, w = ow sw + j dw; ow innermost."""
    channels, kernel_h, kernel_w, out_h, out_w, images = column.shape
    (sh, sw), (dh, dw) = stride, dilation
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                for n in range(images):
                    for oh in range(out_h):
                        h = oh * sh + i * dh
                        for ow in range(out_w):
                            if adjoint:
                                padded[c, h, ow * sw + j * dw, n] += column[c, i, j, oh, ow, n]
                            else:
                                column[c, i, j, oh, ow, n] = padded[c, h, ow * sw + j * dw, n]
