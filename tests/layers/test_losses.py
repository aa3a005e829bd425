"""Tests of the loss layers: SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss, HingeLoss,
ContrastiveLoss, InfogainLoss, MultinomialLogisticLoss."""
import math

import numpy as np
import pytest

from layer_testing import blob_from, empty_tops, gaussian_blob, make_layer
from pycaffelite.blob import Blob
from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker

LN2, LN3 = math.log(2), math.log(3)


def run(text, bottoms, dtype=np.float64, backward=True, num_tops=1):
    """Initialize, forward and (with the default loss weight as top diff) backward a loss layer.

    Returns (layer, tops, bottom blobs); bottom 0 always gets propagate_down, and so does bottom 1
    when `backward == "both"`.
    """
    layer = make_layer(text, dtype)
    bottom = [blob_from(b, dtype) for b in bottoms]
    top = empty_tops(num_tops, dtype)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    if backward:
        propagate = [True] + [backward == "both" and i == 1 for i in range(1, len(bottom))]
        layer.backward(top, propagate, bottom)
    return layer, top, bottom


def loss_of(text, bottoms, **kwargs):
    return float(run(text, bottoms, backward=False, **kwargs)[1][0].data)


def check(text, bottoms, check_bottom=0, kink=0.0, kink_range=-1.0):
    checker = GradientChecker(1e-2, 1e-3, kink=kink, kink_range=kink_range)
    layer = make_layer(text)
    checker.check_gradient(layer, bottoms, empty_tops(1), check_bottom=check_bottom)


def labels_blob(values, shape=None):
    return blob_from(np.reshape(values, shape if shape is not None else (-1,)))


# -- SoftmaxWithLoss -------------------------------------------------------------------------------

# Item 0: scores (0, 0, 0) -> p = 1/3 each; item 1: (0, ln 2, 0) -> p = (1/4, 1/2, 1/4). Labels 1, 1.
SM_SCORES = [[0.0, 0.0, 0.0], [0.0, LN2, 0.0]]
SM_LABELS = [1, 1]


def test_softmax_loss_forward_and_backward():
    _, top, bottom = run('type: "SoftmaxWithLoss"', [SM_SCORES, SM_LABELS])
    assert top[0].shape == ()
    # -(ln 1/3 + ln 1/2) / 2 (VALID: 2 labelled items)
    np.testing.assert_allclose(top[0].data, (LN3 + LN2) / 2, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, [[1 / 6, -1 / 3, 1 / 6], [1 / 8, -1 / 4, 1 / 8]],
                               rtol=1e-12)


def test_softmax_loss_second_top_is_the_probabilities():
    text = 'type: "SoftmaxWithLoss" loss_weight: 1 loss_weight: 0'
    layer, top, _ = run(text, [SM_SCORES, SM_LABELS], num_tops=2)
    assert layer.loss_weights == [1.0, 0.0]
    np.testing.assert_allclose(top[1].data, [[1 / 3] * 3, [0.25, 0.5, 0.25]], rtol=1e-12)


# (N=2, C=2, H=1, W=3), both items alike. Location 0: scores (0, 0), label 0 -> ln 2;
# location 1: (ln 3, 0), label 1 -> p = 1/4 -> ln 4; location 2: label 255, ignored.
# Summed loss 2 * (ln 2 + ln 4) = 6 ln 2 over 4 counted locations, 6 locations, 2 items.
SPATIAL_SCORES = np.array([[[[0.0, LN3, 5.0]], [[0.0, 0.0, -1.0]]]] * 2)
SPATIAL_LABELS = np.array([[[[0, 1, 255]]]] * 2)


@pytest.mark.parametrize("loss_param,expected", [
    ("", 1.5 * LN2),                                  # VALID is the default
    ("normalization: VALID", 1.5 * LN2),
    ("normalization: FULL", LN2),
    ("normalization: BATCH_SIZE", 3 * LN2),
    ("normalization: NONE", 6 * LN2),
    ("normalize: true", 1.5 * LN2),                   # legacy spelling of VALID
    ("normalize: false", 3 * LN2),                    # legacy spelling of BATCH_SIZE
    ("normalize: false normalization: FULL", LN2),   # normalization wins over normalize
])
def test_softmax_loss_normalization(loss_param, expected):
    text = f'type: "SoftmaxWithLoss" loss_param {{ ignore_label: 255 {loss_param} }}'
    assert loss_of(text, [SPATIAL_SCORES, SPATIAL_LABELS]) == pytest.approx(expected, rel=1e-12)


