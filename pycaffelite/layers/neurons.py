"""Neuron layers: element-wise activations and maps, y = f(x) for every element.

Bottom: one blob of any shape. Top: one blob of the same shape. Every layer here may run in place
(top and bottom the same blob) except AbsVal, which refuses it as Caffe does. Where the backward
pass reads the input x and the layer runs in place, forward first keeps a copy of x, since the top
overwrites it (Caffe does this only for PReLU; its Power, Log, BNLL and Clip read the overwritten
input in place and so give wrong gradients there).

Every pass writes straight into the top data or the bottom diff (`out=`), with scratch arrays made
at reshape time: no array-sized temporaries per call. In place, y is x and dx is dy, so each pass
reads an element's input before its last operation overwrites it. Where Caffe's formula is a
product of factors (e.g. ReLU's dy * ((x > 0) + slope * (x <= 0))), the factor is built exactly
as Caffe builds it, so the results agree bit for bit.
"""
import math

import numpy as np

from ..proto import caffe_pb2
from . import register
from .base import NeuronLayer, Workspace

BNLL_THRESHOLD = 50.0  # BNLL's backward clamps x here before exp, as Caffe does


def _sigmoid(xp, x, out):
    """out = 1 / (1 + exp(-x)), written through tanh as Caffe does (no overflow for large |x|)."""
    xp.multiply(x, 0.5, out=out)
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5


class _Scratch:
    """Arrays of the bottom's shape (and a row of zeros) kept by a layer across calls; made at
    reshape time, again only when the shape, dtype or mode changes. Between reshapes `get`,
    `mask` and `zeros` hand out the arrays the last reshape made (a dictionary look-up, where
    checking the shape, dtype and array module each time cost about 4,000 instructions)."""

    def __init__(self):
        self.work = Workspace()
        self.shape = None
        self.arrays = {}

    def reshape(self, xp, shape, dtype, floats, masks, zeros):
        self.shape, self.dtype = tuple(shape), dtype
        arrays = {}
        for name in floats:
            arrays[name] = self.work.get(xp, name, self.shape, self.dtype)
        for name in masks:
            arrays[name] = self.work.get(xp, name, self.shape, np.bool_)
        if zeros:
            # numpy's maximum and minimum against zeros of one item's shape (the axes after the
            # first), broadcast, run several times faster than against the scalar 0
            arrays["zeros"] = self.work.get(xp, "zeros", self.shape[1:] or self.shape, self.dtype,
                                            fill=0)
        self.arrays = arrays

    def get(self, name):
        return self.arrays[name]

    mask = get  # (the masks are kept with the float arrays)

    def zeros(self):
        return self.arrays["zeros"]


class _Elementwise(NeuronLayer):
    """Base of the parameter-free element-wise maps.

    Subclasses give `compute(xp, x, y)`, writing f(x) into y, and `gradient(xp, x, y, dy, dx)`,
    writing dE/dx into dx; in place, y is x and dx is dy. They list the scratch arrays they use
    (`floats`, `masks`: names for `self.scratch.get/mask`) and whether they use
    `self.scratch.zeros`. Set `needs_input` when `gradient` reads x (then running in place keeps
    a copy of x for backward).
    """

    needs_input = False
    floats = ()
    masks = ()
    zeros = False
    _input_copy = None  # a Blob, made on the first in-place reshape that needs it

    def __init__(self, param, phase=None, dtype=np.float32):
        super().__init__(param, phase, dtype)
        self.scratch = _Scratch()

    def compute(self, xp, x, y):
        raise NotImplementedError

    def gradient(self, xp, x, y, dy, dx):
        raise NotImplementedError

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self._keep_input = self.needs_input and top[0] is bottom[0]
        if self._keep_input:
            if self._input_copy is None:
                self._input_copy = self.make_blob(bottom[0].shape)
            self._input_copy.reshape(bottom[0].shape)
        self.scratch.reshape(self.xp, bottom[0].shape, self.dtype, self.floats, self.masks,
                             self.zeros)

    def forward(self, bottom, top):
        x = bottom[0].read_data()
        if self._keep_input:
            self._input_copy.write_data()[...] = x
        self.compute(self.xp, x, top[0].write_data())

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = (self._input_copy if self._keep_input else bottom[0]).read_data()
        self.gradient(self.xp, x, top[0].read_data(), top[0].read_diff(), bottom[0].write_diff())


def _slope_factor(xp, x, slope, out, positive):
    """out = (x > 0) + slope * (x <= 0), as Caffe builds it: exactly 1 or slope (0 for NaN).
    `slope` is a number or an array broadcasting against x; `positive` is a scratch mask."""
    xp.less_equal(x, 0, out=positive)
    xp.multiply(positive, slope, out=out)
    xp.greater(x, 0, out=positive)
    out += positive


