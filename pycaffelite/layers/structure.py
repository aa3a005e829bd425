"""Layers that move data around without arithmetic on it: Concat, Slice, Split, Flatten, Reshape,
Tile.

Flatten and Reshape (and Concat/Slice with a single bottom/top) do not copy: their top shares the
bottom's data and diff memory, as in Caffe.
"""
from . import register
from .base import Layer


def proto_shape(blob_shape):
    """A BlobShape message as a tuple of ints."""
    return tuple(int(d) for d in blob_shape.dim)


def axis_slices(axis, start, stop):
    """An index that takes [start, stop) along `axis` and everything along the other axes."""
    return (slice(None),) * axis + (slice(start, stop),)


def share_memory(top, bottom):
    top.share_data(bottom)
    top.share_diff(bottom)


def legacy_or_axis(layer, bottom, param, legacy_field, what):
    """The axis a Concat/Slice works on: the legacy unsigned `*_dim` field or the `axis` field."""
    if param.HasField(legacy_field):
        dim = getattr(param, legacy_field)
        if dim >= bottom.num_axes:
            raise layer.error(f"{legacy_field} {dim} is out of range for a bottom of shape "
                              f"{bottom.shape}; give a value below {bottom.num_axes}")
        return dim
    return layer.canonical_axis(bottom, param.axis, f"{what}_param.axis")


@register("Concat")
class ConcatLayer(Layer):
    """Joins the bottoms along one axis.

    bottom: K blobs with equal shapes except along `axis` (n_1 ... n_K there)
    top:    the same shape with sum(n_k) along `axis`
    Backward copies each bottom's part of the top diff back. `axis` (default 1) or the legacy
    `concat_dim`. A single bottom is passed through by sharing memory.
    """

    min_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        param = self.param.concat_param
        if param.HasField("axis") and param.HasField("concat_dim"):
            raise self.error("concat_param sets both axis and concat_dim; keep only axis")

    def reshape(self, bottom, top):
        axis = legacy_or_axis(self, bottom[0], self.param.concat_param, "concat_dim", "concat")
        first = bottom[0].shape
        total = 0
        for i, blob in enumerate(bottom):
            other = blob.shape
            if len(other) != len(first) or other[:axis] + other[axis + 1:] != first[:axis] + first[axis + 1:]:
                raise self.error(f"bottom {i} has shape {other} but bottom 0 has shape {first}; all "
                                 f"bottoms must have the same shape except along axis {axis}")
            total += other[axis]
        self.axis = axis
        top[0].reshape(first[:axis] + (total,) + first[axis + 1:])
        if len(bottom) == 1:
            share_memory(top[0], bottom[0])

    def forward(self, bottom, top):
        if len(bottom) == 1:
            return
        self.xp.concatenate([b.read_data() for b in bottom], axis=self.axis, out=top[0].write_data())

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            return
        top_diff = top[0].read_diff()
        offset = 0
        for blob, down in zip(bottom, propagate_down):
            size = blob.shape[self.axis]
            if down:
                blob.write_diff()[...] = top_diff[axis_slices(self.axis, offset, offset + size)]
            offset += size


