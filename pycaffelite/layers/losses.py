"""Loss layers: a prediction bottom and a target bottom in, a scalar loss (shape ()) out.

Each loss top has loss weight 1 unless the prototxt says otherwise; backward scales the bottom
gradients by that weight (the top's diff). Labels are class indices stored as floats and truncated
to integers, as Caffe's cast does. Gradients never flow into label inputs: asking for one is an
error, as in Caffe.

Normalization (loss_param.normalization) divides the summed loss by
  FULL        every output location (outer x inner, whatever the labels)
  VALID       the locations whose label is not ignore_label (the default)
  BATCH_SIZE  the batch size (outer)
  NONE        1
and never by less than 1. The legacy `normalize: true/false` means VALID/BATCH_SIZE when
`normalization` is not set.
"""
import numpy as np

from ..errors import PclError
from ..io.protoio import read_blob_proto
from ..proto import caffe_pb2
from . import register
from .base import LossLayer

_MODES = caffe_pb2.LossParameter
FLT_MIN = float(np.finfo(np.float32).tiny)  # SoftmaxWithLoss clamps probabilities here before log
LOG_THRESHOLD = 1e-20                        # InfogainLoss and MultinomialLogisticLoss clamp here


# -- shared helpers -------------------------------------------------------------------------------

def _normalization(loss_param, default):
    """The normalization mode: `normalization` if set, else legacy `normalize`, else `default`."""
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    if loss_param.HasField("normalize"):
        return _MODES.VALID if loss_param.normalize else _MODES.BATCH_SIZE
    return default


def _normalizer(mode, outer, inner, valid=None):
    """The divisor for the summed loss; `valid` is the mask of counted locations (None: all)."""
    if mode == _MODES.FULL:
        n = outer * inner
    elif mode == _MODES.VALID:
        n = outer * inner if valid is None else int(valid.sum())
    elif mode == _MODES.BATCH_SIZE:
        n = outer
    else:
        n = 1
    return float(max(1, n))


def _ignore_label(loss_param):
    return loss_param.ignore_label if loss_param.HasField("ignore_label") else None


def _batch_size(layer, blob):
    """The number of items a loss averages over (axis 0); an empty batch is refused (Caffe would
    divide by zero and train on NaN)."""
    if blob.num_axes == 0:
        raise layer.error("the prediction bottom must have a batch axis, found a scalar blob")
    if blob.shape[0] == 0:
        raise layer.error(f"the batch is empty (bottom shape {blob.shape}): a loss over no items "
                          f"is undefined; give the net at least one item")
    return blob.shape[0]


def _items_with_one_label_each(layer, bottom):
    """(N, K): N items of K values in bottom[0], checked against one label per item in bottom[1]."""
    num = _batch_size(layer, bottom[0])
    if bottom[1].count != num:
        raise layer.error(f"expected one label per item ({num}), found {bottom[1].count} labels "
                          f"(shape {bottom[1].shape})")
    return num, bottom[0].count(1)


def read_labels(layer, blob, shape, num_classes, ignore_label):
    """Class indices from a label blob as an int array of `shape`, and the mask of the entries
    that count (label != ignore_label). Ignored entries read as 0 so they can index safely.

    A counted label outside 0..num_classes-1 is a clear error naming the label.
    """
    xp = layer.xp
    labels = blob.read_data().reshape(shape).astype(xp.int64)
    if ignore_label is None:
        valid = xp.ones(shape, dtype=bool)
    else:
        valid = labels != ignore_label
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        value = int(labels[bad][0])
        ignored = f" (or ignore_label {ignore_label})" if ignore_label is not None else ""
        raise layer.error(f"label {value} is out of range for {num_classes} classes: labels must "
                          f"be integers in 0..{num_classes - 1}{ignored}; check the label data "
                          f"and the number of outputs of the layer that feeds this loss")
    return xp.where(valid, labels, 0), valid


def _refuse_label_gradient(layer, propagate_down, first_label_bottom=1):
    if any(propagate_down[first_label_bottom:]):
        raise layer.error("cannot backpropagate to its label input(s); only the prediction "
                          "(bottom 0) gets a gradient")


