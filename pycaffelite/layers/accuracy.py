"""Accuracy: the share of locations whose label is among the top_k scores."""
from . import register
from .base import Layer
from .losses import read_labels


@register("Accuracy")
class AccuracyLayer(Layer):
    """Top-k classification accuracy.

    Bottoms: scores (outer, C, inner...) with the classes on accuracy_param.axis (default 1), and
    labels with outer * inner entries in 0..C-1 (or accuracy_param.ignore_label, not counted).
    A location is correct when fewer than top_k (default 1) classes score at least as high as the
    labelled one (so a tie with the labelled class counts against it).
    Tops: the accuracy, shape () (0 when no location counts); optionally the per-class accuracy,
    shape (C,) (0 for classes that do not occur). No backward pass.
    """

    exact_num_bottom = 2
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.param.accuracy_param
        self.top_k = p.top_k
        if self.top_k < 1:
            raise self.error("accuracy_param.top_k must be at least 1 (a prediction counts as right "
                             "when the label is among its top_k scores); found 0")
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None

    def reshape(self, bottom, top):
        scores, labels = bottom
        axis = self.canonical_axis(scores, self.param.accuracy_param.axis, "accuracy_param.axis")
        self.outer, self.classes = scores.count(0, axis), scores.shape[axis]
        self.inner = scores.count(axis + 1)
        if self.outer * self.inner != labels.count:
            raise self.error(
                f"expected one label per prediction, i.e. {self.outer * self.inner} labels for "
                f"scores of shape {scores.shape} with classes on axis {axis}, but the label blob "
                f"holds {labels.count}")
        if self.top_k > self.classes:
            raise self.error(f"top_k ({self.top_k}) must not exceed the number of classes "
                             f"({self.classes})")
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((self.classes,))

    def forward(self, bottom, top):
        xp = self.xp
        scores = bottom[0].read_data().reshape(self.outer, self.classes, self.inner)
        labels, valid = read_labels(self, bottom[1], (self.outer, self.inner), self.classes,
                                    self.ignore_label)
        true_score = xp.take_along_axis(scores, labels[:, None, :], axis=1)
        at_least_as_high = (scores >= true_score).sum(axis=1) - 1  # minus the labelled class
        correct = valid & (at_least_as_high < self.top_k)
        count = valid.sum()
        top[0].write_data()[...] = xp.where(count > 0, correct.sum() / xp.maximum(count, 1), 0)
        if len(top) > 1:
            flat = labels.ravel()
            seen = xp.bincount(flat, weights=valid.ravel(), minlength=self.classes)
            hits = xp.bincount(flat, weights=correct.ravel(), minlength=self.classes)
            top[1].write_data()[...] = xp.where(seen > 0, hits / xp.maximum(seen, 1), 0)
