"""WindowData: batches of windows cut out of images listed in an R-CNN window file (Caffe's
WindowDataLayer), warped to crop_size x crop_size.

The window file (window_data_param.source) is a run of whitespace-separated words, one block per
image, images numbered 0, 1, 2, ... in order:

    # 0                      the image's index
    images/000005.jpg        its path (root_folder + path; a missing "/" is added, unlike Caffe)
    3                        channels (3: images are read in colour)
    375                      height
    500                      width
    2                        the number of windows, then one line each:
    7 0.82 262 210 323 338   class overlap x1 y1 x2 y2 (0-based, inclusive pixel coordinates)
    0 0.11 10 20 40 60

A window with overlap >= fg_threshold is foreground (its class must be above 0); one with
overlap < bg_threshold is background (label 0); others are not used. Each batch holds
batch_size - floor(batch_size * fg_fraction) background windows, then the foreground ones, drawn
at random with replacement.

Each window is cut out and warped as Caffe does (see `window_geometry`): with context_pad p the
window is enlarged so that, once warped to crop_size, p pixels of context surround it; crop_mode
"square" first makes it the square around its longer side. The part of the enlarged region
inside the image is warped (bilinear, OpenCV) and placed where it belongs in the output, the
part outside the image staying 0. With transform_param.mirror each window is flipped with
probability 1/2 (the placement flips too). Values are (pixel - mean) * window_data_param.scale,
the mean being transform_param.mean_value (per channel) or transform_param.mean_file (the
centre crop_size x crop_size of the mean image, read at the output position).

Tops: data (batch_size x 3 x crop_size x crop_size) and label (batch_size). Prefetched in a
background thread like Data and ImageData.
"""
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .. import device
from .. import random_state
from ..errors import PclError
from ..io import images as image_io
from . import register
from .data import PrefetchingDataLayer, check_source, join_root
from .prefetch import decode_pool

log = logging.getLogger(__name__)

CROP_MODES = ("warp", "square")


@dataclass(frozen=True)
class Window:
    image: int
    label: int
    overlap: float
    box: tuple  # x1, y1, x2, y2
    line: int


@dataclass(frozen=True)
class WindowImage:
    path: str
    line: int


class _Words:
    """The words of a text with their line numbers, taken one at a time with a description of
    what is expected, so that a malformed file ends in one message naming its line."""

    def __init__(self, text, source):
        self.source = source
        self.words = [(word, number) for number, line in enumerate(text.splitlines(), 1)
                      for word in line.split()]
        self.position = 0

    def more(self):
        return self.position < len(self.words)

    def take(self, convert, what):
        if not self.more():
            last = self.words[-1][1] if self.words else 1
            raise PclError(f"{self.source}:{last}: the file ends where {what} was expected; "
                           "complete the image's block (see the window file format)")
        word, line = self.words[self.position]
        self.position += 1
        try:
            return convert(word), line
        except ValueError:
            raise PclError(f"{self.source}:{line}: expected {what}, found {word!r}") from None


def _hash(word):
    if word != "#":
        raise ValueError(word)
    return word


