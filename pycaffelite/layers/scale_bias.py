"""Scale and Bias: multiply by / add a blob broadcast along some axes of bottom[0].

Both layers apply an operand of shape S = bottom[0].shape[axis : axis + len(S)] (a scalar operand,
S = (), applies everywhere). Seen as (outer, dim, inner) = (product of the axes before `axis`,
product of S, product of the axes after them), bottom[0][o, d, i] meets operand[d]. The operand is
either a learned param blob (one bottom; its shape covers `num_axes` axes from `axis`, -1 = all
the rest) or bottom[1] (two bottoms).
"""
import numpy as np

from .. import parallel
from ..proto import caffe_pb2
from . import register
from .base import Layer


def _param_shape(layer, bottom, axis, num_axes):
    """The shape of a learned operand covering `num_axes` axes of `bottom` from `axis`."""
    axis = layer.canonical_axis(bottom, axis)
    if num_axes < -1:
        raise layer.error(f"num_axes must be >= 0, or -1 for all axes from `axis` on; found {num_axes}")
    if num_axes >= 0 and axis + num_axes > bottom.num_axes:
        raise layer.error(f"num_axes {num_axes} from axis {axis} runs past the last axis of bottom[0] "
                          f"{bottom.shape}; lower num_axes or axis")
    end = bottom.num_axes if num_axes == -1 else axis + num_axes
    return bottom.shape[axis:end]


def _broadcast_view(layer, bottom, operand_shape, axis, what):
    """(outer, dim, inner) for applying an operand of `operand_shape` to `bottom` from `axis`."""
    axis = 0 if not operand_shape else layer.canonical_axis(bottom, axis)
    end = axis + len(operand_shape)
    if end > bottom.num_axes or bottom.shape[axis:end] != tuple(operand_shape):
        raise layer.error(f"the {what} of shape {tuple(operand_shape)} does not fit bottom[0] "
                          f"{bottom.shape} from axis {axis} (it must equal bottom[0]'s dims "
                          f"there, found {bottom.shape[axis:end]}); fix the shapes or the axis")
    return bottom.count(0, axis), bottom.count(axis, end), bottom.count(end)


@register("Bias")
class BiasLayer(Layer):
    """top = bottom[0] + b, with b broadcast as described in the module docstring.

    bottom[0]: any shape; bottom[1] (optional): the bias b; top: bottom[0]'s shape, in place
    allowed. With one bottom, b is a param blob filled by bias_param.filler (default 0).
    Backward: dbottom[0] = dtop; db = dtop summed over outer and inner (accumulated for the param,
    written for bottom[1]).
    """

    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.bias_param
        if len(bottom) == 1:
            self.add_param_blob(_param_shape(self, bottom[0], p.axis, p.num_axes), p.filler)

    def _bias(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        self.view = _broadcast_view(self, bottom[0], self._bias(bottom).shape,
                                    self.param.bias_param.axis, "bias")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].read_data().reshape(self.view)
        b = self._bias(bottom).read_data().reshape(1, -1, 1)
        self.xp.add(x, b, out=top[0].write_data().reshape(self.view))

    def backward(self, top, propagate_down, bottom):
        dy = top[0].read_diff().reshape(self.view)
        if len(bottom) > 1 and propagate_down[1]:
            bottom[1].write_diff()[...] = dy.sum(axis=(0, 2)).reshape(bottom[1].shape)
        if len(bottom) == 1 and self.param_propagate_down[0]:
            db = self.blobs[0].write_diff()
            db += dy.sum(axis=(0, 2)).reshape(db.shape)
        if propagate_down[0] and bottom[0] is not top[0]:
            bottom[0].write_diff()[...] = top[0].read_diff()


