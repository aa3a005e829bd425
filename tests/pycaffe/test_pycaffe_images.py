"""caffe.io.load_image, resize_image and oversample: pycaffe's layout (H x W x K, RGB, [0, 1])."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from caffe import io as caffe_io
from pycaffelite.errors import PclError

IMAGES = Path(__file__).resolve().parents[1] / "data" / "files" / "images"


@pytest.mark.parametrize("name", ["cat/cat_0.jpg", "coffee/coffee_1.png"])
def test_load_colour_image_is_rgb_in_0_1(name):
    image = caffe_io.load_image(str(IMAGES / name))
    bgr = cv2.imread(str(IMAGES / name), cv2.IMREAD_COLOR)
    assert image.dtype == np.float32 and image.shape == bgr.shape
    assert np.array_equal(image, bgr[:, :, ::-1].astype(np.float32) / 255)
    grey = caffe_io.load_image(str(IMAGES / name), color=False)
    expected = cv2.imread(str(IMAGES / name), cv2.IMREAD_GRAYSCALE)
    assert grey.shape == expected.shape + (1,)
    assert np.array_equal(grey[:, :, 0], expected.astype(np.float32) / 255)


def test_load_grey_image_tiles_to_three_channels():
    stored = cv2.imread(str(IMAGES / "cat/cat_5.png"), cv2.IMREAD_UNCHANGED)
    assert stored.ndim == 2  # the file is grey
    colour = caffe_io.load_image(str(IMAGES / "cat/cat_5.png"))
    assert colour.shape == stored.shape + (3,)
    for c in range(3):
        assert np.array_equal(colour[:, :, c], stored / np.float32(255))
    grey = caffe_io.load_image(str(IMAGES / "cat/cat_5.png"), color=False)
    assert np.array_equal(grey[:, :, 0], colour[:, :, 0])


def test_load_rgba_png_drops_alpha(tmp_path):
    bgra = np.random.default_rng(0).integers(0, 256, (6, 7, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), bgra)
    image = caffe_io.load_image(str(path))
    assert image.shape == (6, 7, 3)
    assert np.array_equal(image * 255, bgra[:, :, 2::-1].astype(np.float32))


def test_load_image_errors(tmp_path):
    with pytest.raises(PclError, match="cannot read"):
        caffe_io.load_image(str(tmp_path / "missing.jpg"))
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(PclError, match="not an image"):
        caffe_io.load_image(str(tmp_path / "notes.jpg"))


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("channels", [1, 3, 6])
def test_resize_shape_dtype_and_range(order, channels):
    image = np.random.default_rng(1).random((9, 11, channels))
    resized = caffe_io.resize_image(image, (14, 5), interp_order=order)
    assert resized.shape == (14, 5, channels) and resized.dtype == np.float32
    assert image.min() <= resized.min() and resized.max() <= image.max() + 1e-6
    if order == 0:
        assert np.isin(resized, image.astype(np.float32)).all()
    constant = caffe_io.resize_image(np.full((4, 4, channels), 0.25), (7, 3), order)
    assert np.array_equal(constant, np.full((7, 3, channels), 0.25, dtype=np.float32))


def test_resize_interpolations_by_hand():
    image = np.arange(24, dtype=np.float32).reshape(4, 6, 1)
    # Nearest, doubling: each pixel repeated twice along each axis.
    doubled = caffe_io.resize_image(image, (8, 12), interp_order=0)
    assert np.array_equal(doubled[:, :, 0], np.repeat(np.repeat(image[:, :, 0], 2, 0), 2, 1))
    # Bilinear, halving: output pixel (i, j) samples (2i + 0.5, 2j + 0.5), the mean of a 2 x 2 block.
    halved = caffe_io.resize_image(image, (2, 3), interp_order=1)
    assert np.allclose(halved[:, :, 0], image[:, :, 0].reshape(2, 2, 3, 2).mean(axis=(1, 3)))
    # More than OpenCV's per-call channels: each channel is resized as if alone.
    stack = np.random.default_rng(2).random((5, 6, 9)).astype(np.float32)
    together = caffe_io.resize_image(stack, (3, 8))
    alone = [caffe_io.resize_image(stack[:, :, c:c + 1], (3, 8)) for c in range(9)]
    assert np.array_equal(together, np.concatenate(alone, axis=2))


def test_resize_errors():
    with pytest.raises(PclError, match="interp_order 2"):
        caffe_io.resize_image(np.zeros((4, 4, 3)), (2, 2), interp_order=2)
    with pytest.raises(PclError, match="H x W x K"):
        caffe_io.resize_image(np.zeros((4, 4)), (2, 2))
    with pytest.raises(PclError, match="positive"):
        caffe_io.resize_image(np.zeros((4, 4, 1)), (0, 2))


def test_oversample_ten_crops_by_hand():
    images = np.arange(2 * 5 * 6 * 2, dtype=np.float32).reshape(2, 5, 6, 2)
    crops = caffe_io.oversample(images, (3, 4))
    assert crops.shape == (20, 3, 4, 2) and crops.dtype == np.float32
    # (top, left): top-left, top-right, bottom-left, bottom-right, centre ((5-3)//2, (6-4)//2).
    corners = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]
    for n, image in enumerate(images):
        for k, (top, left) in enumerate(corners):
            crop = image[top:top + 3, left:left + 4]
            assert np.array_equal(crops[10 * n + k], crop)
            assert np.array_equal(crops[10 * n + 5 + k], crop[:, ::-1])
    assert np.array_equal(caffe_io.oversample(list(images[:1]), (5, 6))[4], images[0])
    with pytest.raises(PclError, match="fit"):
        caffe_io.oversample(images, (6, 6))