def read_window_file(source, root_folder, fg_threshold, bg_threshold):
    """(images, foreground windows, background windows) of a window file; a PclError naming the
    file and line for anything malformed."""
    try:
        with open(source, encoding="utf-8") as handle:
            words = _Words(handle.read(), source)
    except OSError as exc:
        raise PclError(f'cannot open the window file "{source}" ({exc.strerror}); check '
                       "window_data_param.source") from None
    if not words.more():
        raise PclError(f'the window file "{source}" is empty; it must list at least one image')
    fg_threshold, bg_threshold = np.float32(fg_threshold), np.float32(bg_threshold)
    images, foreground, background = [], [], []
    while words.more():
        words.take(_hash, '"#", the start of an image\'s block')
        index, line = words.take(int, "the image index (an integer)")
        # Caffe looks a window's image up by this number, so a gap would quietly read another image.
        if index != len(images):
            raise PclError(f"{source}:{line}: image index {index} where {len(images)} was expected; "
                           "images are numbered 0, 1, 2, ... in the order they appear")
        path, path_line = words.take(str, "the image path")
        channels, line = words.take(int, "the number of channels (an integer)")
        # Caffe shapes its top by this number but reads every image in colour: anything other than
        # 3 would overrun or half-fill the batch there.
        if channels != 3:
            raise PclError(f"{source}:{line}: image {index} has {channels} channels; WindowData reads "
                           "every image in colour, so write 3")
        for what in ("height", "width"):
            words.take(int, f"the image {what} (an integer)")
        count, line = words.take(int, "the number of windows (an integer)")
        if count < 0:
            raise PclError(f"{source}:{line}: image {index} has {count} windows; give 0 or more")
        for _ in range(count):
            label, line = words.take(int, 'the window\'s class (an integer), the first of '
                                          '"class overlap x1 y1 x2 y2"')
            overlap = words.take(np.float32, "the window's overlap (a number)")[0]
            box = tuple(words.take(int, f"the window's {name} (an integer)")[0]
                        for name in ("x1", "y1", "x2", "y2"))
            if box[2] < box[0] or box[3] < box[1]:
                raise PclError(f"{source}:{line}: window x1 y1 x2 y2 = {' '.join(map(str, box))} is "
                               "empty; x2 must be >= x1 and y2 >= y1")
            if overlap >= fg_threshold:
                if label <= 0:
                    raise PclError(f"{source}:{line}: a foreground window (overlap {overlap:g} >= "
                                   f"fg_threshold {fg_threshold:g}) needs a class above 0 (0 is the "
                                   f"background); found {label}")
                foreground.append(Window(index, label, float(overlap), box, line))
            elif overlap < bg_threshold:
                background.append(Window(index, 0, 0.0, box, line))
        images.append(WindowImage(join_root(root_folder, path), path_line))
    return images, foreground, background


def _round(value):
    """C's round(): halves away from zero."""
    value = float(value)
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def window_geometry(box, image_height, image_width, crop_size, context_pad=0, square=False,
                    mirror=False, dtype=np.float32):
    """Where a window goes, computed in `dtype` as Caffe's WindowDataLayer computes it.

    Returns ((x1, y1, x2, y2), (height, width), (row, column)): the region of the image to warp
    (inclusive pixel coordinates, inside the image), the size to warp it to, and the position of
    its top-left corner in the crop_size x crop_size output. None when the window does not fit
    the image (without context padding or square mode it must lie inside the image).
    """
    x1, y1, x2, y2 = box
    if not context_pad and not square:
        if x1 < 0 or y1 < 0 or x2 >= image_width or y2 >= image_height:
            return None
        return (x1, y1, x2, y2), (crop_size, crop_size), (0, 0)
    f = np.dtype(dtype).type
    context_scale = f(crop_size) / f(crop_size - 2 * context_pad)
    half_height, half_width = f(y2 - y1 + 1) / f(2), f(x2 - x1 + 1) / f(2)
    center_x, center_y = f(x1) + half_width, f(y1) + half_height
    if square:
        half_height = half_width = max(half_height, half_width)
    x1 = _round(center_x - half_width * context_scale)
    x2 = _round(center_x + half_width * context_scale)
    y1 = _round(center_y - half_height * context_scale)
    y2 = _round(center_y + half_height * context_scale)
    # The enlarged region may reach past the image: clip it, remembering by how much.
    unclipped_height, unclipped_width = y2 - y1 + 1, x2 - x1 + 1
    left, top = max(0, -x1), max(0, -y1)
    right, bottom = max(0, x2 - image_width + 1), max(0, y2 - image_height + 1)
    x1, x2, y1, y2 = x1 + left, x2 - right, y1 + top, y2 - bottom
    if x2 < x1 or y2 < y1:
        return None
    # The clipped region is warped by the scale the whole region would have had.
    scale_x, scale_y = f(crop_size) / f(unclipped_width), f(crop_size) / f(unclipped_height)
    width = _round(f(x2 - x1 + 1) * scale_x)
    height = _round(f(y2 - y1 + 1) * scale_y)
    row = _round(f(top) * scale_y)
    column = _round(f(right if mirror else left) * scale_x)
    height, width = min(height, crop_size - row), min(width, crop_size - column)  # rounding
    if height <= 0 or width <= 0:
        return None
    return (x1, y1, x2, y2), (height, width), (row, column)


