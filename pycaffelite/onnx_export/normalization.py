"""BatchNorm, Scale, Bias and MVN as ONNX nodes."""
import numpy as np

from .graph import converts


@converts("BatchNorm")
def batch_norm(g, s):
    """With global statistics: mean = b0 / b2 and var = b1 / b2 from the three blobs (0 when the
    scale factor b2 is 0), then ONNX BatchNormalization with unit scale and zero shift (or, for a
    1-axis bottom, (x - mean) / sqrt(var + eps) written out). With batch statistics (an explicit
    `use_global_stats: false`), the statistics are computed in the graph as Caffe computes them:
    per channel over all other axes, var = mean((x - mean)^2)."""
    layer = s.layer
    x, shape = s.inputs[0], s.in_shapes[0]
    eps = float(layer.eps)
    if not layer.use_global_stats:
        return [_batch_statistics_norm(g, x, shape, eps, s.out(0))]
    b0, b1, b2 = (blob.cpu_data() for blob in layer.blobs)
    factor = 0.0 if float(b2[0]) == 0 else 1.0 / float(b2[0])
    mean, var = b0 * factor, b1 * factor
    if len(shape) >= 2:
        channels = shape[1]
        inputs = [x, g.initializer(np.ones(channels), "scale"), g.initializer(np.zeros(channels), "shift"),
                  g.initializer(mean, "mean"), g.initializer(var, "var")]
        return [g.add("BatchNormalization", inputs, s.out(0), epsilon=eps)]
    std = np.sqrt(var + np.float32(eps))
    centred = g.add("Sub", [x, g.initializer(mean, "mean")])
    return [g.add("Div", [centred, g.initializer(std, "std")], s.out(0))]


def _batch_statistics_norm(g, x, shape, eps, output):
    channels = 1 if len(shape) == 1 else shape[1]
    view = (shape[0], channels, int(np.prod(shape[2:], dtype=np.int64)))
    x3 = g.reshape(x, view)
    centred = g.add("Sub", [x3, g.reduce("ReduceMean", x3, (0, 2), keepdims=True)])
    var = g.reduce("ReduceMean", g.add("Mul", [centred, centred]), (0, 2), keepdims=True)
    y = g.add("Div", [centred, g.add("Sqrt", [g.add_scalar(var, eps)])])
    return g.reshape(y, shape, output)


def _operand_shape(shape, operand, axis):
    """The operand's shape padded with trailing 1s so that it broadcasts against a bottom of
    `shape` from `axis` on (ONNX broadcasting aligns the last axes)."""
    if not operand:
        return ()
    axis = axis % len(shape)
    return tuple(operand) + (1,) * (len(shape) - axis - len(operand))


def _apply(g, s, op, blob, axis, suffix, bias_blob=None):
    """x op operand (+ bias): the operand is `blob` (one bottom) or bottom 1 (two bottoms)."""
    x, shape = s.inputs[0], s.in_shapes[0]
    operand = blob.shape if len(s.inputs) == 1 else s.in_shapes[1]
    broadcast = _operand_shape(shape, operand, axis)
    if len(s.inputs) == 1:
        value = g.param(blob, suffix, broadcast)
    else:
        value = g.reshape(s.inputs[1], broadcast) if broadcast != tuple(operand) else s.inputs[1]
    if bias_blob is None:
        return [g.add(op, [x, value], s.out(0))]
    y = g.add(op, [x, value])
    return [g.add("Add", [y, g.param(bias_blob, "bias", broadcast)], s.out(0))]


@converts("Scale")
def scale(g, s):
    layer = s.layer
    blob = layer.blobs[0] if len(s.inputs) == 1 else None
    bias = layer.blobs[-1] if layer.bias_term else None
    return _apply(g, s, "Mul", blob, layer.param.scale_param.axis, "scale", bias)


@converts("Bias")
def bias(g, s):
    layer = s.layer
    blob = layer.blobs[0] if len(s.inputs) == 1 else None
    return _apply(g, s, "Add", blob, layer.param.bias_param.axis, "bias")


@converts("MVN")
def mean_variance_normalization(g, s):
    """Per group (each item's channel plane, or each item across channels): x - mean, divided by
    sqrt(mean((x - mean)^2)) + eps when normalize_variance; the top is 4-axis like Caffe's."""
    layer = s.layer
    out_shape = s.out_shapes[0]
    groups = out_shape[0] if layer.across_channels else out_shape[0] * out_shape[1]
    count = int(np.prod(out_shape, dtype=np.int64))
    x = g.reshape(s.inputs[0], (groups, count // groups if groups else 0))
    y = g.add("Sub", [x, g.reduce("ReduceMean", x, (1,), keepdims=True)])
    if layer.normalize_variance:
        var = g.reduce("ReduceMean", g.add("Mul", [y, y]), (1,), keepdims=True)
        sigma = g.add_scalar(g.add("Sqrt", [var]), layer.eps)
        y = g.add("Div", [y, sigma])
    return [g.reshape(y, out_shape, s.out(0))]
