"""pycaffe's Python face of the Net: name-keyed views, passes by layer name, batched passes and
per-layer callbacks, with pycaffe's names, argument orders and return types.

    out = net.forward(data=batch)                    # {output blob: array}
    out = net.forward(start="conv1", end="ip1")      # end: that layer's tops are returned
    diffs = net.backward(loss=...)                   # {input blob: diff}
    all_out = net.forward_all(data=many_images)      # any number of items, run batch by batch

`Net` inherits this; the attributes read here (`layers`, `layer_names`, `blob_names`,
`blob_list`, `top_ids`, `bottom_ids`, `input_blob_ids`, `output_blob_ids`, `blobs`, ...) are
built by Net.
"""
import collections
import itertools
import os

import numpy as np

from .errors import PclError


class PycaffeNet:
    """Mixin: pycaffe's methods and properties over a built Net."""

    # -- pycaffe's index-based views (pycaffe's private names, used by its own modules) ----------
    @property
    def _layer_names(self):
        return self.layer_names

    @property
    def _blob_names(self):
        return self.blob_names

    @property
    def _blobs(self):
        return self.blob_list

    @property
    def _inputs(self):
        return self.input_blob_ids

    @property
    def _outputs(self):
        return self.output_blob_ids

    def _top_ids(self, layer_id):
        return list(self.top_ids[layer_id])

    def _bottom_ids(self, layer_id):
        return list(self.bottom_ids[layer_id])

    def _forward(self, start, end):
        """Forward through layers start..end given by index (pycaffe's `_forward`)."""
        return self.forward_from_to(start, end)

    def _backward(self, start, end):
        """Backward through layers start down to end given by index (pycaffe's `_backward`)."""
        self.backward_from_to(start, end)

    # -- name-keyed views ------------------------------------------------------------------------
    @property
    def blob_loss_weights(self):
        """{blob name: loss weight} in blob order."""
        return collections.OrderedDict(zip(self.blob_names, self._blob_loss_weights))

    @property
    def top_names(self):
        """{layer name: [its top blob names]} in layer order."""
        return self._names_by_layer(self.top_ids)

    @property
    def bottom_names(self):
        """{layer name: [its bottom blob names]} in layer order."""
        return self._names_by_layer(self.bottom_ids)

    def _names_by_layer(self, ids_per_layer):
        return collections.OrderedDict(
            (layer_name, [self.blob_names[i] for i in ids])
            for layer_name, ids in zip(self.layer_names, ids_per_layer))

    def blob_by_name(self, name):
        if name not in self.blobs:
            raise PclError(f'net "{self.name}" has no blob "{name}"')
        return self.blobs[name]

    def layer_by_name(self, name):
        if name not in self.layer_dict:
            raise PclError(f'net "{self.name}" has no layer "{name}"')
        return self.layer_dict[name]

    def _layer_index(self, name_or_index, default):
        if name_or_index is None:
            return default
        if isinstance(name_or_index, str):
            if name_or_index not in self.layer_dict:
                raise PclError(f'net "{self.name}" has no layer "{name_or_index}"; its layers: '
                               f"{', '.join(self.layer_names)}")
            return self.layer_names.index(name_or_index)
        return int(name_or_index)

    # -- passes by name ----------------------------------------------------------------------------
    def forward(self, blobs=None, start=None, end=None, **inputs):
        """Set the given input blobs (name=array, batch-sized), run layers start..end (names,
        inclusive; default all) and return {blob name: data} for the net's outputs, or the end
        layer's tops when `end` is given, plus the blobs named in `blobs`."""
        self._set_batch(inputs, self.inputs, "input", "data")
        start_id = self._layer_index(start, 0)
        end_id = self._layer_index(end, len(self.layers) - 1)
        wanted = self.top_names[end] if end is not None else self.outputs
        self.forward_from_to(start_id, end_id)
        return {name: self.blobs[name].data for name in set(wanted) | set(blobs or [])}

    def backward(self, diffs=None, start=None, end=None, **top_diffs):
        """Set the given output diffs (name=array, batch-sized), run the backward pass from layer
        `start` down to `end` (names, inclusive; default all) and return {blob name: diff} for
        the net's inputs, or the end layer's bottoms when `end` is given, plus those in `diffs`."""
        self._set_batch(top_diffs, self.outputs, "output", "diff")
        start_id = self._layer_index(start, len(self.layers) - 1)
        end_id = self._layer_index(end, 0)
        wanted = self.bottom_names[end] if end is not None else self.inputs
        self.backward_from_to(start_id, end_id)
        return {name: self.blobs[name].diff for name in set(wanted) | set(diffs or [])}

    def _set_batch(self, arrays, allowed, kind, field):
        for name, value in arrays.items():
            if name not in allowed:
                raise PclError(f'"{name}" is not an {kind} of net "{self.name}"; its {kind}s: '
                               f"{', '.join(allowed) or 'none'}")
            blob = self.blobs[name]
            value = np.asarray(value)
            if value.shape[:1] != blob.shape[:1]:
                raise PclError(f'{kind} "{name}" has {value.shape[0] if value.ndim else "no"} '
                               f"items but the blob holds a batch of {blob.shape[0]}; reshape the "
                               f"blob (net.blobs[\"{name}\"].reshape(...), then net.reshape()) or "
                               f"use forward_all")
            getattr(blob, field)[...] = value

    # -- batched passes ------------------------------------------------------------------------------
    def forward_all(self, blobs=None, **inputs):
        """Run any number of items through the net a batch at a time (the last batch padded with
        zeros); returns {blob name: array of every item's data}, padding removed."""
        wanted = set(self.outputs) | set(blobs or [])
        results = {name: [] for name in wanted}
        for batch in self._batch(inputs):
            for name, value in self.forward(blobs=blobs, **batch).items():
                results[name].append(value.copy())
        return self._joined(results, self._item_count(inputs))

    def forward_backward_all(self, blobs=None, diffs=None, **arrays):
        """forward_all and backward together: `arrays` holds inputs (for the forward passes) and
        output diffs (for the backward passes); returns ({blob: data}, {blob: diff})."""
        forward_batches = self._batch({n: a for n, a in arrays.items() if n in self.inputs})
        backward_batches = self._batch({n: a for n, a in arrays.items() if n in self.outputs})
        outs = {name: [] for name in set(self.outputs) | set(blobs or [])}
        grads = {name: [] for name in set(self.inputs) | set(diffs or [])}
        for forward_batch, backward_batch in itertools.zip_longest(
                forward_batches, backward_batches, fillvalue={}):
            for name, value in self.forward(blobs=blobs, **forward_batch).items():
                outs[name].append(value.copy())
            for name, value in self.backward(diffs=diffs, **backward_batch).items():
                grads[name].append(value.copy())
        count = self._item_count(arrays)
        return self._joined(outs, count), self._joined(grads, count)

    def _batch(self, arrays):
        """Yield {name: batch-sized slice} over `arrays` (equal lengths); the last batch is
        padded with zeros."""
        if not arrays:
            return
        count = self._item_count(arrays)
        batch_size = self.blob_list[0].shape[0]
        for begin in range(0, count, batch_size):
            batch = {}
            for name, array in arrays.items():
                part = np.asarray(array[begin:begin + batch_size])
                if len(part) < batch_size:
                    padding = np.zeros((batch_size - len(part),) + part.shape[1:], part.dtype)
                    part = np.concatenate([part, padding])
                batch[name] = part
            yield batch

    def _item_count(self, arrays):
        counts = {name: len(array) for name, array in arrays.items()}
        if len(set(counts.values())) > 1:
            raise PclError(f"the arrays given hold different numbers of items: {counts}; give "
                           f"each input the same number")
        if not counts:
            raise PclError(f'net "{self.name}": forward_all needs the inputs as arrays (name='
                           f"array); to run the net's own data layers call forward()")
        return next(iter(counts.values()))

    @staticmethod
    def _joined(parts, count):
        return {name: np.concatenate(values)[:count] if values else np.empty((0,))
                for name, values in parts.items()}

    # -- inputs, weights, sharing ----------------------------------------------------------------------
    def set_input_arrays(self, data, labels):
        """Hand arrays to the net's first layer, which must be MemoryData (labels: one per item)."""
        if not self.layers or self.layers[0].type != "MemoryData":
            raise PclError(f'net "{self.name}": set_input_arrays needs a MemoryData first layer; '
                           f"this net starts with {self.layers[0].type if self.layers else 'nothing'}")
        self.layers[0].set_input_arrays(data, labels)

    def share_with(self, other):
        """Use `other`'s param memory for the layers both nets name alike (pycaffe's name)."""
        self.share_trained_layers_with(other)

    def load_hdf5(self, path):
        """Copy params by layer name from Caffe's HDF5 weights layout, whatever the file's name."""
        from .io.hdf5_weights import copy_hdf5_weights  # noqa: PLC0415 - h5py only when needed

        copy_hdf5_weights(self, os.fspath(path))

    # -- callbacks -------------------------------------------------------------------------------------
    def before_forward(self, callback):
        """Call `callback(layer index)` before each layer's forward pass."""
        self._before_forward.append(callback)

    def after_forward(self, callback):
        """Call `callback(layer index)` after each layer's forward pass."""
        self._after_forward.append(callback)

    def before_backward(self, callback):
        """Call `callback(layer index)` before each layer's backward step."""
        self._before_backward.append(callback)

    def after_backward(self, callback):
        """Call `callback(layer index)` after each layer's backward step."""
        self._after_backward.append(callback)
