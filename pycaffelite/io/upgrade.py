"""Bring legacy Caffe nets and solvers up to the current schema, as Caffe does on load.

Net upgrades run in Caffe's order, each only when needed:

1. V0 -> V1: `layers { layer { type: "conv" ... } }`; "padding" layers fold into the pad of
   the conv/pool layer that consumes them.
2. Data transformation: scale / mean_file / crop_size / mirror on V1 Data, ImageData and
   WindowData params move into transform_param.
3. V1 -> V2: `layers { type: CONVOLUTION blobs_lr: 1 }` -> `layer { type: "Convolution"
   param { lr_mult: 1 } }` (names, share modes, decay multipliers, rules, blobs, params).
4. Net inputs: net-level `input` + `input_shape` / `input_dim` -> an Input layer named "input"
   placed first.
5. BatchNorm: a BatchNorm layer with three `param` specs (the old way of freezing its statistics)
   gets lr_mult and decay_mult 0 on all three.

Each upgrade is logged in Caffe's words ("Attempting to upgrade input file specified using
deprecated V1LayerParameter: net.prototxt", ...), except that the note on V0 nets names the pcl
upgrade commands where Caffe names its build/tools programs. Where Caffe would only log that an
upgrade was lossy, pycaffelite stops with a `PclError`, so a setting is never dropped silently.
"""
import logging

from pycaffelite.errors import PclError
from pycaffelite.proto import caffe_pb2

log = logging.getLogger(__name__)

V1 = caffe_pb2.V1LayerParameter


def net_needs_upgrade(net_param):
    """Whether `upgrade_net_param` would change the net (Caffe's NetNeedsUpgrade)."""
    return bool(len(net_param.layers) or len(net_param.input)
                or _needs_batch_norm_upgrade(net_param))


def upgrade_net_param(net_param, source_name="<net>"):
    """Return an upgraded copy of `net_param`; `source_name` (the file) is used in messages."""
    net = caffe_pb2.NetParameter()
    net.CopyFrom(net_param)
    if any(layer.HasField("layer") for layer in net.layers):
        _attempting("deprecated V0LayerParameter", source_name)
        net = _v0_to_v1(net, source_name)
        log.info("Successfully upgraded file specified using deprecated V0LayerParameter")
        log.warning("Note that future Caffe releases will not support V0NetParameter; use "
                    "pcl upgrade_net_proto_text for prototxt and pcl upgrade_net_proto_binary "
                    "for model weights to upgrade this and any other net protos to the new "
                    "format.")
    if any(_has_legacy_transform(layer) for layer in net.layers):
        _attempting("deprecated transformation parameters", source_name)
        _upgrade_data_transformation(net)
        log.info("Successfully upgraded file specified using deprecated data transformation "
                 "parameters.")
        log.warning("Note that future Caffe releases will only support transform_param "
                    "messages for transformation fields.")
    if len(net.layers):
        _attempting("deprecated V1LayerParameter", source_name)
        net = _v1_to_v2(net, source_name)
        log.info("Successfully upgraded file specified using deprecated V1LayerParameter")
    if len(net.input):
        _attempting("deprecated input fields", source_name)
        _upgrade_net_input(net, source_name)
        log.info("Successfully upgraded file specified using deprecated input fields.")
        log.warning("Note that future Caffe releases will only support input layers and not "
                    "input fields.")
    if _needs_batch_norm_upgrade(net):
        log.info("Attempting to upgrade batch norm layers using deprecated params: %s",
                 source_name)
        _upgrade_batch_norm(net)
        log.info("Successfully upgraded batch norm layers using deprecated params.")
    return net


def solver_needs_upgrade(solver_param):
    """Whether the solver names its type with the deprecated enum `solver_type`."""
    return solver_param.HasField("solver_type")


def upgrade_solver_type(solver_param, source_name="<solver>"):
    """Return a copy of `solver_param` with the enum `solver_type` turned into the `type`
    string; nothing else changes (Caffe's UpgradeSolverAsNeeded)."""
    solver = caffe_pb2.SolverParameter()
    solver.CopyFrom(solver_param)
    if not solver_needs_upgrade(solver):
        return solver
    _attempting("deprecated 'solver_type' field (enum)'", source_name)  # Caffe's stray quote
    legacy = _SOLVER_TYPES[solver.solver_type]
    if solver.HasField("type") and solver.type != legacy:
        enum_name = caffe_pb2.SolverParameter.SolverType.Name(solver.solver_type)
        raise PclError(
            f'{source_name}: solver_type: {enum_name} (deprecated) contradicts type: '
            f'"{solver.type}"; delete solver_type and keep only type')
    solver.type = legacy
    solver.ClearField("solver_type")
    log.info("Successfully upgraded file specified using deprecated 'solver_type' field (enum) "
             "to 'type' field (string).")
    log.warning("Note that future Caffe releases will only support 'type' field (string) for a "
                "solver's type.")
    return solver


