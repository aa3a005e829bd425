"""Tests of the Accuracy layer."""
import numpy as np
import pytest

from layer_testing import blob_from, empty_tops, make_layer
from pycaffelite.errors import PclError

# Item 0: label 1 has the top score.                      top-1 yes
# Item 1: label 0 ties class 1 (0.3) below class 2 (0.4).  top-1 no, top-2 no (a tie counts against)
# Item 2: label 2 is second (0.3 < 0.7).                  top-1 no, top-2 yes
# Item 3: label 0 has the top score.                      top-1 yes
SCORES = [[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.2, 0.7, 0.3], [0.6, 0.2, 0.2]]
LABELS = [1, 0, 2, 0]


def accuracy(text, scores, labels, num_tops=1, dtype=np.float64):
    layer = make_layer(text, dtype)
    bottom, top = [blob_from(scores, dtype), blob_from(labels, dtype)], empty_tops(num_tops, dtype)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    return [t.data.copy() for t in top]


@pytest.mark.parametrize("top_k,expected", [(1, 0.5), (2, 0.75), (3, 1.0)])
def test_top_k(top_k, expected):
    (acc,) = accuracy(f'type: "Accuracy" accuracy_param {{ top_k: {top_k} }}', SCORES, LABELS)
    assert acc.shape == ()
    assert float(acc) == expected


def test_per_class_accuracy_top():
    acc, per_class = accuracy('type: "Accuracy"', SCORES, LABELS, num_tops=2)
    assert float(acc) == 0.5
    assert per_class.shape == (3,)
    np.testing.assert_array_equal(per_class, [0.5, 1.0, 0.0])


def test_per_class_accuracy_is_zero_for_absent_classes():
    _, per_class = accuracy('type: "Accuracy"', [[0.9, 0.1, 0.0]] * 2, [0, 0], num_tops=2)
    np.testing.assert_array_equal(per_class, [1.0, 0.0, 0.0])


def test_ignore_label_is_not_counted():
    text = 'type: "Accuracy" accuracy_param { ignore_label: -1 }'
    acc, per_class = accuracy(text, SCORES, [1, -1, 2, 0], num_tops=2)
    assert float(acc) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(per_class, [1.0, 1.0, 0.0])


def test_all_ignored_gives_zero():
    (acc,) = accuracy('type: "Accuracy" accuracy_param { ignore_label: 5 }', SCORES, [5] * 4)
    assert float(acc) == 0.0


def test_spatial_labels_and_axis():
    # (N=1, C=2, H=1, W=3): argmax per location = (1, 0, 1); labels (1, 1, 1) -> 2/3
    scores = [[[[0.1, 0.9, 0.2]], [[0.8, 0.3, 0.7]]]]
    (acc,) = accuracy('type: "Accuracy"', scores, [[[[1, 1, 1]]]])
    assert float(acc) == pytest.approx(2 / 3)
    # the same scores with classes last: (N=1, W=3, C=2), accuracy_param.axis -1
    classes_last = np.transpose(np.array(scores)[:, :, 0, :], (0, 2, 1))
    (acc,) = accuracy('type: "Accuracy" accuracy_param { axis: -1 }', classes_last, [[1, 1, 1]])
    assert float(acc) == pytest.approx(2 / 3)


def test_any_mode(any_mode):
    acc, per_class = accuracy('type: "Accuracy" accuracy_param { top_k: 2 }', SCORES, LABELS,
                              num_tops=2, dtype=np.float32)
    assert acc.dtype == np.float32
    assert float(acc) == 0.75
    np.testing.assert_array_equal(per_class, [0.5, 1.0, 1.0])


def test_has_no_backward():
    layer = make_layer('type: "Accuracy"')
    bottom, top = [blob_from(SCORES), blob_from(LABELS)], empty_tops(1)
    layer.initialize(bottom, top)
    layer.forward(bottom, top)
    layer.backward(top, [False, False], bottom)
    with pytest.raises(PclError, match="no backward"):
        layer.backward(top, [True, False], bottom)


@pytest.mark.parametrize("text,scores,labels,message", [
    ('type: "Accuracy" accuracy_param { top_k: 4 }', SCORES, LABELS, "top_k"),
    ('type: "Accuracy"', SCORES, [0, 1, 2], "4 labels"),
    ('type: "Accuracy"', SCORES, [0, 1, 3, 0], "label 3 is out of range for 3 classes"),
    ('type: "Accuracy" accuracy_param { axis: 2 }', SCORES, LABELS, "axis"),
])
def test_bad_parameters_and_shapes(text, scores, labels, message):
    with pytest.raises(PclError, match=message):
        accuracy(text, scores, labels)


def test_blob_counts():
    with pytest.raises(PclError, match="at most 2 top"):
        accuracy('type: "Accuracy"', SCORES, LABELS, num_tops=3)
