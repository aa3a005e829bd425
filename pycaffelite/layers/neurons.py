"""Neuron layers: element-wise activations and maps, y = f(x) for every element.

Bottom: one blob of any shape. Top: one blob of the same shape. Every layer here may run in place
(top and bottom the same blob) except AbsVal, which refuses it as Caffe does. Where the backward
pass reads the input x and the layer runs in place, forward first keeps a copy of x, since the top
overwrites it (Caffe does this only for PReLU; its Power, Log, BNLL and Clip read the overwritten
input in place and so give wrong gradients there).
"""
import math

import numpy as np

from ..proto import caffe_pb2
from . import register
from .base import NeuronLayer

BNLL_THRESHOLD = 50.0  # BNLL's backward clamps x here before exp, as Caffe does


def _sigmoid(xp, x):
    """1 / (1 + exp(-x)), written through tanh as Caffe does (no overflow for large |x|)."""
    return 0.5 * xp.tanh(0.5 * x) + 0.5


class _Elementwise(NeuronLayer):
    """Base of the parameter-free element-wise maps.

    Subclasses give `compute(xp, x)` -> y and `gradient(xp, x, y, dy)` -> dx; set `needs_input`
    when `gradient` reads x (then running in place keeps a copy of x for backward).
    """

    needs_input = False
    _input_copy = None  # a Blob, made on the first in-place reshape that needs it

    def compute(self, xp, x):
        raise NotImplementedError

    def gradient(self, xp, x, y, dy):
        raise NotImplementedError

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self._keep_input = self.needs_input and top[0] is bottom[0]
        if self._keep_input:
            if self._input_copy is None:
                self._input_copy = self.make_blob(bottom[0].shape)
            self._input_copy.reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].read_data()
        if self._keep_input:
            self._input_copy.write_data()[...] = x
        top[0].write_data()[...] = self.compute(self.xp, x)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = (self._input_copy if self._keep_input else bottom[0]).read_data()
        dx = self.gradient(self.xp, x, top[0].read_data(), top[0].read_diff())
        bottom[0].write_diff()[...] = dx


@register("ReLU")
class ReLULayer(_Elementwise):
    """y = max(x, 0) + negative_slope * min(x, 0);  dy/dx = 1 where x > 0, else negative_slope.

    relu_param.negative_slope defaults to 0 (plain ReLU).
    """

    def setup(self, bottom, top):
        self.negative_slope = float(self.param.relu_param.negative_slope)
        # With a negative slope the sign of y no longer tells the sign of x.
        self.needs_input = self.negative_slope < 0

    def compute(self, xp, x):
        if self.negative_slope == 0:
            return xp.maximum(x, 0)
        return xp.maximum(x, 0) + self.negative_slope * xp.minimum(x, 0)

    def gradient(self, xp, x, y, dy):
        return xp.where(x > 0, dy, dy * self.negative_slope)


@register("ELU")
class ELULayer(_Elementwise):
    """y = x for x > 0, alpha * (exp(x) - 1) otherwise;  dy/dx = 1 for x > 0, y + alpha otherwise.

    elu_param.alpha defaults to 1.
    """

    def setup(self, bottom, top):
        self.alpha = float(self.param.elu_param.alpha)

    def compute(self, xp, x):
        return xp.maximum(x, 0) + self.alpha * (xp.exp(xp.minimum(x, 0)) - 1)

    def gradient(self, xp, x, y, dy):
        return xp.where(x > 0, dy, dy * (y + self.alpha))


@register("Sigmoid")
class SigmoidLayer(_Elementwise):
    """y = 1 / (1 + exp(-x));  dy/dx = y * (1 - y)."""

    def compute(self, xp, x):
        return _sigmoid(xp, x)

    def gradient(self, xp, x, y, dy):
        return dy * y * (1 - y)


@register("TanH")
class TanHLayer(_Elementwise):
    """y = tanh(x);  dy/dx = 1 - y^2."""

    def compute(self, xp, x):
        return xp.tanh(x)

    def gradient(self, xp, x, y, dy):
        return dy * (1 - y * y)


@register("AbsVal")
class AbsValLayer(_Elementwise):
    """y = |x|;  dy/dx = sign(x) (0 at x = 0). Cannot run in place, as in Caffe."""

    allows_in_place = False
    needs_input = True

    def compute(self, xp, x):
        return xp.abs(x)

    def gradient(self, xp, x, y, dy):
        return dy * xp.sign(x)


