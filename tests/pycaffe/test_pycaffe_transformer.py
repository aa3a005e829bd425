"""caffe.io.Transformer: pycaffe's preprocessing order, its inverse, and the setters' checks."""
import numpy as np
import pytest

from caffe import io as caffe_io
from pycaffelite.errors import PclError

SHAPE = (2, 3, 5, 6)  # N x K x H x W


def _transformer(mean=None):
    t = caffe_io.Transformer({"data": SHAPE})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", np.array([104.0, 117.0, 123.0]) if mean is None else mean)
    t.set_input_scale("data", 0.5)
    return t


def _image(shape=(5, 6, 3)):
    return np.random.default_rng(0).random(shape).astype(np.float32)


def test_preprocess_steps_in_pycaffe_order():
    image = _image()
    x = _transformer().preprocess("data", image)
    bgr = image.transpose(2, 0, 1)[::-1]
    expected = (bgr * 255 - np.array([104.0, 117.0, 123.0])[:, None, None]) * 0.5
    assert x.shape == (3, 5, 6) and x.dtype == np.float32
    assert np.allclose(x, expected, atol=1e-4)


@pytest.mark.parametrize("mean", [None, np.arange(90.0).reshape(3, 5, 6)])
def test_deprocess_inverts_preprocess(mean):
    t = _transformer(mean)
    image = _image()
    x = t.preprocess("data", image)
    assert np.allclose(t.deprocess("data", x), image, atol=1e-6)
    assert np.allclose(t.deprocess("data", x[np.newaxis]), image, atol=1e-6)  # a batch of one


def test_preprocess_leaves_the_callers_array_alone_and_resizes():
    t = caffe_io.Transformer({"data": SHAPE})
    t.set_transpose("data", (2, 0, 1))
    t.set_raw_scale("data", 2.0)
    image = _image()
    before = image.copy()
    t.preprocess("data", image)
    assert np.array_equal(image, before)
    big = _image((10, 12, 3))
    assert np.allclose(t.preprocess("data", big),
                       caffe_io.resize_image(big, (5, 6)).transpose(2, 0, 1) * 2)


def test_transpose_alone_and_the_wrong_layout():
    t = caffe_io.Transformer({"data": SHAPE})
    image = _image().astype(np.float64)
    with pytest.raises(PclError, match=r"becomes \(5, 6, 3\).*set_transpose"):
        t.preprocess("data", image)  # H x W x K, but the blob is K x H x W
    t.set_transpose("data", (2, 0, 1))
    out = t.preprocess("data", image)
    assert out.dtype == np.float32 and np.array_equal(out, image.astype(np.float32).transpose(2, 0, 1))
    assert np.array_equal(t.deprocess("data", out), image.astype(np.float32))


def test_set_mean_shapes():
    t = caffe_io.Transformer({"data": SHAPE})
    t.set_mean("data", np.array([1.0, 2.0, 3.0]))
    assert t.mean["data"].shape == (3, 1, 1)
    t.set_mean("data", np.ones((5, 6)))
    assert t.mean["data"].shape == (1, 5, 6)
    t.set_mean("data", np.full((3, 10, 12), 7.0))
    assert t.mean["data"].shape == (3, 5, 6) and np.allclose(t.mean["data"], 7.0)
    ramp = np.broadcast_to(np.arange(12.0), (3, 10, 12))
    resized = caffe_io.Transformer({"data": SHAPE})
    resized.set_mean("data", ramp)
    assert np.allclose(resized.mean["data"][0], caffe_io.resize_image(ramp[0][:, :, None], (5, 6))[:, :, 0])


@pytest.mark.parametrize("mean", [np.zeros(4), np.zeros((2, 5, 6)), np.zeros((1, 3, 5, 6))])
def test_set_mean_errors_are_value_errors(mean):
    t = caffe_io.Transformer({"data": SHAPE})
    with pytest.raises(ValueError, match="mean") as raised:
        t.set_mean("data", mean)
    assert isinstance(raised.value, PclError)


def test_setter_checks():
    t = caffe_io.Transformer({"data": SHAPE})
    with pytest.raises(PclError, match='"label" is not one of its inputs'):
        t.set_raw_scale("label", 255)
    with pytest.raises(PclError, match="permutation of 0..2"):
        t.set_transpose("data", (1, 0))
    with pytest.raises(PclError, match="permutation of 0..2"):
        t.set_transpose("data", (0, 0, 1))
    with pytest.raises(PclError, match="3 channels"):
        t.set_channel_swap("data", (1, 0))
    for method in (t.preprocess, t.deprocess):
        with pytest.raises(PclError, match="not one of its inputs"):
            method("label", np.zeros((5, 6, 3)))


def test_preprocess_wrong_channel_count():
    t = _transformer()
    with pytest.raises(PclError, match=r"becomes \(1, 5, 6\).*H x W x 3"):
        t.preprocess("data", _image((5, 6, 1)))
