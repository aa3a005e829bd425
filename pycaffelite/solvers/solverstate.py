"""Solver state files in BVLC Caffe's two layouts, read and written atomically.

`.solverstate`: a binary SolverState protobuf (iter, learned_net, history blobs, current_step).
`.solverstate.h5`: int32 datasets `iter` and `current_step` of shape (1,), `learned_net` a scalar
fixed-length NUL-terminated ASCII string, and a group `history` with float datasets `0`..`n-1`.

pycaffelite adds the run state (data positions, generators: see solvers/resume.py) where Caffe
does not look: SolverState field 1000 (`run_state`), and in HDF5 the group `pycaffelite` holding
the serialised RunState as the uint8 dataset `run_state`. Caffe reads both files as before.

A weights file passed where a solver state is expected (Caffe issue #4181) is recognised and
explained instead of failing on a missing field.
"""
import dataclasses
import os

import numpy as np
from google.protobuf import message as pb_message

from ..blob import Blob
from ..errors import PclError
from ..io import protoio
from ..io.atomic import hdf5_output
from ..proto import caffe_pb2


@dataclasses.dataclass
class SolverStateData:
    """What a solver state file holds; `history` is a list of host float arrays."""

    iter: int
    current_step: int
    learned_net: str | None
    history: list
    run_state: caffe_pb2.RunState | None = None


def is_hdf5_path(path):
    return os.fspath(path).endswith(".h5")


def write_solverstate(path, state):
    """Write `state` to `path` in the layout its suffix asks for (.h5 -> HDF5)."""
    if is_hdf5_path(path):
        _write_hdf5(os.fspath(path), state)
        return
    proto = caffe_pb2.SolverState()
    proto.iter = state.iter
    if state.learned_net is not None:
        proto.learned_net = state.learned_net
    for values in state.history:
        blob = proto.history.add()
        blob.shape.dim.extend(values.shape)
        blob.data.extend(np.asarray(values, dtype=np.float32).ravel().tolist())
    proto.current_step = state.current_step
    if state.run_state is not None:
        proto.run_state.CopyFrom(state.run_state)
    protoio.write_binary_proto(path, proto)


def read_solverstate(path):
    """Read a solver state file (binary, or HDF5 when the name ends in .h5)."""
    path = os.fspath(path)
    _refuse_weights_by_name(path)
    if not os.path.exists(path):
        raise PclError(f"{path}: no such solver state file; check the path (snapshots are named "
                       f"<snapshot_prefix>_iter_<N>.solverstate)")
    if is_hdf5_path(path):
        return _read_hdf5(path)
    return _read_binary(path)


# -- binary -----------------------------------------------------------------------------------

def _read_binary(path):
    with open(path, "rb") as handle:
        data = handle.read()
    proto = caffe_pb2.SolverState()
    try:
        proto.ParseFromString(data)
        parsed = True
    except pb_message.DecodeError:
        parsed = False
    if (not parsed or _looks_like_weights(proto, data)) and _parses_as_net(data):
        raise _weights_not_state(path)
    if not parsed:
        raise PclError(f"{path}: not a binary SolverState (cannot be parsed); check that this is a "
                       f".solverstate written by Caffe or pycaffelite and that it is not truncated")
    history = [Blob.shape_of_proto(b) for b in proto.history]
    arrays = []
    for blob_proto, shape in zip(proto.history, history):
        values = blob_proto.double_data if len(blob_proto.double_data) else blob_proto.data
        count = int(np.prod(shape, dtype=np.int64))
        if len(values) != count:
            raise PclError(f"{path}: a history blob holds {len(values)} values for shape "
                           f"{tuple(shape)}; the file is damaged")
        arrays.append(np.asarray(values, dtype=np.float32).reshape(shape))
    learned_net = proto.learned_net if proto.HasField("learned_net") else None
    if isinstance(learned_net, bytes):  # protobuf hands over a string that is not UTF-8 as bytes
        raise PclError(f"{path}: the weights file name it holds (learned_net) is not UTF-8 text; "
                       "the file is damaged: resume from another snapshot")
    run_state = proto.run_state if proto.HasField("run_state") else None
    return SolverStateData(proto.iter, proto.current_step, learned_net, arrays, run_state)


def _looks_like_weights(proto, data):
    """A NetParameter parsed as SolverState keeps its fields as unknown ones and has no history."""
    return len(data) > 0 and not len(proto.history) and not proto.HasField("learned_net")


def _parses_as_net(data):
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except pb_message.DecodeError:
        return False
    return len(net.layer) > 0 or len(net.layers) > 0