@register("Power")
class PowerLayer(_Elementwise):
    """y = (shift + scale * x)^power;  dy/dx = scale * power * (shift + scale * x)^(power - 1).

    power_param: power (default 1), scale (1), shift (0). As in Caffe, when power * scale = 0 the
    output is the constant 1 (power 0) or shift^power, and the derivative is computed as
    power * scale (constant, when power is 1 or power * scale is 0), 2 * scale * (shift + scale * x)
    (power 2), power * y / x (shift 0), or power * scale * y / (shift + scale * x) otherwise.
    """

    needs_input = True

    def setup(self, bottom, top):
        p = self.param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.diff_scale = self.power * self.scale

    def compute(self, xp, x):
        if self.diff_scale == 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                value = 1.0 if self.power == 0 else float(np.power(np.float64(self.shift), self.power))
            return xp.full_like(x, value)
        base = self.scale * x + self.shift
        return base if self.power == 1 else xp.power(base, self.power)

    def gradient(self, xp, x, y, dy):
        if self.diff_scale == 0 or self.power == 1:
            return dy * self.diff_scale
        if self.power == 2:
            return dy * (self.diff_scale * self.scale * x + self.diff_scale * self.shift)
        if self.shift == 0:
            return dy * (self.power * y / x)
        return dy * (self.diff_scale * y / (self.scale * x + self.shift))


def _log_of_base(layer, base):
    """ln(base) for exp_param/log_param.base, where -1 means e. A clear error for a bad base."""
    if base == -1:
        return 1.0
    if not base > 0 or math.isinf(base):
        raise layer.error(f"base must be a positive finite number (or -1 for e), found {base}")
    return math.log(base)


@register("Exp")
class ExpLayer(_Elementwise):
    """y = base^(shift + scale * x);  dy/dx = ln(base) * scale * y.

    exp_param: base (default -1, meaning e), scale (1), shift (0).
    """

    def setup(self, bottom, top):
        p = self.param.exp_param
        base, scale, shift = float(p.base), float(p.scale), float(p.shift)
        log_base = _log_of_base(self, base)
        self.inner_scale = log_base * scale
        if shift == 0:
            self.outer_scale = 1.0
        else:
            self.outer_scale = math.exp(shift) if base == -1 else base ** shift

    def compute(self, xp, x):
        y = xp.exp(x if self.inner_scale == 1 else self.inner_scale * x)
        return y if self.outer_scale == 1 else self.outer_scale * y

    def gradient(self, xp, x, y, dy):
        return dy * y if self.inner_scale == 1 else dy * y * self.inner_scale


@register("Log")
class LogLayer(_Elementwise):
    """y = log_base(shift + scale * x);  dy/dx = scale / (ln(base) * (shift + scale * x)).

    log_param: base (default -1, meaning e), scale (1), shift (0).
    """

    needs_input = True

    def setup(self, bottom, top):
        p = self.param.log_param
        log_base = _log_of_base(self, float(p.base))
        if log_base == 0:
            raise self.error("log_param.base 1 has no logarithm (ln 1 = 0); choose another base")
        self.base_scale = 1.0 / log_base
        self.scale, self.shift = float(p.scale), float(p.shift)
        self.backward_scale = self.scale * self.base_scale

    def _argument(self, x):
        if self.scale != 1:
            x = self.scale * x
        return x + self.shift if self.shift != 0 else x

    def compute(self, xp, x):
        y = xp.log(self._argument(x))
        return y if self.base_scale == 1 else self.base_scale * y

    def gradient(self, xp, x, y, dy):
        return dy * (self.backward_scale / self._argument(x))


@register("BNLL")
class BNLLLayer(_Elementwise):
    """Binomial normal log likelihood: y = log(1 + exp(x)), computed stably as
    max(x, 0) + log(1 + exp(-|x|));  dy/dx = e / (1 + e) with e = exp(min(x, 50))."""

    needs_input = True

    def compute(self, xp, x):
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def gradient(self, xp, x, y, dy):
        e = xp.exp(xp.minimum(x, BNLL_THRESHOLD))
        return dy * (e / (e + 1))


