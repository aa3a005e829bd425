"""Reduction: sum-like reductions over all axes from `axis` on."""
from ..proto import caffe_pb2
from . import register
from .base import Layer

_OP = caffe_pb2.ReductionParameter


@register("Reduction")
class ReductionLayer(Layer):
    """Reduces each item of the bottom to one number, scaled by `coeff` (default 1).

    bottom: x of shape (d_0, ..., d_{a-1}, rest...), with a = `axis` (default 0)
    top:    y of shape (d_0, ..., d_{a-1}) (a scalar for axis 0); with r over the D entries of
            the rest of item i:
      SUM:   y_i = c * sum_r x_ir               dx_ir = c dy_i
      ASUM:  y_i = c * sum_r |x_ir|             dx_ir = c sign(x_ir) dy_i   (sign(0) = 0)
      SUMSQ: y_i = c * sum_r x_ir^2             dx_ir = 2 c x_ir dy_i
      MEAN:  y_i = c / D * sum_r x_ir           dx_ir = c / D dy_i
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self.op = self.param.reduction_param.operation

    def reshape(self, bottom, top):
        param = self.param.reduction_param
        axis = self.canonical_axis(bottom[0], param.axis, "reduction_param.axis")
        top[0].reshape(bottom[0].shape[:axis])
        self.num = bottom[0].count(0, axis)
        self.dim = bottom[0].count(axis)
        self.coeff = self.dtype.type(param.coeff)
        if self.op == _OP.MEAN:
            self.coeff = self.coeff / self.dtype.type(self.dim)

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data().reshape(self.num, self.dim)
        if self.op == _OP.ASUM:
            total = xp.abs(x).sum(axis=1)
        elif self.op == _OP.SUMSQ:
            total = xp.einsum("ij,ij->i", x, x)
        else:
            total = x.sum(axis=1)
        out = top[0].write_data().reshape(self.num)
        xp.multiply(total, self.coeff, out=out)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        xp = self.xp
        scale = (top[0].read_diff().reshape(self.num, 1) * self.coeff)
        diff = bottom[0].write_diff().reshape(self.num, self.dim)
        if self.op == _OP.ASUM:
            xp.multiply(xp.sign(bottom[0].read_data().reshape(self.num, self.dim)), scale, out=diff)
        elif self.op == _OP.SUMSQ:
            xp.multiply(bottom[0].read_data().reshape(self.num, self.dim), 2 * scale, out=diff)
        else:
            diff[...] = scale
