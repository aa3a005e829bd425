"""`pcl convert_imageset`: images -> an LMDB or LevelDB of Datum records (Caffe's
tools/convert_imageset; --backend lmdb, the default, or leveldb).

Two forms:
  pcl convert_imageset ROOTFOLDER/ LISTFILE DB_NAME   LISTFILE lines are "path label", paths under
                                                      ROOTFOLDER; keys "%08d_<path>" (line number)
  pcl convert_imageset FOLDER DB_NAME                 one sub-folder per class; labels 0, 1, ... in
                                                      sorted class order; the class names are
                                                      written to DB_NAME_labels.txt, one a line

Images are decoded (and resized, and re-encoded with --encoded) in parallel threads; the records
are written in list order. Unreadable images are skipped with a warning naming them. The database
is built in a temporary folder and renamed into place when complete: an interrupted run leaves
nothing behind.
"""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import click
from tqdm import tqdm

from .. import device
from ..errors import PclError
from ..io import db
from ..io import images as image_io
from ..io.datum import array_to_datum, encoded_datum
from ..layers.data import join_root, read_image_list
from . import log_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")
_BOOL_FLAGS = ("gray", "shuffle", "check_size", "encoded")
_TRUE = ("true", "1", "yes", "t", "y")
_FALSE = ("false", "0", "no", "f", "n")
_LMDB_MAX_KEY = 511


class GflagsBoolCommand(click.Command):
    """Accepts gflags' `--flag=true/false` spellings of the boolean flags besides `--flag`."""

    def parse_args(self, ctx, args):
        rewritten = []
        for arg in args:
            name, eq, value = arg.partition("=")
            if eq and name.lstrip("-") in _BOOL_FLAGS and name.startswith("--"):
                if value.lower() in _TRUE:
                    arg = name
                elif value.lower() in _FALSE:
                    arg = "--no-" + name[2:]
                else:
                    raise PclError(f"{name} expects true or false, found {value!r}")
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


def folder_entries(folder):
    """(relative path, label) of the images of a class-per-sub-folder tree, and the class names."""
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise PclError(f'"{folder}" has no sub-folders; put the images of each class in a sub-folder '
                       "named after the class, or give a list file (ROOTFOLDER LISTFILE DB_NAME)")
    entries = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, name)):
            dirnames.sort()
            for filename in filenames:
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    found.append(os.path.relpath(os.path.join(dirpath, filename), folder))
        entries.extend((path.replace(os.sep, "/"), label) for path in sorted(found))
    if not entries:
        raise PclError(f'no image files ({", ".join(IMAGE_EXTENSIONS)}) under the class folders of '
                       f'"{folder}"')
    return entries, classes


class RecordMaker:
    """Turns one list entry into a serialized Datum (or a reason it was skipped), as Caffe's
    ReadImageToDatum does: decode colour/gray, resize when both sizes are set; with an encoding,
    store the original file if it already has that encoding, the right channels and no resize,
    else the re-encoded image."""

    def __init__(self, root, is_color, resize_height, resize_width, encode_type, guess_encoding):
        self.root = root
        self.is_color = is_color
        self.resize_height = resize_height
        self.resize_width = resize_width
        self.encode_type = encode_type
        self.guess_encoding = guess_encoding

    def encoding_of(self, path):
        if self.encode_type or not self.guess_encoding:
            return self.encode_type
        base = os.path.basename(path)
        return base.rsplit(".", 1)[1].lower() if "." in base else None

    def __call__(self, entry):
        """(serialized Datum, data size or None) for a readable image, (None, reason) otherwise."""
        rel, label = entry
        path = join_root(self.root, rel)
        image = image_io.read_image(path, self.resize_height, self.resize_width, self.is_color)
        if image is None:
            return None, f'cannot read image "{path}" (missing or not an image file)'
        encoding = self.encoding_of(path)
        if self.guess_encoding and encoding is None:
            return None, f'cannot guess the encoding of "{path}" (no extension); give --encode_type'
        if not encoding:
            datum = array_to_datum(image, label)
            return datum.SerializeToString(), len(datum.data)
        keep_file = ((image.shape[0] == 3) == self.is_color and not self.resize_height
                     and not self.resize_width and image_io.matches_extension(path, encoding))
        if keep_file:
            with open(path, "rb") as handle:
                data = handle.read()
        else:
            try:
                data = image_io.encode(image, encoding)
            except ValueError as exc:
                raise PclError(f"--encode_type {encoding}: {exc}; use png or jpg") from None
        return encoded_datum(data, label).SerializeToString(), None