# -- HDF5 -------------------------------------------------------------------------------------

_OURS = "pycaffelite"  # the group holding what Caffe's layout lacks

def _write_hdf5(path, state):
    with hdf5_output(path, "solver state") as f:
        f.create_dataset("iter", data=np.array([state.iter], dtype=np.int32))
        if state.learned_net is not None:
            _write_c_string(f, "learned_net", state.learned_net)
        f.create_dataset("current_step", data=np.array([state.current_step], dtype=np.int32))
        group = f.create_group("history")
        for index, values in enumerate(state.history):
            group.create_dataset(str(index), data=np.asarray(values, dtype=np.float32))
        if state.run_state is not None:
            serialised = np.frombuffer(state.run_state.SerializeToString(), dtype=np.uint8)
            f.create_group(_OURS).create_dataset("run_state", data=serialised)


def _write_c_string(f, name, text):
    """A scalar fixed-length string of len+1 bytes, NUL-terminated (HDF5 Lite's string layout)."""
    import h5py  # noqa: PLC0415 - h5py (86 M instructions to import) only for HDF5 states

    raw = text.encode("utf-8")
    string_type = h5py.h5t.C_S1.copy()
    string_type.set_size(len(raw) + 1)
    string_type.set_strpad(h5py.h5t.STR_NULLTERM)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    dataset = h5py.h5d.create(f.id, name.encode(), string_type, space)
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(raw + b"\0", dtype=f"S{len(raw) + 1}"))


def _read_hdf5(path):
    import h5py  # noqa: PLC0415

    from ..io import hdf5_weights  # noqa: PLC0415 - it imports h5py

    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise PclError(f"{path}: not a readable HDF5 file ({error})") from None
    try:
        with f:
            return _read_hdf5_contents(f, path)
    except hdf5_weights.DAMAGED as exc:
        raise hdf5_weights.damaged(path, exc) from None


def _first_int(f, name, path):
    """The one integer dataset `name` holds (Caffe writes shape (1,))."""
    values = np.asarray(f[name]).ravel()
    if values.size != 1:
        raise PclError(f'{path}: "{name}" holds {values.size} values instead of 1; the file is damaged')
    return int(values[0])


def _read_hdf5_contents(f, path):
    """The SolverStateData of the open HDF5 solver state `f`."""
    if "history" not in f or "iter" not in f:
        if "data" in f:
            raise _weights_not_state(path)
        raise PclError(f'{path}: no "iter" / "history" in this HDF5 file; it is not a Caffe '
                       f"solver state (.solverstate.h5)")
    history = f["history"]
    count = len(history)
    missing = [str(i) for i in range(count) if str(i) not in history]
    if missing:
        raise PclError(f'{path}: history datasets must be named 0..{count - 1}; '
                       f'"{missing[0]}" is missing')
    arrays = [np.asarray(history[str(i)], dtype=np.float32) for i in range(count)]
    learned_net = None
    if "learned_net" in f:
        value = f["learned_net"][()]
        learned_net = (value.decode("utf-8") if isinstance(value, bytes) else str(value)).rstrip("\0")
    current_step = _first_int(f, "current_step", path) if "current_step" in f else 0
    return SolverStateData(_first_int(f, "iter", path), current_step, learned_net, arrays,
                           _read_hdf5_run_state(f, path))


def _read_hdf5_run_state(f, path):
    """The RunState in pycaffelite's group, or None (a state written by Caffe)."""
    if f"{_OURS}/run_state" not in f:
        return None
    run_state = caffe_pb2.RunState()
    try:
        run_state.ParseFromString(np.asarray(f[f"{_OURS}/run_state"], dtype=np.uint8).tobytes())
    except (pb_message.DecodeError, ValueError, TypeError):
        raise PclError(f"{path}: its {_OURS}/run_state dataset cannot be read; the file is damaged "
                       "(delete that group to resume as from a Caffe solver state)") from None
    return run_state


# -- weights where a state was expected (Caffe #4181) -----------------------------------------

def _refuse_weights_by_name(path):
    if path.endswith((".caffemodel", ".caffemodel.h5")):
        raise _weights_not_state(path)


def _weights_not_state(path):
    state = path.replace(".caffemodel", ".solverstate")
    hint = f" ({state})" if state != path else ""
    return PclError(
        f"{path}: this is a weights file (.caffemodel), not a solver state; to resume training "
        f"pass the matching .solverstate{hint} as the snapshot, or to start a new run from these "
        f"weights use --weights instead of --snapshot")