@register("ReLU")
class ReLULayer(_Elementwise):
    """y = max(x, 0) + negative_slope * min(x, 0);  dy/dx = 1 where x > 0, else negative_slope.

    relu_param.negative_slope defaults to 0 (plain ReLU). For a slope >= 0, y > 0 exactly where
    x > 0, so backward reads the top and in place needs no copy of x.
    """

    zeros = True
    masks = ("positive",)

    def setup(self, bottom, top):
        self.negative_slope = float(self.param.relu_param.negative_slope)
        # With a negative slope the sign of y no longer tells the sign of x.
        self.needs_input = self.negative_slope < 0
        self.floats = ("part",) if self.negative_slope != 0 else ()

    def compute(self, xp, x, y):
        zeros = self.scratch.zeros()
        if self.negative_slope == 0:
            xp.maximum(x, zeros, out=y)
            return
        part = self.scratch.get("part")
        xp.minimum(x, zeros, out=part)
        part *= self.negative_slope
        xp.maximum(x, zeros, out=y)
        y += part

    def gradient(self, xp, x, y, dy, dx):
        sign_source = x if self.needs_input else y
        positive = self.scratch.mask("positive")
        if self.negative_slope == 0:
            xp.greater(sign_source, 0, out=positive)
            xp.multiply(dy, positive, out=dx)
            return
        factor = self.scratch.get("part")
        _slope_factor(xp, sign_source, self.negative_slope, factor, positive)
        xp.multiply(dy, factor, out=dx)


@register("ELU")
class ELULayer(_Elementwise):
    """y = x for x > 0, alpha * (exp(x) - 1) otherwise;  dy/dx = 1 for x > 0, y + alpha otherwise.

    elu_param.alpha defaults to 1. Forward as Caffe: max(x, 0) + alpha * (exp(min(x, 0)) - 1);
    backward dy * ((x > 0) + (alpha + y) * (x <= 0)).
    """

    zeros = True
    floats = ("part",)
    masks = ("positive",)

    def setup(self, bottom, top):
        self.alpha = float(self.param.elu_param.alpha)

    def compute(self, xp, x, y):
        zeros, part = self.scratch.zeros(), self.scratch.get("part")
        xp.minimum(x, zeros, out=part)
        xp.exp(part, out=part)
        part -= 1
        part *= self.alpha
        xp.maximum(x, zeros, out=y)
        y += part

    def gradient(self, xp, x, y, dy, dx):
        factor, mask = self.scratch.get("part"), self.scratch.mask("positive")
        xp.add(y, self.alpha, out=factor)
        xp.less_equal(x, 0, out=mask)
        factor *= mask
        xp.greater(x, 0, out=mask)
        factor += mask
        xp.multiply(dy, factor, out=dx)


@register("Sigmoid")
class SigmoidLayer(_Elementwise):
    """y = 1 / (1 + exp(-x));  dy/dx = y * (1 - y)."""

    floats = ("part",)

    def compute(self, xp, x, y):
        _sigmoid(xp, x, y)

    def gradient(self, xp, x, y, dy, dx):
        part = self.scratch.get("part")
        xp.subtract(1, y, out=part)
        xp.multiply(dy, y, out=dx)
        dx *= part


@register("TanH")
class TanHLayer(_Elementwise):
    """y = tanh(x);  dy/dx = 1 - y^2."""

    floats = ("part",)

    def compute(self, xp, x, y):
        xp.tanh(x, out=y)

    def gradient(self, xp, x, y, dy, dx):
        part = self.scratch.get("part")
        xp.multiply(y, y, out=part)
        xp.subtract(1, part, out=part)
        xp.multiply(dy, part, out=dx)


@register("AbsVal")
class AbsValLayer(_Elementwise):
    """y = |x|;  dy/dx = sign(x) (0 at x = 0). Cannot run in place, as in Caffe."""

    allows_in_place = False
    needs_input = True
    floats = ("part",)

    def compute(self, xp, x, y):
        xp.abs(x, out=y)

    def gradient(self, xp, x, y, dy, dx):
        part = self.scratch.get("part")
        xp.sign(x, out=part)
        xp.multiply(dy, part, out=dx)