def convert(root, entries, db_name, maker, shuffle=False, check_size=False, echo=log_line,
            warn=None, backend=db.LMDB):
    """Write the entries' records to a new database of `backend`; returns (written, skipped
    paths)."""
    warn = warn or (lambda message: log_line(f"warning: {message}"))
    entries = list(entries)
    if shuffle:
        device.rng().shuffle(entries)
    echo(f"A total of {len(entries)} images.")
    workers = max(1, os.cpu_count() or 1)
    chunk = 64 * workers
    data_size = None
    skipped = []
    show_bar = sys.stderr.isatty()
    with db.AtomicWriter(db_name, backend) as out, ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(entries), unit=" images", disable=not show_bar, leave=False) as bar:
        for start in range(0, len(entries), chunk):
            part = entries[start:start + chunk]
            for line_id, (entry, (record, info)) in enumerate(zip(part, pool.map(maker, part)), start):
                bar.update(1)
                if record is None:
                    warn(f"{info}; skipped")
                    skipped.append(entry[0])
                    continue
                if check_size and info is not None:
                    if data_size is None:
                        data_size = info
                    elif info != data_size:
                        raise PclError(f'"{join_root(root, entry[0])}" gives {info} values but the '
                                       f"first image gave {data_size}; all images must have one size "
                                       "(--check_size), e.g. set --resize_height and --resize_width")
                key = f"{line_id:08d}_{entry[0]}".encode()
                if backend == db.LMDB and len(key) > _LMDB_MAX_KEY:
                    raise PclError(f'the key for "{entry[0]}" is longer than LMDB allows '
                                   f"({_LMDB_MAX_KEY} bytes); use shorter paths or --backend leveldb")
                out.put(key, record)
        if len(skipped) == len(entries):
            raise PclError(f"none of the {len(entries)} images could be read; nothing was written")
    echo(f"Processed {len(entries) - len(skipped)} files.")
    return len(entries) - len(skipped), skipped


@click.command("convert_imageset", cls=GflagsBoolCommand)
@click.argument("paths", nargs=-1, required=True)
@click.option("--gray/--no-gray", default=False, help="Read images in grayscale (1 channel).")
@click.option("--shuffle/--no-shuffle", default=False, help="Write the images in random order.")
@click.option("--backend", default="lmdb", show_default=True,
              help="Database type: lmdb or leveldb.")
@click.option("--resize_width", default=0, show_default=True, type=click.IntRange(min=0),
              help="Resize to this width (with --resize_height).")
@click.option("--resize_height", default=0, show_default=True, type=click.IntRange(min=0),
              help="Resize to this height (with --resize_width).")
@click.option("--check_size/--no-check_size", default=False,
              help="Check that all images have the same size.")
@click.option("--encoded/--no-encoded", default=False,
              help="Store the encoded image file in the Datum instead of pixels.")
@click.option("--encode_type", default="", help="Encoding to store (png, jpg); default: the file's own.")
def command(paths, gray, shuffle, backend, resize_width, resize_height, check_size, encoded,
            encode_type):
    """Convert images to an LMDB or LevelDB of Datum records.

    \b
    pcl convert_imageset ROOTFOLDER/ LISTFILE DB_NAME
    pcl convert_imageset FOLDER DB_NAME      (one sub-folder per class)
    """
    backend = db.parse_backend(backend)
    started = time.perf_counter()
    if len(paths) == 3:
        root, list_file, db_name = paths
        entries = read_image_list(list_file, "convert_imageset")
        classes = None
    elif len(paths) == 2:
        root, db_name = paths
        if not os.path.isdir(root):
            raise PclError(f'"{root}" is not a folder; give ROOTFOLDER/ LISTFILE DB_NAME, or a FOLDER '
                           "with one sub-folder per class and DB_NAME")
        entries, classes = folder_entries(root)
    else:
        raise PclError(f"expected ROOTFOLDER/ LISTFILE DB_NAME (or FOLDER DB_NAME); got {len(paths)} "
                       "arguments")
    maker = RecordMaker(root, not gray, resize_height, resize_width, encode_type, encoded)
    written, skipped = convert(root, entries, db_name, maker, shuffle=shuffle, check_size=check_size,
                               backend=backend)
    if classes is not None:
        labels_file = f"{os.path.normpath(db_name)}_labels.txt"
        with open(labels_file, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{name}\n" for name in classes))
        log_line(f"Wrote the {len(classes)} class names (label order) to {labels_file}")
    summary = f"Wrote {written} records to {db_name} in {time.perf_counter() - started:.1f} s"
    if skipped:
        summary += f"; skipped {len(skipped)} unreadable: {', '.join(skipped[:5])}"
        summary += ", ..." if len(skipped) > 5 else ""
    log_line(summary)
