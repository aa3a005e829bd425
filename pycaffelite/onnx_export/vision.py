"""Convolution, Deconvolution, Pooling, SPP and LRN as ONNX nodes.

Pooling windows. Caffe counts windows with ceil rounding and drops a last window that would start
in the far padding; ONNX's own ceil_mode has differed between runtimes on that rule. So the
exporter never relies on it: it computes Caffe's window count itself (the layer holds it) and
writes floor-mode pooling with an end pad chosen so that floor rounding gives exactly that count:

    end = (out - 1) * stride + kernel - size - pad        (at least 0)

Then every window lies inside the ONNX-padded input, so AveragePool with count_include_pad
divides every window by kernel_h * kernel_w. Caffe divides by the window clipped to its own
padded image [-pad, size + pad), which is smaller only for windows reaching past it (the last
row or column when end > pad); those outputs are multiplied by a constant tensor of
kernel_h * kernel_w / divisor. MaxPool ignores padding, as Caffe does. Only a window lying wholly
outside the image (possible with pad 0 and kernel < stride) needs end >= kernel, which ONNX
forbids; then an explicit Pad node (-FLT_MAX for MAX, Caffe's value for an empty window; 0 for
the sums) comes first and the pooling itself has no pads.
"""
import numpy as np
from onnx import TensorProto

from ..layers.lrn import WITHIN_CHANNEL
from ..layers.pooling import AVE, MAX, STOCHASTIC
from ..proto import caffe_pb2
from .graph import Unsupported, converts

FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)


@converts("Convolution", "Deconvolution")
def convolution(g, s):
    """Conv / ConvTranspose: Caffe's weight layouts are ONNX's ((out, in/group, k...) and
    (in, out/group, k...)), as are the output sizes for symmetric pads. Channels on an axis
    other than 1 are handled by folding the outer axes into one batch axis and back."""
    layer = s.layer
    if layer.num_spatial == 0:
        raise Unsupported("a convolution without spatial axes has no ONNX Conv form")
    op = "ConvTranspose" if layer.type == "Deconvolution" else "Conv"
    inputs = [g.param(layer.blobs[0], "weight")]
    if layer.bias_term:
        inputs.append(g.param(layer.blobs[1], "bias"))
    attributes = dict(kernel_shape=list(layer.kernel), strides=list(layer.stride),
                      pads=list(layer.pad) * 2, dilations=list(layer.dilation), group=layer.group)
    axis = layer.channel_axis
    outputs = []
    for i, (x, shape, out_shape) in enumerate(zip(s.inputs, s.in_shapes, s.out_shapes)):
        if axis == 1:
            outputs.append(g.add(op, [x] + inputs, s.out(i), **attributes))
            continue
        folded = g.reshape(x, (int(np.prod(shape[:axis], dtype=np.int64)),) + tuple(shape[axis:]))
        y = g.add(op, [folded] + inputs, **attributes)
        outputs.append(g.reshape(y, out_shape, s.out(i)))
    return outputs


