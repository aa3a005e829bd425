"""MAX and AVE pooling of (N, C, H, W) arrays, compiled with numba: each window as Caffe's CPU
loops visit it. Every function works on the image planes n C + c in [first_plane, stop_plane)
and releases the GIL, so callers run ranges of planes side by side.

Window (oh, ow) starts at (oh sh - ph, ow sw - pw). MAX keeps the first largest element in
row-major order (a strict >, starting from -FLT_MAX, so NaN and -inf never win and a window with
nothing above -FLT_MAX gives -FLT_MAX and index -1); AVE sums the window clipped to the image and
divides by its size clipped to the padded image (Caffe's pool_size). The loops index the arrays
directly (a view made in the inner loops costs a reference count update each).
"""
import numpy as np
from numba import njit

from . import CACHE

_COMPILE = dict(nogil=True, cache=CACHE, error_model="numpy")

FLT_MAX = np.float32(np.finfo(np.float32).max)


@njit(inline="always", **_COMPILE)
def _window(o, kernel, stride, pad, size):
    """Window o along one axis: (first, stop) of its cells inside the image, and its size
    clipped to the padded image (Caffe's pool_size factor)."""
    start = o * stride - pad
    end = min(start + kernel, size + pad)
    return max(start, 0), min(end, size), end - start


@njit(**_COMPILE)
def max_forward(x, kernel, stride, pad, out, argmax, first_plane, stop_plane):
    """out[n, c] = the window maxima of x[n, c]; argmax = their flat index h W + w (-1: none)."""
    _, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in range(first_plane, stop_plane):
        n, c = plane // channels, plane % channels
        for oh in range(out_h):
            h0, h1, _ = _window(oh, kernel[0], stride[0], pad[0], height)
            for ow in range(out_w):
                w0, w1, _ = _window(ow, kernel[1], stride[1], pad[1], width)
                best = -FLT_MAX
                where = -1
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        value = x[n, c, h, w]
                        if value > best:
                            best = value
                            where = h * width + w
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = where


@njit(inline="always", **_COMPILE)
def _clear_plane(out, n, c):
    for h in range(out.shape[2]):
        for w in range(out.shape[3]):
            out[n, c, h, w] = 0


@njit(**_COMPILE)
def max_backward(top_diff, argmax, accumulate, out, first_plane, stop_plane):
    """out[n, c] (+)= each window's top diff at its argmax (in window order)."""
    channels, width = out.shape[1], out.shape[3]
    out_h, out_w = top_diff.shape[2], top_diff.shape[3]
    for plane in range(first_plane, stop_plane):
        n, c = plane // channels, plane % channels
        if not accumulate:
            _clear_plane(out, n, c)
        for oh in range(out_h):
            for ow in range(out_w):
                index = argmax[n, c, oh, ow]
                if index >= 0:
                    out[n, c, index // width, index % width] += top_diff[n, c, oh, ow]


@njit(**_COMPILE)
def ave_forward(x, kernel, stride, pad, out, first_plane, stop_plane):
    """out[n, c] = the window sums of x[n, c] over the image, / the clipped window sizes
    (an empty window: 0 / 0 = NaN, as Caffe)."""
    _, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in range(first_plane, stop_plane):
        n, c = plane // channels, plane % channels
        for oh in range(out_h):
            h0, h1, rows = _window(oh, kernel[0], stride[0], pad[0], height)
            for ow in range(out_w):
                w0, w1, columns = _window(ow, kernel[1], stride[1], pad[1], width)
                total = out.dtype.type(0)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        total += x[n, c, h, w]
                out[n, c, oh, ow] = total / (rows * columns)


@njit(**_COMPILE)
def ave_backward(top_diff, kernel, stride, pad, accumulate, out, first_plane, stop_plane):
    """out[n, c] (+)= each window's top diff / its clipped size, spread over its image cells."""
    _, channels, height, width = out.shape
    out_h, out_w = top_diff.shape[2], top_diff.shape[3]
    for plane in range(first_plane, stop_plane):
        n, c = plane // channels, plane % channels
        if not accumulate:
            _clear_plane(out, n, c)
        for oh in range(out_h):
            h0, h1, rows = _window(oh, kernel[0], stride[0], pad[0], height)
            for ow in range(out_w):
                w0, w1, columns = _window(ow, kernel[1], stride[1], pad[1], width)
                share = top_diff[n, c, oh, ow] / (rows * columns)
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        out[n, c, h, w] += share
