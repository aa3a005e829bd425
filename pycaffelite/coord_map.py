"""How coordinates of one NetSpec top relate to those of another (pycaffe's `caffe.coord_map`).

A coordinate map is a triple `(axis, scale, offset)`: the point x of a layer's input lands on
`scale * x + offset` in its output, on every spatial axis from `axis` on (scale and offset are
numbers or arrays with one value per spatial axis). `axis` is the last non-spatial axis, None when
a layer works the same on any axis (ReLU and the other pass-through layers).

Per layer, with stride s, the dilated kernel extent k = d (kernel - 1) + 1, padding p:

* Convolution, Pooling, Im2col: output y covers inputs s y - p .. s y - p + k - 1, whose centre is
  s y - p + (k - 1) / 2; inverting gives scale 1/s and offset (p - (k - 1) / 2) / s.
* Deconvolution (the transpose): scale s, offset (k - 1) / 2 - p.
* Crop with offset c: scale 1, offset -c, on the axes from crop_param.axis on.

Maps compose like affine functions; `coord_map_from_to` walks both tops back to a common
ancestor and joins the two walks, which is what `crop` needs to align a top with a reference.
"""
import numpy as np

from .errors import PclError
from .net_spec import layers as L

PASS_THROUGH_LAYERS = ("AbsVal", "BatchNorm", "Bias", "BNLL", "Clip", "Dropout", "Eltwise", "ELU",
                       "Exp", "Log", "LRN", "MVN", "Power", "PReLU", "ReLU", "Scale", "Sigmoid",
                       "Split", "Swish", "TanH", "Threshold")

IDENTITY = (None, 1, 0)


class UndefinedMapException(PclError):
    """A layer whose output coordinates do not follow its input's (InnerProduct, Reshape...)."""


class AxisMismatchException(PclError):
    """Two maps that apply to different spatial axes cannot be composed."""


class UnconnectedTopsError(PclError, RuntimeError):
    """The tops share no ancestor reached through spatial layers (a RuntimeError, as pycaffe)."""


class CropError(PclError, AssertionError):
    """`crop` cannot align the tops (an AssertionError, as pycaffe's checks are)."""


def _layer_params(fn, field):
    """The layer's arguments, read inside `<field>=dict(...)` when given that way."""
    return fn.params.get(field, fn.params)


def _spatial(params, name, legacy, default):
    """A spatial argument as an array: `name`, or the legacy pair `<legacy>_h`, `<legacy>_w`."""
    if f"{legacy}_h" in params or f"{legacy}_w" in params:
        return np.array([params.get(f"{legacy}_h", default), params.get(f"{legacy}_w", default)])
    return np.array(params.get(name, default), ndmin=1)


def conv_params(fn):
    """(axis, stride, dilated kernel extent, pad) of a Convolution, Deconvolution, Im2col or
    Pooling layer function, each an array with one value per spatial axis (or one for all)."""
    params = _layer_params(fn, "pooling_param" if fn.type_name == "Pooling" else
                           "convolution_param")
    if params.get("global_pooling"):
        raise UndefinedMapException(f"{fn.type_name} with global_pooling has no coordinate map")
    kernel = _spatial(params, "kernel_size", "kernel", None)
    if any(k is None for k in kernel):
        raise PclError(f"a {fn.type_name} layer has no kernel size; give kernel_size (or "
                       f"kernel_h and kernel_w)")
    dilation = np.array(params.get("dilation", 1), ndmin=1)
    return (params.get("axis", 1), _spatial(params, "stride", "stride", 1),
            (kernel - 1) * dilation + 1, _spatial(params, "pad", "pad", 0))


def crop_params(fn):
    """(axis, offset) of a Crop layer function, with Caffe's defaults (axis 2, offset 0)."""
    params = _layer_params(fn, "crop_param")
    return params.get("axis", 2), np.array(params.get("offset", 0), ndmin=1)


def coord_map(fn):
    """The (axis, scale, offset) map from a layer function's input to its output."""
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, extent, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (extent - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, extent, pad = conv_params(fn)
        return axis, stride, (extent - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return IDENTITY
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset
    raise UndefinedMapException(f"{fn.type_name} layers have no coordinate map")


def compose(base_map, next_map):
    """`next_map` (a2, b2) followed by `base_map` (a1, b1): x -> a1 (a2 x + b2) + b1, on the
    axis they share (None goes with any axis)."""
    axis1, a1, b1 = base_map
    axis2, a2, b2 = next_map
    if axis1 is not None and axis2 is not None and axis1 != axis2:
        raise AxisMismatchException(f"cannot compose coordinate maps on axis {axis1} and axis "
                                    f"{axis2}; the layers between the tops work on different axes")
    return (axis2 if axis1 is None else axis1), a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    """The map back: x -> (x - b) / a."""
    axis, a, b = coord_map
    return axis, 1 / a, -b / a


def _mapped_bottoms(top):
    """The bottoms whose coordinates the top follows: all of them, except for Crop, whose
    second bottom only gives the output's size."""
    bottoms = top.fn.inputs
    return bottoms[:1] if top.fn.type_name == "Crop" else bottoms


def _maps_to_ancestors(start, stop_at=None):
    """Walk back from `start` through layers that have a map: {ancestor: map from the ancestor's
    coordinates to `start`'s}. With `stop_at`, return (ancestor, map) for the first ancestor
    reached that is in `stop_at`, or None. Each ancestor is reached once, by the first path
    found: in a consistent net every path gives the same map, and residual nets have
    exponentially many paths."""
    maps = {start: IDENTITY}
    frontier = [start]
    while frontier:
        top = frontier.pop()
        if stop_at is not None and top in stop_at:
            return top, maps[top]
        try:
            step = coord_map(top.fn)
        except UndefinedMapException:
            continue
        for bottom in _mapped_bottoms(top):
            if bottom not in maps:
                maps[bottom] = compose(maps[top], step)
                frontier.append(bottom)
    return maps if stop_at is None else None


def coord_map_from_to(top_from, top_to):
    """The (axis, scale, offset) map from coordinates of `top_from` to those of `top_to`."""
    from_maps = _maps_to_ancestors(top_from)
    found = _maps_to_ancestors(top_to, stop_at=from_maps)
    if found is None:
        raise UnconnectedTopsError("the two tops share no ancestor through layers with a "
                                   "coordinate map (convolution, pooling, crop, pass-through "
                                   "layers); are they connected by spatial layers?")
    common, to_map = found
    return compose(to_map, inverse(from_maps[common]))


def crop(top_from, top_to):
    """A Crop layer's top: `top_from` cut to the coordinates of `top_to`."""
    axis, scale, offset = coord_map_from_to(top_from, top_to)
    if not np.all(scale == 1):
        raise CropError(f"cannot crop: the tops differ in scale ({scale}); check the strides "
                        f"of the layers between them")
    if not np.all(offset <= 0):
        raise CropError(f"cannot crop: the top to crop starts inside the reference (offset "
                        f"{-offset}); it is smaller than the reference top")
    if not np.all(np.round(offset) == offset):
        raise CropError(f"cannot crop by a fractional offset ({-offset}); check the kernel "
                        f"sizes and padding between the tops")
    offsets = [int(v) for v in np.atleast_1d(-np.round(offset))]
    first_axis = 2 if axis is None else axis + 1  # None: the tops coincide, any axis will do
    return L.Crop(top_from, top_to, crop_param=dict(axis=first_axis, offset=offsets))
