"""Softmax along one axis."""
from . import register
from .base import Layer, Workspace


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

    def setup(self, bottom, top):
        self.work = Workspace()

    def reshape(self, bottom, top):
        axis = self.canonical_axis(bottom[0], self.param.softmax_param.axis, "softmax_param.axis")
        b = bottom[0]
        self.view = (b.count(0, axis), b.shape[axis], b.count(axis + 1))
        top[0].reshape(b.shape)
        # the max, then the sum, of each softmax (one at a time: the same buffer)
        self.reduced = self.work.get(self.xp, "reduced", (self.view[0], 1, self.view[2]),
                                     self.dtype)

    def forward(self, bottom, top):
        """Written into the top (the max read before it is overwritten in place): no
        temporaries, 3 fewer allocations and a copy less than exp(x - max) / sum into it."""
        xp = self.xp
        x = bottom[0].read_data().reshape(self.view)
        y = top[0].write_data().reshape(self.view)
        reduced = self.reduced
        xp.max(x, axis=1, keepdims=True, out=reduced)
        xp.subtract(x, reduced, out=y)
        xp.exp(y, out=y)
        xp.sum(y, axis=1, keepdims=True, out=reduced)
        y /= reduced

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        y = top[0].read_data().reshape(self.view)
        dy = top[0].read_diff().reshape(self.view)
        dx = (dy - (dy * y).sum(axis=1, keepdims=True)) * y
        bottom[0].write_diff()[...] = dx.reshape(bottom[0].shape)
