"""A net at a glance (`pcl summary`): per layer its output shapes, params, multiply-adds,
activation memory and receptive field, with totals.

The numbers, for a net as built (its batch included):

- params: the elements of the layer's param blobs (BatchNorm's statistics too); in the total a
  blob shared between layers (ParamSpec names) counts once.
- multiply-adds (MACs) of the layers' products: Convolution (top elements x Ci/group x kernel
  size), Deconvolution (bottom elements x Co/group x kernel size), InnerProduct (rows x inputs x
  outputs) and Scale (one per element). Other layers compare, add or compute a few operations per
  element and count 0; so do LSTM and RNN for now (their products are not counted yet). Backward: the same count again for each gradient the net computes there,
  the param gradient (if the params learn) and each bottom gradient (if needed below), as the
  net's backward analysis decides; a net without a loss has no backward pass.
- activation memory: the bytes of the data of the top blobs a layer creates; in-place tops create
  none and neither do Split layers (their tops share their bottom's data; they are not listed).
  Training keeps as much again for the gradients. Caffe's "Memory required for data" (its setup
  log) counts every top of every layer, in-place and split ones included: given as well.
- receptive field, for each blob with spatial axes (N x C x spatial...) derived from the inputs
  through windows (Convolution, Pooling, Deconvolution, within-channel LRN, Im2col), crops and
  per-position layers (activations, BatchNorm, Scale, Eltwise, channel Concat/Slice/Softmax...):
  per spatial axis its size and jump (the stride between neighbouring units) in input pixels and
  the centre of the first unit's field (negative where padding reaches before the image).
  Several bottoms (Eltwise, Concat) give the union of their fields. Any other layer ends the
  field. The summary names the last layer whose first top has one.

Data layers whose files are missing (source or mean_file) are summarised as Input layers of the
shapes their parameters give: batch_size; crop_size (or ImageData's new_height/new_width) for the
image size; 3 channels for colour ImageData and WindowData, force_color/force_gray for Data;
labels of shape (batch). What they do not give is taken from an Input blob of the same name in
another prototxt beside the net (a deploy.prototxt), or from --input-shape; a notes line says
which. Param blobs are not filled while building (a summary needs shapes, not values), so
large nets build quickly; a filler's type is still checked.
"""
import dataclasses
import math
import os

from . import net_build
from .errors import PclError
from .io import protoio
from .net import Net
from .proto import caffe_pb2

# Data layers that read files, with the parameter holding their source and batch size.
_FILE_DATA_LAYERS = {"Data": "data_param", "ImageData": "image_data_param",
                     "WindowData": "window_data_param", "HDF5Data": "hdf5_data_param"}
_POINTWISE = {"AbsVal", "BatchNorm", "Bias", "BNLL", "Clip", "Dropout", "ELU", "Eltwise", "Exp",
              "Log", "Power", "PReLU", "ReLU", "Scale", "Sigmoid", "Split", "Swish", "TanH",
              "Threshold"}
_PRODUCT_LAYERS = {"Convolution", "Deconvolution", "InnerProduct", "Scale"}


@dataclasses.dataclass(frozen=True)
class Field:
    """A receptive field along one spatial axis, in input pixels."""

    size: float
    jump: float
    start: float  # centre of the first unit's field

    def window(self, kernel, stride, pad, dilation=1):
        """The field after a sliding window (convolution, pooling)."""
        extent = dilation * (kernel - 1) + 1
        return Field(self.size + (extent - 1) * self.jump, self.jump * stride,
                     self.start + ((extent - 1) / 2 - pad) * self.jump)

    def upsample(self, kernel, stride, pad, dilation=1):
        """The field after a deconvolution: the union of the inputs reaching the first output."""
        extent = dilation * (kernel - 1) + 1
        low, high = math.ceil((pad - extent + 1) / stride), math.floor(pad / stride)
        return Field(self.size + (high - low) * self.jump, self.jump / stride,
                     self.start + (low + high) / 2 * self.jump)

    def shifted(self, offset):
        return Field(self.size, self.jump, self.start + offset * self.jump)


def _union(fields):
    """The field covering several fields of equal jump; None when the jumps differ."""
    if len({f.jump for f in fields}) != 1:
        return None
    low = min(f.start - (f.size - 1) / 2 for f in fields)
    high = max(f.start + (f.size - 1) / 2 for f in fields)
    return Field(high - low + 1, fields[0].jump, (low + high) / 2)