def pool_2d(g, x, method, pooler, outputs=None, mask_output=None):
    """One Caffe pooling (a pycaffelite Pooler's geometry) of the (N, C, H, W) value x; see the
    module docstring. STOCHASTIC is its test-time form, sum(x^2) / (FLT_MIN + sum(x))."""
    kernel, stride, pad = pooler.kernel, pooler.stride, pooler.pad
    sizes, out_hw = (pooler.height, pooler.width), pooler.out_hw
    end = [max(0, (o - 1) * st + k - size - p)
           for o, st, k, size, p in zip(out_hw, stride, kernel, sizes, pad)]
    pads = list(pad) + end
    if any(e >= k for e, k in zip(end, kernel)):
        if mask_output is not None:
            raise Unsupported(f"windows lying wholly outside the {sizes[0]}x{sizes[1]} input "
                              f"(kernel {kernel}, stride {stride}) leave no ONNX index for the "
                              f"mask top")
        fill = -FLT_MAX if method == MAX else 0.0
        x = g.add("Pad", [x, g.ints([0, 0] + list(pad) + [0, 0] + end), g.scalar(fill)])
        pads = [0, 0, 0, 0]
    attributes = dict(kernel_shape=list(kernel), strides=list(stride), pads=pads)
    if method == MAX:
        if mask_output is None:
            return g.add("MaxPool", [x], outputs, **attributes)
        y, index = g.add("MaxPool", [x], [outputs, g.fresh(f"{g.layer_name}/index")], **attributes)
        plane = g.add("Mod", [index, g.ints([sizes[0] * sizes[1]])])
        g.add("Cast", [plane], mask_output, to=TensorProto.FLOAT)
        return y
    area = kernel[0] * kernel[1]
    if method == AVE:
        correction = area / pooler.divisor.astype(np.float64)
        if np.array_equal(correction, np.ones_like(correction)):
            return g.add("AveragePool", [x], outputs, count_include_pad=1, **attributes)
        mean = g.add("AveragePool", [x], count_include_pad=1, **attributes)
        return g.add("Mul", [mean, g.initializer(correction, "divisor_correction")], outputs)
    squares = g.add("Mul", [x, x])
    sum_squares = g.mul_scalar(g.add("AveragePool", [squares], count_include_pad=1, **attributes), area)
    total = g.mul_scalar(g.add("AveragePool", [x], count_include_pad=1, **attributes), area)
    return g.add("Div", [sum_squares, g.add_scalar(total, FLT_MIN)], outputs)


@converts("Pooling")
def pooling(g, s):
    layer = s.layer
    if layer.method == STOCHASTIC and layer.phase == caffe_pb2.TRAIN:
        raise Unsupported("STOCHASTIC pooling samples at random in the TRAIN phase")
    if layer.global_pooling and layer.method in (MAX, AVE) and len(s.out_shapes) == 1:
        return [g.add("GlobalMaxPool" if layer.method == MAX else "GlobalAveragePool",
                      s.inputs, s.out(0))]
    if len(s.out_shapes) == 2:
        y_name, mask_name = s.outs()
        pool_2d(g, s.inputs[0], layer.method, layer.pooler, y_name, mask_name)
        return [y_name, mask_name]
    return [pool_2d(g, s.inputs[0], layer.method, layer.pooler, s.out(0))]


@converts("SPP")
def spatial_pyramid_pooling(g, s):
    """Each pyramid level is a pooling (kernel = stride = the bin size, Caffe's pad), flattened
    per item; the levels are concatenated along axis 1."""
    layer = s.layer
    if layer.method == STOCHASTIC:
        raise Unsupported("SPP's STOCHASTIC pooling samples at random in every phase")
    if layer.pyramid_height == 1:
        return [pool_2d(g, s.inputs[0], layer.method, layer.levels[0], s.out(0))]
    n, c = s.in_shapes[0][:2]
    levels = []
    for pooler in layer.levels:
        pooled = pool_2d(g, s.inputs[0], layer.method, pooler)
        levels.append(g.reshape(pooled, (n, c * pooler.out_hw[0] * pooler.out_hw[1])))
    return [g.add("Concat", levels, s.out(0), axis=1)]


@converts("LRN")
def local_response_normalization(g, s):
    """ACROSS_CHANNELS is ONNX's LRN (the same window and formula for odd sizes). WITHIN_CHANNEL
    is written out: x * (1 + alpha * avgpool_{n x n, pad r}(x^2))^-beta, where every window lies
    inside the padded image, so ONNX's count_include_pad divisor n^2 is Caffe's."""
    layer = s.layer
    x = s.inputs[0]
    if layer.region != WITHIN_CHANNEL:
        return [g.add("LRN", [x], s.out(0), size=layer.size, alpha=float(layer.alpha),
                      beta=float(layer.beta), bias=float(layer.k))]
    mean = pool_2d(g, g.add("Mul", [x, x]), AVE, layer.pooler)
    base = g.add_scalar(g.mul_scalar(mean, layer.alpha), 1.0)
    factor = g.add("Pow", [base, g.scalar(-layer.beta)])
    return [g.add("Mul", [x, factor], s.out(0))]
