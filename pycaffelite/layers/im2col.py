"""im2col / col2im for N-d spatial convolution, with per-axis kernel, pad, stride and dilation.

Layout convention (chosen so one GEMM covers a chunk of n images):

  image   (C, *S, n)          channels first, then the spatial axes, then the images
  padded  (C, *(S + 2p), n)   the image inside a zero border of `pad` on each spatial axis
  column  (C, *K, *O, n)      column[c, k..., o..., i] = padded[c, o * stride + k * dilation, i]

so `column` reshaped to (C prod(K), prod(O) n) is the GEMM operand, with Caffe's row order
(channel, then the kernel offsets row-major). The arrays may be views whose memory order differs
from this logical order (e.g. images outermost in memory): numpy and cupy run copies and in-place
additions in memory order, so the caller picks the memory layout that suits its strides.

Along each spatial axis the output size is floor((S + 2p - E) / s) + 1, where E = d (k - 1) + 1 is
the dilated kernel's extent. Both directions loop over the prod(K) kernel offsets only: each offset
moves one strided slice of the padded image (im2col copies it, col2im adds it back), so the work
per offset is a single array operation. For 2-D numpy arrays with the images outermost, compiled
loops (`pycaffelite.kernels.im2col`) do the same in one call.
"""
import itertools

import numpy as np

from ..kernels import im2col as kernels

# False runs numpy's version everywhere (the device path; tests compare the two)
compiled = True


def kernel_extent(kernel, dilation):
    """The span d (k - 1) + 1 a dilated kernel covers along one axis."""
    return dilation * (kernel - 1) + 1


def conv_output_size(size, kernel, pad, stride, dilation):
    """Convolution output size along one axis (floor division, as Caffe)."""
    return (size + 2 * pad - kernel_extent(kernel, dilation)) // stride + 1


def deconv_output_size(size, kernel, pad, stride, dilation):
    """Deconvolution (transposed convolution) output size along one axis."""
    return stride * (size - 1) + kernel_extent(kernel, dilation) - 2 * pad


def _window(offset, stride, dilation, out_shape):
    """Index of the padded image's (C, *Sp, n) positions read by one kernel offset."""
    # tuple([...]) rather than tuple(generator): the generator form parks a tuple block in
    # CPython's free lists on every call, which the allocation test sees as growth.
    return (slice(None),) + tuple([slice(k * d, k * d + s * (o - 1) + 1, s)
                                   for k, s, d, o in zip(offset, stride, dilation, out_shape)])


def _offsets(kernel):
    return itertools.product(*[range(k) for k in kernel])


def interior(padded, pad):
    """The view of `padded` (C, *Sp, n) that holds the image, without the zero border."""
    return padded[(slice(None),)
                  + tuple([slice(p, size - p) for p, size in zip(pad, padded.shape[1:])])]


def _compiled(column, kernel):
    """Whether the compiled 2-D routine runs: numpy arrays (not a device's) with the images
    outermost in memory, where numpy's version copies many short strided runs, one call and
    one GIL hand-over per kernel offset."""
    return (compiled and len(kernel) == 2 and isinstance(column, np.ndarray)
            and column.strides[-1] > column.strides[-2])


def _check_fit(padded, kernel, stride, dilation, column):
    """The compiled loops index without bounds checks: the shapes must agree."""
    out_shape = column.shape[1 + len(kernel):-1]
    reach = tuple((o - 1) * s + kernel_extent(k, d)
                  for o, k, s, d in zip(out_shape, kernel, stride, dilation))
    if (column.shape[:1 + len(kernel)] != padded.shape[:1] + tuple(kernel)
            or column.shape[-1] != padded.shape[-1]
            or any(r > size for r, size in zip(reach, padded.shape[1:-1]))):
        raise ValueError(f"im2col: a column {column.shape} and an image {padded.shape} do not "
                         f"fit kernel {kernel}, stride {stride}, dilation {dilation}")


def im2col(padded, kernel, stride, dilation, column):
    """Fill `column` (C, *K, *O, n) from `padded` (C, *Sp, n); O is taken from `column`'s shape."""
    if _compiled(column, kernel):
        _check_fit(padded, kernel, stride, dilation, column)
        kernels.im2col_2d(padded, tuple(stride), tuple(dilation), column)
        return
    out_shape = column.shape[1 + len(kernel):-1]
    for offset in _offsets(kernel):
        column[(slice(None),) + offset] = padded[_window(offset, stride, dilation, out_shape)]


def col2im(column, kernel, stride, dilation, padded):
    """Set `padded` (C, *Sp, n) to the sum of `column`'s (C, *K, *O, n) entries at the places
    im2col read them from: the adjoint of im2col."""
    if _compiled(column, kernel):
        _check_fit(padded, kernel, stride, dilation, column)
        kernels.col2im_2d(column, tuple(stride), tuple(dilation), padded)
        return
    out_shape = column.shape[1 + len(kernel):-1]
    padded[...] = 0
    for offset in _offsets(kernel):
        padded[_window(offset, stride, dilation, out_shape)] += column[(slice(None),) + offset]
