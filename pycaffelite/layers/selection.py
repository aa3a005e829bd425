"""Layers that pick items or positions: Filter, BatchReindex, ArgMax."""
import numpy as np

from . import register
from .base import Layer


@register("Filter")
class FilterLayer(Layer):
    """Keeps the items (first-axis rows) whose selector value is non-zero.

    bottom: x_1 .. x_K, each (N, ...), then the selector s of shape (N,) or (N, 1, ..., 1)
    top:    K blobs (S, ...) with the rows n of x_k where s[n] != 0, in order (S may be 0)
    Backward copies each top row's diff back to its row and zeroes the rows that were dropped;
    no gradient flows to the selector. As in Caffe, the first reshape (at set-up) gives the tops
    all N rows, so later layers can be set up before any selector value is known; every forward
    reshapes the tops to the selected rows.
    """

    reshape_every_pass = True  # the tops follow the selector's values
    min_bottom = 2
    min_top = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index != len(self.param.bottom) - 1

    def setup(self, bottom, top):
        if len(top) != len(bottom) - 1:
            raise self.error(f"has {len(bottom)} bottoms and {len(top)} tops; give one top per "
                             "bottom to filter (every bottom but the last, the selector)")
        self.first_reshape = True

    def _select(self, bottom):
        selector = bottom[-1]
        if not selector.num_axes or any(d != 1 for d in selector.shape[1:]):
            raise self.error(f"the selector (last bottom) has shape {selector.shape}; it must be "
                             "(N,) or (N, 1, ..., 1)")
        num = selector.shape[0]
        for i, blob in enumerate(bottom[:-1]):
            if not blob.num_axes or blob.shape[0] != num:
                raise self.error(f"bottom {i} has shape {blob.shape} but the selector has {num} "
                                 "items; each bottom needs the same first dimension as the selector")
        self.indices = np.flatnonzero(selector.cpu_data().reshape(-1))

    def _shape_tops(self, bottom, top, rows):
        for src, dst in zip(bottom, top):
            dst.reshape((rows,) + src.shape[1:])

    def reshape(self, bottom, top):
        self._select(bottom)
        rows = bottom[0].shape[0] if self.first_reshape else len(self.indices)
        self.first_reshape = False
        self._shape_tops(bottom, top, rows)

    def forward(self, bottom, top):
        self._select(bottom)
        self._shape_tops(bottom, top, len(self.indices))
        if not len(self.indices):
            return
        index = self.xp.asarray(self.indices)
        for src, dst in zip(bottom, top):
            dst.write_data()[...] = src.read_data()[index]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[-1]:
            raise self.error("cannot back-propagate to the selector (last bottom); it must not "
                             "depend on anything that needs a gradient")
        index = self.xp.asarray(self.indices)
        for src, dst, down in zip(top, bottom, propagate_down):
            if down:
                diff = dst.write_diff()
                diff[...] = 0
                if len(self.indices):
                    diff[index] = src.read_diff()


@register("BatchReindex")
class BatchReindexLayer(Layer):
    """Gathers first-axis rows by index: y[m] = x[idx[m]] (select, reorder or repeat items).

    bottom: x (N, ...), idx (M,) holding indices in [0, N) (cast to int by truncation)
    top:    y (M, ...)
    Backward: dx[n] = sum of dy[m] over all m with idx[m] = n (0 for rows never picked); no
    gradient to idx.
    """

    exact_num_bottom = 2
    exact_num_top = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def reshape(self, bottom, top):
        if bottom[1].num_axes != 1:
            raise self.error(f"the index bottom has shape {bottom[1].shape}; it must be 1-D (M,)")
        if not bottom[0].num_axes:
            raise self.error("the data bottom is a scalar; it needs a first (batch) axis to index")
        top[0].reshape(bottom[1].shape[:1] + bottom[0].shape[1:])

    def _indices(self, bottom):
        xp = self.xp
        raw = bottom[1].read_data()
        num = bottom[0].shape[0]
        if bool(xp.any(~((raw >= 0) & (raw < num)))):
            host = bottom[1].cpu_data()
            bad = host[~((host >= 0) & (host < num))][0]
            raise self.error(f"index {bad:g} is outside the batch of {num} items; indices must "
                             f"be in [0, {num})")
        return raw.astype(np.int64)

    def forward(self, bottom, top):
        index = self._indices(bottom)
        if top[0].count:
            self.xp.take(bottom[0].read_data(), index, axis=0, out=top[0].write_data())

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self.error("cannot back-propagate to the index bottom; it must not depend on "
                             "anything that needs a gradient")
        if not propagate_down[0]:
            return
        diff = bottom[0].write_diff()
        diff[...] = 0
        self.xp.add.at(diff, self._indices(bottom), top[0].read_diff())


@register("ArgMax")
class ArgMaxLayer(Layer):
    """Indices (and optionally values) of the top_k largest entries.

    Without `axis`: over each item's flattened entries x[n, :]; top (N, 1, top_k) holding the
    indices, or (N, 2, top_k) with out_max_val (indices, then values); extra trailing axes of 1
    keep at least 3 axes.
    With `axis`: along that axis; top = bottom shape with top_k along it, holding the indices, or
    the values with out_max_val.
    Order: largest value first; among equal values the larger index comes first (Caffe's
    descending sort of (value, index) pairs). Indices are written as floats. No backward.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.param.argmax_param
        self.top_k = param.top_k
        self.out_max_val = param.out_max_val
        self.axis = None
        if self.top_k < 1:
            raise self.error("argmax_param.top_k must be at least 1")

    def reshape(self, bottom, top):
        param = self.param.argmax_param
        shape = bottom[0].shape
        if param.HasField("axis"):
            self.axis = self.canonical_axis(bottom[0], param.axis, "argmax_param.axis")
            if self.top_k > shape[self.axis]:
                raise self.error(f"top_k {self.top_k} exceeds the size {shape[self.axis]} of axis "
                                 f"{self.axis} of the bottom {shape}")
            top[0].reshape(shape[:self.axis] + (self.top_k,) + shape[self.axis + 1:])
            return
        if not shape:
            raise self.error("the bottom is a scalar; ArgMax needs a first (batch) axis")
        if self.top_k > bottom[0].count(1):
            raise self.error(f"top_k {self.top_k} exceeds the {bottom[0].count(1)} entries per "
                             f"item of the bottom {shape}")
        top_shape = [shape[0], 2 if self.out_max_val else 1, self.top_k]
        top_shape += [1] * (len(shape) - 3)
        top[0].reshape(top_shape)

    def forward(self, bottom, top):
        xp = self.xp
        data = bottom[0].read_data()
        if self.axis is None:
            values = data.reshape(data.shape[0], -1)
        else:
            values = xp.moveaxis(data, self.axis, -1)
        dim = values.shape[-1]
        # Working on the reversed entries puts, among equal values, the larger original index
        # first: argmax takes the first maximum, and a stable ascending sort of -x keeps order.
        reversed_values = values[..., ::-1]
        if self.top_k == 1:
            order = xp.argmax(reversed_values, axis=-1)[..., None]
        else:
            order = xp.argsort(-reversed_values, axis=-1, kind="stable")[..., :self.top_k]
        index = (dim - 1) - order
        out = top[0].write_data()
        if self.axis is None:
            out = out.reshape(values.shape[0], -1, self.top_k)
            out[:, 0] = index
            if self.out_max_val:
                out[:, 1] = xp.take_along_axis(values, index, axis=-1)
            return
        result = xp.take_along_axis(values, index, axis=-1) if self.out_max_val else index
        out[...] = xp.moveaxis(result, -1, self.axis)