def upgrade_solver_param(solver_param, source_name="<solver>"):
    """Return a copy of `solver_param` with `solver_type` upgraded (`upgrade_solver_type`) and
    its inline nets (net_param, train_net_param, test_net_param) upgraded too."""
    solver = upgrade_solver_type(solver_param, source_name)
    for field in ("net_param", "train_net_param"):
        if solver.HasField(field):
            getattr(solver, field).CopyFrom(
                upgrade_net_param(getattr(solver, field), f"{source_name} ({field})"))
    for i, net in enumerate(solver.test_net_param):
        net.CopyFrom(upgrade_net_param(net, f"{source_name} (test_net_param {i})"))
    return solver


def _attempting(what, source_name):
    log.info("Attempting to upgrade input file specified using %s: %s", what, source_name,
             stacklevel=2)


_SOLVER_TYPES = {
    caffe_pb2.SolverParameter.SGD: "SGD",
    caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
    caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
    caffe_pb2.SolverParameter.ADAM: "Adam",
}


# --- V0 -> V1 ---------------------------------------------------------------------------------

_V0_TYPES = {
    "accuracy": V1.ACCURACY, "bnll": V1.BNLL, "concat": V1.CONCAT, "conv": V1.CONVOLUTION,
    "data": V1.DATA, "dropout": V1.DROPOUT, "euclidean_loss": V1.EUCLIDEAN_LOSS,
    "flatten": V1.FLATTEN, "hdf5_data": V1.HDF5_DATA, "hdf5_output": V1.HDF5_OUTPUT,
    "im2col": V1.IM2COL, "images": V1.IMAGE_DATA, "infogain_loss": V1.INFOGAIN_LOSS,
    "innerproduct": V1.INNER_PRODUCT, "lrn": V1.LRN,
    "multinomial_logistic_loss": V1.MULTINOMIAL_LOGISTIC_LOSS, "pool": V1.POOLING,
    "relu": V1.RELU, "sigmoid": V1.SIGMOID, "softmax": V1.SOFTMAX,
    "softmax_loss": V1.SOFTMAX_LOSS, "split": V1.SPLIT, "tanh": V1.TANH,
    "window_data": V1.WINDOW_DATA,
}