def test_softmax_loss_ignored_locations_get_no_gradient():
    text = 'type: "SoftmaxWithLoss" loss_param { ignore_label: 255 normalization: NONE }'
    _, _, bottom = run(text, [SPATIAL_SCORES, SPATIAL_LABELS])
    diff = bottom[0].diff
    np.testing.assert_array_equal(diff[:, :, :, 2], 0)
    # location 0: p = (1/2, 1/2), label 0 -> (-1/2, 1/2); location 1: p = (3/4, 1/4), label 1
    np.testing.assert_allclose(diff[0, :, 0, 0], [-0.5, 0.5], rtol=1e-12)
    np.testing.assert_allclose(diff[0, :, 0, 1], [0.75, -0.75], rtol=1e-12)


def test_softmax_loss_all_ignored_divides_by_one_not_zero():
    text = 'type: "SoftmaxWithLoss" loss_param { ignore_label: 255 }'
    labels = np.full_like(SPATIAL_LABELS, 255)
    _, top, bottom = run(text, [SPATIAL_SCORES, labels])
    assert float(top[0].data) == 0
    np.testing.assert_array_equal(bottom[0].diff, 0)


def test_softmax_loss_axis():
    # classes on the last axis: (N=2, H=1, C=3) holding the same numbers as SM_SCORES
    text = 'type: "SoftmaxWithLoss" softmax_param { axis: -1 }'
    scores = np.array(SM_SCORES).reshape(2, 1, 3)
    assert loss_of(text, [scores, [[1], [1]]]) == pytest.approx((LN3 + LN2) / 2, rel=1e-12)


def test_softmax_loss_clamps_tiny_probabilities_like_caffe():
    # p(label) = exp(-200) underflows in float32; Caffe clamps it at FLT_MIN: -ln(FLT_MIN) = 87.34
    loss = loss_of('type: "SoftmaxWithLoss"', [[[200.0, 0.0]], [1]], dtype=np.float32)
    assert loss == pytest.approx(-math.log(np.finfo(np.float32).tiny), rel=1e-6)


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_softmax_loss_gradient(mode):
    labels = np.random.default_rng(2).integers(0, 5, size=(2, 1, 2, 3)).astype(float)
    labels[0, 0, 1, 2] = labels[1, 0, 0, 0] = -1
    text = f'type: "SoftmaxWithLoss" loss_param {{ ignore_label: -1 normalization: {mode} }}'
    check(text, [gaussian_blob((2, 5, 2, 3), seed=1), blob_from(labels)])


def test_softmax_loss_gradient_on_another_axis():
    labels = np.random.default_rng(2).integers(0, 4, size=(2, 3)).astype(float)
    check('type: "SoftmaxWithLoss" softmax_param { axis: 2 }',
          [gaussian_blob((2, 3, 4), seed=1), blob_from(labels)])


def test_softmax_loss_any_mode(any_mode):
    text = 'type: "SoftmaxWithLoss" loss_param { ignore_label: 255 normalization: NONE }'
    _, top, bottom = run(text, [SPATIAL_SCORES, SPATIAL_LABELS], dtype=np.float32)
    assert top[0].data.dtype == np.float32 and bottom[0].diff.dtype == np.float32
    np.testing.assert_allclose(top[0].data, 6 * LN2, rtol=1e-6)
    np.testing.assert_allclose(bottom[0].diff[1, :, 0, 1], [0.75, -0.75], rtol=1e-6)


@pytest.mark.parametrize("label", [3, -2, 7.5])
def test_softmax_loss_label_out_of_range(label):
    with pytest.raises(PclError, match=rf"label {int(label)} is out of range for 3 classes"):
        run('type: "SoftmaxWithLoss"', [SM_SCORES, [0, label]])


def test_softmax_loss_label_count_must_match():
    with pytest.raises(PclError, match=r"4 labels for predictions of shape \(2, 3, 2\)"):
        run('type: "SoftmaxWithLoss"', [np.zeros((2, 3, 2)), [[0, 1, 0], [1, 0, 1]]])