@dataclasses.dataclass
class LayerSummary:
    name: str
    type: str
    tops: list  # (blob name, shape, in place)
    params: int
    shared_params: int  # of `params`, the elements shared with an earlier layer
    macs_forward: int
    macs_backward: int
    activation_bytes: int
    field: tuple = None  # one Field per spatial axis of the first top, or None


@dataclasses.dataclass
class Summary:
    net: str
    inputs: dict  # source blob name -> shape
    layers: list
    caffe_memory_bytes: int
    itemsize: int
    notes: list = dataclasses.field(default_factory=list)

    @property
    def batch(self):
        shapes = list(self.inputs.values())
        return shapes[0][0] if shapes and shapes[0] else None

    @property
    def params(self):
        return sum(layer.params - layer.shared_params for layer in self.layers)

    @property
    def macs_forward(self):
        return sum(layer.macs_forward for layer in self.layers)

    @property
    def macs_backward(self):
        return sum(layer.macs_backward for layer in self.layers)

    @property
    def activation_bytes(self):
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def field_layer(self):
        """The last layer whose first top has a receptive field, or None."""
        return next((layer for layer in reversed(self.layers) if layer.field), None)

    def as_dict(self):
        last = self.field_layer
        return {
            "net": self.net,
            "inputs": {name: list(shape) for name, shape in self.inputs.items()},
            "batch": self.batch,
            "layers": [{"name": layer.name, "type": layer.type,
                        "tops": [{"name": name, "shape": list(shape), "in_place": in_place}
                                 for name, shape, in_place in layer.tops],
                        "params": layer.params, "shared_params": layer.shared_params,
                        "macs_forward": layer.macs_forward, "macs_backward": layer.macs_backward,
                        "activation_bytes": layer.activation_bytes,
                        "receptive_field": _field_dict(layer.field)} for layer in self.layers],
            "totals": {"params": self.params, "param_bytes": self.params * self.itemsize,
                       "macs_forward": self.macs_forward, "macs_backward": self.macs_backward,
                       "activation_bytes": self.activation_bytes,
                       "caffe_memory_required_for_data": self.caffe_memory_bytes},
            "receptive_field": None if last is None else
            {"layer": last.name, "input": self.field_input, **_field_dict(last.field)},
            "notes": list(self.notes),
        }

    @property
    def field_input(self):
        """The input blob receptive fields are measured in (the first with spatial axes)."""
        return next((name for name, shape in self.inputs.items() if len(shape) >= 3), None)


def _number(value):
    return int(value) if float(value).is_integer() else value


def _field_dict(field):
    if field is None:
        return None
    return {key: [_number(getattr(f, key)) for f in field] for key in ("size", "jump", "start")}


# -- building the net ------------------------------------------------------------------------------

def parse_input_shapes(texts):
    """--input-shape values `name=d0,d1,...` -> {name: (d0, d1, ...)}."""
    shapes = {}
    for text in texts:
        name, _, dims = text.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else None
        except ValueError:
            shape = None
        if not name or shape is None or any(d <= 0 for d in shape):
            raise PclError(f'--input-shape "{text}": expected a blob name and positive sizes, '
                           f"such as data=64,1,28,28")
        shapes[name] = shape
    return shapes


def build_net(model, phase="TRAIN", level=0, stages=(), input_shapes=None, batch=None):
    """The Net `model` describes for the state, with missing-data layers replaced by Input layers
    (see the module doc) and the batch set if given. Returns (net, notes)."""
    model = os.fspath(model)
    net_param = protoio.read_net_param(model)
    state = caffe_pb2.NetState()  # as the Net makes it: the file's state, then the arguments
    state.CopyFrom(net_param.state)
    state.phase = caffe_pb2.Phase.Value(phase.upper())
    if level:
        state.level = level
    state.stage.extend(s for s in stages if s not in state.stage)
    net_param = net_build.filter_by_state(net_param, state, model)
    notes = _stand_in_inputs(net_param, model, dict(input_shapes or {}))
    if batch is not None:
        _set_batch(net_param, batch)
    net = Net(net_param, phase, level=level, stages=stages, source=model, fill_params=False)
    return net, notes


