"""`pcl extract_features`: a trained net's blobs, batch after batch, saved to databases (Caffe's
tools/extract_features).

    pcl extract_features WEIGHTS NET BLOB[,BLOB...] DB[,DB...] NUM_BATCHES
                         [--backend lmdb|leveldb|hdf5] [--gpu N]

Caffe's own spelling is accepted too: the backend and the device as trailing words,
`... NUM_BATCHES lmdb GPU 0`. NET runs in the TEST phase with WEIGHTS (a .caffemodel or .h5);
each forward pass adds one batch of every BLOB to its DB (the i-th blob to the i-th DB).

lmdb / leveldb: one Datum per item of the batch, as Caffe writes it: key "%010d" counting the
items of that blob from 0, `float_data` holding the item's values, channels, height and width
the blob's legacy (4-d) dimensions: shape[1], shape[2], shape[3], each 1 where the blob has
fewer axes (an N x 4096 blob gives channels 4096, height 1, width 1; N x 256 x 6 x 6 gives
256 x 6 x 6). No label is written.

hdf5: each DB is an HDF5 file; each of its blobs is a float32 dataset named like the blob, of
shape (items, *blob.shape[1:]) with the items of all batches in order. Several blobs may name
the same file (`fc7,label feats.h5,feats.h5`), which then holds one dataset each, ready for an
HDF5Data layer with tops named like the blobs.

Every output is written under a temporary name and renamed when complete: a failed run leaves
nothing behind.
"""
import contextlib
import logging
import os

import click
import numpy as np

from .. import training_log as tlog
from ..errors import PclError
from ..io import atomic, db
from ..io.atomic import atomic_output
from ..net import TEST, Net
from ..proto import caffe_pb2
from .train import parse_gpus, use_devices

log = logging.getLogger("pycaffelite")
HDF5 = "hdf5"
_LOG_EVERY = 1000


def parse_caffe_words(words, backend, gpu):
    """(backend, gpus) from Caffe's trailing words `[DB_TYPE] [CPU|GPU [DEVICE_ID]]` and the
    --backend / --gpu options (which must agree with them when both are given)."""
    words = list(words)
    if words and words[0].lower() in (db.LMDB, db.LEVELDB, HDF5):
        named = words.pop(0).lower()
        if backend and backend.lower() != named:
            raise PclError(f"the backend is given twice, as {named} and as --backend {backend}; "
                           "give it once")
        backend = named
    gpus = parse_gpus(gpu)
    if words and words[0].upper() in ("CPU", "GPU"):
        mode = words.pop(0).upper()
        device_ids = [0]
        if mode == "GPU" and words and words[0].isdigit():
            device_ids = [int(words.pop(0))]
        if gpu is not None and (mode == "CPU" or gpus != device_ids):
            raise PclError(f"the device is given twice, as {mode} and as --gpu {gpu}; give it once")
        gpus = device_ids if mode == "GPU" else []
    if words:
        raise PclError(f"unexpected arguments after NUM_BATCHES: {' '.join(words)}; expected at most "
                       "a backend (lmdb, leveldb, hdf5), then CPU or GPU and a device id")
    backend = (backend or db.LMDB).lower()
    if backend not in (db.LMDB, db.LEVELDB, HDF5):
        raise PclError(f"--backend must be lmdb, leveldb or hdf5; found {backend!r}")
    return backend, gpus


class DatumFeatures:
    """One blob's items as float Datums in a new LMDB or LevelDB (keys "%010d")."""

    def __init__(self, writer, blob_name):
        self.writer = writer
        self.blob_name = blob_name
        self.count = 0

    def add(self, blob):
        values = np.asarray(blob.cpu_data(), dtype=np.float32)
        shape = values.shape + (1,) * (4 - values.ndim)
        datum = caffe_pb2.Datum(channels=shape[1], height=shape[2], width=shape[3])
        for item in values.reshape(shape[0], -1):
            datum.ClearField("float_data")
            datum.float_data.extend(item.tolist())
            self.writer.put(b"%010d" % self.count, datum.SerializeToString())
            self.count += 1
            if self.count % _LOG_EVERY == 0:
                log.info("Extracted features of %d query images for feature blob %s", self.count,
                         self.blob_name)


