"""The Layer contract (Caffe's four steps) and shared base classes.

A subclass implements:
  setup(bottom, top)      one-time set-up from `self.param` (a LayerParameter); creates param blobs
  reshape(bottom, top)    shapes the tops (and internal buffers) from the bottoms
  forward(bottom, top)    computes top data from bottom data
  backward(top, propagate_down, bottom)
                          bottom diffs where `propagate_down[i]` is true (overwritten), and param
                          diffs where `self.param_propagate_down[i]` is true (ACCUMULATED with +=,
                          so iter_size and shared weights add up)

The Net calls `initialize` once (blob-count checks, setup, reshape, loss weights) and
`forward_loss` (reshape, then forward) / `backward` per pass. `forward_loss` reshapes only after
some blob has changed shape or memory, or the mode, device or thread count has changed
(`device.layout()` counts these), as Caffe's Reshape-before-Forward would then find work to do;
a layer whose shapes follow anything else (its data, the user's code) sets `reshape_every_pass`.
Bodies use `self.xp` (numpy or cupy) and the blob accessors `read_data/write_data/read_diff/
write_diff`, so one body runs in both modes.
"""
import logging
import math

import numpy as np

from .. import device, memory
from ..blob import Blob
from ..errors import PclError

log = logging.getLogger("pycaffelite")


class Layer:
    type = None
    # Blob-count constraints; None means "no constraint".
    exact_num_bottom = None
    min_bottom = None
    max_bottom = None
    exact_num_top = None
    min_top = None
    max_top = None
    # Loss weights given to the tops when the prototxt sets none (loss layers: (1.0,)).
    auto_loss_weights = ()
    # Whether a top may be the same blob as a bottom.
    allows_in_place = True
    # Whether the Net adds anonymous tops when the prototxt names fewer than the layer needs
    # (Caffe's AutoTopBlobs: loss layers, whose loss then counts without a named top).
    auto_top_blobs = False
    # Whether `forward_loss` reshapes before every forward, also when no bottom or top changed
    # (data layers, Filter, Python layers, Parameter: their shapes or memory follow more than
    # the blobs' shapes).
    reshape_every_pass = False
    _reshaped_at = None  # device.layout() after this layer's last reshape
    # Whether param blobs are filled by their fillers (the Net turns it off for shape-only use).
    fill_params = True

    def allow_force_backward(self, bottom_index):
        """Whether force_backward may ask this layer for the gradient of bottom `bottom_index`."""
        return True

    def __init__(self, param, phase=None, dtype=np.float32):
        self.param = param
        self.name = param.name
        self.phase = phase if phase is not None else param.phase
        self.dtype = np.dtype(dtype)
        self.blobs = BlobVec(self.dtype)
        self.param_propagate_down = []
        self.loss_weights = []

    @property
    def xp(self):
        return device.array_module()

    # -- helpers for subclasses --------------------------------------------------------------
    def error(self, message):
        """A PclError that names this layer."""
        return PclError(f'layer "{self.name}" ({self.type}): {message}')

    def canonical_axis(self, blob, axis, field="axis"):
        """`blob.canonical_axis_index(axis)` with an error that names this layer and the field."""
        n = blob.num_axes
        if not -n <= axis < n:
            raise self.error(f"{field} {axis} is out of range for a bottom of shape {blob.shape}; "
                             f"give an axis in [{-n}, {n - 1}]")
        return axis + n if axis < 0 else axis

    def make_blob(self, shape):
        return Blob(shape, dtype=self.dtype)

    def add_param_blob(self, shape, filler_param=None):
        """Create a param blob, fill it (if a filler is given and `fill_params`) and append it to
        `self.blobs`."""
        from .. import filler  # noqa: PLC0415 - filler imports the schema

        if filler_param is not None:
            self.check_filler(filler_param, shape, f"the filler of param {len(self.blobs)}")
        blob = self.make_blob(shape)
        if filler_param is not None and self.fill_params:
            filler.fill(blob, filler_param)
        self.blobs.append(blob)
        return blob

    def check_filler(self, filler_param, shape, what):
        """`filler.check` for a blob of `shape`, its error naming this layer and `what` (e.g.
        "the filler of param 0"); its note about a likely mistake is logged as a warning."""
        from .. import filler  # noqa: PLC0415 - filler imports the schema

        try:
            note = filler.check(filler_param, shape)
        except PclError as exc:
            raise self.error(f"{what} (shape {tuple(shape)}): {exc}") from None
        if note:
            log.warning('layer "%s" (%s): %s: %s', self.name, self.type, what, note)

    # -- the contract --------------------------------------------------------------------------
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        raise NotImplementedError

    def forward(self, bottom, top):
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise self.error("this layer has no backward pass, but a gradient was asked of it")

    # -- called by Net ---------------------------------------------------------------------------
    def initialize(self, bottom, top):
        self.check_blob_counts(bottom, top)
        if not self.allows_in_place and any(t is b for t in top for b in bottom):
            raise self.error("cannot run in place: give its top a name different from its bottom")
        self.setup(bottom, top)
        if not self.param_propagate_down:
            self.param_propagate_down = [True] * len(self.blobs)
        self.reshape(bottom, top)
        self._reshaped_at = device.layout()
        self.set_loss_weights(top)

    def check_blob_counts(self, bottom, top):
        for what, blobs, exact, low, high in (
                ("bottom", bottom, self.exact_num_bottom, self.min_bottom, self.max_bottom),
                ("top", top, self.exact_num_top, self.min_top, self.max_top)):
            n = len(blobs)
            if exact is not None and n != exact:
                raise self.error(f"takes exactly {exact} {what} blob(s), found {n}")
            if low is not None and n < low:
                raise self.error(f"takes at least {low} {what} blob(s), found {n}")
            if high is not None and n > high:
                raise self.error(f"takes at most {high} {what} blob(s), found {n}")

    def set_loss_weights(self, top):
        """One weight per top: the given `loss_weight` values, or none (all 0) for ordinary
        layers. Loss layers without any write their default (1 on top 0) into their own
        LayerParameter, as Caffe does, so it is saved with the model; like Caffe, a loss layer
        with more tops then needs the weights spelled out."""
        if not len(self.param.loss_weight) and self.auto_loss_weights:
            self.param.loss_weight.extend(self.auto_loss_weights)
        given = [float(w) for w in self.param.loss_weight]
        if given and len(given) != len(top):
            raise self.error(f"has {len(given)} loss_weight value(s) but {len(top)} tops; give one "
                             f"per top (e.g. loss_weight: 1 loss_weight: 0 for a loss with a second "
                             f"top)")
        self.loss_weights = given or [0.0] * len(top)
        self._weighted_tops = [index for index, weight in enumerate(self.loss_weights) if weight]
        for blob, weight in zip(top, self.loss_weights):
            if weight != 0:
                blob.write_diff()[...] = weight

    _weighted_tops = ()  # indices of the tops with a non-zero loss weight

    def forward_loss(self, bottom, top):
        """Reshape where needed (see the module's docstring), run forward and return this
        layer's weighted loss (0 for non-loss layers), as Caffe's Layer::Forward does.

        A reshape skipped saves 4,000-30,000 instructions (1-8 µs) a layer and pass."""
        if self.reshape_every_pass or self._reshaped_at != device.layout():
            self.reshape(bottom, top)
            self._reshaped_at = device.layout()
        self.forward(bottom, top)
        loss = 0.0
        for index in self._weighted_tops:
            loss += self.loss_weights[index] * float(top[index].read_data().sum(dtype=np.float64))
        return loss

    def set_param_propagate_down(self, index, value):
        self.param_propagate_down[index] = bool(value)

    def auto_top_count(self):
        """How many tops the Net gives this layer when its prototxt names fewer."""
        if not self.auto_top_blobs:
            return 0
        return max(self.min_top or 0, self.exact_num_top or 0)


