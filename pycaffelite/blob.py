"""Blob: an N-d array of data and a same-shaped array of gradients (diff), each in a SyncedMem.

Layers read and write blobs through the accessors for the current mode (`read_data`,
`write_data`, `read_diff`, `write_diff`); `data` and `diff` are pycaffe's host views (numpy arrays
that can be written in place). Memory is kept when a reshape shrinks the blob, as in Caffe.

The accessors keep the last view they made of each memory, so a pass reading a blob whose shape
and memory did not change makes no new array (a view costs about 1 µs, several per layer and
pass). Every change of a blob's shape or of the memory it shares (`share_data`, `share_diff`) is
counted by `device.layout_changed`: while no blob changes, layers need not reshape again.
"""
import math

import numpy as np

from . import device as _device
from . import memory
from .errors import PclError
from .syncedmem import SyncedMem

MAX_BLOB_AXES = 32
_DATA, _DIFF = 0, 1  # the slots of Blob._last_views


class BlobCount(int):
    """The blob's element count (pycaffe's `blob.count`) that can also be called as Caffe's
    `count(start_axis, end_axis=None)`: the product of the dimensions in [start_axis, end_axis)."""

    def __new__(cls, shape):
        obj = super().__new__(cls, int(np.prod(shape, dtype=np.int64)))
        obj._shape = shape
        return obj

    def __call__(self, start_axis=0, end_axis=None):
        end_axis = len(self._shape) if end_axis is None else end_axis
        if not 0 <= start_axis <= end_axis <= len(self._shape):
            raise IndexError(f"count({start_axis}, {end_axis}) out of range for shape {self._shape}")
        return int(np.prod(self._shape[start_axis:end_axis], dtype=np.int64))


