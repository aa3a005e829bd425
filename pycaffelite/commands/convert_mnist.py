"""`pcl convert_mnist`: MNIST IDX files -> LMDB or LevelDB (Caffe's
examples/mnist/convert_mnist_data; --backend lmdb, the default, or leveldb)."""
import sys

import click
from tqdm import tqdm

from ..io import db
from ..io.mnist import convert_mnist
from . import log_line


@click.command("convert_mnist")
@click.argument("images", type=click.Path(dir_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.argument("db_name", type=click.Path())
@click.option("--backend", default="lmdb", show_default=True,
              help="Database type: lmdb or leveldb.")
def command(images, labels, db_name, backend):
    """Convert MNIST IMAGES and LABELS (IDX files, gzipped or not) to a new database DB_NAME.

    Keys are the digit's index written "%08d"; records are 1 x 28 x 28 uint8 Datums.
    """
    backend = db.parse_backend(backend)
    with tqdm(unit=" digits", disable=not sys.stderr.isatty(), leave=False) as bar:
        count, rows, cols = convert_mnist(images, labels, db_name, progress=bar.update,
                                          backend=backend)
    log_line(f"A total of {count} items.")
    log_line(f"Rows: {rows} Cols: {cols}")
    log_line(f"Processed {count} files.")