@register("Power")
class PowerLayer(_Elementwise):
    """y = (shift + scale * x)^power;  dy/dx = scale * power * (shift + scale * x)^(power - 1).

    power_param: power (default 1), scale (1), shift (0). As in Caffe, when power * scale = 0 the
    output is the constant 1 (power 0) or shift^power and the derivative is 0; otherwise the
    derivative is dy times power * scale (power 1), 2 * scale * (shift + scale * x) (power 2),
    y / x * power (shift 0), or y / (shift + scale * x) * power * scale.
    """

    needs_input = True
    floats = ("part",)

    def setup(self, bottom, top):
        p = self.param.power_param
        self.power, self.scale, self.shift = float(p.power), float(p.scale), float(p.shift)
        self.diff_scale = self.power * self.scale

    def compute(self, xp, x, y):
        if self.diff_scale == 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                value = 1.0 if self.power == 0 else float(np.power(np.float64(self.shift), self.power))
            y.fill(value)
            return
        _affine(xp, x, self.scale, self.shift, y)
        if self.power != 1:
            xp.power(y, self.power, out=y)

    def gradient(self, xp, x, y, dy, dx):
        if self.diff_scale == 0:
            dx.fill(0)
            return
        if self.power == 1:
            xp.multiply(dy, self.diff_scale, out=dx)
            return
        part = self.scratch.get("part")
        if self.power == 2:
            xp.multiply(x, self.diff_scale * self.scale, out=part)
            if self.shift != 0:
                part += self.diff_scale * self.shift
        elif self.shift == 0:
            xp.divide(y, x, out=part)
            part *= self.power
        else:
            _affine(xp, x, self.scale, self.shift, part)
            xp.divide(y, part, out=part)
            if self.diff_scale != 1:
                part *= self.diff_scale
        xp.multiply(dy, part, out=dx)


def _affine(xp, x, scale, shift, out):
    """out = shift + scale * x, in Caffe's steps (scale, then shift, each only if needed)."""
    if scale != 1:
        xp.multiply(x, scale, out=out)
    elif out is not x:
        out[...] = x
    if shift != 0:
        out += shift


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

    def compute(self, xp, x, y):
        if self.inner_scale == 1:
            xp.exp(x, out=y)
        else:
            xp.multiply(x, self.inner_scale, out=y)
            xp.exp(y, out=y)
        if self.outer_scale != 1:
            y *= self.outer_scale

    def gradient(self, xp, x, y, dy, dx):
        xp.multiply(dy, y, out=dx)
        if self.inner_scale != 1:
            dx *= self.inner_scale


@register("Log")
class LogLayer(_Elementwise):
    """y = log_base(shift + scale * x);  dy/dx = scale / (ln(base) * (shift + scale * x)).

    log_param: base (default -1, meaning e), scale (1), shift (0).
    """

    needs_input = True
    floats = ("part",)

    def setup(self, bottom, top):
        p = self.param.log_param
        log_base = _log_of_base(self, float(p.base))
        if log_base == 0:
            raise self.error("log_param.base 1 has no logarithm (ln 1 = 0); choose another base")
        self.base_scale = 1.0 / log_base
        self.scale, self.shift = float(p.scale), float(p.shift)
        self.backward_scale = self.scale * self.base_scale

    def compute(self, xp, x, y):
        if self.scale == 1 and self.shift == 0:
            xp.log(x, out=y)
        else:
            _affine(xp, x, self.scale, self.shift, y)
            xp.log(y, out=y)
        if self.base_scale != 1:
            y *= self.base_scale

    def gradient(self, xp, x, y, dy, dx):
        part = self.scratch.get("part")
        _affine(xp, x, self.scale, self.shift, part)
        xp.reciprocal(part, out=part)
        if self.backward_scale != 1:
            part *= self.backward_scale
        xp.multiply(dy, part, out=dx)


@register("BNLL")
class BNLLLayer(_Elementwise):
    """Binomial normal log likelihood: y = log(1 + exp(x)), computed stably as
    max(x, 0) + log(1 + exp(-|x|));  dy/dx = e / (1 + e) with e = exp(min(x, 50))."""

    needs_input = True
    zeros = True
    floats = ("part", "denominator")

    def compute(self, xp, x, y):
        part = self.scratch.get("part")
        xp.abs(x, out=part)
        xp.negative(part, out=part)
        xp.exp(part, out=part)
        xp.log1p(part, out=part)
        xp.maximum(x, self.scratch.zeros(), out=y)
        y += part

    def gradient(self, xp, x, y, dy, dx):
        e, denominator = self.scratch.get("part"), self.scratch.get("denominator")
        xp.minimum(x, BNLL_THRESHOLD, out=e)
        xp.exp(e, out=e)
        xp.add(e, 1, out=denominator)
        xp.multiply(dy, e, out=dx)
        dx /= denominator


