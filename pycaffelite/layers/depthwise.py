"""Depthwise convolution: a 2-D Convolution whose groups each hold one input channel
(group == channels, as in MobileNet), run directly instead of as one im2col + GEMM per group.

With mult = num_output / channels outputs per input channel, output channel m reads channel
c = m // mult:

    y[n, m, oh, ow] = b[m] + sum_{i, j} w[m, 0, i, j] x_pad[n, c, oh sh + i dh, ow sw + j dw]
    dx[n, c] = sum over m of c, i, j of w[m, 0, i, j] dy[n, m] spread back over the windows
    dw[m, 0, i, j] += sum_{n, oh, ow} dy[n, m, oh, ow] x_pad[n, c, oh sh + i dh, ow sw + j dw]

On the CPU the compiled loops of `pycaffelite.kernels.depthwise` run over ranges of planes side
by side (pcl's threads); elsewhere (the device) the array module runs one pass per kernel offset
over shifted windows of the padded images. Measured on MobileNet-v1's training step at batch 16
(2 threads, nothing pinned, CPU time, 2 paired runs on a 2-core AVX-512 EPYC at load 5-7): its
13 depthwise layers took 1,631-1,633 ms forward + backward as im2col + GEMM per group and
306-353 ms here; the whole step 3,091-3,945 ms against 1,924-2,291.
"""
import numpy as np

from .. import parallel


def applies(layer):
    """Whether `layer` (a Convolution after its reshape) is depthwise: 2-D, channels on axis 1 of
    a 4-axis bottom, more than one group, one input channel per group."""
    return (not layer.transposed and layer.num_spatial == 2 and layer.channel_axis == 1
            and layer.group > 1 and layer.group == layer.channels)


class Depthwise:
    """The three directions for a depthwise ConvolutionLayer `layer` (its geometry and params)."""

    compiled = True  # the CPU loops; False runs the array-module passes (tested on the CPU too)

    def __init__(self, layer):
        self.layer = layer

    def _kernels(self):
        from ..kernels import depthwise  # noqa: PLC0415 - compiled at first use

        return depthwise

    def _runs_compiled(self, xp):
        return self.compiled and xp is np

    def _weights(self):
        layer = self.layer
        return layer.blobs[0].read_data().reshape((layer.num_output,) + layer.kernel)

    def forward(self, x, y):
        """y (N, M, OH, OW) from x (N, C, H, W)."""
        layer = self.layer
        xp = layer.xp
        bias = layer.blobs[1].read_data() if layer.bias_term else None
        if self._runs_compiled(xp):
            kernels, w = self._kernels(), self._weights()
            geometry = (layer.stride, layer.pad, layer.dilation)
            # (without a bias the kernel still takes an array of the weights' type; unread)
            bias_array = bias if bias is not None else w[:, 0, 0]
            parallel.over_ranges(y.shape[0] * y.shape[1], lambda lo, hi: kernels.forward(
                x, w, bias_array, bias is not None, *geometry, y, lo, hi))
            return
        padded = self._padded(xp, x)
        y5, w5 = self._per_channel(y), self._per_channel(self._weights())
        y5[...] = 0
        for i, j, window in self._windows(padded):
            y5 += w5[None, :, :, i, j, None, None] * window[:, :, None]
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)

    def backward(self, x, dy, dx, weight_gradient):
        """dx (N, C, H, W) from dy (N, M, OH, OW) where dx is not None; the weight gradient
        added into the param diff where weight_gradient."""
        layer = self.layer
        xp = layer.xp
        stride, pad, dilation = layer.stride, layer.pad, layer.dilation
        if self._runs_compiled(xp):
            kernels = self._kernels()
            if weight_gradient:
                dw = layer.blobs[0].write_diff().reshape((layer.num_output,) + layer.kernel)
                parallel.over_ranges(layer.num_output, lambda lo, hi: kernels.backward_weight(
                    dy, x, stride, pad, dilation, dw, lo, hi))
            if dx is not None:
                w = self._weights()
                parallel.over_ranges(dx.shape[0] * dx.shape[1], lambda lo, hi: kernels.backward_data(
                    dy, w, stride, pad, dilation, dx, lo, hi))
            return
        dy5 = self._per_channel(dy)
        if weight_gradient:
            padded = self._padded(xp, x)
            dw5 = self._per_channel(layer.blobs[0].write_diff().reshape(
                (layer.num_output,) + layer.kernel))
            for i, j, window in self._windows(padded):
                dw5[:, :, i, j] += (dy5 * window[:, :, None]).sum(axis=(0, 3, 4))
        if dx is not None:
            w5 = self._per_channel(self._weights())
            padded = xp.zeros(self._padded_shape(x), dx.dtype)
            for i, j, window in self._windows(padded):
                window += (w5[None, :, :, i, j, None, None] * dy5).sum(axis=2)
            dx[...] = padded[:, :, pad[0]:pad[0] + x.shape[2], pad[1]:pad[1] + x.shape[3]]

    # -- the array-module passes ---------------------------------------------------------------
    def _per_channel(self, array):
        """An (N, M, ...) or (M, ...) array as (N, C, mult, ...) or (C, mult, ...)."""
        layer = self.layer
        lead = array.shape[:-3] if array.ndim == 4 else ()
        return array.reshape(lead + (layer.channels, -1) + array.shape[-2:])

    def _padded_shape(self, x):
        pad = self.layer.pad
        return x.shape[:2] + (x.shape[2] + 2 * pad[0], x.shape[3] + 2 * pad[1])

    def _padded(self, xp, x):
        """x with its zero border."""
        pad = self.layer.pad
        if not any(pad):
            return x
        padded = xp.zeros(self._padded_shape(x), x.dtype)
        padded[:, :, pad[0]:pad[0] + x.shape[2], pad[1]:pad[1] + x.shape[3]] = x
        return padded

    def _windows(self, padded):
        """(i, j, the (N, C, OH, OW) view of padded that kernel offset (i, j) reads)."""
        layer = self.layer
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
        out_h, out_w = layer.o_shape
        for i in range(kh):
            for j in range(kw):
                yield i, j, padded[:, :, i * dh:i * dh + (out_h - 1) * sh + 1:sh,
                                   j * dw:j * dw + (out_w - 1) * sw + 1:sw]
