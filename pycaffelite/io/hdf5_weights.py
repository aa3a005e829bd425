"""Net weights in Caffe's HDF5 layout: group `data` with one group per layer (empty for layers
without params) holding float datasets `0`, `1`, ...; group `diff` alike when diffs are saved.
Only params that own their memory are written (shared params are stored once, by their owner)."""
import os

import h5py
import numpy as np

from ..errors import PclError
from .atomic import hdf5_output


def save_hdf5_weights(net, path, write_diff=False):
    with hdf5_output(path, "HDF5 weights") as f:
        groups = [("data", False)] + ([("diff", True)] if write_diff else [])
        for group_name, is_diff in groups:
            group = f.create_group(group_name)
            for layer_id, (name, layer) in enumerate(zip(net.layer_names, net.layers)):
                layer_group = group.create_group(name)
                for index, blob in enumerate(layer.blobs):
                    if net.param_owners[_net_param_id(net, layer_id, index)] == -1:
                        values = blob.cpu_diff() if is_diff else blob.cpu_data()
                        layer_group.create_dataset(str(index), data=values)


def _net_param_id(net, layer_id, index):
    return net.param_layer_indices.index((layer_id, index))


def copy_hdf5_weights(net, path):
    """Copy params by layer name from a Caffe HDF5 weights file."""
    if not os.path.exists(path):
        raise PclError(f"{path}: no such weights file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise PclError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        with f:
            _copy_layers(net, path, f)
    except DAMAGED as exc:
        raise damaged(path, exc) from None


# What h5py raises for a file whose structure is damaged (a flipped byte, a zeroed block).
DAMAGED = (OSError, KeyError, RuntimeError, ValueError, TypeError)


def damaged(path, exc):
    """The PclError for an h5py error `exc` met while reading `path`."""
    text = exc.args[0] if exc.args else exc
    return PclError(f"{path}: the HDF5 file is damaged ({text}); write it again or restore it from "
                    "a copy")


def _copy_layers(net, path, f):
    """Copy the params of every layer of `net` that the open weights file `f` names."""
    if "data" not in f:
        raise PclError(f'{path}: no "data" group; this is not a Caffe HDF5 weights file')
    data = f["data"]
    for layer_id, (name, layer) in enumerate(zip(net.layer_names, net.layers)):
        if name not in data:
            continue
        stored = data[name]
        if len(stored) > len(layer.blobs):
            raise PclError(f'{path}: layer "{name}" holds {len(stored)} param blobs but the '
                           f"net's layer has {len(layer.blobs)}; rename the layer in the net to "
                           f"initialise it from its fillers instead")
        for index, blob in enumerate(layer.blobs):
            key = str(index)
            if key not in stored:
                if net.param_owners[_net_param_id(net, layer_id, index)] >= 0:
                    continue  # a shared param is stored with its owner
                raise PclError(f'{path}: layer "{name}" has no dataset "{key}"')
            values = np.asarray(stored[key])
            if values.shape != blob.shape:
                raise net.param_shape_error(path, name, index, values.shape, blob.shape)
            blob.mutable_cpu_data()[...] = values
