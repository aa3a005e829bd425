"""Depthwise 2-D convolution compiled with numba: every output channel m reads one input
channel c = m // mult (a Convolution with group == input channels, mult = outputs per group).

    y[n, m, oh, ow] = b[m] + sum_{i, j} w[m, i, j] x[n, c, oh sh + i dh - ph, ow sw + j dw - pw]

(x taken as 0 outside the image). A plane needs only kh kw multiply-adds per output, so an
im2col + GEMM per group moves far more data than it multiplies. Here each plane is worked on
while it stays in cache, with every inner loop a contiguous run that the compiler vectorizes:

- the padded plane is split into its sh x sw phases, phase[a, b][r, q] = x_pad[r sh + a, q sw + b]
  (one phase, the padded plane itself, for stride 1), all of a common width Q;
- kernel offset (i, j) then reads phase ((i dh) % sh, (j dw) % sw) shifted by
  ((i dh) // sh, (j dw) // sw), so over a "wide" output of OH rows of Q columns (the last
  Q - OW columns of each row are spare) the tap is one multiply-add of two runs of OH Q values;
- the backward passes are the same runs read the other way: the data gradient adds w times the
  wide output diff (spare columns zero) into the phases, then un-splits them; the weight
  gradient is a dot product of the two runs per tap.

Each function works on a range of planes (output channels, for the weight gradient) and
releases the GIL, so callers run ranges side by side; the phases and the wide output are scratch
arrays of one plane, made once per call.

Measured on MobileNet-v1's depthwise layers (batch 16, one thread, CPU time, 2-core AVX-512
EPYC): the first version, one loop per output row indexing the 4-d arrays, ran at 1.6-2.8 GFLOP/s
(the compiler vectorized none of it); see `pycaffelite.layers.depthwise` for the figures of
this one against im2col + GEMM.
"""
import numpy as np
from numba import njit

from . import CACHE

# fastmath: the weight gradient's dot products may be summed in vector lanes.
_COMPILE = dict(nogil=True, cache=CACHE, error_model="numpy", fastmath=True)
# Values of a run handled by all taps before the next: the block and the taps' overlapping
# windows of the phases stay in the first-level cache (whole runs of a 112 x 112 plane, 51 KB
# each, made every tap a pass through the second level: 2x slower).
BLOCK = 512


