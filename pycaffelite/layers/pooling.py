"""Pooling and SPP (spatial pyramid pooling) over (N, C, H, W) blobs, with Caffe's window rules.

Window geometry (per spatial axis, size H, kernel k, stride s, pad p):

    out = ceil((H + 2p - k) / s) + 1        (floor with round_mode: FLOOR)
    out -= 1  if p > 0 and (out - 1) * s >= H + p     (no window may start in the far padding)

window o covers rows [o*s - p, o*s - p + k) clipped to the image. The pooling runs as a few
vectorised steps per kernel offset (i, j) over the whole (N, C, out_h, out_w) grid: the offset's
elements of all windows form one strided slice of the (padded) input.
"""
import numpy as np

from .. import device
from ..proto import caffe_pb2
from . import register
from .base import Layer

MAX = caffe_pb2.PoolingParameter.MAX
AVE = caffe_pb2.PoolingParameter.AVE
STOCHASTIC = caffe_pb2.PoolingParameter.STOCHASTIC

FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)


class Workspace:
    """Work arrays kept between calls; one is re-made only when its shape, dtype or array module
    (numpy/cupy, i.e. the mode) changes. `fill` sets a new array's initial value."""

    def __init__(self):
        self._arrays = {}

    def get(self, xp, name, shape, dtype, fill=None):
        array = self._arrays.get(name)
        if (array is None or array.shape != tuple(shape) or array.dtype != dtype
                or not isinstance(array, xp.ndarray)):
            array = xp.empty(shape, dtype) if fill is None else xp.full(shape, fill, dtype)
            self._arrays[name] = array
        return array


