"""Walking a Net's layers into an ONNX model, and the reasons some layers cannot be written.

Values follow Caffe's blobs through the layers: a layer's tops become the values its converter
returns (a blob written in place gets a new value each time; pass-through layers such as Split
or test-time Dropout hand on their bottom's value). The last version of each blob carries the
blob's own name, so the graph's inputs and outputs are named as the net's. Every layer is tried
even after one was refused, so that one error names all the layers that cannot be exported.
"""
import onnx
from onnx import helper, shape_inference

from .. import __version__
from ..errors import PclError
from . import elementwise, normalization, recurrent, tensors, vision  # noqa: F401 - converters
from .graph import CONVERTERS, Graph, Step, Unsupported, value_info

_DATA_LAYERS = ("Data", "ImageData", "HDF5Data", "WindowData", "MemoryData")
_LABEL_LAYERS = ("Accuracy", "SoftmaxWithLoss", "InfogainLoss", "EuclideanLoss",
                 "SigmoidCrossEntropyLoss", "HingeLoss", "ContrastiveLoss", "MultinomialLogisticLoss")

# Layer types that are refused whatever their settings, and why.
REFUSED = {
    **{t: "it reads its batches from a data source; export the deploy net, where Input layers "
          "take the data layers' place" for t in _DATA_LAYERS},
    **{t: "it measures outputs against labels (training and evaluation only); export the deploy "
          "net, which ends before the loss" for t in _LABEL_LAYERS},
    "HDF5Output": "it writes its bottoms to an HDF5 file",
    "Filter": "the number of items it keeps depends on the selector's values, but the exported "
              "graph has static shapes",
    "Im2col": "ONNX has no patch-extraction operator (a one-hot convolution would turn a "
              "neighbour's inf into NaN)",
    "Python": "it runs Python code of your own, which an ONNX graph cannot hold",
}

# Protobuf cannot serialise a single message of 2 GiB or more.
_MAX_MODEL_BYTES = 2 ** 31 - 1
# Initializers up to this many elements (shapes, axes, scalars: what shape inference reads) stay
# in the model the checks run on; larger ones become inputs of their shape there.
_INLINE_IN_CHECK = 64


def build_model(net, opset, outputs=()):
    """The ONNX ModelProto of a built TEST-phase Net at its current blob shapes, with the net's
    outputs and the blobs named in `outputs` as graph outputs; a PclError naming every layer
    that cannot be written exactly."""
    unknown = [name for name in outputs if name not in net.blobs]
    if unknown:
        raise PclError(f"{net.source}: no blob named {', '.join(map(repr, unknown))} to export as "
                       f"an output; the net's blobs are {', '.join(net.blob_names)}")
    last_writers = {}
    for index, top_ids in enumerate(net.top_ids):
        for blob_id in top_ids:
            last_writers[net.blob_names[blob_id]] = index
    g = Graph(opset, net.blob_names, last_writers)
    values, refused, checked = {}, [], []
    for index in range(len(net.layers)):
        _convert_layer(net, index, g, values, refused, checked)
    if refused:
        raise PclError(_refusal_message(net, refused))
    g.layer_name = ""
    skeleton, model = _assemble(net, g, values, opset, outputs)
    _check(skeleton, checked)
    _add_initializers(model.graph, g.initializers)
    return model


def _convert_layer(net, index, g, values, refused, checked):
    """Convert layer `index`: its tops' values go into `values` (blob -> value), a refusal into
    `refused`, the values it made with their blob shapes into `checked`."""
    layer, name = net.layers[index], net.layer_names[index]
    bottoms = [net.blob_names[i] for i in net.bottom_ids[index]]
    tops = [net.blob_names[i] for i in net.top_ids[index]]
    g.layer_index, g.layer_name = index, name
    # After a refusal the net goes on with stand-in values, so later refusals are found too.
    inputs = [values.get(b) or g.fresh(f"{b}/unavailable") for b in bottoms]
    out_shapes = [net.blobs[t].shape for t in tops]
    converter = CONVERTERS.get(layer.type)
    made = None
    if converter is None:
        refused.append((name, layer.type, REFUSED.get(layer.type, "no ONNX form is known for "
                                                                  "this layer type")))
    else:
        step = Step(g, layer, inputs, [net.blobs[b].shape for b in bottoms], out_shapes, tops)
        try:
            made = converter(g, step)
        except Unsupported as reason:
            refused.append((name, layer.type, str(reason)))
    if made is None:
        made = [g.fresh(f"{t}/unavailable") for t in tops]
    for top, value, shape in zip(tops, made, out_shapes):
        if value not in inputs:
            checked.append((value, shape))
        values[top] = value