class Blob:
    def __init__(self, shape=(), dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self._shape = None
        self._count = 0
        self._capacity = -1
        self._data = None
        self._diff = None
        self._last_views = [(None, None), (None, None)]  # data's, diff's: (flat memory, its view)
        self.reshape(shape)

    # -- shape -----------------------------------------------------------------------------
    def reshape(self, *shape):
        """Reshape to `shape` (a sequence or the dims as arguments). Grows memory only when needed."""
        if len(shape) == 1:
            first = shape[0]
            if first.__class__ is tuple or first.__class__ is list or not np.isscalar(first):
                shape = first
        if shape.__class__ is tuple and shape == self._shape:
            return  # the common case, a tuple of the same dims: nothing to do
        shape = tuple([int(d) for d in shape])  # a list, not a generator: no free-list churn
        if shape == self._shape:
            return
        if len(shape) > MAX_BLOB_AXES:
            raise PclError(f"a blob may have at most {MAX_BLOB_AXES} axes, got shape {shape}")
        if any(d < 0 for d in shape):
            raise PclError(f"blob dimensions must be non-negative, got shape {shape}")
        count = math.prod(shape)  # exact: a product beyond 64 bits is refused below, not wrapped
        if count > self._capacity:
            memory.check_bytes(count * self.dtype.itemsize, f"a {self.dtype} blob of shape {shape}")
        self._shape = shape
        self._count = count
        if count > self._capacity:
            self._capacity = count
            self._data = SyncedMem(self._capacity, self.dtype)
            self._diff = SyncedMem(self._capacity, self.dtype)
        self._changed()

    def _changed(self):
        """The shape or memory changed: views made before are stale, layers reshape again."""
        _device.layout_changed()
        self._last_views = [(None, None), (None, None)]

    def reshape_like(self, other):
        if other._shape != self._shape:
            self.reshape(other._shape)

    @property
    def shape(self):
        return self._shape

    @property
    def count(self):
        return BlobCount(self._shape)

    @property
    def num_axes(self):
        return len(self._shape)

    def canonical_axis_index(self, axis):
        """Map a possibly negative axis to 0..num_axes-1; a clear error when out of range."""
        n = len(self._shape)
        if not -n <= axis < n:
            raise PclError(f"axis {axis} is out of range for a blob with {n} axes (shape {self._shape})")
        return axis + n if axis < 0 else axis

    def _legacy_dim(self, index):
        if len(self._shape) > 4:
            raise PclError(f"legacy num/channels/height/width asked of a {len(self._shape)}-d blob")
        return self._shape[index] if index < len(self._shape) else 1

    @property
    def num(self):
        return self._legacy_dim(0)

    @property
    def channels(self):
        return self._legacy_dim(1)

    @property
    def height(self):
        return self._legacy_dim(2)

    @property
    def width(self):
        return self._legacy_dim(3)

    # -- memory access ---------------------------------------------------------------------
    def _view(self, flat):
        return flat[:self._count].reshape(self._shape)

    def _kept_view(self, slot, flat):
        """The view of memory `flat` (slot _DATA or _DIFF), the one made last time if `flat` is
        the same."""
        last = self._last_views[slot]
        if last[0] is flat:
            return last[1]
        view = self._view(flat)
        self._last_views[slot] = (flat, view)
        return view

    def cpu_data(self):
        return self._view(self._data.cpu_data())

    def mutable_cpu_data(self):
        return self._view(self._data.mutable_cpu_data())

    def gpu_data(self):
        return self._view(self._data.gpu_data())

    def mutable_gpu_data(self):
        return self._view(self._data.mutable_gpu_data())

    def cpu_diff(self):
        return self._view(self._diff.cpu_data())

    def mutable_cpu_diff(self):
        return self._view(self._diff.mutable_cpu_data())

    def gpu_diff(self):
        return self._view(self._diff.gpu_data())

    def mutable_gpu_diff(self):
        return self._view(self._diff.mutable_gpu_data())

    # Accessors for the current mode: what layer code uses. The views they return are kept
    # between calls: callers must not change a view's shape or strides in place.
    def read_data(self):
        return self._kept_view(_DATA, self._data.data(_device.on_device()))

    def write_data(self):
        return self._kept_view(_DATA, self._data.mutable_data(_device.on_device()))

    def read_diff(self):
        return self._kept_view(_DIFF, self._diff.data(_device.on_device()))

    def write_diff(self):
        return self._kept_view(_DIFF, self._diff.mutable_data(_device.on_device()))

    @property
    def data(self):
        """Host view of the data (pycaffe's `blob.data`), writable in place."""
        return self.mutable_cpu_data()

    @data.setter
    def data(self, value):
        self.mutable_cpu_data()[...] = value

    @property
    def diff(self):
        """Host view of the diff (pycaffe's `blob.diff`), writable in place."""
        return self.mutable_cpu_diff()

    @diff.setter
    def diff(self, value):
        self.mutable_cpu_diff()[...] = value

    @property
    def data_mem(self):
        return self._data

    @property
    def diff_mem(self):
        return self._diff

    # -- sharing and copying ---------------------------------------------------------------
    def share_data(self, other):
        """Use `other`'s data memory (same element count required), as Caffe's ShareData."""
        self._check_same_count(other, "share_data")
        if self._data is not other._data:
            self._data = other._data
            self._changed()

    def share_diff(self, other):
        self._check_same_count(other, "share_diff")
        if self._diff is not other._diff:
            self._diff = other._diff
            self._changed()

    def _check_same_count(self, other, what):
        if self._count != other._count:
            raise PclError(f"{what}: blobs differ in size ({self._shape} vs {other._shape})")

    def copy_from(self, source, copy_diff=False, reshape=False):
        if source.shape != self._shape:
            if not reshape:
                raise PclError(f"cannot copy a blob of shape {source.shape} into one of shape {self._shape}")
            self.reshape(source.shape)
        if copy_diff:
            self.write_diff()[...] = source.read_diff()
        else:
            self.write_data()[...] = source.read_data()

    # -- protobuf --------------------------------------------------------------------------
    _LEGACY_FIELDS = ("num", "channels", "height", "width")

    @classmethod
    def shape_of_proto(cls, proto):
        """The shape a BlobProto describes: legacy num/channels/height/width if any is set, else `shape`."""
        if any(proto.HasField(f) for f in cls._LEGACY_FIELDS):
            return tuple(getattr(proto, f) for f in cls._LEGACY_FIELDS)
        return tuple(proto.shape.dim)

    def matches_proto_shape(self, proto):
        """Whether a stored BlobProto fits this blob, as Caffe's ShapeEquals decides: a legacy
        4-d proto counts its axes from the end, so (1, 1, M, N) fits an (M, N) blob."""
        stored = self.shape_of_proto(proto)
        if not any(proto.HasField(f) for f in self._LEGACY_FIELDS):
            return stored == self._shape
        return len(self._shape) <= 4 and stored == (1,) * (4 - len(self._shape)) + self._shape

    def from_proto(self, proto, reshape=True):
        shape = self.shape_of_proto(proto)
        if reshape:
            self.reshape(shape)
        elif not self.matches_proto_shape(proto):
            raise PclError(f"blob shape mismatch: stored {shape}, expected {self._shape}")
        for values, double_values, target in ((proto.data, proto.double_data, self.mutable_cpu_data),
                                              (proto.diff, proto.double_diff, self.mutable_cpu_diff)):
            source = double_values if len(double_values) else values
            if len(source) == 0:
                continue
            if len(source) != self._count:
                raise PclError(f"BlobProto holds {len(source)} values for shape {shape} "
                               f"({self._count} expected)")
            target()[...] = np.asarray(source, dtype=self.dtype).reshape(self._shape)
        return self

    def to_proto(self, write_diff=False):
        from .proto import caffe_pb2  # noqa: PLC0415 - keeps blob.py importable without the schema

        proto = caffe_pb2.BlobProto()
        proto.shape.dim.extend(self._shape)
        as_double = self.dtype == np.float64
        (proto.double_data if as_double else proto.data).extend(self.cpu_data().ravel().tolist())
        if write_diff:
            (proto.double_diff if as_double else proto.diff).extend(self.cpu_diff().ravel().tolist())
        return proto

    def __repr__(self):
        return f"Blob(shape={self._shape}, dtype={self.dtype})"
