"""pycaffe's array <-> protobuf conversions (`caffe.io`'s blobproto and datum functions).

Return types follow pycaffe: BlobProto values come back as float64 arrays, float Datums as float64
C x H x W arrays and raw Datums as uint8 ones. Mistakes raise `ArgumentError`, which is a PclError
and also the ValueError pycaffe raises in the same places.
"""
import numpy as np
from google.protobuf.message import DecodeError

from ..blob import Blob
from ..errors import PclError
from ..proto import caffe_pb2
from . import datum as datum_io


class ArgumentError(PclError, ValueError):
    """A bad argument to a pycaffe function: one sentence for the user, and the ValueError that
    pycaffe's own code raises there (scripts and pycaffe's tests catch ValueError)."""


def blobproto_to_array(blob, return_diff=False):
    """The data (or the diff, with `return_diff`) of a BlobProto as a float64 array of the blob's
    shape: the legacy num/channels/height/width when any of them is set, else `shape.dim` (an empty
    shape holds one value and gives a 0-d array). `double_data`/`double_diff` are read when
    present, as Caffe does."""
    if return_diff:
        values, what = (blob.double_diff if len(blob.double_diff) else blob.diff), "diff"
    else:
        values, what = (blob.double_data if len(blob.double_data) else blob.data), "data"
    shape = Blob.shape_of_proto(blob)
    count = int(np.prod(shape, dtype=np.int64))
    if len(values) != count:
        raise ArgumentError(f"BlobProto holds {len(values)} {what} values but its shape {shape} "
                            f"needs {count}; set shape.dim (or num/channels/height/width) to match")
    return np.array(values, dtype=np.float64).reshape(shape)


def array_to_blobproto(arr, diff=None):
    """A BlobProto with `shape` = arr's shape and float `data` (and `diff`, when given, which must
    have the same shape)."""
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(np.float32).ravel().tolist())
    if diff is not None:
        diff = np.asarray(diff)
        if diff.shape != arr.shape:
            raise ArgumentError(f"array_to_blobproto: diff has shape {diff.shape} but the data has "
                                f"{arr.shape}; pass a diff of the data's shape")
        blob.diff.extend(diff.astype(np.float32).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist):
    """A list of arrays as the bytes of a serialized BlobProtoVector."""
    vector = caffe_pb2.BlobProtoVector()
    vector.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vector.SerializeToString()


def blobprotovector_str_to_arraylist(serialized):
    """The arrays (float64) of a serialized BlobProtoVector."""
    vector = caffe_pb2.BlobProtoVector()
    try:
        vector.ParseFromString(serialized)
    except DecodeError:
        raise ArgumentError("blobprotovector_str_to_arraylist: the bytes are not a serialized "
                            "BlobProtoVector") from None
    return [blobproto_to_array(blob) for blob in vector.blobs]


def array_to_datum(arr, label=None):
    """A Datum from a C x H x W array: uint8 -> `data` bytes, anything else -> `float_data`. The
    label is written only when given; like pycaffe, `encoded` is left unset."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ArgumentError(f"array_to_datum needs a C x H x W array; got shape {arr.shape}")
    datum = datum_io.array_to_datum(arr, 0 if label is None else label)
    datum.ClearField("encoded")
    if label is None:
        datum.ClearField("label")
    return datum


def datum_to_array(datum):
    """The image of a Datum as a C x H x W array (a writable copy): uint8 for `data` records,
    float64 for `float_data` ones; encoded records are decoded as stored (uint8, BGR). The label
    is not returned: read `datum.label`."""
    image = datum_io.datum_to_array(datum, where="datum_to_array: the Datum")
    return np.array(image, dtype=np.uint8 if image.dtype == np.uint8 else np.float64)
