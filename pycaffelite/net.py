"""Net: a graph of layers built from a NetParameter, with forward and backward passes.

Construction follows Caffe's Net::Init: filter the layers by NetState, insert Split layers, then
for each layer in order resolve its bottoms among the blobs produced so far (a top named like its
bottom runs in place), create its tops, set it up, record loss weights and params (sharing param
blobs by ParamSpec name), and work out which layers and bottoms need a backward pass: those that
are under some loss and have something learnable or a bottom that needs a gradient below them
(`force_backward` asks every layer that can for every bottom gradient).

Weights are copied in by layer name from .caffemodel (binary NetParameter, also V1) or Caffe's
HDF5 layout (`data/<layer>/<i>`), and saved the same ways.
"""
import collections
import contextlib
import logging
import os

import numpy as np
from google.protobuf import text_format

from . import memory, net_build
from .blob import Blob
from .errors import PclError
from .io import protoio, upgrade
from .layers import create_layer
from .layers.python_layer import describe_user_error
from .pycaffe_net import PycaffeNet
from .training_log import fmt
from .proto import caffe_pb2

log = logging.getLogger("pycaffelite")

TRAIN = caffe_pb2.TRAIN
TEST = caffe_pb2.TEST

# The name Caffe gives a top that a loss layer was given none for.
AUTOMATIC_TOP_NAME = "(automatic)"


def shape_string(shape):
    """A shape as Caffe's logs print it: `64 20 24 24 (737280)`, `(1)` for a scalar."""
    count = int(np.prod(shape, dtype=np.int64))
    return "".join(f"{d} " for d in shape) + f"({count})"


def _phase_value(phase):
    if isinstance(phase, str):
        try:
            return caffe_pb2.Phase.Value(phase.upper())
        except ValueError:
            raise PclError(f'unknown phase "{phase}"; use TRAIN or TEST') from None
    return phase


