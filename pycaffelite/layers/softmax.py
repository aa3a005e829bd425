"""Softmax along one axis."""
from . import register
from .base import Layer


@register("Softmax")
class SoftmaxLayer(Layer):
    """top = exp(x - max(x)) / sum(exp(x - max(x))), max and sum taken along `axis` (default 1,
    negative counts from the end) separately for every position of the other axes. Subtracting
    the max keeps exp from overflowing and does not change the result.

    Backward, with y = top: dbottom = (dtop - sum(dtop * y)) * y, the sum along `axis` (as in
    Caffe it reads the top data, so a later in-place layer must not change it).

    bottom: any shape with the axis      top: the same shape; in place allowed.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        axis = self.canonical_axis(bottom[0], self.param.softmax_param.axis, "softmax_param.axis")
        b = bottom[0]
        self.view = (b.count(0, axis), b.shape[axis], b.count(axis + 1))
        top[0].reshape(b.shape)

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data().reshape(self.view)
        e = xp.exp(x - x.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        top[0].write_data()[...] = e.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        y = top[0].read_data().reshape(self.view)
        dy = top[0].read_diff().reshape(self.view)
        dx = (dy - (dy * y).sum(axis=1, keepdims=True)) * y
        bottom[0].write_diff()[...] = dx.reshape(bottom[0].shape)