class BlobVec(list):
    """A layer's param blobs: a list of Blobs with pycaffe's `add_blob(*shape)`, which Python
    layers use to create learnable params (zero-filled, of the net's dtype)."""

    def __init__(self, dtype=np.float32, blobs=()):
        super().__init__(blobs)
        self.dtype = np.dtype(dtype)

    def add_blob(self, *shape):
        blob = Blob(shape, dtype=self.dtype)
        self.append(blob)
        return blob


class LossLayer(Layer):
    """Base of loss layers: two bottoms (prediction, target) of the same num; a scalar top 0
    (made by the Net when the prototxt names none)."""

    exact_num_bottom = 2
    exact_num_top = 1
    auto_loss_weights = (1.0,)
    auto_top_blobs = True

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise self.error(f"the two bottoms must have the same num (first dimension): "
                             f"{bottom[0].shape} vs {bottom[1].shape}")
        top[0].reshape(())


class NeuronLayer(Layer):
    """Base of element-wise layers: one bottom, one top of the same shape, in place allowed."""

    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        top[0].reshape_like(bottom[0])


class Workspace:
    """Work arrays kept between calls; one is re-made only when its shape, dtype or array module
    (numpy/cupy, i.e. the mode) changes. `fill` sets a new array's initial value, or `init(array)`
    fills it."""

    def __init__(self):
        self._arrays = {}

    def get(self, xp, name, shape, dtype, fill=None, init=None):
        array = self._arrays.get(name)
        if (array is None or array.shape != tuple(shape) or array.dtype != dtype
                or not isinstance(array, xp.ndarray)):
            memory.check_bytes(math.prod(shape) * np.dtype(dtype).itemsize,
                               f"a work buffer of shape {tuple(shape)}")
            array = xp.empty(shape, dtype) if fill is None else xp.full(shape, fill, dtype)
            if init is not None:
                init(array)
            self._arrays[name] = array
        return array
