"""Eltwise: element-wise product, weighted sum or maximum of several same-shaped bottoms."""
import numpy as np

from ..blob import Blob
from ..proto import caffe_pb2
from . import register
from .base import Layer

_OP = caffe_pb2.EltwiseParameter


@register("Eltwise")
class EltwiseLayer(Layer):
    """Combines K >= 2 bottoms x_1..x_K of one shape into a top of that shape.

    PROD:  y = x_1 * x_2 * ... * x_K
           dx_i = dy * prod_{j != i} x_j   (stable_prod_grad, the default)
           dx_i = dy * y / x_i             (stable_prod_grad: false; undefined where x_i = 0)
    SUM:   y = sum_i c_i x_i, with one `coeff` c_i per bottom (all 1 if none given); dx_i = c_i dy
    MAX:   y = max_i x_i; a mask records which bottom won (ties go to bottom 1 over bottom 0, and to
           the earlier bottom among the rest) and dx_i = dy where bottom i won, else 0.
    """

    min_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.param.eltwise_param
        self.op = param.operation
        coeffs = list(param.coeff)
        if coeffs and len(coeffs) != len(bottom):
            raise self.error(f"eltwise_param has {len(coeffs)} coeff values for {len(bottom)} "
                             "bottoms; give one coeff per bottom or none")
        if coeffs and self.op == _OP.PROD:
            raise self.error("eltwise_param.coeff only applies to operation SUM; remove the coeff "
                             "values or use SUM")
        self.coeffs = [self.dtype.type(c) for c in coeffs] or [self.dtype.type(1)] * len(bottom)
        self.stable_prod_grad = param.stable_prod_grad
        self.max_index = Blob((), dtype=np.int32) if self.op == _OP.MAX else None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        for i, blob in enumerate(bottom[1:], start=1):
            if blob.shape != shape:
                raise self.error(f"bottom {i} has shape {blob.shape} but bottom 0 has shape "
                                 f"{shape}; all bottoms must have the same shape")
        top[0].reshape(shape)
        if self.max_index is not None:
            self.max_index.reshape(shape)

    def forward(self, bottom, top):
        xp = self.xp
        out = top[0].write_data()
        data = [b.read_data() for b in bottom]
        if self.op == _OP.PROD:
            xp.multiply(data[0], data[1], out=out)
            for x in data[2:]:
                out *= x
        elif self.op == _OP.SUM:
            xp.multiply(data[0], self.coeffs[0], out=out)
            for x, c in zip(data[1:], self.coeffs[1:]):
                out += c * x
        else:
            mask = self.max_index.write_data()
            first_wins = data[0] > data[1]
            out[...] = xp.where(first_wins, data[0], data[1])
            mask[...] = xp.where(first_wins, 0, 1)
            for i, x in enumerate(data[2:], start=2):
                wins = x > out
                out[wins] = x[wins]
                mask[wins] = i

    def backward(self, top, propagate_down, bottom):
        xp = self.xp
        top_diff = top[0].read_diff()
        for i, (blob, down) in enumerate(zip(bottom, propagate_down)):
            if not down:
                continue
            diff = blob.write_diff()
            if self.op == _OP.PROD:
                if self.stable_prod_grad:
                    others = [b.read_data() for j, b in enumerate(bottom) if j != i]
                    diff[...] = others[0]
                    for x in others[1:]:
                        diff *= x
                else:
                    xp.divide(top[0].read_data(), blob.read_data(), out=diff)
                diff *= top_diff
            elif self.op == _OP.SUM:
                xp.multiply(top_diff, self.coeffs[i], out=diff)
            else:
                diff[...] = xp.where(self.max_index.read_data() == i, top_diff, 0)