class _WindowSource:
    """Fills batches with randomly drawn background and foreground windows (prefetch thread)."""

    def __init__(self, layer, images, foreground, background, cache):
        param = layer.param.window_data_param
        self.source = param.source
        self.images = images
        self.cache = cache
        self.pools = (background, foreground)
        self.batch_size = param.batch_size
        num_fg = int(np.float32(param.batch_size) * np.float32(param.fg_fraction))
        self.counts = (param.batch_size - num_fg, num_fg)
        self.crop_size = layer.param.transform_param.crop_size
        self.context_pad = param.context_pad
        self.square = param.crop_mode == "square"
        self.mirror = layer.param.transform_param.mirror
        self.dtype = layer.dtype
        self.scale = layer.dtype.type(param.scale)
        transformer = layer.make_transformer()
        self.mean = transformer.mean
        self.mean_offset = (self.mean.shape[2] - self.crop_size) // 2 if self.mean is not None else 0
        self.mean_values = transformer.mean_values.reshape(-1, 1, 1)
        self.rng = np.random.default_rng(device.rng().integers(1 << 63))

    def load(self, batch):
        data, labels = batch
        picks = []
        for pool, count in zip(self.pools, self.counts):
            for _ in range(count):
                window = pool[int(self.rng.integers(len(pool)))]
                picks.append((window, self.mirror and bool(self.rng.integers(2))))
        data[...] = 0
        if len(picks) > 1:
            list(decode_pool().map(lambda i: self.place(*picks[i], data[i]), range(len(picks))))
        else:
            for i, (window, mirror) in enumerate(picks):
                self.place(window, mirror, data[i])
        labels[...] = [window.label for window, _ in picks]

    def read(self, window):
        image = self.images[window.image]
        if self.cache is not None:
            pixels = image_io.decode(self.cache[window.image], color=True)
        else:
            pixels = image_io.read_image(image.path)
        if pixels is None:
            raise PclError(f'{self.source}:{image.line}: cannot read image "{image.path}" (not an '
                           "image file, or unreadable)")
        return pixels

    def place(self, window, mirror, out):
        """Cut `window` out of its image, warp it and write it into `out` (C x crop x crop)."""
        image = self.read(window)
        _, height, width = image.shape
        geometry = window_geometry(window.box, height, width, self.crop_size, self.context_pad,
                                   self.square, mirror, self.dtype)
        if geometry is None:
            raise PclError(f"{self.source}:{window.line}: window x1 y1 x2 y2 = "
                           f"{' '.join(map(str, window.box))} does not fit its image "
                           f'"{self.images[window.image].path}" ({height} x {width}); a window must '
                           "lie inside its image (0 <= x1 <= x2 < width, 0 <= y1 <= y2 < height)")
        (x1, y1, x2, y2), (rows, cols), (row, col) = geometry
        patch = image_io.resize(image[:, y1:y2 + 1, x1:x2 + 1], rows, cols)
        if mirror:
            patch = patch[:, :, ::-1]
        target = out[:, row:row + rows, col:col + cols]
        target[...] = patch
        if self.mean is not None:
            top, left = self.mean_offset + row, self.mean_offset + col
            target -= self.mean[:, top:top + rows, left:left + cols]
        elif self.mean_values.size:
            target -= self.mean_values
        target *= self.scale

    def position(self):
        return self.rng.bit_generator.state

    def seek(self, position):
        self.rng.bit_generator.state = position

    def to_proto(self, position, state):
        state.source = self.source
        random_state.to_proto(position, state.random.add())

    def from_proto(self, state):
        check_source(state, self.source)
        if len(state.random) != 1:
            raise PclError(f"its saved state holds {len(state.random)} generators; WindowData has 1")
        return random_state.from_proto(state.random[0])

    def close(self):
        pass


