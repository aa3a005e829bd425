"""pycaffe's image functions (`caffe.io.load_image`, `resize_image`, `oversample`), on OpenCV.

These work in pycaffe's Python layout: H x W x K float32 arrays, RGB, values in [0, 1] as loaded.
(The Net wants K x H x W BGR; `Transformer` converts.)

Differences from pycaffe, which used scikit-image: a grey load of a colour file is OpenCV's
(libjpeg's / libpng's) conversion, the same grey Caffe's tools read, not scikit-image's weights;
resizing is OpenCV's (`interp_order` 0 nearest, 1 bilinear, 3 bicubic; no anti-aliasing filter),
so resized values differ from pycaffe's in the last digits.
"""
import numpy as np

from ..errors import PclError
from . import images

# skimage's spline orders that OpenCV has an interpolation for.
_INTERPOLATIONS = {0: "INTER_NEAREST_EXACT", 1: "INTER_LINEAR", 3: "INTER_CUBIC"}
# OpenCV's Python binding takes images of at most this many channels for resize; more are
# resized in groups.
_RESIZE_CHANNELS = 4


def load_image(filename, color=True):
    """An image file as float32 in [0, 1]: H x W x 3 RGB when `color` (grey files repeat their
    one channel, an alpha channel is dropped), else H x W x 1 intensity."""
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PclError(f"load_image: cannot read {filename}: {e.strerror}") from None
    image = images.decode(data, bool(color))
    if image is None:
        raise PclError(f"load_image: {filename} is not an image OpenCV can decode")
    image = image.transpose(1, 2, 0)
    if color:
        image = image[:, :, ::-1]  # OpenCV's BGR -> RGB
    return image.astype(np.float32) / np.float32(255)


def resize_image(im, new_dims, interp_order=1):
    """`im` (H x W x K) resized to new_dims = (height, width), as float32 H' x W' x K.

    Values stay within the image's range (bicubic overshoot is clipped, as scikit-image does)."""
    im = np.asarray(im, dtype=np.float32)
    if im.ndim != 3:
        raise PclError(f"resize_image needs an H x W x K array; got shape {im.shape}")
    height, width = (int(d) for d in new_dims[:2])
    if height <= 0 or width <= 0:
        raise PclError(f"resize_image: new_dims must be positive (height, width); got {tuple(new_dims)}")
    if interp_order not in _INTERPOLATIONS:
        raise PclError(f"resize_image: interp_order {interp_order} is not available through OpenCV; "
                       "use 0 (nearest), 1 (bilinear) or 3 (bicubic)")
    cv2 = images._cv2()
    interpolation = getattr(cv2, _INTERPOLATIONS[interp_order])
    parts = [cv2.resize(np.ascontiguousarray(im[:, :, c:c + _RESIZE_CHANNELS]), (width, height),
                        interpolation=interpolation).reshape(height, width, -1)
             for c in range(0, im.shape[2], _RESIZE_CHANNELS)]
    resized = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
    if interp_order == 3 and im.size:
        np.clip(resized, im.min(), im.max(), out=resized)
    return resized


def crop_boxes(image_dims, crop_dims):
    """pycaffe's ten oversampling crops of an image_dims image as (top, left) offsets: the four
    corners (top-left, top-right, bottom-left, bottom-right) and the centre; the mirrored five
    follow in the same order. The centre offset is (image - crop) // 2."""
    (height, width), (crop_h, crop_w) = image_dims, crop_dims
    bottom, right = height - crop_h, width - crop_w
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]


def oversample(images_hwk, crop_dims):
    """The 10 crops of each image (N images H x W x K, all the same size) as a float32
    10N x crop_h x crop_w x K array: per image, the five crops of `crop_boxes` and then the same
    five mirrored left-right."""
    stack = np.asarray(images_hwk, dtype=np.float32)
    if stack.ndim != 4:
        raise PclError(f"oversample needs N images of the same H x W x K shape; got an array of "
                       f"shape {stack.shape}")
    crop_h, crop_w = (int(d) for d in crop_dims[:2])
    height, width = stack.shape[1:3]
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise PclError(f"oversample: crop_dims {(crop_h, crop_w)} must be positive and fit in the "
                       f"images ({height} x {width})")
    crops = np.stack([stack[:, top:top + crop_h, left:left + crop_w]
                      for top, left in crop_boxes((height, width), (crop_h, crop_w))], axis=1)
    views = np.concatenate([crops, crops[:, :, :, ::-1]], axis=1)  # N x 10 x h x w x K
    return views.reshape((-1,) + views.shape[2:])
