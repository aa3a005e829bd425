"""Input layers that read images: Data (an LMDB or LevelDB of Datum records), ImageData (a list of
image files), MemoryData (arrays handed over from Python). WindowData is in window_data.py.

Data and ImageData decode and transform (transform_param, see io/transformer.py) in a background
thread several batches ahead of the net (data_param.prefetch, default 4), decoding the images of a
batch in parallel. Their tops are data (N x C x H x W) and an optional label (N). They have no
bottoms and no backward pass.

For an exact resume they report, through `get_run_state()`, where the net is in their data (the
next record key or list entry, and their generators' states, as of the last batch the net took),
and `set_run_state()` continues from such a state.

In data-parallel training the Data and ImageData layers of a TRAIN net read their rank's share
of the records (see distributed/shares.py).
"""
import logging
import os

import numpy as np

from .. import device
from ..distributed import shares
from ..errors import PclError
from ..io import db
from ..io import images as image_io
from ..io.datum import parse_datum
from ..io.transformer import DataTransformer
from ..proto import caffe_pb2
from .. import random_state
from . import register
from .base import Layer
from .prefetch import Prefetcher, decode_pool

log = logging.getLogger(__name__)

# Images of at least this many values are transformed on the decode pool, smaller ones inline.
_PARALLEL_TRANSFORM_SIZE = 16384


def fill_batch(transformer, decode, count, names, batch, parallel):
    """Decode `count` images (`decode(i)` -> C x H x W) and transform them into batch[0].

    The output shape comes from the first image (batch[0] is replaced when it changes); every other
    image must give the same shape. Random choices are drawn in item order, so a seed fixes them
    however the work is spread over threads.
    """
    pool = decode_pool()
    indices = range(count)
    images = list(pool.map(decode, indices)) if parallel and count > 1 else [decode(i) for i in indices]
    shape = transformer.output_shape(images[0].shape, names[0])
    for i, image in enumerate(images[1:], 1):
        if transformer.output_shape(image.shape, names[i]) != shape:
            raise PclError(
                f"{names[i]} is {describe(image.shape)} but {names[0]}, the first of its batch, is "
                f"{describe(images[0].shape)}; all images of a batch must give the same size: resize "
                "them (convert_imageset --resize_height/--resize_width), crop them (crop_size), or use "
                "batch_size 1")
    data = batch[0]
    if data.shape[1:] != shape or data.shape[0] != count:
        data = batch[0] = np.empty((count,) + shape, dtype=transformer.dtype)
    choices = [transformer.draw(image.shape) for image in images]

    def transform(i):
        transformer.transform(images[i], data[i], choices[i], names[i])

    if parallel and count > 1 and images[0].size >= _PARALLEL_TRANSFORM_SIZE:
        list(pool.map(transform, indices))
    else:
        for i in indices:
            transform(i)


def describe(shape):
    channels, height, width = shape
    return f"{height} x {width} with {channels} channel{'s' if channels != 1 else ''}"


class PrefetchingDataLayer(Layer):
    """Common part of Data, ImageData and WindowData: the transformer, the prefetch thread, forward,
    the run state (the source's `to_proto(position, state)` and `from_proto(state)` convert its
    positions)."""

    exact_num_bottom = 0
    min_top = 1
    max_top = 2

    def make_transformer(self):
        return DataTransformer(self.param.transform_param, phase=self.phase, dtype=self.dtype,
                               where=f'layer "{self.name}" ({self.type}) transform_param')

    def start_prefetch(self, source, top, item_shape, depth):
        """Shape the tops for a first item of `item_shape` and start the prefetch thread."""
        batch_size = source.batch_size
        first = [np.zeros((batch_size,) + tuple(item_shape), dtype=self.dtype)]
        top[0].reshape(first[0].shape)
        if len(top) > 1:
            first.append(np.zeros(batch_size, dtype=self.dtype))
            top[1].reshape((batch_size,))
        self.source = source
        self.prefetcher = Prefetcher(source, first, depth=depth, name=self.name)

    def get_run_state(self):
        """Where the net is: the position after the last batch it took, as a LayerRunState."""
        state = caffe_pb2.LayerRunState()
        self.source.to_proto(self.prefetcher.position, state)
        return state

    def set_run_state(self, state):
        """Continue from a `get_run_state()`; a PclError (and no change) if it does not fit."""
        self.prefetcher.restart(self.source.from_proto(state))

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        try:
            batch = self.prefetcher.next()
        except PclError as exc:
            raise self.error(str(exc)) from None
        for blob, array in zip(top, batch):
            blob.reshape(array.shape)
            blob.mutable_cpu_data()[...] = array
        self.prefetcher.release(batch)

    def backward(self, top, propagate_down, bottom):
        pass