def test_softmax_loss_refuses_label_gradient():
    layer, top, bottom = run('type: "SoftmaxWithLoss"', [SM_SCORES, SM_LABELS], backward=False)
    with pytest.raises(PclError, match="label"):
        layer.backward(top, [True, True], bottom)
    assert not layer.allow_force_backward(1) and layer.allow_force_backward(0)


def test_loss_layers_give_top_0_the_weight_one_and_honour_loss_weight():
    layer, top, _ = run('type: "SoftmaxWithLoss"', [SM_SCORES, SM_LABELS], backward=False)
    assert layer.loss_weights == [1.0]
    _, _, bottom = run('type: "SoftmaxWithLoss" loss_weight: 3', [SM_SCORES, SM_LABELS])
    np.testing.assert_allclose(bottom[0].diff[0], [0.5, -1, 0.5], rtol=1e-12)


# -- EuclideanLoss -------------------------------------------------------------------------------

def test_euclidean_loss_forward_and_both_gradients():
    a, b = [[1.0, 2.0], [3.0, 4.0]], [[0.0, 2.0], [1.0, 1.0]]
    _, top, bottom = run('type: "EuclideanLoss"', [a, b], backward="both")
    np.testing.assert_allclose(top[0].data, 14 / 4)  # (1 + 0 + 4 + 9) / (2 * 2)
    np.testing.assert_allclose(bottom[0].diff, [[0.5, 0], [1, 1.5]])
    np.testing.assert_allclose(bottom[1].diff, [[-0.5, 0], [-1, -1.5]])


def test_euclidean_loss_weight_scales_the_gradient():
    _, _, bottom = run('type: "EuclideanLoss" loss_weight: 2', [[[1.0, 2.0]], [[0.0, 0.0]]])
    np.testing.assert_allclose(bottom[0].diff, [[2.0, 4.0]])


def test_euclidean_loss_accepts_differently_shaped_bottoms_of_equal_count():
    assert loss_of('type: "EuclideanLoss"', [np.ones((2, 3)), np.zeros((2, 3, 1))]) == 6 / 4


def test_euclidean_loss_gradient_for_both_bottoms():
    layer = make_layer('type: "EuclideanLoss"')
    assert layer.allow_force_backward(1)
    check('type: "EuclideanLoss"', [gaussian_blob((3, 4), seed=1), gaussian_blob((3, 4), seed=2)],
          check_bottom=-1)