def _softmax(xp, x):
    """Softmax over axis 1 of x (outer, classes, inner), shifted by the maximum as Caffe does."""
    e = xp.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _SoftmaxLoss(LossLayer):
    """Shared part of SoftmaxWithLoss and InfogainLoss: softmax over the class axis, labels of
    shape outer x inner, and an optional top 1 with the probabilities."""

    exact_num_top = None
    min_top = 1
    max_top = 2

    def class_axis(self):
        raise NotImplementedError

    def setup(self, bottom, top):
        self.ignore_label = _ignore_label(self.param.loss_param)
        self._prob = self.make_blob(bottom[0].shape)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        x = bottom[0]
        axis = self.canonical_axis(x, self.class_axis(), "the class axis")
        self.outer, self.classes, self.inner = x.count(0, axis), x.shape[axis], x.count(axis + 1)
        if self.outer * self.inner != bottom[1].count:
            raise self.error(
                f"expected one label per prediction, i.e. {self.outer * self.inner} labels for "
                f"predictions of shape {x.shape} with classes on axis {axis}, but the label blob "
                f"holds {bottom[1].count}")
        self._prob.reshape(x.shape)
        if len(top) > 1:
            top[1].reshape(x.shape)

    def softmax_forward(self, bottom, top):
        """Compute, keep and (for top 1) publish the probabilities, shaped (outer, classes, inner)."""
        x = bottom[0].read_data().reshape(self.outer, self.classes, self.inner)
        prob = _softmax(self.xp, x)
        self._prob.write_data()[...] = prob.reshape(bottom[0].shape)
        if len(top) > 1:
            top[1].write_data()[...] = prob.reshape(bottom[0].shape)
        return prob

    def labels(self, bottom):
        return read_labels(self, bottom[1], (self.outer, self.inner), self.classes, self.ignore_label)


# -- the layers -----------------------------------------------------------------------------------

@register("SoftmaxWithLoss")
class SoftmaxWithLossLayer(_SoftmaxLoss):
    """Multinomial logistic loss of the softmax of the scores:
    E = -1/norm * sum over counted locations of log(max(p[label], FLT_MIN)),
    p = softmax of bottom 0 over softmax_param.axis (default 1).

    Bottoms: scores (outer, C, inner...), labels with outer * inner entries in 0..C-1 (or
    loss_param.ignore_label). Tops: the loss; optionally the probabilities (shape of bottom 0).
    Gradient: (p - onehot(label)) * loss_weight / norm, zero at ignored locations.
    """

    def class_axis(self):
        return self.param.softmax_param.axis

    def setup(self, bottom, top):
        super().setup(bottom, top)
        self.normalization = _normalization(self.param.loss_param, _MODES.VALID)

    def forward(self, bottom, top):
        xp = self.xp
        prob = self.softmax_forward(bottom, top)
        self._labels, self._valid = self.labels(bottom)
        p = xp.take_along_axis(prob, self._labels[:, None, :], axis=1)[:, 0, :]
        loss = -xp.where(self._valid, xp.log(xp.maximum(p, FLT_MIN)), 0).sum()
        self._normalizer = _normalizer(self.normalization, self.outer, self.inner, self._valid)
        top[0].write_data()[...] = loss / self._normalizer

    def backward(self, top, propagate_down, bottom):
        _refuse_label_gradient(self, propagate_down)
        if not propagate_down[0]:
            return
        xp = self.xp
        prob = self._prob.read_data().reshape(self.outer, self.classes, self.inner)
        onehot = xp.arange(self.classes)[None, :, None] == self._labels[:, None, :]
        diff = xp.where(self._valid[:, None, :], prob - onehot, 0)
        scale = top[0].read_diff() / self._normalizer
        bottom[0].write_diff()[...] = (diff * scale).reshape(bottom[0].shape)