@njit(inline="always", **_COMPILE)
def _scratch(image, side, kernel_h, kernel_w, stride, pad, dilation):
    """A plane's work arrays for images (N, C, H, W) and outputs `side` (N, M, OH, OW): the
    phases of a padded plane in the images' type, as (sh, sw, R, Q) and flattened per phase
    (R and Q leave room for every tap's shifted run of OH Q values); Q; and a wide output plane
    of OH Q values in the outputs' type."""
    sh, sw = stride
    height, width = image.shape[2], image.shape[3]
    out_h, out_w = side.shape[2], side.shape[3]
    rows = max(-(-(height + 2 * pad[0]) // sh), out_h + ((kernel_h - 1) * dilation[0]) // sh + 1)
    columns = max(-(-(width + 2 * pad[1]) // sw), out_w + ((kernel_w - 1) * dilation[1]) // sw)
    phases = np.empty((sh, sw, rows, columns), image.dtype)
    wide = np.empty(out_h * columns, side.dtype)
    return phases, phases.reshape(sh, sw, rows * columns), columns, wide


@njit(inline="always", **_COMPILE)
def _columns_of(b, stride, pad, width, columns):
    """(first q, stop q, first image column) of phase column q reading image column
    q sw + b - pw, for those inside [0, width)."""
    first = max(0, -(-(pad - b) // stride))
    stop = min(columns, (width - 1 + pad - b) // stride + 1)
    return first, max(first, stop), first * stride + b - pad


@njit(inline="always", **_COMPILE)
def _split(plane, stride, pad, phases):
    """phases[a, b, r, q] = the zero-padded plane at (r sh + a - ph, q sw + b - pw)."""
    sh, sw = stride
    height, width = plane.shape
    columns = phases.shape[3]
    phases[...] = 0
    for h in range(height):
        row, a = divmod(h + pad[0], sh)
        for b in range(sw):
            q0, q1, w0 = _columns_of(b, sw, pad[1], width, columns)
            phases[a, b, row, q0:q1] = plane[h, w0:w0 + (q1 - q0 - 1) * sw + 1:sw]


@njit(inline="always", **_COMPILE)
def _merge(phases, stride, pad, plane):
    """plane[h, w] = phases at (h, w)'s place (the adjoint of _split on the image)."""
    sh, sw = stride
    height, width = plane.shape
    columns = phases.shape[3]
    for h in range(height):
        row, a = divmod(h + pad[0], sh)
        for b in range(sw):
            q0, q1, w0 = _columns_of(b, sw, pad[1], width, columns)
            plane[h, w0:w0 + (q1 - q0 - 1) * sw + 1:sw] = phases[a, b, row, q0:q1]


@njit(inline="always", **_COMPILE)
def _tap(i, j, stride, dilation, columns):
    """(phase a, phase b, offset of the tap's run in the flattened phase)."""
    row, a = divmod(i * dilation[0], stride[0])
    column, b = divmod(j * dilation[1], stride[1])
    return a, b, row * columns + column


@njit(**_COMPILE)
def forward(x, w, bias, has_bias, stride, pad, dilation, y, first, stop):
    """y (N, M, OH, OW) planes n M + m in [first, stop) from x (N, C, H, W), w (M, KH, KW) and
    bias (M,) (used where has_bias)."""
    channels, outputs, out_h, out_w = x.shape[1], y.shape[1], y.shape[2], y.shape[3]
    kernel_h, kernel_w = w.shape[1], w.shape[2]
    mult = outputs // channels
    phases, flat, columns, wide = _scratch(x, y, kernel_h, kernel_w, stride, pad, dilation)
    run = wide.size
    split = -1  # the input plane n C + c in the phases
    for plane in range(first, stop):
        n, m = plane // outputs, plane % outputs
        c = m // mult
        if n * channels + c != split:
            _split(x[n, c], stride, pad, phases)
            split = n * channels + c
        wide[:] = bias[m] if has_bias else 0
        for q0 in range(0, run, BLOCK):
            block = wide[q0:min(run, q0 + BLOCK)]
            for i in range(kernel_h):
                for j in range(kernel_w):
                    a, b, offset = _tap(i, j, stride, dilation, columns)
                    source = flat[a, b, offset + q0:offset + q0 + block.size]
                    weight = w[m, i, j]
                    for q in range(block.size):
                        block[q] += weight * source[q]
        target = y[n, m]
        for oh in range(out_h):
            target[oh, :] = wide[oh * columns:oh * columns + out_w]


@njit(inline="always", **_COMPILE)
def _widen(plane, columns, wide):
    """wide (OH Q) = the (OH, OW) plane with Q - OW zero columns after each row."""
    out_h, out_w = plane.shape
    wide[:] = 0
    for oh in range(out_h):
        wide[oh * columns:oh * columns + out_w] = plane[oh, :]


@njit(**_COMPILE)
def backward_data(dy, w, stride, pad, dilation, dx, first, stop):
    """dx (N, C, H, W) planes n C + c in [first, stop) = the adjoint of `forward` applied to
    dy (N, M, OH, OW): each output's diff times its weights, added at the inputs it read."""
    channels, outputs = dx.shape[1], dy.shape[1]
    kernel_h, kernel_w = w.shape[1], w.shape[2]
    mult = outputs // channels
    phases, flat, columns, wide = _scratch(dx, dy, kernel_h, kernel_w, stride, pad, dilation)
    run = wide.size
    for plane in range(first, stop):
        n, c = plane // channels, plane % channels
        phases[...] = 0
        for m in range(c * mult, (c + 1) * mult):
            _widen(dy[n, m], columns, wide)
            for q0 in range(0, run, BLOCK):
                block = wide[q0:min(run, q0 + BLOCK)]
                for i in range(kernel_h):
                    for j in range(kernel_w):
                        a, b, offset = _tap(i, j, stride, dilation, columns)
                        target = flat[a, b, offset + q0:offset + q0 + block.size]
                        weight = w[m, i, j]
                        for q in range(block.size):
                            target[q] += weight * block[q]
        _merge(phases, stride, pad, dx[n, c])


@njit(**_COMPILE)
def backward_weight(dy, x, stride, pad, dilation, dw, first, stop):
    """dw (M, KH, KW) += sum over images and outputs of dy (N, M, OH, OW) times the inputs x
    (N, C, H, W) each weight met, for output channels m in [first, stop)."""
    images, channels, outputs = x.shape[0], x.shape[1], dy.shape[1]
    kernel_h, kernel_w = dw.shape[1], dw.shape[2]
    mult = outputs // channels
    phases, flat, columns, wide = _scratch(x, dy, kernel_h, kernel_w, stride, pad, dilation)
    run = wide.size
    for m in range(first, stop):
        c = m // mult
        for n in range(images):
            _split(x[n, c], stride, pad, phases)
            _widen(dy[n, m], columns, wide)
            for q0 in range(0, run, BLOCK):
                block = wide[q0:min(run, q0 + BLOCK)]
                for i in range(kernel_h):
                    for j in range(kernel_w):
                        a, b, offset = _tap(i, j, stride, dilation, columns)
                        source = flat[a, b, offset + q0:offset + q0 + block.size]
                        total = dw.dtype.type(0)
                        for q in range(block.size):
                            total += block[q] * source[q]
                        dw[m, i, j] += total