def test_euclidean_loss_shape_mismatch():
    with pytest.raises(PclError, match="same number of values per item"):
        run('type: "EuclideanLoss"', [np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(PclError, match="same num"):
        run('type: "EuclideanLoss"', [np.zeros((2, 3)), np.zeros((3, 3))])


# -- SigmoidCrossEntropyLoss ---------------------------------------------------------------------

# Elements: (x=0, t=1) -> ln 2; (x=ln 3, t=0) -> -ln(1/4); (x=-ln 3, t=1) -> -ln(1/4); (x=0, t=1/2)
# -> ln 2. Sum 6 ln 2 over 2 items and 4 elements.
SCE_X = [[0.0, LN3], [-LN3, 0.0]]
SCE_T = [[1.0, 0.0], [1.0, 0.5]]


@pytest.mark.parametrize("loss_param,expected", [
    ("", 3 * LN2),                          # no loss_param: Caffe divides by the batch size
    ("loss_param { }", 3 * LN2),
    ("loss_param { normalization: VALID }", 1.5 * LN2),
    ("loss_param { normalization: FULL }", 1.5 * LN2),
    ("loss_param { normalization: NONE }", 6 * LN2),
    ("loss_param { normalize: true }", 1.5 * LN2),
    ("loss_param { normalize: false }", 3 * LN2),
])
def test_sigmoid_cross_entropy_normalization(loss_param, expected):
    text = f'type: "SigmoidCrossEntropyLoss" {loss_param}'
    assert loss_of(text, [SCE_X, SCE_T]) == pytest.approx(expected, rel=1e-12)


def test_sigmoid_cross_entropy_gradient_values():
    _, _, bottom = run('type: "SigmoidCrossEntropyLoss"', [SCE_X, SCE_T])
    # (sigmoid(x) - t) / 2
    np.testing.assert_allclose(bottom[0].diff, [[-0.25, 0.375], [-0.375, 0.0]], atol=1e-12)


def test_sigmoid_cross_entropy_ignore_label():
    text = 'type: "SigmoidCrossEntropyLoss" loss_param { ignore_label: -1 normalization: VALID }'
    targets = [[1.0, -1.0], [1.0, 0.5]]  # the (x = ln 3) element is ignored
    _, top, bottom = run(text, [SCE_X, targets])
    np.testing.assert_allclose(top[0].data, 4 * LN2 / 3, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, [[-0.5 / 3, 0.0], [-0.75 / 3, 0.0]], atol=1e-12)


def test_sigmoid_cross_entropy_is_stable_for_large_scores():
    loss = loss_of('type: "SigmoidCrossEntropyLoss"', [[[500.0, -500.0]], [[0.0, 1.0]]],
                   dtype=np.float32)
    assert loss == pytest.approx(1000.0, rel=1e-6)


@pytest.mark.parametrize("loss_param", ["", "loss_param { ignore_label: -1 normalization: VALID }"])
def test_sigmoid_cross_entropy_gradient(loss_param):
    targets = np.random.default_rng(3).uniform(size=(2, 3, 2))
    targets[0, 1, 1] = targets[1, 2, 0] = -1
    check(f'type: "SigmoidCrossEntropyLoss" {loss_param}',
          [gaussian_blob((2, 3, 2), seed=1, std=2), blob_from(targets)])


def test_sigmoid_cross_entropy_count_mismatch():
    with pytest.raises(PclError, match="same count"):
        run('type: "SigmoidCrossEntropyLoss"', [np.zeros((2, 3)), np.zeros((2, 2))])


def test_sigmoid_cross_entropy_any_mode(any_mode):
    _, top, bottom = run('type: "SigmoidCrossEntropyLoss"', [SCE_X, SCE_T], dtype=np.float32)
    np.testing.assert_allclose(top[0].data, 3 * LN2, rtol=1e-6)
    np.testing.assert_allclose(bottom[0].diff, [[-0.25, 0.375], [-0.375, 0.0]], atol=1e-7)


# -- HingeLoss ------------------------------------------------------------------------------------

# Item 0, label 0: margins max(0, 1 - 0.5) = 0.5, max(0, 1 - 2) = 0, 1 + 1.5 = 2.5.
# Item 1, label 2: 1 + 0.2 = 1.2, 1 + 0.3 = 1.3, 1 - (-0.1) = 1.1.
HINGE_X = [[0.5, -2.0, 1.5], [0.2, 0.3, -0.1]]
HINGE_LABELS = [0, 2]


def test_hinge_loss_l1():
    _, top, bottom = run('type: "HingeLoss"', [HINGE_X, HINGE_LABELS])
    np.testing.assert_allclose(top[0].data, 6.6 / 2, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, [[-0.5, 0, 0.5], [0.5, 0.5, -0.5]])


def test_hinge_loss_l2():
    _, top, bottom = run('type: "HingeLoss" hinge_loss_param { norm: L2 }', [HINGE_X, HINGE_LABELS])
    np.testing.assert_allclose(top[0].data, 10.84 / 2, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, [[-0.5, 0, 2.5], [1.2, 1.3, -1.1]], rtol=1e-12)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge_loss_gradient(norm):
    labels = blob_from([0, 3, 1, 4])
    check(f'type: "HingeLoss" hinge_loss_param {{ norm: {norm} }}',
          [gaussian_blob((4, 5), seed=1), labels], kink=1.0, kink_range=0.01)


def test_hinge_loss_bad_labels():
    with pytest.raises(PclError, match="label 3 is out of range for 3 classes"):
        run('type: "HingeLoss"', [HINGE_X, [0, 3]])
    with pytest.raises(PclError, match="one label per item"):
        run('type: "HingeLoss"', [HINGE_X, [[0, 1], [1, 0]]])


def test_hinge_loss_any_mode(any_mode):
    _, top, bottom = run('type: "HingeLoss" hinge_loss_param { norm: L2 }',
                         [HINGE_X, HINGE_LABELS], dtype=np.float32)
    np.testing.assert_allclose(top[0].data, 5.42, rtol=1e-6)
    np.testing.assert_allclose(bottom[0].diff, [[-0.5, 0, 2.5], [1.2, 1.3, -1.1]], rtol=1e-6)


# -- ContrastiveLoss ----------------------------------------------------------------------------

# Pair 0: similar, d^2 = 25. Pair 1: dissimilar, d = 0.5. Pair 2: dissimilar, d = 0. Margin 1.
CON_A = [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
CON_B = [[3.0, 4.0], [0.3, 0.4], [1.0, 1.0]]
CON_Y = [1, 0, 0]


def test_contrastive_loss():
    _, top, bottom = run('type: "ContrastiveLoss"', [CON_A, CON_B, CON_Y], backward="both")
    np.testing.assert_allclose(top[0].data, (25 + 0.25 + 1) / 6, rtol=1e-12)
    # similar: (a - b) / N; dissimilar with d < margin: -(margin - d) / (d + 1e-4) (a - b) / N
    pull = 0.5 / 0.5001 / 3
    expected = [[-1, -4 / 3], [0.3 * pull, 0.4 * pull], [0, 0]]
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-12)
    np.testing.assert_allclose(bottom[1].diff, -np.array(expected), rtol=1e-12)


def test_contrastive_loss_legacy():
    text = 'type: "ContrastiveLoss" contrastive_loss_param { legacy_version: true margin: 1 }'
    _, top, bottom = run(text, [CON_A, CON_B, CON_Y])
    np.testing.assert_allclose(top[0].data, (25 + 0.75 + 1) / 6, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, [[-1, -4 / 3], [0.1, 0.4 / 3], [0, 0]], rtol=1e-12)


def test_contrastive_loss_margin():
    text = 'type: "ContrastiveLoss" contrastive_loss_param { margin: 0.25 }'
    # pair 1 (d = 0.5) and pair 2 (d = 0) : only pair 2 is inside the margin
    assert loss_of(text, [CON_A, CON_B, CON_Y]) == pytest.approx((25 + 0.0625) / 6, rel=1e-12)


@pytest.mark.parametrize("legacy", ["false", "true"])
@pytest.mark.parametrize("check_bottom", [0, 1])
def test_contrastive_loss_gradient(legacy, check_bottom):
    text = f'type: "ContrastiveLoss" contrastive_loss_param {{ margin: 2 legacy_version: {legacy} }}'
    bottoms = [gaussian_blob((5, 3, 1, 1), seed=1, std=0.7), gaussian_blob((5, 3, 1, 1), seed=2, std=0.7),
               blob_from([1, 0, 0, 1, 0])]
    check(text, bottoms, check_bottom=check_bottom)


def test_contrastive_loss_label_gets_no_gradient():
    layer = make_layer('type: "ContrastiveLoss"')
    assert layer.allow_force_backward(1) and not layer.allow_force_backward(2)
    layer, top, bottom = run('type: "ContrastiveLoss"', [CON_A, CON_B, CON_Y], backward=False)
    bottom[2].diff[...] = 5
    layer.backward(top, [True, True, True], bottom)
    np.testing.assert_array_equal(bottom[2].diff, 5)


@pytest.mark.parametrize("shapes,message", [
    (((3, 2, 2), (3, 2, 2), (3,)), "N x C"),
    (((3, 2), (3, 3), (3,)), "same number of channels"),
    (((3, 2), (3, 2), (3, 2)), "one similarity label per pair"),
])
def test_contrastive_loss_bad_shapes(shapes, message):
    with pytest.raises(PclError, match=message):
        run('type: "ContrastiveLoss"', [np.zeros(s) for s in shapes], backward=False)


def test_contrastive_loss_any_mode(any_mode):
    _, top, bottom = run('type: "ContrastiveLoss"', [CON_A, CON_B, CON_Y], dtype=np.float32,
                         backward="both")
    np.testing.assert_allclose(top[0].data, 26.25 / 6, rtol=1e-6)
    np.testing.assert_allclose(bottom[1].diff[0], [1, 4 / 3], rtol=1e-6)


# -- InfogainLoss --------------------------------------------------------------------------------

# Two items with scores (0, 0) -> p = (1/2, 1/2); labels 0 and 1; H = [[1, 0.5], [0, 2]].
# Item 0: -(1 ln 1/2 + 0.5 ln 1/2) = 1.5 ln 2; item 1: -(2 ln 1/2) = 2 ln 2. VALID: / 2.
IG_SCORES = [[0.0, 0.0], [0.0, 0.0]]
IG_LABELS = [0, 1]
IG_H = [[1.0, 0.5], [0.0, 2.0]]
# gradient p_l * rowsum(H[label]) - H[label, l], / 2: item 0: (0.75 - 1, 0.75 - 0.5) / 2; item 1:
# (1 - 0, 1 - 2) / 2
IG_DIFF = [[-0.125, 0.125], [0.5, -0.5]]


def test_infogain_loss_with_h_as_bottom():
    _, top, bottom = run('type: "InfogainLoss"', [IG_SCORES, IG_LABELS, IG_H])
    np.testing.assert_allclose(top[0].data, 1.75 * LN2, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, IG_DIFF, rtol=1e-12)


def test_infogain_loss_with_h_from_a_file(tmp_path):
    path = tmp_path / "H.binaryproto"
    path.write_bytes(blob_from(np.reshape(IG_H, (1, 1, 2, 2))).to_proto().SerializeToString())
    text = f'type: "InfogainLoss" infogain_loss_param {{ source: "{path}" }}'
    _, top, bottom = run(text, [IG_SCORES, IG_LABELS])
    np.testing.assert_allclose(top[0].data, 1.75 * LN2, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, IG_DIFF, rtol=1e-12)


def test_infogain_loss_with_identity_is_the_softmax_loss():
    expected = loss_of('type: "SoftmaxWithLoss"', [SM_SCORES, SM_LABELS])
    assert loss_of('type: "InfogainLoss"', [SM_SCORES, SM_LABELS, np.eye(3)]) == \
        pytest.approx(expected, rel=1e-12)


def test_infogain_loss_ignore_label_normalization_and_probabilities():
    text = ('type: "InfogainLoss" loss_param { ignore_label: 7 normalization: NONE } '
            'loss_weight: 1 loss_weight: 0')
    _, top, bottom = run(text, [IG_SCORES, [0, 7], IG_H], num_tops=2)
    np.testing.assert_allclose(top[0].data, 1.5 * LN2, rtol=1e-12)
    np.testing.assert_allclose(top[1].data, 0.5)
    np.testing.assert_allclose(bottom[0].diff, [[-0.25, 0.25], [0, 0]], rtol=1e-12)


@pytest.mark.parametrize("axis,shape,label_shape", [(1, (2, 4, 3), (2, 3)), (2, (2, 3, 4), (2, 3))])
def test_infogain_loss_gradient(axis, shape, label_shape):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, size=label_shape).astype(float)
    labels[1, 0] = -1
    text = (f'type: "InfogainLoss" infogain_loss_param {{ axis: {axis} }} '
            f'loss_param {{ ignore_label: -1 }}')
    check(text, [gaussian_blob(shape, seed=1), blob_from(labels), blob_from(rng.uniform(size=(4, 4)))])


@pytest.mark.parametrize("text,bottoms,message", [
    ('type: "InfogainLoss"', [IG_SCORES, IG_LABELS], "infogain_loss_param.source"),
    ('type: "InfogainLoss" infogain_loss_param { source: "/no/such/H.binaryproto" }',
     [IG_SCORES, IG_LABELS], "no such file"),
    ('type: "InfogainLoss"', [IG_SCORES, IG_LABELS, np.eye(3)], "must be 2 x 2"),
    ('type: "InfogainLoss" loss_param { normalize: true }', [IG_SCORES, IG_LABELS, IG_H],
     "normalization"),
    ('type: "InfogainLoss"', [IG_SCORES, [0, 2], IG_H], "label 2 is out of range for 2 classes"),
])
def test_infogain_loss_errors(text, bottoms, message):
    with pytest.raises(PclError, match=message):
        run(text, bottoms, backward=False)


def test_infogain_loss_refuses_gradients_to_labels_and_h():
    layer, top, bottom = run('type: "InfogainLoss"', [IG_SCORES, IG_LABELS, IG_H], backward=False)
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, False, False]
    with pytest.raises(PclError, match="label"):
        layer.backward(top, [True, False, True], bottom)