def load_weights(net, weights):
    """Copy trained params into `net` (comma-separated .caffemodel / .h5 files, as pcl test
    does); returns a note naming the layers with params that the files do not cover."""
    covered = set()
    for path in (p.strip() for p in os.fspath(weights).split(",")):
        if path.endswith(".h5"):
            net.copy_from(path)
            import h5py  # noqa: PLC0415 - only for HDF5 weights

            with h5py.File(path, "r") as handle:
                covered.update(handle["data"].keys())
        else:
            trained = protoio.read_net_param_binary(path)
            net.copy_trained_layers_from(trained, path)
            covered.update(layer.name for layer in trained.layer if layer.blobs)
    missing = [name for name, layer in zip(net.layer_names, net.layers)
               if layer.blobs and name not in covered]
    if missing:
        return f"weights {weights} cover every layer with params but {', '.join(missing)}"
    return f"weights {weights} cover every layer with params"


def _stand_in_inputs(net_param, model, given):
    """Replace file-reading data layers whose files are missing (or whose tops have a given
    shape), and set given shapes on Input layers. Returns notes saying what was done."""
    notes = []
    variants = None
    for layer in net_param.layer:
        if layer.type == "Input":
            for index, top in enumerate(layer.top):
                if top in given:
                    _set_input_shape(layer, index, given.pop(top))
            continue
        if layer.type not in _FILE_DATA_LAYERS:
            continue
        missing = [path for path in _data_files(layer) if not os.path.exists(path)]
        if not missing and not any(top in given for top in layer.top):
            continue
        if variants is None:
            variants = _input_variant_shapes(model)
        shapes, how = _stand_in_shapes(layer, model, given, variants, missing)
        reason = f'reads "{missing[0]}", which is not here' if missing else "has --input-shape"
        notes.append(f'layer "{layer.name}" ({layer.type}) {reason}: taken as an Input of '
                     f'{", ".join(_shape_text(s) for s in shapes)} ({how})')
        _make_input(layer, shapes)
    if given:
        raise PclError(f"{model}: --input-shape names {', '.join(sorted(given))}, which no input "
                       f"or data layer of the net produces")
    return notes


def _data_files(layer):
    files = [getattr(layer, _FILE_DATA_LAYERS[layer.type]).source]
    if layer.transform_param.mean_file:
        files.append(layer.transform_param.mean_file)
    return [path for path in files if path]


def _input_variant_shapes(model):
    """{blob: shape} of the Input layers of the other prototxt files beside `model`."""
    folder = os.path.dirname(os.path.abspath(model))
    shapes = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.endswith(".prototxt") or os.path.samefile(path, model):
            continue
        try:
            layers = protoio.read_net_param(path).layer
        except PclError:
            continue  # a solver, or a file that is no net
        for layer in layers:
            if layer.type == "Input":
                for top, shape in zip(layer.top, _input_layer_shapes(layer)):
                    shapes.setdefault(top, (shape, name))
    return shapes


def _input_layer_shapes(layer):
    shapes = [tuple(s.dim) for s in layer.input_param.shape]
    if len(shapes) == 1:
        shapes *= len(layer.top)
    return shapes


def _stand_in_shapes(layer, model, given, variants, missing):
    """The top shapes a data layer would give, and how they were found."""
    param = getattr(layer, _FILE_DATA_LAYERS[layer.type])
    batch = param.batch_size
    shapes, sources = [], set()
    for index, top in enumerate(layer.top):
        if top in given:
            shapes.append(given.pop(top))
            sources.add("--input-shape")
            continue
        if index == 1 and layer.type != "HDF5Data":
            shapes.append((batch,))
            continue
        image = _image_shape(layer) if layer.type != "HDF5Data" else (None,)
        if None in image and top in variants:
            shape, file_name = variants[top]
            if len(shape) == 1 + len(image):  # fill in what the parameters leave open
                image = tuple(size if known is None else known for known, size in zip(image, shape[1:]))
            else:
                image = tuple(shape[1:])
            sources.add(f"sizes from {file_name}")
        if None in image:
            raise PclError(
                f'{model}: layer "{layer.name}" ({layer.type}) reads files that are not here '
                f'({", ".join(missing)}), and neither its parameters nor an Input of that name in '
                f'a prototxt beside the net give the shape of its top "{top}"; pass '
                f"--input-shape {top}=N,C,H,W (e.g. --input-shape {top}={batch or 1},3,224,224)")
        shapes.append((batch,) + tuple(image))
    how = ", ".join(sorted(sources)) if sources else "shapes from its parameters"
    return shapes, how


