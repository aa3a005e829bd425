"""BatchNorm: per-channel normalisation with batch statistics and their running averages."""
import numpy as np

from .. import parallel
from ..proto import caffe_pb2
from . import register
from .base import Layer


@register("BatchNorm")
class BatchNormLayer(Layer):
    """Normalise each channel to zero mean and unit variance (no learned scale or shift: follow
    with a Scale layer for those).

    Channels are axis 1 (a 1-axis bottom is one channel); statistics run over all other axes,
    m = N * H * W * ... values per channel:

        top = (bottom - mean_c) / sqrt(var_c + eps)         var_c = mean((bottom - mean_c)^2)

    The three blobs hold running sums, not learned params: b0 (C,), b1 (C,), b2 (1,), all zero at
    first. With batch statistics (`use_global_stats` false; the default in TRAIN phase) forward
    uses the batch's mean/var and updates, with f = moving_average_fraction,

        b0 = f * b0 + mean      b1 = f * b1 + m / (m - 1) * var      b2 = f * b2 + 1

    With global statistics (the default in TEST phase) it uses mean = b0 / b2, var = b1 / b2
    (both 0 when b2 == 0). The solver never changes the blobs: as in Caffe, setup gives them
    ParamSpecs with lr_mult 0 (a nonzero lr_mult is an error) and their param diffs stay 0.

    Backward, with y the normalised output and dy its diff (means over the same axes):
      batch statistics:  dbottom = (dy - mean(dy) - mean(dy * y) * y) / sqrt(var + eps)
      global statistics: dbottom = dy / sqrt(var + eps)

    bottom: (N, C, ...) or (N,)      top: the bottom's shape; in place allowed.

    On the CPU the statistics, the normalisation and the backward run as compiled passes over
    ranges of channels side by side (`pycaffelite.kernels.channels`); the array-module code
    below them runs on the device (and on the CPU with `compiled` off, in the tests).
    """

    exact_num_bottom = 1
    exact_num_top = 1
    compiled = True

    def setup(self, bottom, top):
        p = self.param.batch_norm_param
        self.fraction = p.moving_average_fraction
        self.eps = p.eps
        if not 0 <= self.fraction <= 1:
            raise self.error(f"moving_average_fraction must be a fraction in [0, 1] (the share of "
                             f"the running statistics kept each iteration), found {self.fraction:g}")
        if self.eps < 0:
            raise self.error(f"batch_norm_param.eps must not be negative (it keeps var + eps "
                             f"above 0), found {self.eps:g}")
        if p.HasField("use_global_stats"):
            self.use_global_stats = p.use_global_stats
        else:
            self.use_global_stats = self.phase == caffe_pb2.TEST
        self._freeze_param_specs()
        if bottom[0].num_axes == 0:
            raise self.error("needs a bottom with at least one axis (N, C, ...), found a scalar blob")
        self.channels = 1 if bottom[0].num_axes == 1 else bottom[0].shape[1]
        for shape in ((self.channels,), (self.channels,), (1,)):
            self.add_param_blob(shape).write_data()[...] = 0
        self.param_propagate_down = [False] * 3
        self.x_norm = self.make_blob(bottom[0].shape)
        self.std = self.make_blob((self.channels,))

    def _freeze_param_specs(self):
        """As Caffe: give the three blobs ParamSpecs with lr_mult 0 (adding any missing) so no
        solver updates them; a given nonzero lr_mult is an error."""
        specs = self.param.param
        for index, spec in enumerate(specs):
            if spec.lr_mult != 0:
                raise self.error(f"param {index} has lr_mult {spec.lr_mult:g}, but BatchNorm's "
                                 f"statistics are not learned; set lr_mult: 0 or drop the param entry")
        while len(specs) < 3:
            specs.add(lr_mult=0)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        channels = 1 if len(shape) == 1 else (shape[1] if shape else 0)
        if channels != self.channels:
            raise self.error(f"was set up for {self.channels} channels, but the bottom {shape} has "
                             f"{channels} on axis 1; keep the channel count fixed")
        top[0].reshape(shape)
        self.x_norm.reshape(shape)
        self.view = (shape[0], self.channels, bottom[0].count(min(2, len(shape))))

    def _global_stats(self):
        b2 = float(self.blobs[2].read_data()[0])
        factor = 0.0 if b2 == 0 else 1.0 / b2
        return self.blobs[0].read_data() * factor, self.blobs[1].read_data() * factor

    def _runs_compiled(self):
        return self.compiled and self.xp is np

    def _batch_stats(self, x, count):
        if self._runs_compiled():
            mean, var = np.empty(self.channels, x.dtype), np.empty(self.channels, x.dtype)
            parallel.over_ranges(self.channels, lambda lo, hi: _kernels().batch_stats(
                x, mean, var, lo, hi))
        else:
            mean = x.mean(axis=(0, 2))
            var = ((x - mean[:, None]) ** 2).mean(axis=(0, 2))
        f = self.fraction
        m = count // self.channels
        correction = m / (m - 1) if m > 1 else 1.0
        b0, b1, b2 = (blob.write_data() for blob in self.blobs)
        b0 *= f
        b0 += mean
        b1 *= f
        b1 += correction * var
        b2 *= f
        b2 += 1
        return mean, var

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data().reshape(self.view)
        if self.use_global_stats:
            mean, var = self._global_stats()
        else:
            mean, var = self._batch_stats(x, bottom[0].count)
        std = self.std.write_data()
        xp.sqrt(var + self.eps, out=std)
        if self._runs_compiled():
            y, x_norm = top[0].write_data().reshape(self.view), self.x_norm.write_data()
            parallel.over_ranges(self.channels, lambda lo, hi: _kernels().normalize(
                x, mean, std, y, x_norm.reshape(self.view), lo, hi))
            return
        y = (x - mean[:, None]) / std[:, None]
        self.x_norm.write_data()[...] = y.reshape(self.x_norm.shape)
        top[0].write_data()[...] = y.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].read_diff().reshape(self.view)
        if self._runs_compiled() and not self.use_global_stats:
            y, std = self.x_norm.read_data().reshape(self.view), self.std.read_data()
            dx = bottom[0].write_diff().reshape(self.view)
            parallel.over_ranges(self.channels, lambda lo, hi: _kernels().normalize_backward(
                dy, y, std, dx, lo, hi))
            return
        std = self.std.read_data()[:, None]
        if self.use_global_stats:
            dx = dy / std
        else:
            y = self.x_norm.read_data().reshape(self.view)
            dx = (dy - dy.mean(axis=(0, 2), keepdims=True)
                  - (dy * y).mean(axis=(0, 2), keepdims=True) * y) / std
        bottom[0].write_diff()[...] = dx.reshape(bottom[0].shape)


def _kernels():
    from ..kernels import channels  # noqa: PLC0415 - compiled at first use

    return channels