def test_infogain_loss_any_mode(any_mode):
    _, top, bottom = run('type: "InfogainLoss"', [IG_SCORES, IG_LABELS, IG_H], dtype=np.float32)
    np.testing.assert_allclose(top[0].data, 1.75 * LN2, rtol=1e-6)
    np.testing.assert_allclose(bottom[0].diff, IG_DIFF, rtol=1e-6)


# -- MultinomialLogisticLoss ---------------------------------------------------------------------

def test_multinomial_logistic_loss_clamps_at_1e_20():
    probs = [[0.5, 0.25, 0.25], [0.1, 0.0, 0.9]]
    _, top, bottom = run('type: "MultinomialLogisticLoss"', [probs, [0, 1]])
    np.testing.assert_allclose(top[0].data, (LN2 + 20 * math.log(10)) / 2, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, [[-1, 0, 0], [0, -0.5e20, 0]], rtol=1e-12)


def test_multinomial_logistic_loss_gradient():
    probs = blob_from(np.random.default_rng(5).uniform(0.1, 1.0, size=(4, 5)))
    check('type: "MultinomialLogisticLoss"', [probs, blob_from([0, 4, 2, 2])])


def test_multinomial_logistic_loss_bad_labels():
    with pytest.raises(PclError, match="label 3 is out of range for 3 classes"):
        run('type: "MultinomialLogisticLoss"', [[[0.2, 0.3, 0.5]], [3]])
    with pytest.raises(PclError, match="one label per item"):
        run('type: "MultinomialLogisticLoss"', [[[0.2, 0.3, 0.5]], [[0, 1]]])