def pooled_size(size, kernel, stride, pad, ceil_mode=True):
    """Caffe's number of pooling windows along one axis (may be < 1 for a too-small input)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class Pooler:
    """One 2-D pooling (MAX, AVE or STOCHASTIC) of (N, C, H, W) arrays, forward and backward.

    Out-of-image elements never count: the input is copied into a buffer padded with -inf (MAX)
    or 0 (AVE, STOCHASTIC) when a window reaches outside the image. Caffe's corner cases follow:
    a window lying wholly outside the image (ceil mode, pad 0) gives -FLT_MAX with mask -1 (MAX),
    0/0 = NaN (AVE), 0 (STOCHASTIC).

    Speed: a strided window slice is slow to traverse (short rows), so MAX and STOCHASTIC first
    copy each offset's slice into a contiguous array, and AVE sums separably (kw column offsets,
    then kh row offsets).
    """

    def __init__(self, method, image_hw, kernel, stride, pad, ceil_mode, dtype):
        self.method = method
        self.height, self.width = image_hw
        self.kernel, self.stride, self.pad = kernel, stride, pad
        self.dtype = np.dtype(dtype)
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
        self.out_hw = (pooled_size(self.height, kh, sh, ph, ceil_mode),
                       pooled_size(self.width, kw, sw, pw, ceil_mode))
        oh, ow = self.out_hw
        # Buffer rows/cols, in padded coordinates: the image and every window must fit.
        self.buffer_hw = (max(ph + self.height, (oh - 1) * sh + kh),
                          max(pw + self.width, (ow - 1) * sw + kw))
        self.direct = (ph, pw) == (0, 0) and self.buffer_hw == (self.height, self.width)
        row_slices = [slice(i, i + (oh - 1) * sh + 1, sh) for i in range(kh)]
        col_slices = [slice(j, j + (ow - 1) * sw + 1, sw) for j in range(kw)]
        # Offset k = i * kw + j (row-major, Caffe's scan order) selects slices[k] of every window.
        self.slices = [(Ellipsis, rows, cols) for rows in row_slices for cols in col_slices]
        self.row_slices = [(Ellipsis, rows, slice(None)) for rows in row_slices]
        self.col_slices = [(Ellipsis, cols) for cols in col_slices]
        self.starts_h = np.arange(oh) * sh - ph
        self.starts_w = np.arange(ow) * sw - pw
        # AVE divisor: the window clipped to the padded image (Caffe's pool_size). A zero size
        # becomes NaN so the empty window's 0 sum gives Caffe's 0/0 = NaN without a warning.
        size_h = np.minimum(self.starts_h + kh, self.height + ph) - self.starts_h
        size_w = np.minimum(self.starts_w + kw, self.width + pw) - self.starts_w
        divisor = np.outer(size_h, size_w).astype(self.dtype)
        divisor[divisor == 0] = np.nan
        self.divisor = divisor
        self.work = Workspace()

    # -- buffers -------------------------------------------------------------------------------
    def _get(self, xp, name, shape, fill=None, dtype=None):
        return self.work.get(xp, name, shape, self.dtype if dtype is None else dtype, fill)

    def _grid(self, xp, name, nc, dtype=None):
        """An (N, C, out_h, out_w) work array."""
        return self._get(xp, name, nc + self.out_hw, dtype=dtype)

    def _rows(self, xp, nc):
        """(N, C, buffer rows, out_w): column-pooled rows for the separable AVE."""
        return self._get(xp, "rows", nc + (self.buffer_hw[0], self.out_hw[1]))

    def _input_buffer(self, xp, nc):
        """The padded input buffer; its border is filled once, when it is made."""
        fill = -np.inf if self.method == MAX else 0
        return self._get(xp, "input", nc + self.buffer_hw, fill)

    def _padded_input(self, xp, x):
        """x itself, or x copied into the padded input buffer."""
        if self.direct:
            return x
        buf = self._input_buffer(xp, x.shape[:2])
        self._image(buf)[...] = x
        return buf

    def _image(self, padded):
        ph, pw = self.pad
        return padded[..., ph:ph + self.height, pw:pw + self.width]

    def allocate(self, xp, nc, accumulate=False):
        """Make the work arrays for a batch of `nc` = (N, C) now (reshape time); `accumulate`:
        backward will add to its output."""
        if not self.direct:
            self._input_buffer(xp, nc)
        if accumulate or not self.direct:
            self._get(xp, "diff", nc + self.buffer_hw)
        self._grid(xp, "share", nc)
        if self.method == AVE:
            self._rows(xp, nc)
            return
        for name in ("window", "temp", "sum"):
            self._grid(xp, name, nc)
        for name in ("arg", "candidate"):
            self._grid(xp, name, nc, np.int32)
        for name in ("flag", "pending"):
            self._grid(xp, name, nc, np.bool_)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, xp, x, out, train=False):
        """Pool x (N, C, H, W) into out (N, C, out_h, out_w); STOCHASTIC samples when `train`."""
        src = self._padded_input(xp, x)
        nc = x.shape[:2]
        if self.method == MAX:
            self._forward_max(xp, src, out, nc)
        elif self.method == AVE:
            rows = self._rows(xp, nc)
            rows[...] = src[self.col_slices[0]]
            for sl in self.col_slices[1:]:
                rows += src[sl]
            out[...] = rows[self.row_slices[0]]
            for sl in self.row_slices[1:]:
                out += rows[sl]
            out /= xp.asarray(self.divisor)
        elif train:
            self._forward_stochastic_train(xp, src, out, nc)
        else:
            self._forward_stochastic_test(xp, src, out, nc)

    def _windows(self, xp, src, nc):
        """(k, contiguous copy of offset k's slice of all windows), k in scan order."""
        window = self._grid(xp, "window", nc)
        for k, sl in enumerate(self.slices):
            window[...] = src[sl]
            yield k, window

    def _forward_max(self, xp, src, out, nc):
        """First strict maximum in scan order, starting from -FLT_MAX (so NaN never wins).

        Branch-free (masked copies are slow on random masks): the value is a running fmax, and
        arg + 1 a running maximum of (k + 1) * [window_k > max so far], since k only grows.
        """
        arg = self._grid(xp, "arg", nc, np.int32)
        better = self._grid(xp, "flag", nc, np.bool_)
        candidate = self._grid(xp, "candidate", nc, np.int32)
        out.fill(-FLT_MAX)
        arg.fill(0)
        for k, window in self._windows(xp, src, nc):
            xp.greater(window, out, out=better)
            xp.fmax(out, window, out=out)
            xp.multiply(better, k + 1, out=candidate)
            xp.maximum(arg, candidate, out=arg)
        arg -= 1

    def _forward_stochastic_test(self, xp, src, out, nc):
        """sum(x^2) / (FLT_MIN + sum(x)) over each window."""
        total = self._grid(xp, "sum", nc)
        square = self._grid(xp, "temp", nc)
        total.fill(FLT_MIN)
        out.fill(0)
        for _, window in self._windows(xp, src, nc):
            total += window
            xp.multiply(window, window, out=square)
            out += square
        out /= total

    def _forward_stochastic_train(self, xp, src, out, nc):
        """Pick the first element whose running sum reaches u * sum(window), u ~ U(0, 1].

        Branch-free like MAX: `first` marks the windows whose running sum crosses the threshold
        for the first time at offset k; arg + 1 and out gain k + 1 and the element there.
        """
        running = self._grid(xp, "sum", nc)
        threshold = self._grid(xp, "temp", nc)
        arg = self._grid(xp, "arg", nc, np.int32)
        first = self._grid(xp, "flag", nc, np.bool_)
        pending = self._grid(xp, "pending", nc, np.bool_)
        candidate = self._grid(xp, "candidate", nc, np.int32)
        chosen = self._grid(xp, "share", nc)
        uniform = 1.0 - device.rng().random(nc + self.out_hw, dtype=self.dtype)
        threshold.fill(0)
        for sl in self.slices:
            threshold += src[sl]
        threshold *= xp.asarray(uniform)
        running.fill(0)
        arg.fill(0)
        out.fill(0)
        pending.fill(True)
        for k, window in self._windows(xp, src, nc):
            running += window
            xp.greater_equal(running, threshold, out=first)
            first &= pending
            pending &= ~first
            xp.multiply(first, k + 1, out=candidate)
            arg += candidate
            xp.multiply(window, first, out=chosen)
            out += chosen
        arg -= 1

    def write_mask(self, xp, mask):
        """Caffe's mask top: the flat index h * W + w of each window's max (-1 if none)."""
        arg = self._grid(xp, "arg", mask.shape[:2], np.int32)
        kw = self.kernel[1]
        rows = xp.asarray(self.starts_h)[:, None] + arg // kw
        cols = xp.asarray(self.starts_w)[None, :] + arg % kw
        mask[...] = xp.where(arg >= 0, rows * self.width + cols, -1)

    # -- backward ------------------------------------------------------------------------------
    def backward(self, xp, top_diff, out, x=None, top_data=None, train=False, accumulate=False):
        """Gradient w.r.t. the pooled input, written into (or, if `accumulate`, added to) `out`.

        MAX and STOCHASTIC at train time route each window's gradient to its chosen element.
        STOCHASTIC at test time (where Caffe has no defined backward) uses the exact derivative
        of y = Q/S (S = FLT_MIN + sum x, Q = sum x^2): dy/dx_i = (2 x_i - y) / S; this needs the
        forward's input `x` and output `top_data`.
        """
        direct = self.direct and not accumulate
        nc = top_diff.shape[:2]
        diff = out if direct else self._get(xp, "diff", nc + self.buffer_hw)
        diff.fill(0)
        share = self._grid(xp, "share", nc)
        if self.method == AVE:
            xp.divide(top_diff, xp.asarray(self.divisor), out=share)
            rows = self._rows(xp, nc)
            rows.fill(0)
            for sl in self.row_slices:
                rows[sl] += share
            for sl in self.col_slices:
                diff[sl] += rows
        elif self.method == MAX or train:
            arg = self._grid(xp, "arg", nc, np.int32)
            chosen = self._grid(xp, "flag", nc, np.bool_)
            # last offset first: each element then sums its windows in Caffe's (window) order
            for k, sl in reversed(list(enumerate(self.slices))):
                xp.equal(arg, k, out=chosen)
                xp.multiply(top_diff, chosen, out=share)
                diff[sl] += share
        else:
            src = self._padded_input(xp, x)
            scale = self._grid(xp, "temp", nc)
            xp.divide(top_diff, self._grid(xp, "sum", nc), out=scale)
            for k, window in self._windows(xp, src, nc):
                xp.multiply(window, 2, out=share)
                share -= top_data
                share *= scale
                diff[self.slices[k]] += share
        if direct:
            return
        if accumulate:
            out += self._image(diff)
        else:
            out[...] = self._image(diff)


# -- the layers ----------------------------------------------------------------------------------
def _pair(p, name, default):
    """(h, w) of a field given as `name` or as `name_h` + `name_w` (checked: both or neither)."""
    if p.HasField(name + "_h"):
        return getattr(p, name + "_h"), getattr(p, name + "_w")
    value = getattr(p, name) if p.HasField(name) else default
    return value, value


@register("Pooling")
class PoolingLayer(Layer):
    """Max, average or stochastic pooling of each channel over 2-D windows.

    For window W(o) of output position o (kernel, stride, pad, rounding as in the module doc):
      MAX          y_o = max_{W(o)} x, padding excluded; ties go to the first in row-major
                   order. An optional second top holds the argmax as the flat index h*W + w.
      AVE          y_o = sum_{W(o)} x / |W(o) clipped to the padded image| (padding counts,
                   the part beyond the padding does not).
      STOCHASTIC   TRAIN: y_o = x_i with i drawn with probability x_i / sum_{W(o)} x (x >= 0);
                   TEST: y_o = sum x^2 / sum x. No padding.
    global_pooling: kernel = (H, W), one output per channel.
    Backward: MAX/STOCHASTIC TRAIN route dy to the chosen element; AVE spreads dy_o / |W(o)|.

    bottom: (N, C, H, W)      top: (N, C, out_h, out_w) [, mask of the same shape (MAX only)]
    """

    exact_num_bottom = 1
    min_top = 1
    allows_in_place = False

    def __init__(self, param, phase=None, dtype=np.float32):
        super().__init__(param, phase, dtype)
        self.max_top = 2 if param.pooling_param.pool == MAX else 1

    def setup(self, bottom, top):
        p = self.param.pooling_param
        self.method = p.pool
        self.global_pooling = p.global_pooling
        self.ceil_mode = p.round_mode == caffe_pb2.PoolingParameter.CEIL
        has_size = p.HasField("kernel_size")
        has_h, has_w = p.HasField("kernel_h"), p.HasField("kernel_w")
        if self.global_pooling:
            if has_size or has_h or has_w:
                raise self.error("global_pooling takes the kernel from the input's height and width; "
                                 "remove kernel_size/kernel_h/kernel_w")
            self.kernel = None
        elif has_size and (has_h or has_w):
            raise self.error("give either kernel_size or kernel_h and kernel_w, not both")
        elif not has_size and not (has_h and has_w):
            raise self.error("needs a kernel size: set kernel_size, or both kernel_h and kernel_w")
        else:
            self.kernel = (p.kernel_size,) * 2 if has_size else (p.kernel_h, p.kernel_w)
            if min(self.kernel) <= 0:
                raise self.error(f"kernel sizes must be positive, found {self.kernel}")
        for name in ("pad", "stride"):
            if p.HasField(name + "_h") != p.HasField(name + "_w") or (
                    p.HasField(name) and p.HasField(name + "_h")):
                raise self.error(f"give either {name} or both {name}_h and {name}_w")
        self.pad = _pair(p, "pad", 0)
        self.stride = _pair(p, "stride", 1)
        if min(self.stride) <= 0:
            raise self.error(f"strides must be positive, found {self.stride}")
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise self.error(f"global_pooling allows only pad 0 and stride 1, found pad {self.pad} "
                             f"and stride {self.stride}; remove them")
        if self.pad != (0, 0):
            if self.method == STOCHASTIC:
                raise self.error("padding is implemented only for MAX and AVE pooling; "
                                 "remove pad or use pool: MAX or AVE")
            if self.kernel is not None and (self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]):
                raise self.error(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        self.pooler = None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(f"needs a 4-axis (num, channels, height, width) bottom, found shape {shape}")
        image_hw = shape[2:]
        kernel = image_hw if self.global_pooling else self.kernel
        if min(kernel) <= 0:
            raise self.error(f"global pooling needs a non-empty input, found shape {shape}")
        pooler = self.pooler
        if pooler is None or (pooler.height, pooler.width, pooler.kernel) != image_hw + (kernel,):
            pooler = Pooler(self.method, image_hw, kernel, self.stride, self.pad, self.ceil_mode, self.dtype)
            if min(pooler.out_hw) < 1:
                raise self.error(f"the kernel {kernel} (stride {self.stride}, pad {self.pad}) does not "
                                 f"fit the input of height x width {image_hw}; use a smaller kernel "
                                 f"or a larger input")
            self.pooler = pooler
        pooler.allocate(self.xp, shape[:2])
        for blob in top:
            blob.reshape(shape[:2] + pooler.out_hw)

    def forward(self, bottom, top):
        xp = self.xp
        self.pooler.forward(xp, bottom[0].read_data(), top[0].write_data(),
                            train=self.phase == caffe_pb2.TRAIN)
        if len(top) > 1:
            self.pooler.write_mask(xp, top[1].write_data())

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        stochastic_test = self.method == STOCHASTIC and self.phase != caffe_pb2.TRAIN
        self.pooler.backward(
            self.xp, top[0].read_diff(), bottom[0].write_diff(),
            x=bottom[0].read_data() if stochastic_test else None,
            top_data=top[0].read_data() if stochastic_test else None,
            train=self.phase == caffe_pb2.TRAIN)


@register("SPP")
class SPPLayer(Layer):
    """Spatial pyramid pooling: pyramid_height levels of pooling, flattened and concatenated.

    Level l (l = 0 .. pyramid_height-1) splits the image into 2^l x 2^l bins: kernel =
    ceil(H / 2^l), stride = kernel, pad = (kernel * 2^l - H + 1) // 2 (likewise along W), pooled
    with spp_param.pool. top = [flatten(level 0), flatten(level 1), ...] along axis 1. As in
    Caffe, whose SPP builds its pooling layers with a default (TRAIN) phase, STOCHASTIC always
    samples. With pyramid_height 1 the single level's output is the top, unflattened.

    bottom: (N, C, H, W)      top: (N, sum over levels of C * bins_h * bins_w), or
                              (N, C, 1, 1) when pyramid_height is 1
    """

    exact_num_bottom = 1
    exact_num_top = 1
    allows_in_place = False

    def setup(self, bottom, top):
        p = self.param.spp_param
        self.pyramid_height = p.pyramid_height
        self.method = p.pool
        if self.pyramid_height < 1:
            raise self.error(f"pyramid_height must be at least 1, found {self.pyramid_height}")
        self.image_hw = None
        self.levels = []

    def _make_levels(self, image_hw):
        levels = []
        for level in range(self.pyramid_height):
            bins = 2 ** level
            kernel = tuple(-(-size // bins) for size in image_hw)
            pad = tuple((k * bins - size + 1) // 2 for k, size in zip(kernel, image_hw))
            if pad != (0, 0) and self.method == STOCHASTIC:
                raise self.error(f"STOCHASTIC pooling cannot pad, but level {level} needs pad {pad} "
                                 f"for an input of {image_hw[0]}x{image_hw[1]}; use a height and width "
                                 f"divisible by {2 ** (self.pyramid_height - 1)}, or pool: MAX/AVE")
            if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
                raise self.error(f"an input of {image_hw[0]}x{image_hw[1]} is too small for "
                                 f"pyramid_height {self.pyramid_height} (level {level} would need "
                                 f"pad {pad} with kernel {kernel}); use a larger input or a smaller "
                                 f"pyramid_height")
            levels.append(Pooler(self.method, image_hw, kernel, kernel, pad, True, self.dtype))
        return levels

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(f"needs a 4-axis (num, channels, height, width) bottom, found shape {shape}")
        if min(shape[2:]) <= 0:
            raise self.error(f"needs a non-empty input height and width, found shape {shape}")
        if shape[2:] != self.image_hw:
            self.levels = self._make_levels(shape[2:])
            self.image_hw = shape[2:]
        for pooler in self.levels:
            pooler.allocate(self.xp, shape[:2], accumulate=True)
        if self.pyramid_height == 1:
            top[0].reshape(shape[:2] + self.levels[0].out_hw)
        else:
            sizes = [shape[1] * int(np.prod(pooler.out_hw)) for pooler in self.levels]
            self.bounds = np.cumsum([0] + sizes).tolist()
            top[0].reshape(shape[0], self.bounds[-1])

    def _level_views(self, array, channels):
        """Each level's (N, C, out_h, out_w) view of the top's data or diff."""
        if self.pyramid_height == 1:
            return [array]
        n = array.shape[0]
        return [array[:, start:stop].reshape((n, channels) + pooler.out_hw)
                for pooler, start, stop in zip(self.levels, self.bounds, self.bounds[1:])]

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data()
        for pooler, view in zip(self.levels, self._level_views(top[0].write_data(), x.shape[1])):
            pooler.forward(xp, x, view, train=True)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        xp = self.xp
        dx = bottom[0].write_diff()
        views = self._level_views(top[0].read_diff(), dx.shape[1])
        for level, (pooler, view) in enumerate(zip(self.levels, views)):
            pooler.backward(xp, view, dx, train=True, accumulate=level > 0)
