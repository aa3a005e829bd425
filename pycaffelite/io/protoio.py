"""Reading and writing Caffe's protobuf files: text (.prototxt) and binary (.caffemodel,
.solverstate, .binaryproto).

Every problem with a user's file ends in one `PclError` that names the file (and, for text,
`line:col`), what was wrong and what to do. Writes are atomic: the bytes go to a temporary file in
the destination folder, are fsync'ed, then renamed over the target, so a crash or a failed
serialisation never leaves a half-written file behind.
"""
import os
import re

from google.protobuf import message as pb_message
from google.protobuf import text_format

from pycaffelite.errors import PclError
from pycaffelite.io import text_errors
from pycaffelite.io.atomic import write_bytes_atomically
from pycaffelite.io.upgrade import upgrade_net_param, upgrade_solver_param
from pycaffelite.proto import caffe_pb2

# --- text format ------------------------------------------------------------------------------

def read_text_proto(path, message):
    """Parse the text-format file `path` into `message` (cleared first) and return it."""
    return parse_text_proto(_read_text(path), message, source_name=os.fspath(path))


def parse_text_proto(text, message, source_name="<string>"):
    """Parse Caffe text format `text` into `message` (cleared first) and return it.

    `source_name` is the file name used in error messages.
    """
    message.Clear()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise PclError(text_errors.describe(error, text, message, source_name)) from None
    _check_required(message, source_name)
    _check_no_nan(message, text, source_name)
    return message


def write_text_proto(path, message):
    """Write `message` in text format to `path`, atomically."""
    _check_required(message, os.fspath(path))
    write_bytes_atomically(path, text_format.MessageToString(message).encode("utf-8"))


# --- binary format ----------------------------------------------------------------------------

_BINARY_KINDS = {
    "NetParameter": ".caffemodel",
    "SolverState": ".solverstate",
    "BlobProto": ".binaryproto mean/blob file",
}


def read_binary_proto(path, message):
    """Parse the binary protobuf file `path` into `message` (cleared first) and return it."""
    data = _read_bytes(path)
    message.Clear()
    try:
        message.ParseFromString(data)
    except pb_message.DecodeError as error:
        kind = message.DESCRIPTOR.name
        raise PclError(
            f"{os.fspath(path)}: not a binary {kind} ({error}); check that this is the right "
            f"file (a {_BINARY_KINDS.get(kind, kind)}) and that it is not truncated") from None
    return message


def write_binary_proto(path, message):
    """Serialise `message` to `path` in binary format, atomically."""
    _check_required(message, os.fspath(path))
    write_bytes_atomically(path, message.SerializeToString())



# --- Caffe's readers --------------------------------------------------------------------------

def read_net_param(path):
    """Read a text net (.prototxt) and upgrade it from any legacy format."""
    net = read_text_proto(path, caffe_pb2.NetParameter())
    return upgrade_net_param(net, os.fspath(path))


def read_net_param_binary(path):
    """Read a binary net (.caffemodel) and upgrade it from any legacy format."""
    net = read_binary_proto(path, caffe_pb2.NetParameter())
    return upgrade_net_param(net, os.fspath(path))


def read_solver_param(path):
    """Read a text solver (.prototxt) and upgrade its deprecated fields."""
    solver = read_text_proto(path, caffe_pb2.SolverParameter())
    return upgrade_solver_param(solver, os.fspath(path))


def read_blob_proto(path):
    """Read a BlobProto file (.binaryproto), e.g. a mean image from compute_image_mean."""
    return read_binary_proto(path, caffe_pb2.BlobProto())


# --- helpers ----------------------------------------------------------------------------------

def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise PclError(f"{os.fspath(path)}: no such file; check the path") from None
    except IsADirectoryError:
        raise PclError(f"{os.fspath(path)}: is a folder, expected a file") from None
    except OSError as error:
        raise PclError(f"{os.fspath(path)}: cannot read ({error.strerror})") from None


def _read_text(path):
    data = _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise PclError(
            f"{os.fspath(path)}:{line}: not UTF-8 text (byte {data[error.start]:#04x}); "
            "is this a binary file? Text protos must be saved as UTF-8") from None


def _check_required(message, source_name):
    """Caffe's parser rejects messages whose `required` fields are missing; so do we."""
    missing = message.FindInitializationErrors()
    if missing:
        raise PclError(f"{source_name}: missing required field(s) "
                       f"{', '.join(_name_layers(message, path) for path in missing)}; "
                       "set them (e.g. clip_param needs both min and max)")


def _check_no_nan(message, text, source_name):
    """Caffe's parser takes `nan` for a number, and it then spreads through every value it
    touches; no setting means it, so it is refused with the field (and its line) named."""
    path = _nan_field(message)
    if path:
        where = text_errors.find_word(text, ("nan", "nanf"))
        at = f"{where[0]}:{where[1]}:" if where else ""
        raise PclError(f"{source_name}:{at} {_name_layers(message, path)} is nan; give a number")


def _nan_field(message, prefix=""):
    """The path (`layer[2].clip_param.min`) of the first NaN in `message`, or None."""
    for field, value in message.ListFields():
        repeated = field.is_repeated
        path = f"{prefix}{field.name}"
        if field.cpp_type in (field.CPPTYPE_FLOAT, field.CPPTYPE_DOUBLE):
            if any(v != v for v in (value if repeated else (value,))):
                return path
        elif field.cpp_type == field.CPPTYPE_MESSAGE:
            items = enumerate(value) if repeated else ((None, value),)
            for index, item in items:
                found = _nan_field(item, f"{path}{'' if index is None else f'[{index}]'}.")
                if found:
                    return found
    return None


def _name_layers(message, field_path):
    """Spell `layer[3].clip_param.max` as `layer "relu3" clip_param.max` where possible."""
    match = re.match(r"layers?\[(\d+)\]\.(.*)", field_path)
    if not isinstance(message, caffe_pb2.NetParameter) or not match:
        return field_path
    index = int(match.group(1))
    layers = message.layer if field_path.startswith("layer[") else message.layers
    return f'layer "{layers[index].name}" {match.group(2)}'