@register("Clip")
class ClipLayer(_Elementwise):
    """y = max(min, min(x, max));  dy/dx = 1 where min <= x <= max (both ends included), else 0.

    clip_param.min and clip_param.max are required.
    """

    needs_input = True

    def setup(self, bottom, top):
        p = self.param.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            raise self.error("needs clip_param { min: ... max: ... }; both bounds are required")
        self.min, self.max = float(p.min), float(p.max)
        if self.min > self.max:
            raise self.error(f"clip_param.min ({self.min}) is greater than clip_param.max "
                             f"({self.max}); swap them")

    def compute(self, xp, x):
        return xp.maximum(self.min, xp.minimum(x, self.max))

    def gradient(self, xp, x, y, dy):
        return xp.where((x >= self.min) & (x <= self.max), dy, 0)


@register("Threshold")
class ThresholdLayer(NeuronLayer):
    """y = 1 where x > threshold, else 0 (threshold_param.threshold, default 0). No backward pass."""

    def setup(self, bottom, top):
        self.threshold = float(self.param.threshold_param.threshold)

    def forward(self, bottom, top):
        x = bottom[0].read_data()
        top[0].write_data()[...] = x > self.threshold


@register("Swish")
class SwishLayer(NeuronLayer):
    """y = x * s with s = sigmoid(beta * x);  dy/dx = beta * y + s * (1 - beta * y).

    swish_param.beta defaults to 1. The backward pass reads y and s only, so in place is fine.
    """

    def setup(self, bottom, top):
        self.beta = float(self.param.swish_param.beta)
        self._sigmoid = self.make_blob(bottom[0].shape)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self._sigmoid.reshape(bottom[0].shape)

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data()
        s = _sigmoid(xp, self.beta * x)
        self._sigmoid.write_data()[...] = s
        top[0].write_data()[...] = x * s

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        y, dy = top[0].read_data(), top[0].read_diff()
        s = self._sigmoid.read_data()
        by = self.beta * y
        bottom[0].write_diff()[...] = dy * (by + s * (1 - by))


@register("PReLU")
class PReLULayer(NeuronLayer):
    """Parametric ReLU: y = max(x, 0) + a_c * min(x, 0) with a learned slope a_c per channel
    (axis 1), or one slope for all channels with prelu_param.channel_shared.

    Bottom: (N, C, ...) with at least 2 axes. Param blob 0: the slopes, shape (C,), or () when
    shared; filled by prelu_param.filler (default constant 0.25).
    Gradients: dE/dx = dy where x > 0, a_c * dy otherwise;
    dE/da_c += sum over the elements of channel c with x <= 0 of dy * x.
    """

    def setup(self, bottom, top):
        if bottom[0].num_axes < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found shape "
                             f"{bottom[0].shape}")
        p = self.param.prelu_param
        self.channel_shared = p.channel_shared
        if not self.blobs:
            if p.HasField("filler"):
                filler = p.filler
            else:
                filler = caffe_pb2.FillerParameter(type="constant", value=0.25)
            self.add_param_blob(() if self.channel_shared else (bottom[0].shape[1],), filler)
        self._input_copy = self.make_blob(())

    def reshape(self, bottom, top):
        if bottom[0].num_axes < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found shape "
                             f"{bottom[0].shape}")
        expected = 1 if self.channel_shared else bottom[0].shape[1]
        if self.blobs[0].count != expected:
            what = "1 shared slope" if self.channel_shared else f"{expected} slopes (one per channel)"
            raise self.error(f"expected {what}, but the slope blob holds {self.blobs[0].count}; "
                             f"check channel_shared and the bottom's channels")
        super().reshape(bottom, top)
        self._in_place = top[0] is bottom[0]
        if self._in_place:
            self._input_copy.reshape(bottom[0].shape)

    def _slopes(self, x):
        """The slopes shaped to broadcast against x (N, C, ...)."""
        slopes = self.blobs[0].read_data()
        if self.channel_shared:
            return slopes
        return slopes.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data()
        if self._in_place:
            self._input_copy.write_data()[...] = x
        top[0].write_data()[...] = xp.maximum(x, 0) + self._slopes(x) * xp.minimum(x, 0)

    def backward(self, top, propagate_down, bottom):
        xp = self.xp
        x = (self._input_copy if self._in_place else bottom[0]).read_data()
        dy = top[0].read_diff()
        # The slope gradient first: in place, the bottom diff below overwrites dy.
        if self.param_propagate_down[0]:
            contribution = xp.where(x <= 0, dy * x, 0)
            axes = tuple(i for i in range(x.ndim) if self.channel_shared or i != 1)
            self.blobs[0].write_diff()[...] += contribution.sum(axis=axes)
        if propagate_down[0]:
            bottom[0].write_diff()[...] = xp.where(x > 0, dy, dy * self._slopes(x))
