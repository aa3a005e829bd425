"""Dropout: zero random elements at train time, scaling the kept ones."""
import numpy as np

from .. import device
from ..proto import caffe_pb2
from . import register
from .base import NeuronLayer


@register("Dropout")
class DropoutLayer(NeuronLayer):
    """Inverted dropout with p = dropout_ratio.

    TRAIN phase: each element is kept with probability 1 - p (mask = u >= p, u ~ U[0, 1) drawn
    from `pycaffelite.device.rng()`), and

        top = bottom * mask / (1 - p)          dbottom = dtop * mask / (1 - p)

    with the mask of the last forward. TEST phase: top = bottom, dbottom = dtop.
    The mask is kept as mask / (1 - p) (0 or the scale): since mask is 0 or 1, x * that equals
    Caffe's x * mask * scale exactly, in one multiplication into the top (or bottom diff).

    bottom: any shape      top: the same shape; in place allowed.
    """

    def setup(self, bottom, top):
        self.ratio = self.param.dropout_param.dropout_ratio
        if not 0 <= self.ratio < 1:
            raise self.error(f"dropout_ratio must lie in [0, 1), found {self.ratio:g}; "
                             f"give the fraction of elements to drop")
        self.scale = 1.0 / (1.0 - self.ratio)
        self.train = self.phase == caffe_pb2.TRAIN
        self.uniform = None
        self.scaled_mask = None  # host array: 0 or scale
        self.mask = None         # the same in the current mode's memory

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if self.train and (self.uniform is None or self.uniform.shape != bottom[0].shape):
            self.uniform = np.empty(bottom[0].shape, dtype=self.dtype)
            self.scaled_mask = np.empty(bottom[0].shape, dtype=self.dtype)

    def forward(self, bottom, top):
        x = bottom[0].read_data()
        if not self.train:
            if bottom[0] is not top[0]:
                top[0].write_data()[...] = x
            return
        xp = self.xp
        device.rng().random(out=self.uniform, dtype=self.dtype)
        np.greater_equal(self.uniform, self.ratio, out=self.scaled_mask)
        self.scaled_mask *= self.scale
        self.mask = xp.asarray(self.scaled_mask)
        xp.multiply(x, self.mask, out=top[0].write_data())

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].read_diff()
        dx = bottom[0].write_diff()
        if not self.train:
            if bottom[0] is not top[0]:
                dx[...] = dy
            return
        self.xp.multiply(dy, self.mask, out=dx)