@register("Scale")
class ScaleLayer(Layer):
    """top = bottom[0] * s (+ b), with s (and b) broadcast as described in the module docstring.

    bottom[0]: any shape; bottom[1] (optional): the scale s; top: bottom[0]'s shape, in place
    allowed. With one bottom, s is param blob 0, filled by scale_param.filler (default constant
    1). With `bias_term: true` a bias b of s's shape is the last param blob (filled by
    bias_filler, default 0).

    Backward: dbottom[0] = dtop * s; ds = (dtop * bottom[0]) summed over outer and inner;
    db = dtop summed likewise (param diffs accumulated, bottom[1]'s diff written).

    On the CPU each of these is one compiled pass over ranges of the operand's entries side by
    side (`pycaffelite.kernels.channels`; numpy's sums over the outer and inner axes at once
    are slow and its products need temporaries); the array-module code runs on the device
    (and on the CPU with `compiled` off, in the tests).
    """

    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1
    compiled = True

    def setup(self, bottom, top):
        p = self.param.scale_param
        if len(bottom) == 1:
            filler = p.filler
            if not p.HasField("filler"):
                filler = caffe_pb2.FillerParameter(type="constant", value=1)
            self.add_param_blob(_param_shape(self, bottom[0], p.axis, p.num_axes), filler)
        self.bias_term = p.bias_term
        if self.bias_term:
            num_axes = bottom[1].num_axes if len(bottom) > 1 else p.num_axes
            self.add_param_blob(_param_shape(self, bottom[0], p.axis, num_axes), p.bias_filler)
        self.saved_bottom = self.make_blob(())

    def _scale(self, bottom):
        return bottom[1] if len(bottom) > 1 else self.blobs[0]

    def reshape(self, bottom, top):
        scale = self._scale(bottom)
        self.view = _broadcast_view(self, bottom[0], scale.shape, self.param.scale_param.axis, "scale")
        if self.bias_term and self.blobs[-1].shape != scale.shape:
            raise self.error(f"the bias has shape {self.blobs[-1].shape} but the scale "
                             f"{scale.shape}; give bottom[1] the shape the layer was set up with")
        top[0].reshape(bottom[0].shape)
        self.saved_bottom.reshape(bottom[0].shape if bottom[0] is top[0] else ())

    def forward(self, bottom, top):
        x = bottom[0].read_data().reshape(self.view)
        if bottom[0] is top[0]:
            self.saved_bottom.write_data()[...] = x.reshape(self.saved_bottom.shape)
        s = self._scale(bottom).read_data().reshape(1, -1, 1)
        y = top[0].write_data().reshape(self.view)
        if self._runs_compiled():
            shift = self.blobs[-1].read_data() if self.bias_term else s
            _over_entries(self.view, "scale_shift", x, s.reshape(-1), shift.reshape(-1),
                          self.bias_term, y)
            return
        self.xp.multiply(x, s, out=y)
        if self.bias_term:
            y += self.blobs[-1].read_data().reshape(1, -1, 1)

    def _runs_compiled(self):
        return self.compiled and self.xp is np

    def _channel_sums(self, kernel, *arrays):
        """The sums over outer and inner of the (outer, dim, inner) arrays (of their product,
        for two): a (dim,) array."""
        if self._runs_compiled():
            out = np.empty(self.view[1], arrays[0].dtype)
            _over_entries(self.view, kernel, *arrays, out)
            return out
        product = arrays[0] if len(arrays) == 1 else arrays[0] * arrays[1]
        return product.sum(axis=(0, 2))

    def backward(self, top, propagate_down, bottom):
        dy = top[0].read_diff().reshape(self.view)
        if self.bias_term and self.param_propagate_down[-1]:
            db = self.blobs[-1].write_diff()
            db += self._channel_sums("sums", dy).reshape(db.shape)
        scale = self._scale(bottom)
        as_param = len(bottom) == 1
        if (as_param and self.param_propagate_down[0]) or (not as_param and propagate_down[1]):
            source = self.saved_bottom if bottom[0] is top[0] else bottom[0]
            ds = self._channel_sums("dots", dy, source.read_data().reshape(self.view)).reshape(
                scale.shape)
            if as_param:
                scale_diff = scale.write_diff()
                scale_diff += ds
            else:
                scale.write_diff()[...] = ds
        if propagate_down[0]:
            s = scale.read_data().reshape(1, -1, 1)
            dx = bottom[0].write_diff().reshape(self.view)
            if self._runs_compiled():
                _over_entries(self.view, "scale_shift", dy, s.reshape(-1), s.reshape(-1), False, dx)
            else:
                self.xp.multiply(dy, s, out=dx)


def _over_entries(view, kernel, *args):
    """The compiled `kernel` of `pycaffelite.kernels.channels` over ranges of the view's
    middle axis (the operand's entries) side by side."""
    from ..kernels import channels  # noqa: PLC0415 - compiled at first use

    function = getattr(channels, kernel)
    parallel.over_ranges(view[1], lambda lo, hi: function(*args, lo, hi))
