"""The ONNX graph under construction, and the registry of layer converters.

A converter is a function `convert(graph, step)` registered for one or more Caffe layer types
with `@converts("Type", ...)`. It reads the layer (`step.layer`: the pycaffelite layer object,
set up and reshaped by the Net, so its derived fields such as a convolution's kernel or a
pooling's output size are at hand), adds nodes and initializers through `graph`, and returns one
ONNX value name per top. A converter that cannot write a layer exactly raises `Unsupported` with
the reason; the exporter collects every such reason before failing.

Values are static: every shape is the one the Net holds, so a graph is made for one set of input
shapes (the `--input-shape` option of `pcl export` picks others).
"""
import numpy as np
from onnx import TensorProto, helper

CONVERTERS = {}


class Unsupported(Exception):
    """A layer (or one setting of it) that ONNX cannot express exactly; the message says why."""


def converts(*type_names):
    """Register a converter for the given Caffe layer types."""

    def register(function):
        for name in type_names:
            CONVERTERS[name] = function
        return function

    return register


class Step:
    """One layer being converted: the layer, its input values and the Net's blob shapes."""

    def __init__(self, graph, layer, inputs, in_shapes, out_shapes, top_names):
        self.graph = graph
        self.layer = layer
        self.param = layer.param
        self.inputs = inputs
        self.in_shapes = in_shapes
        self.out_shapes = out_shapes
        self.top_names = top_names

    def out(self, index=0):
        """The value name for top `index`: the blob's own name where this layer writes the
        blob's last version (so net outputs keep Caffe's names), else a derived name."""
        return self.graph.top_value_name(self.top_names[index])

    def outs(self):
        return [self.out(i) for i in range(len(self.top_names))]


class Graph:
    """Nodes, initializers and unique names of the graph being built, with helpers for the
    operators whose form changed between opsets (the exporter supports opset 13 and later)."""

    def __init__(self, opset, blob_names, last_writers):
        self.opset = opset
        self.nodes = []
        self.initializers = []  # (name, array)
        self.inputs = []
        self.extra_outputs = []  # (value, shape): graph outputs that are no blob's (a layer's state)
        self._used = set()
        self._reserved = set(blob_names)   # a blob's name only ever names a version of that blob
        self._last_writers = last_writers  # blob name -> index of the layer writing it last
        self._node_names = set()
        self._cached = {}
        self.layer_index = -1
        self.layer_name = ""

    # -- names -----------------------------------------------------------------------------------
    def fresh(self, base):
        """A value name not used yet and not some blob's name: base, or base_1, base_2, ..."""
        name, i = base, 1
        while name in self._used or name in self._reserved:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def claim(self, name):
        """Take a blob's own name for a value (a graph input or a blob's last version)."""
        self._used.add(name)
        return name

    def is_used(self, name):
        return name in self._used

    def top_value_name(self, blob):
        """The name for the current layer's version of `blob` (see Step.out)."""
        if self._last_writers.get(blob) == self.layer_index and blob not in self._used:
            return self.claim(blob)
        return self.fresh(f"{blob}/{self.layer_name}")

    def graph_input(self, name, shape):
        self.inputs.append(value_info(self.claim(name), shape))
        return name

    def _node_name(self, op):
        base = f"{self.layer_name}/{op}" if self.layer_name else op
        name, i = base, 1
        while name in self._node_names:
            name, i = f"{base}_{i}", i + 1
        self._node_names.add(name)
        return name

    # -- nodes and constants ----------------------------------------------------------------------
    def add(self, op, inputs, outputs=None, **attributes):
        """Append a node; returns its output name (or names, when `outputs` is a count > 1 or a
        list of several). Without `outputs`, one fresh output named after the layer and op."""
        if outputs is None or isinstance(outputs, int):
            count = 1 if outputs is None else outputs
            base = f"{self.layer_name}/{op}" if self.layer_name else op
            outputs = [self.fresh(base) for _ in range(count)]
        elif isinstance(outputs, str):
            outputs = [outputs]
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs),
                                           name=self._node_name(op), **attributes))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def initializer(self, array, suffix, dtype=np.float32):
        """A constant tensor named after the current layer."""
        name = self.fresh(f"{self.layer_name}/{suffix}" if self.layer_name else suffix)
        self.initializers.append((name, np.ascontiguousarray(array, dtype=dtype)))
        return name

    def param(self, blob, suffix, shape=None):
        """A layer's param blob as a float32 initializer (optionally reshaped); blobs shared
        between layers (ParamSpec names) become one initializer."""
        shape = tuple(blob.shape if shape is None else shape)
        key = ("param", id(blob.data_mem), shape)
        if key not in self._cached:
            self._cached[key] = self.initializer(blob.cpu_data().reshape(shape), suffix)
        return self._cached[key]

    def ints(self, values):
        """A 1-d int64 constant (shapes, axes, pads, slice bounds), shared by equal uses."""
        values = tuple(int(v) for v in values)
        key = ("ints", values)
        if key not in self._cached:
            name = self.fresh("const/i64_" + "_".join(str(v).replace("-", "m") for v in values)[:40])
            self.initializers.append((name, np.array(values, np.int64)))
            self._cached[key] = name
        return self._cached[key]

    def scalar(self, value):
        """A float32 scalar constant, shared by equal uses."""
        value = np.float32(value)
        key = ("scalar", value.tobytes())
        if key not in self._cached:
            name = self.fresh(f"const/f32_{float(value):g}")
            self.initializers.append((name, np.array(value, np.float32)))
            self._cached[key] = name
        return self._cached[key]

    # -- operators whose signature depends on the opset ------------------------------------------
    def reduce(self, op, x, axes, keepdims, outputs=None):
        """ReduceSum/ReduceMean/... over `axes`: axes became an input (ReduceSum in opset 13, the
        others in 18)."""
        if self.opset >= 18 or op == "ReduceSum":
            return self.add(op, [x, self.ints(axes)], outputs, keepdims=int(keepdims))
        return self.add(op, [x], outputs, axes=list(axes), keepdims=int(keepdims))

    def reshape(self, x, shape, outputs=None):
        return self.add("Reshape", [x, self.ints(shape)], outputs)

    def mul_scalar(self, x, value, outputs=None):
        return self.add("Mul", [x, self.scalar(value)], outputs)

    def add_scalar(self, x, value, outputs=None):
        return self.add("Add", [x, self.scalar(value)], outputs)

    def identity(self, x, outputs=None):
        return self.add("Identity", [x], outputs)


def value_info(name, shape, doc_string=""):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape), doc_string)
