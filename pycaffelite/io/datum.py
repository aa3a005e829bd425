"""Datum records (Caffe's LMDB value format) <-> arrays.

A Datum holds one image and its label in one of three forms:
  raw       channels/height/width set, `data` = C*H*W uint8 bytes (planar, BGR for colour)
  float     channels/height/width set, `float_data` = C*H*W floats, `data` empty
  encoded   `encoded` true, `data` = a whole image file (PNG, JPEG, ...), dimensions unset (0)
"""
import numpy as np

from ..errors import PclError
from ..proto import caffe_pb2
from . import images


def parse_datum(value, where="record"):
    """A Datum from serialized bytes; `where` names the record in the error message."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)  # bytes or a memoryview
    except Exception:  # protobuf's DecodeError and friends
        raise PclError(f"{where} is not a Caffe Datum record (it does not parse); the database "
                       "must be written by convert_imageset or a compatible tool") from None
    return datum


def datum_to_array(datum, color=None, where="record"):
    """The image of a Datum as a C x H x W array: uint8 for raw and encoded records, float32 for
    float_data records. Encoded records are decoded: `color` True = 3 channels, False = 1 channel,
    None = as stored (Caffe's native decode)."""
    if datum.encoded:
        image = images.decode(datum.data, color)
        if image is None:
            raise PclError(f"{where} holds encoded data that cannot be decoded as an image")
        if image.dtype != np.uint8:
            raise PclError(f"{where} decodes to {image.dtype} pixels; only 8-bit images are supported")
        return image
    shape = (datum.channels, datum.height, datum.width)
    count = shape[0] * shape[1] * shape[2]
    if min(shape) <= 0:
        raise PclError(f"{where} has channels/height/width {shape}; all three must be positive")
    data = datum.data
    if data:
        if len(data) != count:
            raise PclError(f"{where} has {len(data)} data bytes but channels x height x width "
                           f"= {count}")
        return np.frombuffer(data, dtype=np.uint8).reshape(shape)
    if len(datum.float_data) != count:
        raise PclError(f"{where} has {len(datum.float_data)} float_data values but channels x "
                       f"height x width = {count}")
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)


def array_to_datum(array, label=0):
    """A raw Datum from a C x H x W array (uint8 -> `data` bytes, anything else -> `float_data`),
    with `encoded: false` written out as Caffe's tools do."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise PclError(f"a Datum holds a C x H x W array; got shape {array.shape}")
    datum = caffe_pb2.Datum(channels=array.shape[0], height=array.shape[1], width=array.shape[2],
                            label=int(label), encoded=False)
    if array.dtype == np.uint8:
        datum.data = np.ascontiguousarray(array).tobytes()
    else:
        datum.float_data.extend(array.astype(np.float32).ravel().tolist())
    return datum


def encoded_datum(file_bytes, label=0):
    """An encoded Datum holding a whole image file; its dimensions stay unset, as Caffe writes it."""
    return caffe_pb2.Datum(data=bytes(file_bytes), label=int(label), encoded=True)
