"""Image decoding and resizing exactly as Caffe does it (OpenCV underneath).

Caffe reads images with OpenCV: colour images come out BGR, `is_color=False` asks libjpeg/libpng
for grayscale, and resizing is `cv::resize` with bilinear interpolation (INTER_LINEAR). Using the
same library gives bit-identical pixels to Caffe's `convert_imageset` and ImageData layer.

Arrays returned here are Caffe's blob layout: C x H x W, uint8, BGR channel order.
"""
import functools
import os

import numpy as np

from pycaffelite import memory


@functools.cache
def _cv2():
    """OpenCV, imported on first use: it brings its own BLAS thread pool and ~17 MB that a net
    without image input should not pay for."""
    import cv2  # noqa: PLC0415

    return cv2


def _read_flag(color):
    """What `color` means for decoding: True = 3 channels, False = 1 channel, None = as stored."""
    cv2 = _cv2()
    return {True: cv2.IMREAD_COLOR, False: cv2.IMREAD_GRAYSCALE, None: cv2.IMREAD_UNCHANGED}[color]


def to_chw(image):
    """An OpenCV image (H x W or H x W x C) as a C x H x W array."""
    if image.ndim == 2:
        return image[np.newaxis]
    return image.transpose(2, 0, 1)


def to_hwc(image):
    """A C x H x W array as an OpenCV image (H x W for one channel)."""
    if image.shape[0] == 1:
        return image[0]
    return np.ascontiguousarray(image.transpose(1, 2, 0))


def resize(image_chw, height, width):
    """Bilinear resize (cv::resize INTER_LINEAR) of a C x H x W image to height x width; a size
    beyond the machine's memory is refused before OpenCV tries (its own failure is a cv2.error)."""
    memory.check_bytes(image_chw.shape[0] * int(height) * int(width) * image_chw.itemsize,
                       f"an image resized to {height} x {width}",
                       "check the size it is resized to (new_height/new_width, --resize_height/"
                       "--resize_width)")
    cv2 = _cv2()
    resized = cv2.resize(to_hwc(image_chw), (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    return to_chw(resized)


def decode(buffer, color=None):
    """Decode an image file held in `buffer` (bytes) to C x H x W, or None if it is not an image.

    `color`: True forces 3 channels (BGR), False forces 1 (gray), None keeps what the file holds.
    """
    array = np.frombuffer(buffer, dtype=np.uint8)
    if array.size == 0:
        return None
    image = _cv2().imdecode(array, _read_flag(color))
    return None if image is None else to_chw(image)


def read_image(path, height=0, width=0, is_color=True):
    """Read an image file as Caffe's ReadImageToCVMat: decoded colour (BGR) or gray, resized to
    height x width when both are positive. Returns C x H x W uint8, or None if unreadable.

    A file that cannot be opened is None without asking OpenCV, whose imread would print a
    warning of its own beside the caller's message."""
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        return None
    image = _cv2().imread(str(path), _read_flag(bool(is_color)))
    if image is None:
        return None
    image = to_chw(image)
    if height > 0 and width > 0:
        image = resize(image, height, width)
    return image


def encode(image_chw, encode_type):
    """Encode a C x H x W uint8 image as an image file of type `encode_type` ("png", "jpg", ...)."""
    ok, buffer = _cv2().imencode("." + encode_type, to_hwc(image_chw))
    if not ok:
        raise ValueError(f"OpenCV cannot encode images as {encode_type!r}")
    return buffer.tobytes()


def matches_extension(path, encode_type):
    """Whether the file name's extension already is `encode_type` (jpeg counts as jpg)."""
    ext = str(path).rsplit(".", 1)[-1].lower()
    encode_type = encode_type.lower()
    return ext == encode_type or (encode_type == "jpg" and ext == "jpeg")
