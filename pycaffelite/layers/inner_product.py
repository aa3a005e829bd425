"""InnerProduct: the fully connected layer."""
from . import register
from ..gemm import matmul
from .base import Layer, Workspace


@register("InnerProduct")
class InnerProductLayer(Layer):
    """Fully connected layer: every item is a K-vector, mapped to num_output (N) values.

    The bottom's axes from `axis` (negative counts from the end) on are flattened into one vector
    of K values; the M = product of the axes before `axis` items are independent:

        top (M x N) = bottom (M x K) . W^T + b      W stored (N, K)
        top (M x N) = bottom (M x K) . W   + b      W stored (K, N) with `transpose: true`

    bottom: (d_0, ..., d_{axis-1}, d_axis, ...)     top: (d_0, ..., d_{axis-1}, N)
    params: W, and b of shape (N,) unless `bias_term: false`.

    Backward: dW += top_diff^T . bottom (its transpose when `transpose`), db += the column sums of
    top_diff, bottom_diff = top_diff . W (W^T when `transpose`). K is fixed at setup: a later
    bottom with another K is an error. The weight gradient's product is added straight into the
    gradient (`pycaffelite.gemm.matmul` with accumulate: no product-sized buffer).
    """

    exact_num_bottom = 1
    exact_num_top = 1
    allows_in_place = False

    def setup(self, bottom, top):
        p = self.param.inner_product_param
        if p.num_output <= 0:
            raise self.error("needs inner_product_param { num_output: N } with N > 0, found none; "
                             "give the number of outputs")
        self.num_output = p.num_output
        self.bias_term = p.bias_term
        self.transpose = p.transpose
        self.k = bottom[0].count(self._axis(bottom[0]))
        weight_shape = (self.k, self.num_output) if self.transpose else (self.num_output, self.k)
        self.add_param_blob(weight_shape, p.weight_filler)
        if self.bias_term:
            self.add_param_blob((self.num_output,), p.bias_filler)
        self.work = Workspace()

    def _axis(self, blob):
        return self.canonical_axis(blob, self.param.inner_product_param.axis, "inner_product_param.axis")

    def reshape(self, bottom, top):
        axis = self._axis(bottom[0])
        k = bottom[0].count(axis)
        if k != self.k:
            raise self.error(f"the bottom {bottom[0].shape} has {k} inputs per item from axis {axis}, "
                             f"but the weights were made for {self.k}; feed inputs of the size the "
                             f"layer was set up with")
        self.m = bottom[0].count(0, axis)
        top[0].reshape(bottom[0].shape[:axis] + (self.num_output,))
        if self.bias_term:
            self._bias_sum()

    def _bias_sum(self):
        return self.work.get(self.xp, "bias_sum", (self.num_output,), self.dtype)

    def forward(self, bottom, top):
        x = bottom[0].read_data().reshape(self.m, self.k)
        w = self.blobs[0].read_data()
        y = top[0].write_data().reshape(self.m, self.num_output)
        matmul(x, w if self.transpose else w.T, y)
        if self.bias_term:
            y += self.blobs[1].read_data()

    def backward(self, top, propagate_down, bottom):
        xp = self.xp
        dy = top[0].read_diff().reshape(self.m, self.num_output)
        if self.param_propagate_down[0]:
            x = bottom[0].read_data().reshape(self.m, self.k)
            dw = self.blobs[0].write_diff()
            left, right = (x.T, dy) if self.transpose else (dy.T, x)
            matmul(left, right, dw, accumulate=True)
        if self.bias_term and self.param_propagate_down[1]:
            total = self._bias_sum()
            xp.sum(dy, axis=0, out=total)
            self.blobs[1].write_diff()[...] += total
        if propagate_down[0]:
            w = self.blobs[0].read_data()
            dx = bottom[0].write_diff().reshape(self.m, self.k)
            matmul(dy, w.T if self.transpose else w, dx)