class Net(PycaffeNet):
    """A Caffe net. `Net(model, phase, weights=None, level=0, stages=())`; pycaffe's
    `Net(model, weights, phase)` order is accepted too. `model` is a prototxt path or a
    NetParameter; `source` names where a NetParameter came from, for error messages.
    `fill_params=False` leaves the params zero instead of running their fillers (whose settings
    are still checked): for tools that need the shapes only, or weights loaded next."""

    def __init__(self, model, phase=None, weights=None, level=0, stages=(), dtype=np.float32,
                 state=None, source=None, fill_params=True):
        if isinstance(phase, (str, os.PathLike)) and not str(phase).upper() in ("TRAIN", "TEST") \
                and weights is not None:
            phase, weights = weights, phase  # pycaffe order: Net(model, weights, phase)
        if isinstance(model, caffe_pb2.NetParameter):
            self.source = source or model.name or "<net>"
            net_param = upgrade.upgrade_net_param(model, self.source)
        else:
            self.source = os.fspath(model)
            net_param = protoio.read_net_param(self.source)
        net_state = caffe_pb2.NetState()
        net_state.CopyFrom(net_param.state)
        if state is not None:
            net_state.MergeFrom(state)
        if phase is not None:
            net_state.phase = _phase_value(phase)
        if level:
            net_state.level = level
        net_state.stage.extend(s for s in stages if s not in net_state.stage)
        self.dtype = np.dtype(dtype)
        self._fill_params = fill_params
        self._init(net_param, net_state)
        if weights is not None:
            self.copy_from(weights)

    # -- construction ------------------------------------------------------------------------
    def _init(self, in_param, state):
        self.state = state
        self._forward_done = False
        # pycaffe's per-layer hooks: callback(layer index) around each layer's pass.
        self._before_forward, self._after_forward = [], []
        self._before_backward, self._after_backward = [], []
        self.phase = state.phase
        filtered = net_build.filter_by_state(in_param, state, self.source)
        if log.isEnabledFor(logging.INFO):
            log.info("Initializing net from parameters: \n%s", text_format.MessageToString(filtered))
        self.param = net_build.insert_splits(filtered, self.source)
        self.name = self.param.name

        self.layers = []
        self.layer_names = []
        self.bottom_vecs, self.bottom_ids, self.bottom_need_backward = [], [], []
        self.top_vecs, self.top_ids = [], []
        self.blob_list, self.blob_names, self.blob_need_backward = [], [], []
        self._blob_loss_weights = []
        self.layer_need_backward = []
        self.input_blob_ids = []
        self.param_blobs = []          # every param blob, per layer in order
        self.param_owners = []         # -1, or the net param id whose memory this one shares
        self.param_layer_indices = []  # (layer id, param index) per net param
        self.param_display_names = []
        self.learnable_params = []     # the owners only: what the solver updates
        self.learnable_param_ids = []  # per net param: its learnable param id
        self.params_lr, self.params_weight_decay = [], []
        self.has_params_lr, self.has_params_decay = [], []
        self._param_names_index = {}
        blob_name_to_id = {}
        available = set()
        memory_used = 0
        data_memory = {}  # id -> every distinct data memory of the blobs so far (kept alive)
        data_bytes = 0

        for layer_id, shared_param in enumerate(self.param.layer):
            layer_param = caffe_pb2.LayerParameter()
            layer_param.CopyFrom(shared_param)
            if not layer_param.HasField("phase"):
                layer_param.phase = self.phase
            if len(layer_param.propagate_down) not in (0, len(layer_param.bottom)):
                raise PclError(f'{self.source}: layer "{layer_param.name}": propagate_down has '
                               f"{len(layer_param.propagate_down)} values but the layer has "
                               f"{len(layer_param.bottom)} bottoms; give one per bottom")
            with self._reporting(None, "creating it"):
                layer = create_layer(layer_param, phase=self.phase, dtype=self.dtype)
            layer.fill_params = self._fill_params
            self.layers.append(layer)
            self.layer_names.append(layer_param.name)
            log.info("Creating Layer %s", layer_param.name)
            need_backward = False
            bottoms, bottom_ids, bottom_need = [], [], []
            for bottom_index, name in enumerate(layer_param.bottom):
                if name not in available:
                    raise PclError(f'{self.source}: layer "{layer_param.name}": bottom "{name}" is '
                                   f"not produced by any earlier layer (or is consumed twice in "
                                   f"place); check the name or the layer order")
                blob_id = blob_name_to_id[name]
                log.info("%s <- %s", layer_param.name, name)
                bottoms.append(self.blob_list[blob_id])
                bottom_ids.append(blob_id)
                needs = self.blob_need_backward[blob_id]
                if len(layer_param.propagate_down):
                    needs = bool(layer_param.propagate_down[bottom_index])
                bottom_need.append(needs)
                need_backward |= needs
                available.discard(name)
            tops, top_ids = [], []
            for top_index, name in enumerate(layer_param.top):
                in_place = top_index < len(layer_param.bottom) and layer_param.bottom[top_index] == name
                if in_place:
                    blob_id = bottom_ids[top_index]
                    log.info("%s -> %s (in-place)", layer_param.name, name)
                elif name in blob_name_to_id:
                    raise PclError(f'{self.source}: layer "{layer_param.name}": top "{name}" is '
                                   f"already produced by an earlier layer; give it a new name "
                                   f"(or the same name as bottom {top_index} to run in place)")
                else:
                    blob_id = self._append_blob(name, layer_param.name)
                    blob_name_to_id[name] = blob_id
                    if layer_param.type == "Input":
                        self.input_blob_ids.append(blob_id)
                tops.append(self.blob_list[blob_id])
                top_ids.append(blob_id)
                available.add(name)
            # A loss layer given no top gets an anonymous one, as Caffe's AutoTopBlobs: its loss
            # counts, but no other layer can use it and it is not among the net's outputs.
            for _ in range(len(tops), layer.auto_top_count()):
                blob_id = self._append_blob(AUTOMATIC_TOP_NAME, layer_param.name)
                tops.append(self.blob_list[blob_id])
                top_ids.append(blob_id)
            self.bottom_vecs.append(bottoms)
            self.bottom_ids.append(bottom_ids)
            self.bottom_need_backward.append(bottom_need)
            self.top_vecs.append(tops)
            self.top_ids.append(top_ids)

            with self._reporting(layer, "setup"):
                layer.initialize(bottoms, tops)
            log.info("Setting up %s", layer_param.name)
            for top_index, blob_id in enumerate(top_ids):
                weight = layer.loss_weights[top_index]
                self._blob_loss_weights[blob_id] = weight
                log.info("Top shape: %s", shape_string(self.blob_list[blob_id].shape))
                if weight:
                    log.info("    with loss weight %s", fmt(weight))
                memory_used += self.blob_list[blob_id].count
            log.info("Memory required for data: %d", memory_used * self.dtype.itemsize)
            for blob in list(tops) + list(layer.blobs):
                mem = blob.data_mem
                if id(mem) not in data_memory:
                    data_memory[id(mem)] = mem
                    data_bytes += mem.count * mem.dtype.itemsize
            memory.check_total(data_bytes, f'{self.source}: layer "{layer_param.name}" '
                                           f"({layer_param.type}): the blobs of the layers up to here")

            given_specs = len(layer_param.param)
            if given_specs > len(layer.blobs):
                raise PclError(f'{self.source}: layer "{layer_param.name}" ({layer_param.type}) has '
                               f"{given_specs} param specs but only {len(layer.blobs)} param blobs; "
                               f"remove the extra param {{ }} entries")
            for param_index in range(len(layer.blobs)):
                spec = layer_param.param[param_index] if param_index < given_specs else caffe_pb2.ParamSpec()
                param_needs = spec.lr_mult != 0
                need_backward |= param_needs
                layer.set_param_propagate_down(param_index, param_needs)
            for param_index in range(len(layer.blobs)):
                self._append_param(layer_id, param_index)
            self.layer_need_backward.append(need_backward)
            if need_backward:
                for blob_id in top_ids:
                    self.blob_need_backward[blob_id] = True

        self._prune_backward()
        if self.param.force_backward:
            self._force_backward()
        # Blobs nothing consumed are the outputs, in name order as Caffe lists them.
        self.output_blob_ids = [blob_name_to_id[name] for name in sorted(available)]
        for name in sorted(available):
            log.info("This network produces output %s", name)
        self._blob_name_to_id = blob_name_to_id
        self._share_weights()
        self._build_views()
        log.info("Network initialization done.")

    def _append_blob(self, name, layer_name):
        """A new (empty) blob named `name`, produced by layer `layer_name`; returns its id."""
        log.info("%s -> %s", layer_name, name)
        self.blob_list.append(Blob((), dtype=self.dtype))
        self.blob_names.append(name)
        self.blob_need_backward.append(False)
        self._blob_loss_weights.append(0.0)
        return len(self.blob_list) - 1

    @contextlib.contextmanager
    def _reporting(self, layer, stage):
        """Explain an exception of `layer`'s `stage` (see `_explain`)."""
        try:
            yield
        except Exception as exc:
            self._explain(exc, layer, stage)
            raise

    def _explain(self, exc, layer, stage):
        """Make an exception raised by a layer say where to look: a PclError is raised again
        prefixed with the net's file and the layer (where the message does not name them); an
        exception of a Python layer's own code is marked with the layer, module and line (and
        re-raised unchanged by the caller); a MemoryError becomes a PclError naming the layer;
        one raised by a backward pass before any forward pass becomes a PclError saying so."""
        if isinstance(exc, PclError):
            message = str(exc)
            prefix = f"{self.source}: "
            body = message[len(prefix):] if message.startswith(prefix) else message
            if layer is not None and f'layer "{layer.name}"' not in body:
                body = f'layer "{layer.name}" ({layer.type}): {body}'
            if prefix + body != message:
                raise type(exc)(prefix + body) from None
        elif getattr(layer, "is_user_code", False):
            describe_user_error(exc, layer, stage)
        elif isinstance(exc, MemoryError):
            where = f'layer "{layer.name}" ({layer.type}) ' if layer is not None else ""
            raise PclError(f"{self.source}: {where}ran out of memory ({stage}: {exc}); lower "
                           f"the batch size or the layers' sizes, or free memory") from None
        elif stage == "backward" and not self._forward_done:
            raise PclError(f'{self.source}: layer "{layer.name}" ({layer.type}): backward() was '
                           f"called before any forward(); its backward needs the results of its "
                           f"forward pass: call net.forward() first") from None

    def _append_param(self, layer_id, param_index):
        layer = self.layers[layer_id]
        layer_param = layer.param  # the layer's own copy: layers may add specs (BatchNorm)
        spec = layer_param.param[param_index] if param_index < len(layer_param.param) else caffe_pb2.ParamSpec()
        name = spec.name
        net_param_id = len(self.param_blobs)
        blob = layer.blobs[param_index]
        self.param_blobs.append(blob)
        self.param_layer_indices.append((layer_id, param_index))
        self.param_display_names.append(name or str(param_index))
        if not name or name not in self._param_names_index:
            self.param_owners.append(-1)
            if name:
                self._param_names_index[name] = net_param_id
            self.learnable_param_ids.append(len(self.learnable_params))
            self.learnable_params.append(blob)
            self.has_params_lr.append(spec.HasField("lr_mult"))
            self.has_params_decay.append(spec.HasField("decay_mult"))
            self.params_lr.append(spec.lr_mult)
            self.params_weight_decay.append(spec.decay_mult)
            return
        owner_id = self._param_names_index[name]
        self.param_owners.append(owner_id)
        owner_layer, owner_index = self.param_layer_indices[owner_id]
        owner_blob = self.layers[owner_layer].blobs[owner_index]
        where = (f'{self.source}: layer "{layer_param.name}" shares param "{name}" with layer '
                 f'"{self.layer_names[owner_layer]}"')
        if spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE:
            if blob.count != owner_blob.count:
                raise PclError(f"{where}, but their sizes differ ({blob.count} vs {owner_blob.count})")
        elif blob.shape != owner_blob.shape:
            raise PclError(f"{where}, but their shapes differ ({blob.shape} vs {owner_blob.shape}); "
                           f"make the shapes equal or use share_mode: PERMISSIVE for equal sizes")
        learnable_id = self.learnable_param_ids[owner_id]
        self.learnable_param_ids.append(learnable_id)
        for has, values, field in ((self.has_params_lr, self.params_lr, "lr_mult"),
                                   (self.has_params_decay, self.params_weight_decay, "decay_mult")):
            if not spec.HasField(field):
                continue
            value = getattr(spec, field)
            if has[learnable_id] and values[learnable_id] != value:
                raise PclError(f"{where}, but with a different {field} ({value} vs "
                               f"{values[learnable_id]}); give both the same {field}")
            has[learnable_id] = True
            values[learnable_id] = value

    def _prune_backward(self):
        """Turn off backward for layers not under any loss, and for bottoms nothing needs."""
        blobs_under_loss, blobs_skip_backward = set(), set()
        for layer_id in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[layer_id]
            contributes = False
            skip_propagate = True
            for top_index, blob_id in enumerate(self.top_ids[layer_id]):
                name = self.blob_names[blob_id]
                if layer.loss_weights[top_index] or name in blobs_under_loss:
                    contributes = True
                if name not in blobs_skip_backward:
                    skip_propagate = False
            if self.layer_need_backward[layer_id] and skip_propagate:
                self.layer_need_backward[layer_id] = False
                self.bottom_need_backward[layer_id] = [False] * len(self.bottom_ids[layer_id])
            if not contributes:
                self.layer_need_backward[layer_id] = False
            for bottom_index, blob_id in enumerate(self.bottom_ids[layer_id]):
                name = self.blob_names[blob_id]
                if contributes:
                    blobs_under_loss.add(name)
                else:
                    self.bottom_need_backward[layer_id][bottom_index] = False
                if not self.bottom_need_backward[layer_id][bottom_index]:
                    blobs_skip_backward.add(name)
            log.info("%s %s backward computation.", self.layer_names[layer_id],
                     "needs" if self.layer_need_backward[layer_id] else "does not need")

    def _force_backward(self):
        for layer_id, layer in enumerate(self.layers):
            self.layer_need_backward[layer_id] = True
            for bottom_index, blob_id in enumerate(self.bottom_ids[layer_id]):
                needs = self.bottom_need_backward[layer_id][bottom_index] or layer.allow_force_backward(bottom_index)
                self.bottom_need_backward[layer_id][bottom_index] = needs
                self.blob_need_backward[blob_id] = self.blob_need_backward[blob_id] or needs
            for param_index in range(len(layer.blobs)):
                layer.set_param_propagate_down(param_index, True)

    def _share_weights(self):
        for blob, owner_id in zip(self.param_blobs, self.param_owners):
            if owner_id >= 0:
                blob.share_data(self.param_blobs[owner_id])
                blob.share_diff(self.param_blobs[owner_id])

    def _build_views(self):
        """pycaffe's name-keyed views: blobs, params, layer_dict, inputs, outputs."""
        self.blobs = collections.OrderedDict(zip(self.blob_names, self.blob_list))
        self.layer_dict = collections.OrderedDict(zip(self.layer_names, self.layers))
        self.params = collections.OrderedDict(
            (name, layer.blobs) for name, layer in zip(self.layer_names, self.layers) if layer.blobs)
        self.inputs = [self.blob_names[i] for i in self.input_blob_ids]
        self.outputs = [self.blob_names[i] for i in self.output_blob_ids]

    # -- passes ------------------------------------------------------------------------------
    def forward_from_to(self, start=0, end=None):
        """Run layers start..end (inclusive); returns the summed weighted loss."""
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        layer_id = start
        try:
            for layer_id in range(start, end + 1):
                for callback in self._before_forward:
                    callback(layer_id)
                loss += self.layers[layer_id].forward_loss(self.bottom_vecs[layer_id], self.top_vecs[layer_id])
                for callback in self._after_forward:
                    callback(layer_id)
        except Exception as exc:
            self._explain(exc, self.layers[layer_id], "forward")
            raise
        self._forward_done = True
        return loss

    def backward_from_to(self, start=None, end=0):
        """Backward through layers start down to end (inclusive), where backward is needed."""
        start = len(self.layers) - 1 if start is None else start
        layer_id = start
        try:
            for layer_id in range(start, end - 1, -1):
                for callback in self._before_backward:
                    callback(layer_id)
                if self.layer_need_backward[layer_id]:
                    self.layers[layer_id].backward(self.top_vecs[layer_id], self.bottom_need_backward[layer_id],
                                                   self.bottom_vecs[layer_id])
                for callback in self._after_backward:
                    callback(layer_id)
        except Exception as exc:
            self._explain(exc, self.layers[layer_id], "backward")
            raise

    def forward_backward(self):
        loss = self.forward_from_to()
        self.backward_from_to()
        return loss

    def reshape(self):
        for layer, bottoms, tops in zip(self.layers, self.bottom_vecs, self.top_vecs):
            with self._reporting(layer, "reshape"):
                layer.reshape(bottoms, tops)

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            blob.write_diff()[...] = 0

    def share_trained_layers_with(self, other):
        """Use `other`'s param memory for layers of the same name (test nets share the train net's)."""
        for layer_name, layer in zip(self.layer_names, self.layers):
            if layer_name not in other.layer_dict:
                continue
            source = other.layer_dict[layer_name]
            if len(source.blobs) != len(layer.blobs):
                raise PclError(f'layer "{layer_name}": {len(source.blobs)} param blobs in one net, '
                               f"{len(layer.blobs)} in the other")
            for mine, theirs in zip(layer.blobs, source.blobs):
                if mine.shape != theirs.shape:
                    raise PclError(f'layer "{layer_name}": param shapes differ between nets '
                                   f"({theirs.shape} vs {mine.shape})")
                mine.share_data(theirs)

    # -- weights in and out --------------------------------------------------------------------
    def copy_from(self, weights):
        """Copy trained params by layer name from a .caffemodel (or .h5 / .caffemodel.h5) path,
        a comma-separated list of paths, or a NetParameter."""
        if isinstance(weights, caffe_pb2.NetParameter):
            self.copy_trained_layers_from(weights, "<NetParameter>")
            return
        for path in os.fspath(weights).split(","):
            path = path.strip()
            if path.endswith(".h5"):
                from .io.hdf5_weights import copy_hdf5_weights  # noqa: PLC0415

                copy_hdf5_weights(self, path)
            else:
                self.copy_trained_layers_from(protoio.read_net_param_binary(path), path)

    def copy_trained_layers_from(self, trained, source):
        for trained_layer in trained.layer:
            name = trained_layer.name
            if name not in self.layer_dict:
                log.info("Ignoring source layer %s", name)
                continue
            target = self.layer_dict[name].blobs
            if len(target) != len(trained_layer.blobs):
                raise PclError(f'{source}: layer "{name}" holds {len(trained_layer.blobs)} param blobs '
                               f"but the net's layer has {len(target)}; rename the layer in the net "
                               f"to initialise it from its fillers instead")
            for index, (blob, stored) in enumerate(zip(target, trained_layer.blobs)):
                if not blob.matches_proto_shape(stored):
                    raise self.param_shape_error(source, name, index, Blob.shape_of_proto(stored), blob.shape)
                blob.from_proto(stored, reshape=False)

    @staticmethod
    def param_shape_error(source, layer_name, index, stored_shape, net_shape):
        return PclError(f'{source}: cannot copy param {index} of layer "{layer_name}": shape '
                        f"mismatch, the file has {tuple(stored_shape)} and the net expects "
                        f"{tuple(net_shape)}; to learn this layer from scratch instead, rename the layer")

    def to_proto(self, write_diff=False):
        """The net as a NetParameter with every layer's params (what a .caffemodel holds)."""
        proto = caffe_pb2.NetParameter()
        proto.name = self.name
        for layer in self.layers:
            layer_proto = proto.layer.add()
            layer_proto.CopyFrom(layer.param)
            del layer_proto.blobs[:]
            for blob in layer.blobs:
                layer_proto.blobs.append(blob.to_proto(write_diff))
        return proto

    def save(self, path, write_diff=False):
        """Write a binary .caffemodel (or Caffe's HDF5 layout when the path ends in .h5)."""
        path = os.fspath(path)
        if path.endswith(".h5"):
            from .io.hdf5_weights import save_hdf5_weights  # noqa: PLC0415

            save_hdf5_weights(self, path, write_diff)
        else:
            protoio.write_binary_proto(path, self.to_proto(write_diff))

    def to_onnx(self, path, opset=None, input_shapes=None, outputs=()):
        """Write the net (TEST phase) and its weights as an ONNX model; see
        pycaffelite.onnx_export.export_onnx. Needs the onnx extra."""
        from .onnx_export import export_onnx  # noqa: PLC0415 - onnx only when exporting

        return export_onnx(self, path, opset=opset, input_shapes=input_shapes, outputs=outputs)

    def save_hdf5(self, path, write_diff=False):
        from .io.hdf5_weights import save_hdf5_weights  # noqa: PLC0415

        save_hdf5_weights(self, os.fspath(path), write_diff)

    def __repr__(self):
        return f"Net({self.name!r}, phase={caffe_pb2.Phase.Name(self.phase)}, layers={len(self.layers)})"

