"""caffe.Classifier and caffe.Detector on a small random net and the bundled photos, checked
against hand-run preprocessing and forward passes of the same crops."""
from pathlib import Path

import numpy as np
import pytest

import caffe
import pycaffelite as pcl
from pycaffelite.detector import context_geometry
from pycaffelite.errors import NotSupportedError, PclError

IMAGES = Path(__file__).resolve().parents[1] / "data" / "files" / "images"
PHOTOS = [str(IMAGES / name)
          for name in ("cat/cat_0.jpg", "rocket/rocket_1.png", "coffee/coffee_5.png")]
MEAN_BGR = np.array([104.0, 117.0, 123.0])
# Batch 4: 3 photos x 10 views = 30 crops run as 7 full batches and a part one.
DEPLOY = """name: "small"
input: "data"
input_shape { dim: 4 dim: 3 dim: 12 dim: 12 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_net")
    deploy, weights = folder / "deploy.prototxt", folder / "small.caffemodel"
    deploy.write_text(DEPLOY)
    pcl.set_random_seed(3)
    pcl.Net(str(deploy), pcl.TEST).save(str(weights))
    return str(deploy), str(weights)


def _by_hand(model, crops):
    """The net's output for H x W x 3 RGB crops in [0, 1], preprocessed by hand as
    pycaffe's Classifier does with raw_scale 255, MEAN_BGR and channel swap RGB -> BGR."""
    net = pcl.Net(model[0], pcl.TEST, weights=model[1])
    x = np.stack([c.transpose(2, 0, 1)[::-1] * 255 - MEAN_BGR[:, None, None] for c in crops])
    net.blobs["data"].reshape(*x.shape)
    return net.forward(data=x.astype(np.float32))["prob"].copy()


def _classifier(model, **kwargs):
    return caffe.Classifier(*model, mean=MEAN_BGR, raw_scale=255, channel_swap=(2, 1, 0), **kwargs)


def test_classifier_is_a_test_phase_net(model):
    classifier = _classifier(model)
    assert isinstance(classifier, pcl.Net) and classifier.phase == pcl.TEST
    assert classifier.crop_dims.tolist() == [12, 12] and list(classifier.image_dims) == [12, 12]


def test_classifier_centre_crop_equals_a_hand_run_forward(model):
    photos = [caffe.io.load_image(p) for p in PHOTOS]
    predictions = _classifier(model, image_dims=(16, 14)).predict(photos, oversample=False)
    assert predictions.shape == (3, 5) and np.allclose(predictions.sum(axis=1), 1)
    # Centre of 16 x 14 for a 12 x 12 crop starts at ((16-12)//2, (14-12)//2) = (2, 1).
    crops = [caffe.io.resize_image(p, (16, 14))[2:14, 1:13] for p in photos]
    assert np.allclose(predictions, _by_hand(model, crops), atol=1e-6)


def test_classifier_oversampling_averages_the_ten_views(model):
    photos = [caffe.io.load_image(p) for p in PHOTOS]
    classifier = _classifier(model, image_dims=(16, 14))
    predictions = classifier.predict(photos)
    views = caffe.io.oversample([caffe.io.resize_image(p, (16, 14)) for p in photos], (12, 12))
    expected = _by_hand(model, views).reshape(3, 10, 5).mean(axis=1)
    assert predictions.shape == (3, 5) and np.allclose(predictions, expected, atol=1e-6)
    assert not np.allclose(predictions, classifier.predict(photos, oversample=False), atol=1e-6)


def test_classifier_errors(model):
    with pytest.raises(PclError, match="smaller than the net's input"):
        _classifier(model, image_dims=(10, 20)).predict([np.zeros((8, 8, 3))])
    with pytest.raises(PclError, match="no images"):
        _classifier(model).predict([])
    with pytest.raises(PclError, match=r"\[1, 3\] channels"):
        _classifier(model).predict([np.zeros((8, 8, 3)), np.zeros((8, 8, 1))])


