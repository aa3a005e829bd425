"""Sources, shape and selection layers, InnerProduct, Softmax and Reduction as ONNX nodes."""
import numpy as np
from onnx import TensorProto

from ..proto import caffe_pb2
from .graph import Unsupported, converts

_REDUCTION = caffe_pb2.ReductionParameter
_INT64_MIN = np.iinfo(np.int64).min


# -- sources and sinks ---------------------------------------------------------------------------
@converts("Input")
def graph_input(g, s):
    return [g.graph_input(name, shape) for name, shape in zip(s.top_names, s.out_shapes)]


@converts("Parameter")
def parameter(g, s):
    return [g.identity(g.param(s.layer.blobs[0], "value"), s.out(0))]


@converts("DummyData")
def dummy_data(g, s):
    fillers = s.layer.fillers
    random = sorted({f.type for f in fillers if f.type != "constant"})
    if random:
        raise Unsupported(f"its {', '.join(random)} filler draws new values at every pass; use "
                          f"an Input layer instead")
    return [g.add("Expand", [g.scalar(f.value), g.ints(shape)], s.out(i))
            for i, (f, shape) in enumerate(zip(fillers, s.out_shapes))]


@converts("Silence")
def silence(g, s):
    return []


# -- moving data ---------------------------------------------------------------------------------
@converts("Concat")
def concat(g, s):
    if len(s.inputs) == 1:
        return [s.inputs[0]]
    return [g.add("Concat", s.inputs, s.out(0), axis=s.layer.axis)]


@converts("Slice")
def slice_layer(g, s):
    if len(s.out_shapes) == 1:
        return [s.inputs[0]]
    return g.add("Split", [s.inputs[0], g.ints(s.layer.sizes)], s.outs(), axis=s.layer.axis)


@converts("Crop")
def crop(g, s):
    axes = [axis for axis, window in enumerate(s.layer.window) if window != slice(None)]
    window = [s.layer.window[axis] for axis in axes]
    return [g.add("Slice", [s.inputs[0], g.ints([w.start for w in window]),
                            g.ints([w.stop for w in window]), g.ints(axes)], s.out(0))]


@converts("Flatten", "Reshape")
def reshape(g, s):
    return [g.reshape(s.inputs[0], s.out_shapes[0], s.out(0))]


@converts("Tile")
def tile(g, s):
    """Caffe repeats the whole block from `axis` on, which is numpy's (and ONNX's) tile along
    that axis."""
    repeats = [1] * len(s.in_shapes[0])
    repeats[_axis(s.in_shapes[0], s.param.tile_param.axis)] = s.layer.tiles
    return [g.add("Tile", [s.inputs[0], g.ints(repeats)], s.out(0))]


def _axis(shape, axis):
    """A (layer-checked) axis counted from the front."""
    return axis % len(shape)


# -- products and normalised maps -----------------------------------------------------------------
@converts("InnerProduct")
def inner_product(g, s):
    """The axes from `axis` on become one vector per item (a reshape to (M, K)), then
    Gemm with W (N, K) transposed, or W (K, N) as stored with `transpose: true`."""
    layer = s.layer
    x, shape, out_shape = s.inputs[0], s.in_shapes[0], s.out_shapes[0]
    m = int(np.prod(out_shape[:-1], dtype=np.int64))
    if tuple(shape) != (m, layer.k):
        x = g.reshape(x, (m, layer.k))
    inputs = [x, g.param(layer.blobs[0], "weight")]
    if layer.bias_term:
        inputs.append(g.param(layer.blobs[1], "bias"))
    flat = tuple(out_shape) == (m, layer.num_output)
    y = g.add("Gemm", inputs, s.out(0) if flat else None, transB=0 if layer.transpose else 1)
    return [y if flat else g.reshape(y, out_shape, s.out(0))]


@converts("Softmax")
def softmax(g, s):
    axis = _axis(s.in_shapes[0], s.param.softmax_param.axis)
    return [g.add("Softmax", s.inputs, s.out(0), axis=axis)]


@converts("Reduction")
def reduction(g, s):
    """ReduceSum / ReduceL1 / ReduceSumSquare over the axes from `axis` on, times coeff; MEAN is
    the sum times coeff / D, as Caffe scales it."""
    layer = s.layer
    shape = s.in_shapes[0]
    axis = _axis(shape, s.param.reduction_param.axis)
    op = {_REDUCTION.ASUM: "ReduceL1", _REDUCTION.SUMSQ: "ReduceSumSquare"}.get(layer.op, "ReduceSum")
    total = g.reduce(op, s.inputs[0], range(axis, len(shape)), keepdims=False)
    return [g.mul_scalar(total, layer.coeff, s.out(0))]


# -- selection -----------------------------------------------------------------------------------
@converts("ArgMax")
def argmax(g, s):
    """TopK on the entries in reverse order, so that among equal values the larger index comes
    first as in Caffe; indices are mapped back (D - 1 - i) and written as floats."""
    layer = s.layer
    shape = s.in_shapes[0]
    x = s.inputs[0]
    if layer.axis is None:
        x = g.reshape(x, (shape[0], int(np.prod(shape[1:], dtype=np.int64))))
        axis, dim = 1, int(np.prod(shape[1:], dtype=np.int64))
    else:
        axis, dim = layer.axis, shape[layer.axis]
    reversed_x = g.add("Slice", [x, g.ints([-1]), g.ints([_INT64_MIN]), g.ints([axis]), g.ints([-1])])
    values, order = g.add("TopK", [reversed_x, g.ints([layer.top_k])], 2, axis=axis, largest=1,
                          sorted=1)
    index = g.add("Cast", [g.add("Sub", [g.ints([dim - 1]), order])], to=TensorProto.FLOAT)
    out_shape = s.out_shapes[0]
    if layer.axis is not None:
        return [g.identity(values if layer.out_max_val else index, s.out(0))]
    parts = [g.reshape(index, (shape[0], 1, layer.top_k))]
    if layer.out_max_val:
        parts.append(g.reshape(values, (shape[0], 1, layer.top_k)))
    joined = g.add("Concat", parts, axis=1) if len(parts) == 2 else parts[0]
    return [g.reshape(joined, out_shape, s.out(0))]


@converts("Embed")
def embed(g, s):
    layer = s.layer
    index = g.add("Cast", s.inputs, to=TensorProto.INT64)
    rows = g.add("Gather", [g.param(layer.blobs[0], "weight"), index],
                 None if layer.bias_term else s.out(0), axis=0)
    if not layer.bias_term:
        return [rows]
    return [g.add("Add", [rows, g.param(layer.blobs[1], "bias")], s.out(0))]


@converts("BatchReindex")
def batch_reindex(g, s):
    index = g.add("Cast", [s.inputs[1]], to=TensorProto.INT64)
    return [g.add("Gather", [s.inputs[0], index], s.out(0), axis=0)]
