"""Weight fillers, selected by FillerParameter.type as in Caffe.

  constant           value
  uniform            U[min, max)
  gaussian           N(mean, std^2); with sparse = s >= 0 each weight is kept with probability
                     s / num_outputs (num_outputs = shape[0]) and zeroed otherwise
  positive_unitball  U[0, 1), then each of the shape[0] rows scaled to sum to 1
  xavier             U[-a, a), a = sqrt(3 / n)
  msra               N(0, 2 / n)
                     with fan_in = count / shape[0], fan_out = count / shape[1] and n = fan_in
                     (FAN_IN), fan_out (FAN_OUT) or their mean (AVERAGE)
  bilinear           the kernel of bilinear upsampling, for Deconvolution weights (4-d, square)
"""
import math

import numpy as np

from . import device
from .errors import PclError


def _fans(shape):
    count = int(np.prod(shape, dtype=np.int64))
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _variance_n(param, shape):
    from .proto import caffe_pb2  # noqa: PLC0415

    fan_in, fan_out = _fans(shape)
    norm = param.variance_norm
    if norm == caffe_pb2.FillerParameter.FAN_OUT:
        return fan_out
    if norm == caffe_pb2.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    return fan_in


def _constant(param, shape, rng):
    return np.full(shape, param.value)


def _uniform(param, shape, rng):
    return rng.uniform(param.min, param.max, size=shape)


def _gaussian(param, shape, rng):
    values = rng.normal(param.mean, param.std, size=shape)
    if param.sparse >= 0:
        keep_probability = param.sparse / shape[0]
        values *= rng.random(size=shape) < keep_probability
    return values


def _positive_unitball(param, shape, rng):
    values = rng.uniform(0.0, 1.0, size=shape)
    rows = values.reshape(shape[0], -1)
    rows /= rows.sum(axis=1, keepdims=True)
    return values


def _xavier(param, shape, rng):
    scale = math.sqrt(3.0 / _variance_n(param, shape))
    return rng.uniform(-scale, scale, size=shape)


def _msra(param, shape, rng):
    return rng.normal(0.0, math.sqrt(2.0 / _variance_n(param, shape)), size=shape)


def _bilinear(param, shape, rng):
    size = shape[3]
    factor = math.ceil(size / 2.0)
    center = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    ramp = 1.0 - np.abs(np.arange(size) / factor - center)
    return np.broadcast_to(np.outer(ramp, ramp), shape)


FILLERS = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}


# The numbers each filler reads (all must be finite).
_NUMBERS = {"constant": ("value",), "uniform": ("min", "max"), "gaussian": ("mean", "std")}


def check(filler_param, shape):
    """Refuse settings the filler cannot use for a blob of `shape` (one PclError saying which);
    return a note for a setting it uses as Caffe would but that is most likely a mistake, or
    None. The filler's owner (a layer) prefixes both with its name."""
    kind = filler_param.type
    shape = tuple(shape)
    if kind not in FILLERS:
        raise PclError(f'unknown filler type "{kind}"; known: {", ".join(FILLERS)}')
    for field in _NUMBERS.get(kind, ()):
        if not math.isfinite(getattr(filler_param, field)):
            raise PclError(f"the {kind} filler's {field} must be a finite number, found "
                           f"{getattr(filler_param, field)}")
    if kind == "gaussian" and filler_param.std < 0:
        raise PclError(f"the gaussian filler's std must not be negative, found {filler_param.std:g}; "
                       f"give the standard deviation (e.g. std: 0.01)")
    if kind == "uniform" and filler_param.min > filler_param.max:
        raise PclError(f"the uniform filler's min ({filler_param.min:g}) is above its max "
                       f"({filler_param.max:g}); swap them")
    if filler_param.sparse < -1:
        raise PclError(f"sparse must be a count >= 0 (or -1, the default, for none), found "
                       f"{filler_param.sparse}")
    if filler_param.sparse != -1 and kind != "gaussian":
        raise PclError(f'sparse applies to the gaussian filler only, found sparse: '
                       f'{filler_param.sparse} with type "{kind}"; remove sparse')
    if kind == "bilinear" and (len(shape) != 4 or shape[2] != shape[3]):
        raise PclError(f"the bilinear filler needs a 4-d blob with a square kernel, found shape {shape}")
    name = "gaussian filler with sparse" if kind == "gaussian" else f"{kind} filler"
    divides_by = {"xavier": "fans", "msra": "fans", "positive_unitball": "rows",
                  "gaussian": "rows" if filler_param.sparse >= 0 else None}.get(kind)
    if divides_by and not shape:
        raise PclError(f"the {name} needs a blob with at least one axis, found a scalar")
    if divides_by and not math.prod(shape):
        raise PclError(f"the {name} divides by the blob's {divides_by}, and this blob holds no "
                       f"values; check the sizes that make it")
    if kind == "positive_unitball" and len(shape) == 1 and shape[0] > 1:
        return (f"the positive_unitball filler makes each of the {shape[0]} rows of a blob of "
                f"shape {shape} sum to 1, and these rows hold one value each: every value becomes "
                f"1 (as in Caffe); say constant value: 1 if that is meant")
    return None


def filled_values(filler_param, shape):
    """A float64 host array of `shape` filled as `filler_param` says (checked by `check`)."""
    check(filler_param, shape)
    return FILLERS[filler_param.type](filler_param, tuple(shape), device.rng())


def fill(blob, filler_param):
    """Fill a blob's data in place."""
    blob.mutable_cpu_data()[...] = filled_values(filler_param, blob.shape)
