"""ONNX export of a built Net: every layer that ONNX can express exactly, as Caffe computes it.

    import pycaffelite as pcl
    from pycaffelite.onnx_export import export_onnx
    net = pcl.Net("deploy.prototxt", pcl.TEST, weights="model.caffemodel")
    export_onnx(net, "model.onnx", opset=17, input_shapes={"data": (1, 3, 224, 224)})

The graph is made for the net's blob shapes (static), in float32, from the TEST-phase net (so
Dropout passes its input on and BatchNorm uses its stored statistics). Graph inputs and outputs
carry the net's input and output blob names. A layer that cannot be written exactly is refused:
one PclError names every such layer with its type and the reason.

Recurrent layers (LSTM, RNN) are unrolled over their T steps; the state Caffe carries from one
forward call to the next becomes extra graph inputs and outputs (see `recurrent`).

Modules: `build` walks the layers and assembles and checks the model; `graph` holds the graph
being built and the converter registry; `vision` (convolution, pooling, LRN), `elementwise`
(neurons, Eltwise), `normalization` (BatchNorm, Scale, Bias, MVN), `tensors` (sources, shapes,
InnerProduct, Softmax, selection) and `recurrent` (LSTM, RNN, LSTMUnit) hold one converter per
layer type.

Needs the optional `onnx` package (`pip install pycaffelite[onnx]`, which also brings
onnxruntime for checking the exported graph).
"""
import contextlib
import os

from ..errors import PclError
from ..io.atomic import atomic_output
from ..proto import caffe_pb2

DEFAULT_OPSET = 17
MIN_OPSET = 13


def _onnx():
    try:
        import onnx  # noqa: PLC0415 - an optional dependency
    except ImportError:
        raise PclError("ONNX export needs the onnx package; install it with "
                       "pip install 'pycaffelite[onnx]'") from None
    return onnx


def supported_opsets():
    """(lowest, highest) opset the exporter can write with the installed onnx package."""
    return MIN_OPSET, _onnx().defs.onnx_opset_version()


def export_onnx(net, path, opset=None, input_shapes=None, outputs=()):
    """Write `net` (a built pycaffelite.Net in TEST phase) to `path` as an ONNX model and return
    the ModelProto. `opset` defaults to DEFAULT_OPSET; `input_shapes` maps input blob names to
    shapes to export at instead of the net's (the net is reshaped back afterwards); `outputs`
    names blobs to expose as graph outputs besides the net's outputs (e.g. features such as
    "fc7"). The file is written to a temporary name and renamed, so it is either complete or
    absent."""
    onnx = _onnx()
    lowest, highest = supported_opsets()
    opset = DEFAULT_OPSET if opset is None else opset
    if not lowest <= opset <= highest:
        raise PclError(f"ONNX opset {opset} is not supported: choose an opset from {lowest} to "
                       f"{highest} (the installed onnx package's newest)")
    if net.phase != caffe_pb2.TEST:
        raise PclError(f"{net.source}: ONNX export needs the net in TEST phase (Dropout and "
                       f"BatchNorm behave differently while training); build it with phase TEST")
    from .build import build_model  # noqa: PLC0415 - imports onnx

    with _reshaped(net, input_shapes or {}):
        model = build_model(net, opset, outputs)
    with atomic_output(os.fspath(path), "ONNX model") as temp:
        onnx.save_model(model, temp)
    return model


@contextlib.contextmanager
def _reshaped(net, shapes):
    """Run with the net's inputs reshaped to `shapes` (name -> dims), then restore them."""
    if not shapes:
        yield
        return
    for name, shape in shapes.items():
        if name not in net.inputs:
            raise PclError(f'{net.source}: "{name}" is not an input of the net; its inputs are '
                           f"{', '.join(net.inputs) or 'none'}")
        if not shape or any(int(d) <= 0 for d in shape):
            raise PclError(f'input "{name}": the shape {tuple(shape)} needs at least one axis and '
                           f"positive sizes")
    saved = {name: net.blobs[name].shape for name in net.inputs}
    try:
        for name, shape in shapes.items():
            net.blobs[name].reshape(tuple(int(d) for d in shape))
        net.reshape()
        yield
    finally:
        for name, shape in saved.items():
            net.blobs[name].reshape(shape)
        net.reshape()