def test_multinomial_logistic_loss_any_mode(any_mode):
    _, top, bottom = run('type: "MultinomialLogisticLoss"', [[[0.5, 0.5], [0.25, 0.75]], [0, 1]],
                         dtype=np.float32)
    np.testing.assert_allclose(top[0].data, (LN2 + math.log(4 / 3)) / 2, rtol=1e-6)
    np.testing.assert_allclose(bottom[0].diff, [[-1, 0], [0, -2 / 3]], rtol=1e-6)


# -- shared rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,bottoms", [
    ('type: "EuclideanLoss"', [(3, 2), (3, 2)]),
    ('type: "SoftmaxWithLoss"', [(3, 4), (3,)]),
    ('type: "SigmoidCrossEntropyLoss"', [(3, 4), (3, 4)]),
    ('type: "HingeLoss"', [(3, 4), (3,)]),
    ('type: "ContrastiveLoss"', [(3, 2), (3, 2), (3,)]),
    ('type: "InfogainLoss"', [(3, 4), (3,), (4, 4)]),
    ('type: "MultinomialLogisticLoss"', [(3, 4), (3,)]),
])
def test_loss_top_is_a_scalar_and_num_must_match(text, bottoms):
    layer = make_layer(text)
    blobs = [Blob(shape, dtype=np.float64) for shape in bottoms]
    top = empty_tops(1)
    layer.initialize(blobs, top)
    assert top[0].shape == ()
    blobs[1].reshape((5,) + blobs[1].shape[1:])
    with pytest.raises(PclError):
        layer.reshape(blobs, top)