# V0 field -> {V0 layer type: "param_message.field"}; "*" means any layer type.
_V0_FIELDS = {
    "num_output": {"conv": "convolution_param.num_output",
                   "innerproduct": "inner_product_param.num_output"},
    "biasterm": {"conv": "convolution_param.bias_term",
                 "innerproduct": "inner_product_param.bias_term"},
    "weight_filler": {"conv": "convolution_param.weight_filler",
                      "innerproduct": "inner_product_param.weight_filler"},
    "bias_filler": {"conv": "convolution_param.bias_filler",
                    "innerproduct": "inner_product_param.bias_filler"},
    "pad": {"conv": "convolution_param.pad", "pool": "pooling_param.pad"},
    "kernelsize": {"conv": "convolution_param.kernel_size",
                   "pool": "pooling_param.kernel_size"},
    "group": {"conv": "convolution_param.group"},
    "stride": {"conv": "convolution_param.stride", "pool": "pooling_param.stride"},
    "pool": {"pool": "pooling_param.pool"},
    "dropout_ratio": {"dropout": "dropout_param.dropout_ratio"},
    "local_size": {"lrn": "lrn_param.local_size"},
    "alpha": {"lrn": "lrn_param.alpha"},
    "beta": {"lrn": "lrn_param.beta"},
    "k": {"lrn": "lrn_param.k"},
    "source": {"data": "data_param.source", "hdf5_data": "hdf5_data_param.source",
               "images": "image_data_param.source",
               "window_data": "window_data_param.source",
               "infogain_loss": "infogain_loss_param.source"},
    "scale": {"*": "transform_param.scale"},
    "meanfile": {"*": "transform_param.mean_file"},
    "batchsize": {"data": "data_param.batch_size", "hdf5_data": "hdf5_data_param.batch_size",
                  "images": "image_data_param.batch_size",
                  "window_data": "window_data_param.batch_size"},
    "cropsize": {"*": "transform_param.crop_size"},
    "mirror": {"*": "transform_param.mirror"},
    "rand_skip": {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"},
    "shuffle_images": {"images": "image_data_param.shuffle"},
    "new_height": {"images": "image_data_param.new_height"},
    "new_width": {"images": "image_data_param.new_width"},
    "concat_dim": {"concat": "concat_param.concat_dim"},
    "det_fg_threshold": {"window_data": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"window_data": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"window_data": "window_data_param.fg_fraction"},
    "det_context_pad": {"window_data": "window_data_param.context_pad"},
    "det_crop_mode": {"window_data": "window_data_param.crop_mode"},
    "hdf5_output_param": {"hdf5_output": "hdf5_output_param"},
}


def _v0_to_v1(net, source_name):
    """V0 nets carry only name, inputs and force_backward at net level; keep exactly those."""
    padded = _fold_padding_layers(net, source_name)
    upgraded = caffe_pb2.NetParameter()
    if padded.HasField("name"):
        upgraded.name = padded.name
    upgraded.input.extend(padded.input)
    upgraded.input_dim.extend(padded.input_dim)
    if padded.HasField("force_backward"):
        upgraded.force_backward = padded.force_backward
    for index, layer in enumerate(padded.layers):
        _v0_layer_to_v1(layer, upgraded.layers.add(), source_name, index)
    return upgraded


def _fold_padding_layers(net, source_name):
    """Drop V0 "padding" layers, moving their pad into the conv/pool layer that reads them."""
    result = caffe_pb2.NetParameter()
    result.CopyFrom(net)
    del result.layers[:]
    producer = {name: None for name in net.input}   # blob -> index of the last layer writing it
    for index, layer in enumerate(net.layers):
        v0 = layer.layer
        if v0.type != "padding":
            result.layers.add().CopyFrom(layer)
        for j, bottom in enumerate(layer.bottom):
            if bottom not in producer:
                raise PclError(f'{source_name}: layer "{v0.name}" ({index}): bottom "{bottom}" '
                               "is not a net input nor produced by an earlier layer")
            source = producer[bottom]
            if source is None or net.layers[source].layer.type != "padding":
                continue
            pad_layer = net.layers[source]
            if v0.type not in ("conv", "pool"):
                raise PclError(f'{source_name}: layer "{v0.name}" ({index}): a padding layer '
                               f'feeds a "{v0.type}" layer; only conv and pool layers can '
                               "take padding")
            if len(layer.bottom) != 1 or len(pad_layer.bottom) != 1 or len(pad_layer.top) != 1:
                raise PclError(f'{source_name}: layer "{v0.name}" ({index}): padding layer '
                               f'"{pad_layer.layer.name}" and its consumer must each have '
                               "exactly one bottom (and the padding layer one top)")
            kept = result.layers[-1]
            kept.layer.pad = pad_layer.layer.pad
            kept.bottom[j] = pad_layer.bottom[0]
        for top in layer.top:
            producer[top] = index
    return result


def _v0_layer_to_v1(wrapper, out, source_name, index):
    out.bottom.extend(wrapper.bottom)
    out.top.extend(wrapper.top)
    if not wrapper.HasField("layer"):
        return
    v0 = wrapper.layer
    where = f'{source_name}: layer "{v0.name}" ({index})'
    if v0.HasField("name"):
        out.name = v0.name
    if v0.HasField("type"):
        if v0.type not in _V0_TYPES:
            raise PclError(f'{where}: unknown V0 layer type "{v0.type}"; known types: '
                           f"{', '.join(sorted(_V0_TYPES))}")
        out.type = _V0_TYPES[v0.type]
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, value in v0.ListFields():
        targets = _V0_FIELDS.get(field.name)
        if targets is None:
            continue
        target = targets.get(v0.type) or targets.get("*")
        if target is None:
            raise PclError(f'{where}: V0 field "{field.name}" does not apply to a '
                           f'"{v0.type}" layer; remove it')
        _assign(out, target, value)


def _assign(message, dotted, value):
    """Set `message.<dotted>` to `value`, appending for repeated fields, copying messages."""
    *parents, name = dotted.split(".")
    for parent in parents:
        message = getattr(message, parent)
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        getattr(message, name).append(value)
    elif field.message_type is not None:
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


# --- data transformation ----------------------------------------------------------------------

_TRANSFORM_HOLDERS = {
    V1.DATA: "data_param",
    V1.IMAGE_DATA: "image_data_param",
    V1.WINDOW_DATA: "window_data_param",
}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def _has_legacy_transform(layer):
    holder = _TRANSFORM_HOLDERS.get(layer.type)
    return holder is not None and any(
        getattr(layer, holder).HasField(name) for name in _TRANSFORM_FIELDS)


def _upgrade_data_transformation(net):
    """Move the fields. As in Caffe, every data layer of the three types then has its params
    message and a transform_param, possibly empty (an upgraded file shows them)."""
    for layer in net.layers:
        holder = _TRANSFORM_HOLDERS.get(layer.type)
        if holder is None:
            continue
        params = getattr(layer, holder)
        params.SetInParent()
        layer.transform_param.SetInParent()
        for name in _TRANSFORM_FIELDS:
            if params.HasField(name):
                setattr(layer.transform_param, name, getattr(params, name))
                params.ClearField(name)


# --- V1 -> V2 ---------------------------------------------------------------------------------

_V1_TYPE_STRINGS = {
    V1.NONE: "", V1.ABSVAL: "AbsVal", V1.ACCURACY: "Accuracy", V1.ARGMAX: "ArgMax",
    V1.BNLL: "BNLL", V1.CONCAT: "Concat", V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    V1.CONVOLUTION: "Convolution", V1.DECONVOLUTION: "Deconvolution", V1.DATA: "Data",
    V1.DROPOUT: "Dropout", V1.DUMMY_DATA: "DummyData", V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    V1.ELTWISE: "Eltwise", V1.EXP: "Exp", V1.FLATTEN: "Flatten", V1.HDF5_DATA: "HDF5Data",
    V1.HDF5_OUTPUT: "HDF5Output", V1.HINGE_LOSS: "HingeLoss", V1.IM2COL: "Im2col",
    V1.IMAGE_DATA: "ImageData", V1.INFOGAIN_LOSS: "InfogainLoss",
    V1.INNER_PRODUCT: "InnerProduct", V1.LRN: "LRN", V1.MEMORY_DATA: "MemoryData",
    V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss", V1.MVN: "MVN",
    V1.POOLING: "Pooling", V1.POWER: "Power", V1.RELU: "ReLU", V1.SIGMOID: "Sigmoid",
    V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", V1.SILENCE: "Silence",
    V1.SOFTMAX: "Softmax", V1.SOFTMAX_LOSS: "SoftmaxWithLoss", V1.SPLIT: "Split",
    V1.SLICE: "Slice", V1.TANH: "TanH", V1.WINDOW_DATA: "WindowData",
    V1.THRESHOLD: "Threshold",
}

# Every "<kind>_param" of V1LayerParameter exists under the same name in LayerParameter.
_V1_PARAM_FIELDS = tuple(f.name for f in V1.DESCRIPTOR.fields if f.name.endswith("_param"))


def _v1_to_v2(net, source_name):
    if len(net.layer):
        raise PclError(f"{source_name}: the net mixes `layer {{ }}` and legacy `layers {{ }}` "
                       "entries; write all layers in one form (preferably `layer`)")
    upgraded = caffe_pb2.NetParameter()
    upgraded.CopyFrom(net)
    del upgraded.layers[:]
    for v1 in net.layers:
        _v1_layer_to_v2(v1, upgraded.layer.add())
    return upgraded


def _v1_layer_to_v2(v1, layer):
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = _V1_TYPE_STRINGS[v1.type]
    layer.blobs.extend(v1.blobs)

    def spec(i):
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]

    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        # Both DimCheckMode enums use the same names and numbers.
        spec(i).share_mode = mode
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        spec(i).decay_mult = decay
    layer.loss_weight.extend(v1.loss_weight)
    for name in _V1_PARAM_FIELDS:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))