@register("Clip")
class ClipLayer(_Elementwise):
    """y = max(min, min(x, max));  dy/dx = 1 where min <= x <= max (both ends included), else 0.

    clip_param.min and clip_param.max are required.
    """

    needs_input = True
    masks = ("inside", "below_max")

    def setup(self, bottom, top):
        p = self.param.clip_param
        if not (p.HasField("min") and p.HasField("max")):
            raise self.error("needs clip_param { min: ... max: ... }; both bounds are required")
        self.min, self.max = float(p.min), float(p.max)
        if self.min > self.max:
            raise self.error(f"clip_param.min ({self.min}) is greater than clip_param.max "
                             f"({self.max}); swap them")

    def compute(self, xp, x, y):
        xp.minimum(x, self.max, out=y)
        xp.maximum(y, self.min, out=y)

    def gradient(self, xp, x, y, dy, dx):
        inside, below_max = self.scratch.mask("inside"), self.scratch.mask("below_max")
        xp.greater_equal(x, self.min, out=inside)
        xp.less_equal(x, self.max, out=below_max)
        inside &= below_max
        xp.multiply(dy, inside, out=dx)


@register("Threshold")
class ThresholdLayer(NeuronLayer):
    """y = 1 where x > threshold, else 0 (threshold_param.threshold, default 0). No backward pass."""

    def setup(self, bottom, top):
        self.threshold = float(self.param.threshold_param.threshold)

    def forward(self, bottom, top):
        self.xp.greater(bottom[0].read_data(), self.threshold, out=top[0].write_data())


@register("Swish")
class SwishLayer(NeuronLayer):
    """y = x * s with s = sigmoid(beta * x);  dy/dx = beta * y + s * (1 - beta * y).

    swish_param.beta defaults to 1. The backward pass reads y and s only, so in place is fine.
    """

    def __init__(self, param, phase=None, dtype=np.float32):
        super().__init__(param, phase, dtype)
        self.scratch = _Scratch()

    def setup(self, bottom, top):
        self.beta = float(self.param.swish_param.beta)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.scratch.reshape(self.xp, bottom[0].shape, self.dtype, ("sigmoid", "part", "factor"),
                             (), False)

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data()
        s = self.scratch.get("sigmoid")
        xp.multiply(x, self.beta, out=s)
        _sigmoid(xp, s, s)
        xp.multiply(x, s, out=top[0].write_data())

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        xp = self.xp
        y, dy = top[0].read_data(), top[0].read_diff()
        s = self.scratch.get("sigmoid")
        factor, part = self.scratch.get("factor"), self.scratch.get("part")
        xp.multiply(y, self.beta, out=factor)          # beta * y
        xp.subtract(1, factor, out=part)               # 1 - beta * y
        part *= s
        factor += part
        xp.multiply(dy, factor, out=bottom[0].write_diff())


@register("PReLU")
class PReLULayer(NeuronLayer):
    """Parametric ReLU: y = max(x, 0) + a_c * min(x, 0) with a learned slope a_c per channel
    (axis 1), or one slope for all channels with prelu_param.channel_shared.

    Bottom: (N, C, ...) with at least 2 axes. Param blob 0: the slopes, shape (C,), or () when
    shared; filled by prelu_param.filler (default constant 0.25).
    Gradients: dE/dx = dy * ((x > 0) + a_c * (x <= 0));
    dE/da_c += sum over the elements of channel c of dy * x * (x <= 0).
    """

    def __init__(self, param, phase=None, dtype=np.float32):
        super().__init__(param, phase, dtype)
        self.scratch = _Scratch()

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
        shape = bottom[0].shape
        self.scratch.reshape(self.xp, shape, self.dtype, ("part",), ("mask",), True)
        self._sum_axes = tuple([i for i in range(len(shape)) if self.channel_shared or i != 1])
        self.scratch.work.get(self.xp, "slope_sum", self.blobs[0].shape, self.dtype)

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
        zeros, part = self.scratch.zeros(), self.scratch.get("part")
        xp.minimum(x, zeros, out=part)
        part *= self._slopes(x)
        y = top[0].write_data()
        xp.maximum(x, zeros, out=y)
        y += part

    def backward(self, top, propagate_down, bottom):
        xp = self.xp
        x = (self._input_copy if self._in_place else bottom[0]).read_data()
        dy = top[0].read_diff()
        part, mask = self.scratch.get("part"), self.scratch.mask("mask")
        # The slope gradient first: in place, the bottom diff below overwrites dy.
        if self.param_propagate_down[0]:
            xp.multiply(dy, x, out=part)
            xp.less_equal(x, 0, out=mask)
            part *= mask
            total = self.scratch.work.get(xp, "slope_sum", self.blobs[0].shape, self.dtype)
            xp.sum(part, axis=self._sum_axes, out=total)
            self.blobs[0].write_diff()[...] += total
        if propagate_down[0]:
            _slope_factor(xp, x, self._slopes(x), part, mask)
            xp.multiply(dy, part, out=bottom[0].write_diff())