def test_context_geometry_by_hand():
    # Window rows 10..25 (16 with both ends), centre 18; grown by 24 / (24 - 2*4) = 1.5 to
    # 18 -/+ 12 = 6..30, 25 pixels warped by 24/25: no pad, size round(25 * 0.96) = 24.
    box, pad, size = context_geometry((10, 10, 25, 25), (24, 24), 4, (48, 64))
    assert box.tolist() == [6, 6, 30, 30] and pad.tolist() == [0, 0] and size.tolist() == [24, 24]
    # Rows -7..8: half 8, centre 1, grown box -11..13 (25 rows, warp 0.96): pad round(11*0.96)
    # = 11, clipped 0..13, size round(14*0.96) = 13. Columns 9..60: half 26, centre 35, box
    # -4..74 (79, warp 24/79): pad round(1.22) = 1, clipped 0..64, size round(65*24/79) = 20.
    box, pad, size = context_geometry((-7, 9, 8, 60), (24, 24), 4, (48, 64))
    assert box.tolist() == [0, 0, 13, 64] and pad.tolist() == [11, 1] and size.tolist() == [13, 20]


def _detector(model, **kwargs):
    return caffe.Detector(*model, mean=MEAN_BGR, raw_scale=255, channel_swap=[2, 1, 0], **kwargs)


def test_detector_crops_with_and_without_context(model):
    image = caffe.io.load_image(PHOTOS[0])  # 48 x 64
    plain = _detector(model)
    assert np.array_equal(plain.crop(image, (3, 4, 20, 30)), image[3:20, 4:30])
    padded = _detector(model, context_pad=3)
    assert padded.crop_dims.tolist() == [12, 12, 3]
    assert np.allclose(padded.crop_mean.ravel(), MEAN_BGR[::-1] / 255)  # RGB, raw scale
    # Rows 10..21: half 6, centre 16, grown by 12/6 = 2 to 4..28 (25 rows, warp 12/25).
    box, pad, size = context_geometry((10, 20, 21, 31), (12, 12), 3, image.shape)
    assert box.tolist() == [4, 14, 28, 38] and size.tolist() == [12, 12]
    inside = padded.crop(image, (10, 20, 21, 31))
    assert np.array_equal(inside, caffe.io.resize_image(image[4:28, 14:38], (12, 12)))
    # Near the top-left corner the grown box leaves the image: the rows and columns above and
    # left of it are the mean; the rest is the clipped box, warped.
    corner = padded.crop(image, (0, 0, 5, 5))
    box, (pad_y, pad_x), (h, w) = context_geometry((0, 0, 5, 5), (12, 12), 3, image.shape)
    assert pad_y > 0 and pad_x > 0
    assert np.allclose(corner[:pad_y], padded.crop_mean)
    assert np.allclose(corner[:, :pad_x], padded.crop_mean)
    assert np.array_equal(corner[pad_y:pad_y + h, pad_x:pad_x + w],
                          caffe.io.resize_image(image[box[0]:box[2], box[1]:box[3]], (h, w)))


def test_detect_windows_equals_a_hand_run_forward(model):
    detector = _detector(model)
    windows = [(PHOTOS[0], [np.array([0, 0, 30, 30]), np.array([5, 7, 40, 60])]),
               (PHOTOS[2], [np.array([10, 10, 50, 40])])]
    detections = detector.detect_windows(windows)
    assert [d["filename"] for d in detections] == [PHOTOS[0], PHOTOS[0], PHOTOS[2]]
    assert [list(d) for d in detections] == [["window", "prediction", "filename"]] * 3
    assert detections[2]["window"] is windows[1][1][0]
    crops = [caffe.io.resize_image(caffe.io.load_image(f)[w[0]:w[2], w[1]:w[3]], (12, 12))
             for f, ws in windows for w in ws]
    expected = _by_hand(model, crops)
    assert np.allclose(np.stack([d["prediction"] for d in detections]), expected, atol=1e-6)
    assert detector.detect_windows([]) == []


def test_detector_refusals(model):
    detector = _detector(model)
    with pytest.raises(PclError, match="holds no pixels"):
        detector.detect_windows([(PHOTOS[0], [(60, 0, 70, 10)])])
    with pytest.raises(NotSupportedError, match="^not supported: .*MATLAB.*detect_windows"):
        detector.detect_selective_search(PHOTOS)
    with pytest.raises(PclError, match="context_pad 6 leaves no room .* below 6"):
        _detector(model, context_pad=6)