def _image_shape(layer):
    """(channels, height, width) of a data layer's images where its parameters say; None where
    they do not."""
    transform = layer.transform_param
    channels = height = width = None
    if layer.type in ("ImageData", "WindowData"):
        channels = 3 if layer.type == "WindowData" or layer.image_data_param.is_color else 1
    elif transform.force_color or transform.force_gray:
        channels = 3 if transform.force_color else 1
    crop = transform.crop_size
    if layer.type == "WindowData" and not crop:
        crop = layer.window_data_param.crop_size
    if crop:
        height = width = crop
    elif layer.type == "ImageData" and layer.image_data_param.new_height and layer.image_data_param.new_width:
        height, width = layer.image_data_param.new_height, layer.image_data_param.new_width
    return channels, height, width


def _make_input(layer, shapes):
    """Turn a data layer into an Input layer of `shapes`, keeping its name, tops and rules."""
    replacement = caffe_pb2.LayerParameter(name=layer.name, type="Input", top=list(layer.top))
    replacement.include.extend(layer.include)
    replacement.exclude.extend(layer.exclude)
    for shape in shapes:
        replacement.input_param.shape.add(dim=list(shape))
    layer.CopyFrom(replacement)


def _set_input_shape(layer, index, shape):
    shapes = _input_layer_shapes(layer)
    shapes[index] = shape
    del layer.input_param.shape[:]
    for dims in shapes:
        layer.input_param.shape.add(dim=list(dims))


def _set_batch(net_param, batch):
    """Give every input and data layer of the net a batch of `batch`."""
    for layer in net_param.layer:
        if layer.type == "Input":
            shapes = [(batch,) + tuple(s[1:]) if s else s for s in _input_layer_shapes(layer)]
            del layer.input_param.shape[:]
            for dims in shapes:
                layer.input_param.shape.add(dim=list(dims))
        elif layer.type in _FILE_DATA_LAYERS:
            getattr(layer, _FILE_DATA_LAYERS[layer.type]).batch_size = batch
        elif layer.type == "MemoryData":
            layer.memory_data_param.batch_size = batch
        elif layer.type == "DummyData":
            for shape in layer.dummy_data_param.shape:
                if shape.dim:
                    shape.dim[0] = batch


def _shape_text(shape):
    return "x".join(str(d) for d in shape) if shape else "scalar"


# -- the numbers -----------------------------------------------------------------------------------

def summarize(net, notes=()):
    """The Summary of a built Net."""
    fields = {}
    shared = _shared_param_counts(net)
    layers, inputs, caffe_memory = [], {}, 0
    for layer_id, layer in enumerate(net.layers):
        bottom_ids, top_ids = net.bottom_ids[layer_id], net.top_ids[layer_id]
        caffe_memory += sum(net.blob_list[b].count for b in top_ids)
        _propagate_fields(net, layer_id, fields)
        if not bottom_ids:
            inputs.update((net.blob_names[b], net.blob_list[b].shape) for b in top_ids)
        if layer.type == "Split":
            continue
        tops = [(net.blob_names[b], net.blob_list[b].shape, b in bottom_ids) for b in top_ids]
        forward = _forward_macs(net, layer_id)
        layers.append(LayerSummary(
            name=net.layer_names[layer_id], type=layer.type, tops=tops,
            params=sum(blob.count for blob in layer.blobs), shared_params=shared.get(layer_id, 0),
            macs_forward=forward, macs_backward=_backward_macs(net, layer_id, forward),
            activation_bytes=sum(net.blob_list[b].count for b in top_ids if b not in bottom_ids)
            * net.dtype.itemsize,
            field=fields.get(top_ids[0]) if top_ids else None))
    return Summary(net=net.name, inputs=inputs, layers=layers,
                   caffe_memory_bytes=caffe_memory * net.dtype.itemsize,
                   itemsize=net.dtype.itemsize, notes=list(notes))


def _shared_param_counts(net):
    """{layer id: elements of its params that share an earlier layer's memory}."""
    counts = {}
    for owner, (layer_id, index) in zip(net.param_owners, net.param_layer_indices):
        if owner >= 0:
            counts[layer_id] = counts.get(layer_id, 0) + net.layers[layer_id].blobs[index].count
    return counts


