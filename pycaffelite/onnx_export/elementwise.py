"""Neuron layers, Dropout and Eltwise as ONNX nodes.

Caffe's affine-then-map layers (Power, Exp, Log) are written as the same steps in the same order
(scale, shift, map, outer scale), each only where Caffe's layer performs it, so the roundings
match.
"""
import numpy as np
from onnx import TensorProto

from ..proto import caffe_pb2
from .graph import converts

_ELTWISE = caffe_pb2.EltwiseParameter

# Caffe type -> ONNX operator for the element-wise maps without parameters.
_PLAIN = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus"}


def _steps(g, x, steps, output):
    """Apply [(op, scalar), ...] in order (op None: a unary op given by the scalar slot)."""
    for index, (op, value) in enumerate(steps):
        last = index == len(steps) - 1
        inputs = [x] if value is None else [x, g.scalar(value)]
        x = g.add(op, inputs, output if last else None)
    return x


@converts(*_PLAIN)
def plain(g, s):
    return [g.add(_PLAIN[s.layer.type], s.inputs, s.out(0))]


@converts("Dropout", "Split")
def identity(g, s):
    """Dropout at test time and Split pass their bottom on unchanged: the tops are the same
    value, no node."""
    return [s.inputs[0]] * len(s.out_shapes)


@converts("ReLU")
def relu(g, s):
    slope = s.layer.negative_slope
    if slope == 0:
        return [g.add("Relu", s.inputs, s.out(0))]
    return [g.add("LeakyRelu", s.inputs, s.out(0), alpha=float(slope))]


@converts("PReLU")
def prelu(g, s):
    rank = len(s.in_shapes[0])
    shape = (1,) if s.layer.channel_shared else (s.in_shapes[0][1],) + (1,) * (rank - 2)
    return [g.add("PRelu", [s.inputs[0], g.param(s.layer.blobs[0], "slope", shape)], s.out(0))]


@converts("ELU")
def elu(g, s):
    return [g.add("Elu", s.inputs, s.out(0), alpha=float(s.layer.alpha))]


@converts("Clip")
def clip(g, s):
    layer = s.layer
    return [g.add("Clip", [s.inputs[0], g.scalar(layer.min), g.scalar(layer.max)], s.out(0))]


@converts("Threshold")
def threshold(g, s):
    above = g.add("Greater", [s.inputs[0], g.scalar(s.layer.threshold)])
    return [g.add("Cast", [above], s.out(0), to=TensorProto.FLOAT)]


@converts("Swish")
def swish(g, s):
    x = s.inputs[0]
    beta = s.layer.beta
    gate = g.add("Sigmoid", [x if beta == 1 else g.mul_scalar(x, beta)])
    return [g.add("Mul", [x, gate], s.out(0))]


def _affine_steps(scale, shift):
    return ([("Mul", scale)] if scale != 1 else []) + ([("Add", shift)] if shift != 0 else [])


@converts("Power")
def power(g, s):
    """(shift + scale x)^power; with power * scale = 0 Caffe's output is a constant."""
    layer = s.layer
    if layer.diff_scale == 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = 1.0 if layer.power == 0 else float(np.power(np.float64(layer.shift), layer.power))
        return [g.add("Expand", [g.scalar(value), g.ints(s.out_shapes[0])], s.out(0))]
    steps = _affine_steps(layer.scale, layer.shift)
    if layer.power != 1:
        steps.append(("Pow", layer.power))
    return [_steps(g, s.inputs[0], steps, s.out(0)) if steps else s.inputs[0]]


@converts("Exp")
def exp(g, s):
    """outer * exp(inner * x), with inner = ln(base) * scale and outer = base^shift."""
    layer = s.layer
    steps = [("Mul", layer.inner_scale)] if layer.inner_scale != 1 else []
    steps.append(("Exp", None))
    if layer.outer_scale != 1:
        steps.append(("Mul", layer.outer_scale))
    return [_steps(g, s.inputs[0], steps, s.out(0))]


@converts("Log")
def log(g, s):
    layer = s.layer
    steps = _affine_steps(layer.scale, layer.shift) + [("Log", None)]
    if layer.base_scale != 1:
        steps.append(("Mul", layer.base_scale))
    return [_steps(g, s.inputs[0], steps, s.out(0))]


@converts("Eltwise")
def eltwise(g, s):
    """SUM: c_0 x_0 + c_1 x_1 + ... added left to right as Caffe does; PROD: products left to
    right; MAX: Max (the value does not depend on which equal bottom wins)."""
    layer = s.layer
    inputs = s.inputs
    if layer.op == _ELTWISE.MAX:
        return [g.add("Max", inputs, s.out(0))]
    if layer.op == _ELTWISE.SUM:
        inputs = [x if c == 1 else g.mul_scalar(x, c) for x, c in zip(inputs, layer.coeffs)]
    op = "Add" if layer.op == _ELTWISE.SUM else "Mul"
    y = inputs[0]
    for index, x in enumerate(inputs[1:], start=2):
        y = g.add(op, [y, x], s.out(0) if index == len(inputs) else None)
    return [y]