@register("Slice")
class SliceLayer(Layer):
    """Cuts the bottom along one axis into consecutive pieces (Concat's inverse).

    bottom: one blob with n along `axis`
    top:    K blobs; the cuts are at `slice_point` (K - 1 increasing values), or, without slice
            points, K equal pieces (n must be divisible by K)
    `axis` (default 1) or the legacy `slice_dim`. A single top is passed through by sharing memory.
    """

    exact_num_bottom = 1
    min_top = 1

    def setup(self, bottom, top):
        param = self.param.slice_param
        if param.HasField("axis") and param.HasField("slice_dim"):
            raise self.error("slice_param sets both axis and slice_dim; keep only axis")

    def _sizes(self, length, num_top):
        points = list(self.param.slice_param.slice_point)
        if not points:
            if length % num_top:
                raise self.error(f"cannot cut an axis of size {length} into {num_top} equal pieces; "
                                 f"give slice_point values or a number of tops that divides {length}")
            return [length // num_top] * num_top
        if len(points) != num_top - 1:
            raise self.error(f"{len(points)} slice_point values give {len(points) + 1} pieces but the "
                             f"layer has {num_top} tops; give one slice_point fewer than tops")
        if num_top > length:
            raise self.error(f"cannot cut an axis of size {length} into {num_top} pieces")
        edges = [0] + points
        if any(b <= a for a, b in zip(edges, edges[1:])) or points[-1] > length:
            raise self.error(f"slice_point values {points} must be strictly increasing, above 0 and "
                             f"at most the axis size {length}")
        return [b - a for a, b in zip(edges, edges[1:] + [length])]

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        axis = legacy_or_axis(self, bottom[0], self.param.slice_param, "slice_dim", "slice")
        self.axis = axis
        self.sizes = self._sizes(shape[axis], len(top))
        for blob, size in zip(top, self.sizes):
            blob.reshape(shape[:axis] + (size,) + shape[axis + 1:])
        if len(top) == 1:
            share_memory(top[0], bottom[0])

    def forward(self, bottom, top):
        if len(top) == 1:
            return
        data = bottom[0].read_data()
        offset = 0
        for blob, size in zip(top, self.sizes):
            blob.write_data()[...] = data[axis_slices(self.axis, offset, offset + size)]
            offset += size

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0] or len(top) == 1:
            return
        bottom_diff = bottom[0].write_diff()
        offset = 0
        for blob, size in zip(top, self.sizes):
            bottom_diff[axis_slices(self.axis, offset, offset + size)] = blob.read_diff()
            offset += size


@register("Split")
class SplitLayer(Layer):
    """Hands one bottom to several consumers.

    bottom: x (any shape)
    top:    K blobs sharing x's data; each keeps its own diff
    Backward: dx = sum_k dtop_k. The Net inserts Split layers where a blob feeds several layers.
    """

    exact_num_bottom = 1
    min_top = 1
    allows_in_place = False

    def reshape(self, bottom, top):
        for blob in top:
            blob.reshape_like(bottom[0])
            blob.share_data(bottom[0])

    def forward(self, bottom, top):
        for blob in top:
            blob.share_data(bottom[0])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        bottom_diff = bottom[0].write_diff()
        bottom_diff[...] = top[0].read_diff()
        for blob in top[1:]:
            bottom_diff += blob.read_diff()


@register("Flatten")
class FlattenLayer(Layer):
    """Merges the axes [axis, end_axis] into one (defaults 1 and -1: (N, C, H, W) -> (N, C*H*W)).

    bottom: x;  top: x's values in the new shape, sharing x's data and diff (no copy).
    """

    exact_num_bottom = 1
    exact_num_top = 1
    allows_in_place = False

    def reshape(self, bottom, top):
        param = self.param.flatten_param
        shape = bottom[0].shape
        start = self.canonical_axis(bottom[0], param.axis, "flatten_param.axis")
        end = self.canonical_axis(bottom[0], param.end_axis, "flatten_param.end_axis")
        if end < start:
            raise self.error(f"flatten_param.end_axis ({param.end_axis}) comes before axis "
                             f"({param.axis}) for a bottom of shape {shape}; give end_axis >= axis")
        top[0].reshape(shape[:start] + (bottom[0].count(start, end + 1),) + shape[end + 1:])
        share_memory(top[0], bottom[0])

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