def _product_pairs(net, layer_id):
    """[(bottom id, top id, MACs)] of a layer's products, one per bottom/top pair."""
    layer = net.layers[layer_id]
    if layer.type not in _PRODUCT_LAYERS:
        return []
    pairs = list(zip(net.bottom_ids[layer_id], net.top_ids[layer_id]))
    blob = net.blob_list
    if layer.type == "Scale":
        return [(b, t, blob[t].count) for b, t in pairs[:1]]
    weights = layer.blobs[0].count
    if layer.type == "Deconvolution":  # per input position: Ci x Co/group x kernel
        return [(b, t, blob[b].count // blob[b].shape[layer.channel_axis] * weights) for b, t in pairs]
    if layer.type == "Convolution":  # per output position: Co x Ci/group x kernel
        return [(b, t, blob[t].count // blob[t].shape[layer.channel_axis] * weights) for b, t in pairs]
    outputs = layer.blobs[0].shape[1] if layer.param.inner_product_param.transpose else layer.blobs[0].shape[0]
    return [(b, t, blob[t].count // outputs * weights) for b, t in pairs]


def _forward_macs(net, layer_id):
    return sum(macs for _, _, macs in _product_pairs(net, layer_id))


def _backward_macs(net, layer_id, forward):
    """The products a backward pass computes here: the param gradient if the params learn, and
    the gradient of each bottom the net needs."""
    if not forward or not net.layer_need_backward[layer_id]:
        return 0
    layer = net.layers[layer_id]
    total = forward if layer.blobs and any(layer.param_propagate_down[:1]) else 0
    needs = net.bottom_need_backward[layer_id]
    for bottom_index, (_, _, macs) in enumerate(_product_pairs(net, layer_id)):
        if needs[bottom_index]:
            total += macs
    if layer.type == "Scale" and len(needs) > 1 and needs[1]:  # the scale given as a bottom
        total += forward
    return total


# -- receptive fields ------------------------------------------------------------------------------

def _spatial_axes(blob):
    return len(blob.shape) - 2


def _propagate_fields(net, layer_id, fields):
    """Set (or clear) the receptive field of each top of layer `layer_id`."""
    layer = net.layers[layer_id]
    bottom_ids, top_ids = net.bottom_ids[layer_id], net.top_ids[layer_id]
    if not bottom_ids:
        for blob_id in top_ids:
            axes = _spatial_axes(net.blob_list[blob_id])
            if axes > 0:
                fields[blob_id] = (Field(1, 1, 0),) * axes
        return
    field = _layer_field(layer, [fields.get(b) for b in bottom_ids],
                         [net.blob_list[b].shape for b in bottom_ids])
    for blob_id in top_ids:
        if field is not None and len(field) == _spatial_axes(net.blob_list[blob_id]):
            fields[blob_id] = field
        else:
            fields.pop(blob_id, None)


def _channel_axis_only(layer, param_name, legacy):
    """Whether a Concat/Slice/Softmax works along axis 1 (channels)."""
    param = getattr(layer.param, param_name)
    axis = getattr(param, legacy) if legacy and param.HasField(legacy) else param.axis
    return axis == 1


def _layer_field(layer, in_fields, shapes):
    """The receptive field of a layer's tops from its bottoms' fields; None ends it."""
    kind = layer.type
    known = [f for f in in_fields if f is not None]
    if not known:
        return None
    first = in_fields[0]
    if kind in _POINTWISE or (kind == "Concat" and _channel_axis_only(layer, "concat_param", "concat_dim")) \
            or (kind == "Softmax" and _channel_axis_only(layer, "softmax_param", None)):
        if len({len(f) for f in known}) != 1:
            return None
        axes = [_union(list(per_axis)) for per_axis in zip(*known)]
        return None if None in axes else tuple(axes)
    if first is None:
        return None
    if kind == "Slice" and _channel_axis_only(layer, "slice_param", "slice_dim"):
        return first
    if kind == "LRN":
        p = layer.param.lrn_param
        if p.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
            return first
        return tuple(f.window(p.local_size, 1, (p.local_size - 1) // 2) for f in first)
    if kind in ("Convolution", "Im2col"):
        return tuple(f.window(k, s, p, d) for f, k, s, p, d in
                     zip(first, layer.kernel, layer.stride, layer.pad, layer.dilation))
    if kind == "Deconvolution":
        return tuple(f.upsample(k, s, p, d) for f, k, s, p, d in
                     zip(first, layer.kernel, layer.stride, layer.pad, layer.dilation))
    if kind == "Pooling":
        if layer.global_pooling:
            return tuple(f.window(size, 1, 0) for f, size in zip(first, shapes[0][2:]))
        return tuple(f.window(k, s, p) for f, k, s, p in zip(first, layer.kernel, layer.stride, layer.pad))
    if kind == "Crop":
        return _cropped(layer.param.crop_param, first, len(shapes[0]))
    return None


def _cropped(param, field, num_axes):
    start = param.axis % num_axes
    if start > 2:
        return None  # crops only some spatial axes: keep it simple, end the field
    offsets = []
    for axis in range(2, num_axes):
        if axis < start:
            offsets.append(0)
        elif len(param.offset) > 1:
            offsets.append(param.offset[axis - start])
        else:
            offsets.append(param.offset[0] if param.offset else 0)
    return tuple(f.shifted(o) for f, o in zip(field, offsets))


# -- the table -------------------------------------------------------------------------------------

def human(count):
    """A count with 3 significant digits and an SI prefix: 1.05G, 724M, 34.9K, 512."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{prefix}"
    return f"{count:.3g}"


def size_text(count):
    """A byte count with 3 significant digits: 4 B, 2.56 KB, 9.89 MB (powers of 1000)."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {prefix}B"
    return f"{count:.3g} B" if count else "0"


def _axes_text(values, sep="x"):
    """One number when every axis has it, else one per axis."""
    values = [_number(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else sep.join(str(v) for v in values)


def _field_text(field):
    return f"{_axes_text(f.size for f in field)}/{_axes_text(f.jump for f in field)}"


def table(summary):
    """The summary as a plain-text table with totals and notes."""
    header = ("layer", "type", "output shape", "params", "MACs fwd", "MACs bwd", "activations",
              "field/jump")
    rows = []
    for layer in summary.layers:
        shapes = ", ".join(_shape_text(shape) + (" (in place)" if in_place else "")
                           for _, shape, in_place in layer.tops)
        rows.append((layer.name, layer.type, shapes, f"{layer.params:,}", human(layer.macs_forward),
                     human(layer.macs_backward), size_text(layer.activation_bytes),
                     _field_text(layer.field) if layer.field else "-"))
    rows.append(("total", "", "", f"{summary.params:,}", human(summary.macs_forward),
                 human(summary.macs_backward), size_text(summary.activation_bytes), ""))
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    right = {3, 4, 5, 6}

    def line(row):
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(header), rule] + [line(row) for row in rows[:-1]] + [rule, line(rows[-1]), ""]
    lines += _footer(summary)
    return "\n".join(lines)


def _footer(summary):
    lines = [f"params: {summary.params:,} ({size_text(summary.params * summary.itemsize)})"]
    batch = summary.batch
    if batch and not any(layer.type in ("LSTM", "RNN") for layer in summary.layers):  # not T x N
        lines.append(f"per example (batch {batch}): {human(summary.macs_forward / batch)} MACs forward, "
                     f"{human(summary.macs_backward / batch)} backward; activations "
                     f"{size_text(summary.activation_bytes / batch)} (as much again for gradients "
                     f"when training)")
    if not summary.macs_backward:
        lines.append("backward: no layer computes gradients here (no loss, or nothing learns)")
    lines.append(f"Caffe's \"Memory required for data\": {summary.caffe_memory_bytes} bytes")
    last = summary.field_layer
    if last is None:
        lines.append("receptive field: none (no layer with spatial axes follows from the inputs)")
    else:
        centre = ", ".join(str(_number(f.start)) for f in last.field)
        size = " x ".join(str(_number(f.size)) for f in last.field)
        lines.append(f"receptive field of {last.name} (the last spatial layer) on "
                     f"{summary.field_input}: {size} pixels, jump "
                     f"{_axes_text((f.jump for f in last.field), ' x ')}, first unit centred at "
                     f"({centre})")
    lines += [f"note: {note}" for note in summary.notes]
    return lines
