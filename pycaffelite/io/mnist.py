"""MNIST's IDX files -> an LMDB or LevelDB of Datum records, as Caffe's convert_mnist_data
writes them.

IDX: a big-endian header (magic 2051 for images: count, rows, cols; 2049 for labels: count)
followed by uint8 values. Files may be gzip-compressed (recognised by content, not name). Each
record is a raw Datum (1 x rows x cols uint8, label) under the key "%08d" of its index.
"""
import gzip
import os

import numpy as np

from ..errors import PclError
from ..proto import caffe_pb2
from . import db

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def read_idx(path, magic):
    """The uint8 payload of an IDX file with the given magic number, shaped by its header."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise PclError(f'cannot read "{path}" ({exc.strerror})') from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise PclError(f'"{path}" is a damaged gzip file ({exc})') from None
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise PclError(f'"{path}" is not an MNIST {kind} file (magic number {found}, expected '
                       f"{magic}); check the order of the arguments")
    header = 4 * (2 if magic == LABELS_MAGIC else 4)
    if len(raw) < header:
        raise PclError(f'"{path}" is too short to be an MNIST IDX file')
    values = np.frombuffer(raw[:header], dtype=">u4")
    shape = tuple(int(v) for v in values[1:])
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if payload.size < int(np.prod(shape)):
        raise PclError(f'"{path}" is truncated: its header promises {shape} values, it holds '
                       f"{payload.size}")
    return payload[:int(np.prod(shape))].reshape(shape)


def convert_mnist(images_path, labels_path, db_path, progress=None, backend=db.LMDB):
    """Write the digits of an IDX image/label file pair to a new database of `backend` ("lmdb" or
    "leveldb") at `db_path`; returns (count, rows, cols).

    `progress(n)` is called as records are written, when given."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise PclError(f'"{images_path}" holds {len(images)} images but "{labels_path}" holds '
                       f"{len(labels)} labels; give matching files")
    rows, cols = images.shape[1:]
    datum = caffe_pb2.Datum(channels=1, height=rows, width=cols)
    with db.AtomicWriter(db_path, backend) as out:
        for index, (image, label) in enumerate(zip(images, labels)):
            datum.data = image.tobytes()
            datum.label = int(label)
            out.put(b"%08d" % index, datum.SerializeToString())
            if progress is not None and (index + 1) % 1000 == 0:
                progress(1000)
    if progress is not None:
        progress(len(images) % 1000)
    return len(images), rows, cols