@register("InfogainLoss")
class InfogainLossLayer(_SoftmaxLoss):
    """Infogain loss: SoftmaxWithLoss weighted by an infogain matrix H (C x C):
    E = -1/norm * sum over counted locations of sum_l H[label, l] * log(max(p_l, 1e-20)),
    p = softmax of bottom 0 over infogain_loss_param.axis (default 1). H = identity gives
    SoftmaxWithLoss (up to the clamp).

    Bottoms: scores (outer, C, inner...), labels (outer * inner entries), and optionally H
    (C * C values); without a third bottom H is read from the BlobProto file
    infogain_loss_param.source. Tops: the loss; optionally the probabilities.
    Gradient: (p_l * sum_k H[label, k] - H[label, l]) * loss_weight / norm.
    The legacy loss_param.normalize is refused, as in Caffe.
    """

    exact_num_bottom = None
    min_bottom = 2
    max_bottom = 3

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def class_axis(self):
        return self.param.infogain_loss_param.axis

    def setup(self, bottom, top):
        super().setup(bottom, top)
        loss_param = self.param.loss_param
        if loss_param.HasField("normalize"):
            raise self.error("loss_param.normalize is not supported here; use "
                             "loss_param.normalization (FULL, VALID, BATCH_SIZE or NONE)")
        self.normalization = loss_param.normalization
        self._infogain = None
        if len(bottom) < 3:
            self._infogain = self._read_infogain()

    def _read_infogain(self):
        source = self.param.infogain_loss_param.source
        if not source:
            raise self.error("needs the infogain matrix H: give infogain_loss_param.source (a "
                             ".binaryproto file) or H as a third bottom")
        try:
            proto = read_blob_proto(source)
        except PclError as exc:
            raise self.error(f"infogain_loss_param.source: {exc}") from None
        blob = self.make_blob(())
        try:
            blob.from_proto(proto)
        except PclError as exc:
            raise self.error(f"infogain matrix {source}: {exc}") from None
        return blob

    def _matrix(self, bottom):
        return (bottom[2] if len(bottom) > 2 else self._infogain).read_data().reshape(
            self.classes, self.classes)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        h = bottom[2] if len(bottom) > 2 else self._infogain
        if h.count != self.classes * self.classes:
            raise self.error(f"the infogain matrix H must be {self.classes} x {self.classes} for "
                             f"{self.classes} classes, but it holds {h.count} values (shape {h.shape})")

    def forward(self, bottom, top):
        xp = self.xp
        prob = self.softmax_forward(bottom, top)
        self._labels, self._valid = self.labels(bottom)
        rows = self._matrix(bottom)[self._labels]                  # (outer, inner, C)
        log_p = xp.log(xp.maximum(prob, LOG_THRESHOLD))           # (outer, C, inner)
        per_location = (rows * log_p.transpose(0, 2, 1)).sum(axis=2)
        loss = -xp.where(self._valid, per_location, 0).sum()
        self._normalizer = _normalizer(self.normalization, self.outer, self.inner, self._valid)
        top[0].write_data()[...] = loss / self._normalizer

    def backward(self, top, propagate_down, bottom):
        _refuse_label_gradient(self, propagate_down)
        if not propagate_down[0]:
            return
        xp = self.xp
        h = self._matrix(bottom)
        prob = self._prob.read_data().reshape(self.outer, self.classes, self.inner)
        row_sums = h.sum(axis=1)[self._labels]                     # (outer, inner)
        diff = prob * row_sums[:, None, :] - h[self._labels].transpose(0, 2, 1)
        diff = xp.where(self._valid[:, None, :], diff, 0)
        scale = top[0].read_diff() / self._normalizer
        bottom[0].write_diff()[...] = (diff * scale).reshape(bottom[0].shape)