# --- net inputs and BatchNorm -----------------------------------------------------------------

def _upgrade_net_input(net, source_name):
    """Turn net-level inputs into a leading Input layer; inputs without any shape are dropped
    (old binary models list their inputs that way)."""
    count = len(net.input)
    if len(net.input_shape):
        if len(net.input_shape) != count:
            raise PclError(f"{source_name}: {count} input(s) but {len(net.input_shape)} "
                           "input_shape(s); give one input_shape per input")
        shapes = [list(shape.dim) for shape in net.input_shape]
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * count:
            raise PclError(f"{source_name}: {count} input(s) need {4 * count} input_dim values "
                           f"(N, C, H, W each), found {len(net.input_dim)}")
        shapes = [list(net.input_dim[4 * i:4 * i + 4]) for i in range(count)]
    else:
        shapes = None
    if shapes is not None:
        layer = caffe_pb2.LayerParameter(name="input", type="Input", top=list(net.input))
        for dims in shapes:
            layer.input_param.shape.add().dim.extend(dims)
        layers = [layer, *net.layer]
        del net.layer[:]
        net.layer.extend(layers)
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)


def _is_old_batch_norm(layer):
    return layer.type == "BatchNorm" and len(layer.param) == 3


def _needs_batch_norm_upgrade(net):
    return any(_is_old_batch_norm(layer) for layer in net.layer)


def _upgrade_batch_norm(net):
    for layer in net.layer:
        if _is_old_batch_norm(layer):
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