class HDF5Features:
    """One blob's items as a float32 dataset named like the blob, in an open HDF5 file (to be
    renamed to `path`)."""

    def __init__(self, handle, blob_name, path):
        self.handle = handle
        self.blob_name = blob_name
        self.path = path
        self.dataset = None
        self.count = 0

    def add(self, blob):
        values = np.asarray(blob.cpu_data(), dtype=np.float32)
        values = values.reshape((1,) + values.shape) if values.ndim == 0 else values
        if atomic.lacks_room(self.path, values.nbytes):  # a full disk, caught before HDF5 meets it
            raise atomic.write_error(self.path, "HDF5 feature file", atomic.NO_SPACE)
        if self.dataset is None:
            self.dataset = self.handle.create_dataset(
                self.blob_name, shape=(0,) + values.shape[1:], maxshape=(None,) + values.shape[1:],
                dtype=np.float32, chunks=(max(1, len(values)),) + values.shape[1:])
        elif values.shape[1:] != self.dataset.shape[1:]:
            raise PclError(f'blob "{self.blob_name}" changed from items of shape '
                           f"{self.dataset.shape[1:]} to {values.shape[1:]}; one HDF5 dataset holds "
                           "items of one shape: use --backend lmdb or leveldb")
        self.dataset.resize(self.count + len(values), axis=0)
        self.dataset[self.count:] = values
        self.count += len(values)


def open_outputs(stack, backend, blob_names, db_names, net):
    """The feature writers, one per blob, entered on `stack` (so they are completed or removed
    together)."""
    if backend == HDF5:
        import h5py  # noqa: PLC0415 - only needed for HDF5 output

        files = {}
        for name in dict.fromkeys(db_names):
            if os.path.exists(name):
                raise PclError(f'"{name}" already exists; remove it or choose another name for the '
                               "new HDF5 file")
            temp = stack.enter_context(atomic_output(name, "HDF5 feature file"))
            files[name] = stack.enter_context(h5py.File(temp, "w"))
        return [HDF5Features(files[path], blob, path) for blob, path in zip(blob_names, db_names)]
    repeated = sorted({name for name in db_names if db_names.count(name) > 1})
    if repeated:
        raise PclError(f"each blob needs a database of its own; {', '.join(repeated)} is named more "
                       "than once (only HDF5 files may hold several blobs)")
    for blob in blob_names:
        if net.blobs[blob].num_axes > 4:
            raise PclError(f'blob "{blob}" has {net.blobs[blob].num_axes} axes but a Datum holds '
                           "channels x height x width; use --backend hdf5")
    outputs = []
    for blob, name in zip(blob_names, db_names):
        log.info("Opening dataset %s", name)
        outputs.append(DatumFeatures(stack.enter_context(db.AtomicWriter(name, backend)), blob))
    return outputs


@click.command("extract_features")
@click.argument("weights", type=click.Path(dir_okay=False))
@click.argument("net_path", metavar="NET", type=click.Path(dir_okay=False))
@click.argument("blobs")
@click.argument("dbs")
@click.argument("num_batches", type=click.IntRange(min=1))
@click.argument("caffe_words", nargs=-1, metavar="[DB_TYPE [CPU|GPU [DEVICE_ID]]]")
@click.option("--backend", help="lmdb (default), leveldb or hdf5.")
@click.option("--gpu", help="GPU device id; default: the CPU.")
def command(weights, net_path, blobs, dbs, num_batches, caffe_words, backend, gpu):
    """Save the values of blobs of a trained net, NUM_BATCHES batches, to databases.

    \b
    pcl extract_features WEIGHTS NET BLOB[,BLOB...] DB[,DB...] NUM_BATCHES [--backend B]
    Caffe's spelling works too: ... NUM_BATCHES DB_TYPE [CPU|GPU [DEVICE_ID]]
    """
    tlog.configure_logging()
    backend, gpus = parse_caffe_words(caffe_words, backend, gpu)
    blob_names, db_names = blobs.split(","), dbs.split(",")
    if len(blob_names) != len(db_names):
        raise PclError(f"{len(blob_names)} blob names ({blobs}) but {len(db_names)} database names "
                       f"({dbs}); give one database per blob")
    use_devices(gpus)
    net = Net(net_path, TEST)
    net.copy_from(weights)
    for name in blob_names:
        if name not in net.blobs:
            raise PclError(f'{net_path}: the net has no blob "{name}" to extract; its blobs are '
                           f"{', '.join(net.blobs)}")
    with contextlib.ExitStack() as stack:
        outputs = open_outputs(stack, backend, blob_names, db_names, net)
        log.info("Extracting Features")
        for _ in range(num_batches):
            net.forward_from_to()
            for output in outputs:
                output.add(net.blobs[output.blob_name])
    for output in outputs:
        log.info("Extracted features of %d query images for feature blob %s", output.count,
                 output.blob_name)
    log.info("Successfully extracted the features!")
