"""Embed: a lookup table of learned vectors, indexed by integer ids."""
import numpy as np

from . import register
from .base import Layer


def _scatter_add_rows(xp, target, rows, values):
    """target[rows[j]] += values[j] for every j, adding up repeated rows."""
    if xp is np:
        np.add.at(target, rows, values)
    else:
        import cupyx  # noqa: PLC0415 - only in GPU mode

        cupyx.scatter_add(target, rows, values)


@register("Embed")
class EmbedLayer(Layer):
    """Embedding lookup: each bottom value is an index i in [0, input_dim) (an integer stored as a
    float), replaced by row i of the weight W (input_dim x num_output), plus the bias b.

        top[..., :] = W[bottom[...], :] + b

    bottom: any shape S of indices      top: S + (num_output,)
    params: W (input_dim, num_output), and b (num_output,) unless `bias_term: false`.

    Backward: dW[i] += the top diffs of every position holding index i; db += their sum over all
    positions. There is no gradient with respect to the indices: asking for one is an error.
    """

    exact_num_bottom = 1
    exact_num_top = 1
    allows_in_place = False

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self, bottom, top):
        p = self.param.embed_param
        if p.num_output <= 0:
            raise self.error("needs embed_param { num_output: N } with N > 0, found none; "
                             "give the length of the embedded vectors")
        if p.input_dim <= 0:
            raise self.error("needs embed_param { input_dim: K } with K > 0, found none; "
                             "give the vocabulary size (largest index + 1)")
        self.num_output = p.num_output
        self.input_dim = p.input_dim
        self.bias_term = p.bias_term
        self.add_param_blob((self.input_dim, self.num_output), p.weight_filler)
        if self.bias_term:
            self.add_param_blob((self.num_output,), p.bias_filler)

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, values):
        """The bottom values as integer indices; a clear error for non-integers or out of range."""
        xp = self.xp
        non_integer = xp.floor(values) != values
        if bool(non_integer.any()):
            found = float(values[non_integer].ravel()[0])
            raise self.error(f"the bottom must hold integer indices, found {found:g}; "
                             f"feed whole numbers in [0, {self.input_dim})")
        out_of_range = (values < 0) | (values >= self.input_dim)
        if bool(out_of_range.any()):
            found = float(values[out_of_range].ravel()[0])
            raise self.error(f"index {found:g} is out of range for input_dim {self.input_dim}; "
                             f"indices must lie in [0, {self.input_dim}): raise input_dim or fix "
                             f"the data")
        return values.astype(xp.int64)

    def forward(self, bottom, top):
        indices = self._indices(bottom[0].read_data())
        y = top[0].write_data()
        y[...] = self.blobs[0].read_data()[indices]
        if self.bias_term:
            y += self.blobs[1].read_data()

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise self.error("cannot backpropagate to its bottom, which holds indices; "
                             "do not ask for a gradient of the Embed input (e.g. force_backward)")
        dy = top[0].read_diff().reshape(-1, self.num_output)
        if self.param_propagate_down[0]:
            indices = self._indices(bottom[0].read_data()).reshape(-1)
            _scatter_add_rows(self.xp, self.blobs[0].write_diff(), indices, dy)
        if self.bias_term and self.param_propagate_down[1]:
            db = self.blobs[1].write_diff()
            db += dy.sum(axis=0)