class _DatumSource:
    """Reads `batch_size` Datum records at a time from a database reader, wrapping around."""

    def __init__(self, reader, transformer, batch_size, with_label):
        self.reader = reader
        self.transformer = transformer
        self.batch_size = batch_size
        self.with_label = with_label
        self.parallel = None

    def name(self, key):
        return f'record "{key.decode(errors="replace")}" of "{self.reader.path}"'

    def position(self):
        return self.reader.position(), self.transformer.rng.bit_generator.state

    def seek(self, position):
        key, generator = position
        if not self.reader.seek(key):
            log.warning("%s, where the snapshot left off, is not in the database any more; reading "
                        "on from its first record", self.name(key))
        self.transformer.rng.bit_generator.state = generator

    def to_proto(self, position, state):
        state.source = self.reader.path
        state.key = position[0]
        random_state.to_proto(position[1], state.random.add())

    def from_proto(self, state):
        check_source(state, self.reader.path)
        if len(state.random) != 1:
            raise PclError(f"its saved state holds {len(state.random)} generators; a Data layer has 1")
        return state.key, random_state.from_proto(state.random[0])

    def load(self, batch):
        records = [self.reader.next() for _ in range(self.batch_size)]
        names = [self.name(key) for key, _ in records]
        datums = [parse_datum(value, name) for (_, value), name in zip(records, names)]
        if self.parallel is None:
            first = datums[0]
            self.parallel = first.encoded or first.channels * first.height * first.width >= \
                _PARALLEL_TRANSFORM_SIZE

        def decode(i):
            return self.transformer.decode(datums[i], names[i])

        fill_batch(self.transformer, decode, self.batch_size, names, batch, self.parallel)
        if self.with_label:
            batch[1][...] = [datum.label for datum in datums]

    def close(self):
        self.reader.close()


@register("Data")
class DataLayer(PrefetchingDataLayer):
    """Batches of Datum records from an LMDB or a LevelDB (data_param.source), in key order,
    wrapping around.

    Tops: data (batch_size x C x H x W after transform_param; C, H, W from the first record of each
    batch) and optionally label (batch_size). `rand_skip` skips a random 0..rand_skip-1 records at
    the start. `backend` defaults to LEVELDB, as in Caffe; a database of the other kind at `source`
    is read as what it is, with a warning saying which backend to write.
    """

    def setup(self, bottom, top):
        param = self.param.data_param
        if param.batch_size <= 0:
            raise self.error(f"data_param.batch_size must be positive; found {param.batch_size}")
        if not param.source:
            raise self.error("data_param.source is empty; give the database folder to read")
        transformer = self.make_transformer()
        try:
            reader = shares.share_reader(db.open_reader(param.source, self.backend(param)),
                                         self.phase)
        except PclError as exc:
            raise self.error(str(exc)) from None
        source = _DatumSource(reader, transformer, param.batch_size, len(top) > 1)
        try:
            if param.rand_skip:
                skip = int(device.rng().integers(param.rand_skip))
                log.info('layer "%s": skipping the first %d records', self.name, skip)
                reader.skip(skip)
            key, value = reader.peek()
            name = source.name(key)
            image = transformer.decode(parse_datum(value, name), name)
            shape = transformer.output_shape(image.shape, name)
        except PclError as exc:
            reader.close()
            raise self.error(str(exc)) from None
        self.start_prefetch(source, top, shape, param.prefetch)

    def backend(self, param):
        """The backend to read data_param.source with: the one named (LEVELDB when none is, as in
        Caffe), or the one found there, with a warning, when they differ."""
        named = db.LMDB if param.backend == caffe_pb2.DataParameter.LMDB else db.LEVELDB
        why = "" if param.HasField("backend") else \
            " (data_param names no backend, so Caffe's default, LEVELDB, is expected)"
        found = db.resolve(param.source, named, why)
        if found != named:
            said = (f"says backend: {named.upper()}" if param.HasField("backend") else
                    "names no backend (Caffe then reads LEVELDB)")
            log.warning('layer "%s" (Data): "%s" is %s database but data_param %s; reading it as '
                        "%s: write backend: %s in data_param", self.name, param.source,
                        db.WITH_ARTICLE[found], said, db.DISPLAY_NAMES[found], found.upper())
        return found