@register("EuclideanLoss")
class EuclideanLossLayer(LossLayer):
    """E = 1/(2N) * sum (a - b)^2 over all elements; N = the batch size (axis 0).

    Bottoms: a and b with the same number N and the same count per item (shapes may differ).
    Gradients go to both: dE/da = loss_weight/N * (a - b), dE/db = -dE/da.
    """

    def allow_force_backward(self, bottom_index):
        return True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num = _batch_size(self, bottom[0])
        if bottom[0].count(1) != bottom[1].count(1):
            raise self.error(f"the two bottoms must hold the same number of values per item: "
                             f"{bottom[0].shape} vs {bottom[1].shape}")

    def forward(self, bottom, top):
        a = bottom[0].read_data()
        self._diff = a - bottom[1].read_data().reshape(a.shape)
        top[0].write_data()[...] = (self._diff * self._diff).sum() / self.num / 2

    def backward(self, top, propagate_down, bottom):
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = top[0].read_diff() * (sign / self.num)
                bottom[i].write_diff()[...] = (alpha * self._diff).reshape(bottom[i].shape)


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossLayer(LossLayer):
    """Cross entropy of sigmoid(x) against targets t in [0, 1], computed stably from x:
    E = 1/norm * sum over counted elements of x * ((x >= 0) - t) + log(1 + exp(-|x|)).

    Bottoms: scores x and targets t with the same count. Elements whose target (as an integer)
    equals loss_param.ignore_label are skipped. Without loss_param.normalization (and without the
    legacy `normalize`) the loss is divided by the batch size, not VALID: Caffe keeps that default
    for this layer for backward compatibility.
    Gradient: (sigmoid(x) - t) * loss_weight / norm, zero at ignored elements.
    """

    def setup(self, bottom, top):
        loss_param = self.param.loss_param
        self.ignore_label = _ignore_label(loss_param)
        self.normalization = _normalization(loss_param, _MODES.BATCH_SIZE)
        self._sigmoid = self.make_blob(bottom[0].shape)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.outer = _batch_size(self, bottom[0])
        self.inner = bottom[0].count(1)
        if bottom[0].count != bottom[1].count:
            raise self.error(f"scores and targets must have the same count: {bottom[0].shape} "
                             f"({bottom[0].count}) vs {bottom[1].shape} ({bottom[1].count})")
        self._sigmoid.reshape(bottom[0].shape)

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data()
        t = bottom[1].read_data().reshape(x.shape)
        self._sigmoid.write_data()[...] = 0.5 * xp.tanh(0.5 * x) + 0.5
        per_element = x * ((x >= 0) - t) + xp.log1p(xp.exp(-xp.abs(x)))
        self._valid = None
        if self.ignore_label is not None:
            self._valid = t.astype(xp.int64) != self.ignore_label
            per_element = xp.where(self._valid, per_element, 0)
        self._normalizer = _normalizer(self.normalization, self.outer, self.inner, self._valid)
        top[0].write_data()[...] = per_element.sum() / self._normalizer

    def backward(self, top, propagate_down, bottom):
        _refuse_label_gradient(self, propagate_down)
        if not propagate_down[0]:
            return
        xp = self.xp
        diff = self._sigmoid.read_data() - bottom[1].read_data().reshape(bottom[0].shape)
        if self._valid is not None:
            diff = xp.where(self._valid, diff, 0)
        bottom[0].write_diff()[...] = diff * (top[0].read_diff() / self._normalizer)


@register("HingeLoss")
class HingeLossLayer(LossLayer):
    """One-vs-all hinge loss for N items with K scores each and one class label per item:
    m_k = max(0, 1 - d_k * x_k) with d_k = +1 for the labelled class k = l, -1 otherwise;
    E = 1/N * sum m_k (hinge_loss_param.norm L1, the default) or 1/N * sum m_k^2 (L2).

    Bottoms: scores (N, ...) with K = count / N; labels with N entries in 0..K-1.
    Gradient: -d_k * loss_weight/N * (1 where m_k > 0 for L1; 2 m_k for L2).
    """

    def setup(self, bottom, top):
        self.l2 = self.param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num, self.dim = _items_with_one_label_each(self, bottom)

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data().reshape(self.num, self.dim)
        labels, _ = read_labels(self, bottom[1], (self.num,), self.dim, None)
        self._is_label = xp.arange(self.dim)[None, :] == labels[:, None]
        self._margin = xp.maximum(0, 1 + xp.where(self._is_label, -x, x))
        total = (self._margin * self._margin).sum() if self.l2 else self._margin.sum()
        top[0].write_data()[...] = total / self.num

    def backward(self, top, propagate_down, bottom):
        _refuse_label_gradient(self, propagate_down)
        if not propagate_down[0]:
            return
        xp = self.xp
        grad = 2 * self._margin if self.l2 else xp.sign(self._margin)
        grad = xp.where(self._is_label, -grad, grad)
        scale = top[0].read_diff() / self.num
        bottom[0].write_diff()[...] = (grad * scale).reshape(bottom[0].shape)