def _refusal_message(net, refused):
    groups = {}
    for name, type_name, reason in refused:
        groups.setdefault((type_name, reason), []).append(f'"{name}"')
    parts = [f"{', '.join(names)} ({type_name}): {reason}"
             for (type_name, reason), names in groups.items()]
    count = len(refused)
    return (f"{net.source}: cannot export to ONNX: {count} layer{'s' if count > 1 else ''} "
            f"{'have' if count > 1 else 'has'} no exact ONNX form: " + "; ".join(parts))


def _assemble(net, g, values, opset, blob_outputs):
    """The model to check (see `_check`) and the model to save (still without its weights)."""
    input_names = {info.name for info in g.inputs}
    outputs, listed = [], set()
    for blob in list(net.outputs) + [b for b in blob_outputs if b not in net.outputs]:
        value = values[blob]
        if value in input_names and blob not in blob_outputs:
            continue  # an Input top nothing consumes: neither an input nor an output of the graph
        if value in input_names:
            value = g.identity(value, g.fresh(f"{blob}/output"))
        elif value != blob and not g.is_used(blob):
            value = g.identity(value, g.claim(blob))
        elif value in listed:  # a second blob with the same value (a Split top)
            value = g.identity(value, g.fresh(f"{blob}/output"))
        listed.add(value)
        # Named after its blob, except where that name is taken by a graph input the net
        # changed in place; the doc string names the blob in any case.
        outputs.append(value_info(value, net.blobs[blob].shape, doc_string=f'blob "{blob}"'))
    outputs += [value_info(value, shape, doc_string="the state of a recurrent layer after this "
                                                    "call, to feed back in on the next")
                for value, shape in g.extra_outputs]
    consumed = {name for node in g.nodes for name in node.input} | {o.name for o in outputs}
    inputs = [info for info in g.inputs if info.name in consumed]
    size = sum(array.nbytes for _, array in g.initializers)
    if size >= _MAX_MODEL_BYTES:
        raise PclError(f"{net.source}: the weights take {size / 2 ** 30:.1f} GiB, more than the "
                       f"2 GiB an ONNX file can hold without external data")
    opset_id = helper.make_opsetid("", opset)

    def model(graph):
        made = helper.make_model(graph, opset_imports=[opset_id], producer_name="pycaffelite",
                                 producer_version=__version__,
                                 doc_string=f"exported by pycaffelite from {net.source}")
        # The oldest IR version that carries this opset, so that older runtimes can read it.
        made.ir_version = helper.find_min_ir_version_for([opset_id])
        return made

    name = net.name or "net"
    small = [(n, a) for n, a in g.initializers if a.size <= _INLINE_IN_CHECK]
    large = [value_info(n, a.shape) for n, a in g.initializers if a.size > _INLINE_IN_CHECK]
    skeleton = helper.make_graph(g.nodes, name, inputs + large, outputs)
    _add_initializers(skeleton, small)
    return model(skeleton), model(helper.make_graph(g.nodes, name, inputs, outputs))


def _add_initializers(graph, arrays):
    """Write (name, array) pairs into graph.initializer (one copy of each array)."""
    for name, array in arrays:
        tensor = graph.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.tobytes()


def _check(model, produced):
    """onnx's checker, then ONNX's shape inference against the Net's blob shapes: a difference
    is a bug of the exporter, raised before any file is written. Runs on the model without its
    weights (they are graph inputs of their shapes there): serialising the weights for the
    checks took several seconds on CaffeNet."""
    onnx.checker.check_model(model)
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    for value, shape in produced:
        if value in shapes and shapes[value] != tuple(shape):
            raise RuntimeError(f"ONNX export: value {value} has shape {shapes[value]} in the "
                               f"graph but {tuple(shape)} in the net")