def check_source(state, source):
    """A PclError unless a saved LayerRunState was taken from a layer reading `source`."""
    if state.source != source:
        raise PclError(f'it read "{state.source}" when the snapshot was taken but reads "{source}" now')


class _ImageListSource:
    """Reads `batch_size` image files at a time from a list, wrapping around (and re-shuffling).

    `order` holds the list's indices in reading order; shuffling makes a new array, so a position
    taken earlier keeps its order."""

    def __init__(self, lines, root, param, transformer, with_label, rng):
        self.lines = lines
        self.order = np.arange(len(lines))
        self.root = root
        self.param = param
        self.transformer = transformer
        self.batch_size = param.batch_size
        self.with_label = with_label
        self.rng = rng
        self.index = 0

    def shuffle(self):
        order = self.order.copy()
        self.rng.shuffle(order)
        self.order = order

    def load(self, batch):
        entries = []
        for _ in range(self.batch_size):
            entries.append(self.lines[self.order[self.index]])
            self.index += 1
            if self.index == len(self.lines):
                self.index = 0
                if self.param.shuffle:
                    self.shuffle()
        paths = [join_root(self.root, entry[0]) for entry in entries]

        def decode(i):
            image = image_io.read_image(paths[i], self.param.new_height, self.param.new_width,
                                        self.param.is_color)
            if image is None:
                raise PclError(f'cannot read image "{paths[i]}" (missing or not an image file)')
            return image

        fill_batch(self.transformer, decode, self.batch_size, [f'image "{p}"' for p in paths],
                   batch, parallel=True)
        if self.with_label:
            batch[1][...] = [entry[1] for entry in entries]

    def position(self):
        return (self.index, self.order, self.rng.bit_generator.state,
                self.transformer.rng.bit_generator.state)

    def seek(self, position):
        self.index, self.order, self.rng.bit_generator.state, \
            self.transformer.rng.bit_generator.state = position

    def to_proto(self, position, state):
        index, order, shuffle_generator, transform_generator = position
        state.source = self.param.source
        state.position = index
        state.order.extend(order.tolist())
        random_state.to_proto(shuffle_generator, state.random.add())
        random_state.to_proto(transform_generator, state.random.add())

    def from_proto(self, state):
        check_source(state, self.param.source)
        count = len(self.lines)
        order = np.asarray(state.order, dtype=np.int64)
        if len(order) != count or not np.array_equal(np.sort(order), np.arange(count)):
            raise PclError(f"its saved line order does not fit the {count} lines of the list now")
        if not 0 <= state.position < count or len(state.random) != 2:
            raise PclError("its saved state is damaged (position or generators)")
        return (state.position, order, random_state.from_proto(state.random[0]),
                random_state.from_proto(state.random[1]))

    def close(self):
        pass


def join_root(root, path):
    """Caffe prefixes paths with root_folder as a plain string; a missing separator is added."""
    if not root or root.endswith(("/", os.sep)):
        return root + path
    return root + os.sep + path


def read_image_list(source, where):
    """(path, label) pairs of a list file: each line is a path, a space, an integer label (the label
    is after the last space, so paths may contain spaces). Empty lines are ignored."""
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise PclError(f'{where}: cannot open the list file "{source}" ({exc.strerror})') from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        path, _, label = line.rpartition(" ")
        try:
            lines.append((path, int(label)))
        except ValueError:
            raise PclError(f'{source}:{number}: expected "path label" with an integer label, found '
                           f"{line!r}") from None
    if not lines:
        raise PclError(f'{where}: the list file "{source}" lists no images; write one "path label" '
                       "line per image")
    return lines


