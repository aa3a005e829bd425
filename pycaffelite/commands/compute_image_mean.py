"""`pcl compute_image_mean`: the mean image of an LMDB or LevelDB (Caffe's
tools/compute_image_mean; --backend lmdb, the default, or leveldb).

The mean is a float32 running sum over the records in key order divided by their count in
float32, written as a legacy 4-d BlobProto (num 1, channels, height, width), as Caffe writes it.
"""
import click
import numpy as np

from ..errors import PclError
from ..io import db, protoio
from ..io.datum import datum_to_array, parse_datum
from ..proto import caffe_pb2
from . import log_line

_LOG_EVERY = 10000


def compute_mean(db_path, echo=log_line, backend=db.LMDB):
    """The float32 C x H x W mean image of the records of a database (encoded ones decoded as
    stored). A database of the other backend than `backend` is read as what it is, with a
    warning."""
    found = db.resolve(db_path, backend)
    if found != backend:
        echo(f'warning: "{db_path}" is {db.WITH_ARTICLE[found]} database, not '
             f"{db.WITH_ARTICLE[backend]}; reading it as {db.DISPLAY_NAMES[found]}: pass "
             f"--backend {found}")
    total = None
    count = 0
    for key, value in db.iterate(db_path, found):
        where = f'record "{key.decode(errors="replace")}" of "{db_path}"'
        image = datum_to_array(parse_datum(value, where), where=where)
        if total is None:
            total = np.zeros(image.shape, dtype=np.float32)
        elif image.shape != total.shape:
            raise PclError(f"{where} is {image.shape} (C x H x W) but the first record is "
                           f"{total.shape}; the mean needs images of one size")
        total += image
        count += 1
        if count % _LOG_EVERY == 0:
            echo(f"Processed {count} files.")
    if count == 0:
        raise PclError(f'{db.DISPLAY_NAMES[found]} database "{db_path}" is empty; there is nothing '
                       "to average")
    if count % _LOG_EVERY:
        echo(f"Processed {count} files.")
    return total / np.float32(count)


def mean_blob_proto(mean):
    channels, height, width = mean.shape
    proto = caffe_pb2.BlobProto(num=1, channels=channels, height=height, width=width)
    proto.data.extend(mean.ravel().tolist())
    return proto


def channel_means(mean):
    """Per-channel averages of the mean image, summed in float32 in order as Caffe's log does."""
    flat = mean.reshape(mean.shape[0], -1)
    sums = np.cumsum(flat, axis=1, dtype=np.float32)[:, -1]
    return sums / np.float32(flat.shape[1])


@click.command("compute_image_mean")
@click.argument("db_path", metavar="DB", type=click.Path())
@click.argument("output", required=False, type=click.Path(dir_okay=False))
@click.option("--backend", default="lmdb", show_default=True,
              help="Database type: lmdb or leveldb.")
def command(db_path, output, backend):
    """Compute the mean image of the database DB and write it to OUTPUT (.binaryproto), if given."""
    backend = db.parse_backend(backend)
    log_line("Starting iteration")
    mean = compute_mean(db_path, backend=backend)
    if output:
        log_line(f"Write to {output}")
        protoio.write_binary_proto(output, mean_blob_proto(mean))
    log_line(f"Number of channels: {mean.shape[0]}")
    for channel, value in enumerate(channel_means(mean)):
        log_line(f"mean_value channel [{channel}]: {float(value):.6g}")