@pytest.mark.parametrize("text", ['type: "EuclideanLoss"', 'type: "SoftmaxWithLoss"'])
def test_loss_blob_counts(text):
    with pytest.raises(PclError, match="exactly 2 bottom"):
        make_layer(text).initialize([gaussian_blob((2, 3))], empty_tops(1))


@pytest.mark.parametrize("text,label_shape", [
    ('type: "EuclideanLoss"', (0, 3)),
    ('type: "HingeLoss"', (0,)),
    ('type: "MultinomialLogisticLoss"', (0,)),
])
def test_an_empty_batch_is_refused_by_losses_that_average_over_it(text, label_shape):
    layer = make_layer(text)
    bottom = [Blob((0, 3), dtype=np.float64), Blob(label_shape, dtype=np.float64)]
    with pytest.raises(PclError, match=r"the batch is empty \(bottom shape \(0, 3\)\)"):
        layer.initialize(bottom, empty_tops(1, np.float64))


def test_softmax_loss_of_an_empty_batch_is_zero_as_in_caffe():
    """Its normaliser is at least 1 (Caffe's), so no item means no loss."""
    _, top, bottom = run('type: "SoftmaxWithLoss"', [np.zeros((0, 3)), np.zeros((0,))])
    assert float(top[0].data) == 0 and bottom[0].diff.shape == (0, 3)