@register("ImageData")
class ImageDataLayer(PrefetchingDataLayer):
    """Batches of image files listed in image_data_param.source ("path label" lines; paths under
    root_folder), read in colour (BGR) or gray (`is_color`), resized to new_height x new_width when
    both are set, then transformed. `shuffle` permutes the list at start and after every pass;
    `rand_skip` skips a random 0..rand_skip-1 lines at the start.

    Tops: data (batch_size x C x H x W, shaped by the first image of each batch) and optionally
    label (batch_size).
    """

    def setup(self, bottom, top):
        param = self.param.image_data_param
        if (param.new_height == 0) != (param.new_width == 0):
            raise self.error(f"set both new_height and new_width, or neither; found new_height "
                             f"{param.new_height}, new_width {param.new_width}")
        if param.batch_size <= 0:
            raise self.error(f"image_data_param.batch_size must be positive; found {param.batch_size}")
        where = f'layer "{self.name}" (ImageData)'
        lines = shares.own_items(read_image_list(param.source, where), self.phase,
                                 f'{where}: the list "{param.source}"', "lines")
        rng = np.random.default_rng(device.rng().integers(1 << 63))
        source = _ImageListSource(lines, param.root_folder, param, self.make_transformer(),
                                  len(top) > 1, rng)
        if param.shuffle:
            source.shuffle()
        if param.rand_skip:
            skip = int(rng.integers(param.rand_skip))
            if skip >= len(lines):
                raise self.error(f"rand_skip {param.rand_skip} may skip past the {len(lines)} lines "
                                 f'of "{param.source}"; use a smaller rand_skip')
            source.index = skip
        path = join_root(param.root_folder, source.lines[source.order[source.index]][0])
        image = image_io.read_image(path, param.new_height, param.new_width, param.is_color)
        if image is None:
            raise self.error(f'cannot read image "{path}" (missing or not an image file); paths in '
                             f'"{param.source}" are relative to root_folder "{param.root_folder}"')
        try:
            shape = source.transformer.output_shape(image.shape, f'image "{path}"')
        except PclError as exc:
            raise self.error(str(exc)) from None
        self.start_prefetch(source, top, shape, self.param.data_param.prefetch)  # as in Caffe


@register("MemoryData")
class MemoryDataLayer(Layer):
    """Batches from arrays given with `set_input_arrays(data, labels)` (pycaffe's
    Net.set_input_arrays): data N x channels x height x width, labels N values, N a multiple of
    batch_size. Each forward pass hands out the next batch_size rows, wrapping around after N.
    The arrays are used as given (no transform_param), as in Caffe.

    Tops: data (batch_size x channels x height x width) and label (batch_size).
    """

    exact_num_bottom = 0
    exact_num_top = 2
    reshape_every_pass = True  # the batch size follows set_input_arrays/reset

    def setup(self, bottom, top):
        param = self.param.memory_data_param
        self.batch_size = param.batch_size
        self.item_shape = (param.channels, param.height, param.width)
        if min((self.batch_size,) + self.item_shape) <= 0:
            raise self.error("batch_size, channels, height and width must all be set and positive in "
                             f"memory_data_param; found {self.batch_size}, {self.item_shape}")
        if self.param.HasField("transform_param"):
            log.warning('layer "%s" (MemoryData): transform_param is ignored; arrays are used as given',
                        self.name)
        self.data = self.labels = None
        self.position = 0

    def reshape(self, bottom, top):
        top[0].reshape((self.batch_size,) + self.item_shape)
        top[1].reshape((self.batch_size,))

    def set_input_arrays(self, data, labels):
        """Hand over the data (N x C x H x W) and labels (N); used without copying when they are
        C-contiguous arrays of the net's dtype."""
        data = np.ascontiguousarray(data, dtype=self.dtype)
        labels = np.ascontiguousarray(labels, dtype=self.dtype)
        if data.ndim != 4 or data.shape[1:] != self.item_shape:
            raise self.error(f"data must be N x {' x '.join(map(str, self.item_shape))} (N x channels x "
                             f"height x width); found shape {data.shape}")
        if labels.size != data.shape[0]:
            raise self.error(f"give one label per data row: {data.shape[0]} rows but {labels.size} "
                             "labels")
        if data.shape[0] == 0 or data.shape[0] % self.batch_size:
            raise self.error(f"the number of rows ({data.shape[0]}) must be a positive multiple of "
                             f"batch_size ({self.batch_size})")
        self.data, self.labels = data, labels.reshape(-1)
        self.position = 0

    def forward(self, bottom, top):
        if self.data is None:
            raise self.error("has no data; call set_input_arrays(data, labels) before the forward pass")
        rows = slice(self.position, self.position + self.batch_size)
        top[0].reshape((self.batch_size,) + self.item_shape)
        top[1].reshape((self.batch_size,))
        top[0].mutable_cpu_data()[...] = self.data[rows]
        top[1].mutable_cpu_data()[...] = self.labels[rows]
        self.position = (self.position + self.batch_size) % self.data.shape[0]

    def backward(self, top, propagate_down, bottom):
        pass