@register("ContrastiveLoss")
class ContrastiveLossLayer(LossLayer):
    """Contrastive loss for N pairs of feature vectors a_n, b_n (C values each) with a similarity
    label y_n (similar when int(y_n) != 0), d_n = ||a_n - b_n||:
    E = 1/(2N) * sum_n [ d_n^2 if similar, else max(margin - d_n, 0)^2 ]
    or, with contrastive_loss_param.legacy_version, max(margin - d_n^2, 0) for dissimilar pairs.
    margin defaults to 1.

    Bottoms: a (N, C[, 1, 1]), b (N, C[, 1, 1]), y (N entries). Gradients go to a and b (Caffe's
    non-legacy form divides by d_n + 1e-4, which is kept); y gets none.
    """

    exact_num_bottom = 3

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def setup(self, bottom, top):
        p = self.param.contrastive_loss_param
        self.margin = float(p.margin)
        self.legacy = p.legacy_version

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        a, b, y = bottom
        self.num = _batch_size(self, a)
        for name, blob in (("a (bottom 0)", a), ("b (bottom 1)", b)):
            if blob.num_axes < 2 or blob.count(2) != 1:
                raise self.error(f"{name} must be N x C (or N x C x 1 x 1), found shape {blob.shape}")
        if a.shape[1] != b.shape[1]:
            raise self.error(f"a and b must have the same number of channels: {a.shape} vs {b.shape}")
        if y.count != self.num:
            raise self.error(f"expected one similarity label per pair ({self.num}), found {y.count} "
                             f"(shape {y.shape})")

    def forward(self, bottom, top):
        xp = self.xp
        self._diff = bottom[0].read_data().reshape(self.num, -1) - \
            bottom[1].read_data().reshape(self.num, -1)
        self._dist_sq = (self._diff * self._diff).sum(axis=1)
        self._similar = bottom[2].read_data().reshape(self.num).astype(xp.int64) != 0
        if self.legacy:
            dissimilar = xp.maximum(self.margin - self._dist_sq, 0)
        else:
            dissimilar = xp.maximum(self.margin - xp.sqrt(self._dist_sq), 0) ** 2
        loss = xp.where(self._similar, self._dist_sq, dissimilar).sum()
        top[0].write_data()[...] = loss / self.num / 2

    def backward(self, top, propagate_down, bottom):
        xp = self.xp
        for i, sign in ((0, 1.0), (1, -1.0)):
            if not propagate_down[i]:
                continue
            alpha = top[0].read_diff() * (sign / self.num)
            if self.legacy:
                short = self.margin - self._dist_sq
                beta = -alpha
            else:
                dist = xp.sqrt(self._dist_sq)
                short = self.margin - dist
                beta = -alpha * short / (dist + 1e-4)
            coefficient = xp.where(self._similar, alpha, xp.where(short > 0, beta, 0))
            bottom[i].write_diff()[...] = (coefficient[:, None] * self._diff).reshape(bottom[i].shape)


@register("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(LossLayer):
    """E = -1/N * sum_n log(max(p_n[label_n], 1e-20)) for probabilities p (e.g. a Softmax output).

    Bottoms: probabilities (N, ...) with K = count / N per item; labels with N entries in 0..K-1.
    Gradient: -loss_weight/N / max(p_n[label_n], 1e-20) at the labelled entry, 0 elsewhere.
    """

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num, self.dim = _items_with_one_label_each(self, bottom)

    def forward(self, bottom, top):
        xp = self.xp
        prob = bottom[0].read_data().reshape(self.num, self.dim)
        self._labels, _ = read_labels(self, bottom[1], (self.num,), self.dim, None)
        picked = xp.take_along_axis(prob, self._labels[:, None], axis=1)[:, 0]
        self._picked = xp.maximum(picked, LOG_THRESHOLD)
        top[0].write_data()[...] = -xp.log(self._picked).sum() / self.num

    def backward(self, top, propagate_down, bottom):
        _refuse_label_gradient(self, propagate_down)
        if not propagate_down[0]:
            return
        xp = self.xp
        is_label = xp.arange(self.dim)[None, :] == self._labels[:, None]
        scale = top[0].read_diff() * (-1.0 / self.num)
        diff = xp.where(is_label, (scale / self._picked)[:, None], 0)
        bottom[0].write_diff()[...] = diff.reshape(bottom[0].shape)