@register("WindowData")
class WindowDataLayer(PrefetchingDataLayer):
    """R-CNN window files (see the module docstring): tops data (batch_size x 3 x crop_size x
    crop_size) and label (batch_size)."""

    exact_num_top = 2

    def setup(self, bottom, top):
        param = self.param.window_data_param
        self.check_params()
        images, foreground, background = read_window_file(param.source, param.root_folder,
                                                          param.fg_threshold, param.bg_threshold)
        cache = self.check_images(images)
        source = _WindowSource(self, images, foreground, background, cache)
        for pool, count, kind, rule in zip(source.pools, source.counts, ("background", "foreground"),
                                           (f"overlap < bg_threshold {param.bg_threshold:g}",
                                            f"overlap >= fg_threshold {param.fg_threshold:g}")):
            if count and not pool:  # Caffe requires both pools even when one is never drawn from
                raise self.error(f'the window file "{param.source}" has no {kind} window ({rule}) '
                                 f"but each batch needs {count}; add some, or change the thresholds "
                                 "or fg_fraction")
        if source.mean is not None:
            self.check_mean(source.mean, source.mean_offset)
        if source.mean_values.size not in (0, 1, 3):
            raise self.error(f"give 1 mean_value or 3 (one per channel); found "
                             f"{source.mean_values.size}")
        classes = Counter(window.label for window in foreground + background)
        log.info('layer "%s" (WindowData): %d images, %d foreground and %d background windows (%s); '
                 "context_pad %d, crop_mode %s", self.name, len(images), len(foreground),
                 len(background), ", ".join(f"class {c}: {n}" for c, n in sorted(classes.items())),
                 param.context_pad, param.crop_mode)
        crop = self.param.transform_param.crop_size
        self.start_prefetch(source, top, (3, crop, crop), self.param.data_param.prefetch)

    def check_params(self):
        param, transform = self.param.window_data_param, self.param.transform_param
        if param.batch_size <= 0:
            raise self.error(f"window_data_param.batch_size must be positive; found "
                             f"{param.batch_size}")
        if not 0 <= param.fg_fraction <= 1:
            raise self.error(f"window_data_param.fg_fraction must be in [0, 1]; found "
                             f"{param.fg_fraction:g}")
        if param.crop_mode not in CROP_MODES:
            raise self.error(f'window_data_param.crop_mode must be "warp" or "square"; found '
                             f'"{param.crop_mode}"')
        if transform.crop_size <= 0:
            moved = " (window_data_param.crop_size is not read: move it there)" \
                if param.HasField("crop_size") else ""
            raise self.error(f"set transform_param.crop_size, the size windows are warped to{moved}")
        if 2 * param.context_pad >= transform.crop_size:
            raise self.error(f"context_pad {param.context_pad} leaves nothing of a "
                             f"{transform.crop_size}-pixel crop; it must be below crop_size / 2")
        for name in ("mean_file", "mirror", "crop_size"):
            if param.HasField(name):
                log.warning('layer "%s" (WindowData): window_data_param.%s is not read (Caffe reads '
                            "transform_param.%s); move it into transform_param", self.name, name, name)
        if transform.HasField("scale"):
            log.warning('layer "%s" (WindowData): transform_param.scale is not read (Caffe scales '
                        "windows by window_data_param.scale); move it into window_data_param",
                        self.name)

    def check_images(self, images):
        """Every image must exist; with cache_images, their files' bytes (else None). (Caffe only
        logs an unreadable image when it meets it and leaves the rest of that batch unfilled.)"""
        param = self.param.window_data_param
        for image in images:
            if not os.path.isfile(image.path):
                raise PclError(f'{param.source}:{image.line}: image "{image.path}" does not exist; '
                               f'paths are read under root_folder "{param.root_folder}"')
        if not param.cache_images:
            return None
        cache = []
        for image in images:
            with open(image.path, "rb") as handle:
                cache.append(handle.read())
        return cache

    def check_mean(self, mean, offset):
        crop = self.param.transform_param.crop_size
        channels, height, width = mean.shape
        if channels != 3 or width < crop or height < offset + crop:
            raise self.error(f"the mean image (transform_param.mean_file) is {channels} x {height} x "
                             f"{width} (C x H x W); WindowData reads its centre {crop} x {crop} "
                             f"(offset by (width - crop_size) / 2 down and across), so it needs 3 "
                             f"channels, a width of at least {crop} and a height of at least "
                             f"{offset + crop}")
