"""im2col / col2im for N-d spatial convolution, with per-axis kernel, pad, stride and dilation.

Layout convention (chosen so one GEMM covers a whole batch chunk):

  image   (C, n, *S)          channels first, then the images, then the spatial axes
  padded  (C, n, *(S + 2p))   the image inside a zero border of `pad` on each spatial axis
  column  (C, *K, n, *O)      column[c, k..., i, o...] = padded[c, i, o * stride + k * dilation]

so `column.reshape(C * prod(K), n * prod(O))` is the GEMM operand: row c * prod(K) + flat(k),
column i * prod(O) + flat(o), with Caffe's row order (channel, then kernel offsets row-major).

Along each spatial axis the output size is floor((S + 2p - E) / s) + 1, where E = d (k - 1) + 1 is
the dilated kernel's extent. Both directions loop over the prod(K) kernel offsets only: each offset
moves one strided slice of the padded image (im2col copies it, col2im adds it back), so the work
per offset is a single array operation on every element it touches.

All functions take their arrays from the caller and work with numpy or cupy alike.
"""
import itertools


def kernel_extent(kernel, dilation):
    """The span d (k - 1) + 1 a dilated kernel covers along one axis."""
    return dilation * (kernel - 1) + 1


def conv_output_size(size, kernel, pad, stride, dilation):
    """Convolution output size along one axis (floor division, as Caffe)."""
    return (size + 2 * pad - kernel_extent(kernel, dilation)) // stride + 1


def deconv_output_size(size, kernel, pad, stride, dilation):
    """Deconvolution (transposed convolution) output size along one axis."""
    return stride * (size - 1) + kernel_extent(kernel, dilation) - 2 * pad


def _offset_slices(offset, stride, dilation, out_shape):
    """Slices of the padded spatial axes read by one kernel offset."""
    return tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                 for k, s, d, o in zip(offset, stride, dilation, out_shape))


def _offsets(kernel):
    return itertools.product(*(range(k) for k in kernel))


def interior(padded, pad):
    """The view of `padded` (C, n, *Sp) that holds the image, without the zero border."""
    return padded[(slice(None), slice(None))
                  + tuple(slice(p, size - p) for p, size in zip(pad, padded.shape[2:]))]


def im2col(padded, kernel, stride, dilation, column):
    """Fill `column` (C, *K, n, *O) from `padded` (C, n, *Sp); O is taken from `column`'s shape."""
    nd = len(kernel)
    out_shape = column.shape[-nd:] if nd else ()
    for offset in _offsets(kernel):
        column[(slice(None),) + offset] = padded[(slice(None), slice(None))
                                                 + _offset_slices(offset, stride, dilation, out_shape)]


def col2im(column, kernel, stride, dilation, padded):
    """Set `padded` (C, n, *Sp) to the sum of `column`'s (C, *K, n, *O) entries at the places
    im2col read them from: the adjoint of im2col."""
    nd = len(kernel)
    out_shape = column.shape[-nd:] if nd else ()
    padded[...] = 0
    for offset in _offsets(kernel):
        padded[(slice(None), slice(None))
               + _offset_slices(offset, stride, dilation, out_shape)] += column[(slice(None),) + offset]