@register("Reshape")
class ReshapeLayer(Layer):
    """Gives the bottom a new shape without copying (the top shares its data and diff).

    reshape_param.shape replaces the bottom axes [axis, axis + num_axes) (default: all of them);
    a dim of 0 copies the bottom's dim at that position, a single -1 is inferred so that the
    element count stays the same. Negative `axis` counts from the end (-1 = after the last axis).
    """

    exact_num_bottom = 1
    exact_num_top = 1
    allows_in_place = False

    def setup(self, bottom, top):
        dims = proto_shape(self.param.reshape_param.shape)
        if any(d < -1 for d in dims):
            raise self.error(f"reshape_param.shape {list(dims)} holds a dim below -1; use positive "
                             "dims, 0 to copy a bottom dim, or one -1 to infer it")
        if dims.count(-1) > 1:
            raise self.error(f"reshape_param.shape {list(dims)} holds more than one -1; at most one "
                             "dim can be inferred")
        self.new_dims = dims

    def _axis_range(self, num_axes):
        param = self.param.reshape_param
        start = param.axis if param.axis >= 0 else num_axes + param.axis + 1
        if not 0 <= start <= num_axes:
            raise self.error(f"reshape_param.axis {param.axis} is out of range for a bottom with "
                             f"{num_axes} axes")
        if param.num_axes < -1:
            raise self.error(f"reshape_param.num_axes is {param.num_axes}; give a count >= 0, or -1 "
                             "for all axes from axis on")
        end = num_axes if param.num_axes == -1 else start + param.num_axes
        if end > num_axes:
            raise self.error(f"reshape_param.axis + num_axes = {end} is beyond the {num_axes} axes "
                             f"of the bottom")
        return start, end

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        count = bottom[0].count
        start, end = self._axis_range(len(shape))
        new = list(self.new_dims)
        for i, dim in enumerate(new):
            if dim == 0:
                if start + i >= len(shape):
                    raise self.error(f"reshape_param.shape has a 0 at position {i}, but the bottom "
                                     f"{shape} has no axis {start + i} to copy")
                new[i] = shape[start + i]
        if -1 in new:
            known = 1
            for d in shape[:start] + tuple([d for d in new if d != -1]) + shape[end:]:
                known *= d
            if known == 0 or count % known:
                raise self.error(f"cannot infer the -1 dim: the bottom count {count} (shape {shape}) "
                                 f"is not divisible by the product of the other dims ({known})")
            new[new.index(-1)] = count // known
        top_shape = shape[:start] + tuple(new) + shape[end:]
        top_count = 1
        for d in top_shape:
            top_count *= d
        if top_count != count:
            raise self.error(f"the new shape {top_shape} holds {top_count} elements but the bottom "
                             f"{shape} holds {count}; the counts must match")
        top[0].reshape(top_shape)
        share_memory(top[0], bottom[0])

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


@register("Tile")
class TileLayer(Layer):
    """Repeats the bottom `tiles` times along `axis` (the whole block from `axis` on is repeated).

    bottom: (outer..., n, inner...);  top: (outer..., tiles * n, inner...)
    top[o, t, :] = x[o, :] over the flattened block from `axis` on; backward sums over t.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        param = self.param.tile_param
        shape = bottom[0].shape
        axis = self.canonical_axis(bottom[0], param.axis, "tile_param.axis")
        if not param.HasField("tiles") or param.tiles <= 0:
            raise self.error(f"tile_param.tiles must be set to a positive count, found "
                             f"{param.tiles if param.HasField('tiles') else 'none'}")
        self.tiles = param.tiles
        self.outer = bottom[0].count(0, axis)
        self.inner = bottom[0].count(axis)
        top[0].reshape(shape[:axis] + (shape[axis] * self.tiles,) + shape[axis + 1:])

    def forward(self, bottom, top):
        out = top[0].write_data().reshape(self.outer, self.tiles, self.inner)
        out[...] = bottom[0].read_data().reshape(self.outer, 1, self.inner)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        diff = top[0].read_diff().reshape(self.outer, self.tiles, self.inner)
        diff.sum(axis=1, out=bottom[0].write_diff().reshape(self.outer, self.inner))
