"""Pooling and SPP (spatial pyramid pooling) over (N, C, H, W) blobs, with Caffe's window rules.

Window geometry (per spatial axis, size H, kernel k, stride s, pad p):

    out = ceil((H + 2p - k) / s) + 1        (floor with round_mode: FLOOR)
    out -= 1  if p > 0 and (out - 1) * s >= H + p     (no window may start in the far padding)

window o covers rows [o*s - p, o*s - p + k) clipped to the image. MAX and AVE run separably
(columns, then rows) on a copy of the input split by stride phase, where each kernel offset of
all windows is one contiguous run, so every step is one long array operation (see `Pooler`);
on the CPU compiled loops replace these passes (`pycaffelite.kernels.pooling`).
"""
import numpy as np

from .. import device, parallel
from ..kernels import pooling as compiled
from ..proto import caffe_pb2
from . import register
from .base import Layer, Workspace

MAX = caffe_pb2.PoolingParameter.MAX
AVE = caffe_pb2.PoolingParameter.AVE
STOCHASTIC = caffe_pb2.PoolingParameter.STOCHASTIC

FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)


def pooled_size(size, kernel, stride, pad, ceil_mode=True):
    """Caffe's number of pooling windows along one axis (may be < 1 for a too-small input)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _offset_dtype(kernel):
    """The integer type of a window offset 0 .. kernel - 1 (one byte for any usual kernel)."""
    return np.uint8 if max(kernel) <= 256 else np.uint32


class _Phases:
    """One axis of the window grid, split by stride phase. Buffer cell b (a padded coordinate)
    = q * stride + r is held at phase r, position q; window o's offset t is then the cell at phase
    t % stride, position o + t // stride, so one offset of all windows is one contiguous run of
    its phase. Phases from the kernel size on (kernel < stride) hold no window's cell, and
    positions from `cells` on hold none either: neither is kept."""

    def __init__(self, size, kernel, stride, pad, out):
        self.kernel, self.stride = kernel, stride
        self.phases = min(stride, kernel)
        self.cells = out + (kernel - 1) // stride
        # (phase, its positions, the image cells they hold) for each phase holding any
        self.copies = []
        for r in range(self.phases):
            first = max(0, -(-(pad - r) // stride))
            stop = min(self.cells, -(-(pad + size - r) // stride))
            if stop > first:
                start = first * stride + r - pad
                self.copies.append((r, slice(first, stop),
                                    slice(start, start + (stop - first - 1) * stride + 1, stride)))
        self.covers_image = sum(q.stop - q.start for _, q, _ in self.copies) == size

    def terms(self, phases, unit, length):
        """Each offset's run of `length` positions in `phases` (one flat row per phase), where
        one position along this axis is `unit` flat elements."""
        return [phases[t % self.stride, (t // self.stride) * unit:(t // self.stride) * unit + length]
                for t in range(self.kernel)]

    def spread(self, g, phases, unit):
        """The transpose of a pass over `terms`: phases[t % stride] gets g added at its offset
        t's run, for every t; positions no run reaches get 0."""
        length = g.size
        for t in range(self.kernel):
            run = phases[t % self.stride]
            shift = (t // self.stride) * unit
            if t < self.stride:          # the phase's first offset, unshifted: sets the phase
                run[:length] = g
                run[length:] = 0
            else:
                run[shift:shift + length] += g


def _running(op, terms, out):
    """out = op over the terms (running, in order): a window's maximum (fmax) or sum (add)."""
    if len(terms) == 1:
        out[...] = terms[0]
        return
    op(terms[0], terms[1], out=out)
    for term in terms[2:]:
        op(out, term, out=out)


def _first_match(xp, terms, best, arg, run, differs):
    """arg = the first t with terms[t] == best, counted as the number of leading terms that
    differ from best. The last term is not compared: a window whose maximum is one of its
    elements ends there; one without (all NaN) gets k - 1, which is never used."""
    if len(terms) == 1:
        arg.fill(0)
        return
    xp.not_equal(terms[0], best, out=run)
    arg[...] = run
    for term in terms[1:-1]:
        xp.not_equal(term, best, out=differs)
        run &= differs
        arg += run


def _over_planes(nc, kernel, *args):
    """A compiled pooling kernel over all N C image planes, ranges of them side by side."""
    parallel.over_ranges(nc[0] * nc[1], lambda lo, hi: kernel(*args, lo, hi))


class Pooler:
    """One 2-D pooling (MAX, AVE or STOCHASTIC) of (N, C, H, W) arrays, forward and backward.

    Out-of-image elements never count: they are -inf (MAX) or 0 (AVE, STOCHASTIC) in the
    buffers the input is copied into. Caffe's corner cases follow: a window lying wholly outside
    the image (ceil mode, pad 0) gives -FLT_MAX with mask -1 (MAX), 0/0 = NaN (AVE), 0
    (STOCHASTIC).

    MAX and AVE copy the input into a buffer split by stride phase along both axes (`_Phases`),
    (column phase, row phase, N, C, rows / sh, cols / sw), where every kernel offset of all
    windows is one contiguous run; each step is then one pass over a flat contiguous array, at
    window starts only (strided window slices are several times slower to traverse). Separably:
    along the rows, c = op over the kw column offsets (for every row), then r = op over the kh
    row offsets of c; r at the window starts is the output (AVE then divides by the window size).
    MAX takes Caffe's first maximum in row-major order: the first row of the window whose
    maximum is the window's maximum, and the first column of that row holding it. It keeps both
    offsets per window (one byte each); backward adds the top diffs at those cells with one
    unbuffered scatter-add (`add.at`) in window order, so cells shared by overlapping windows sum
    in the order Caffe sums them. AVE's backward runs the passes transposed (`_Phases.spread`).
    STOCHASTIC visits the kh * kw offsets in turn (each offset's elements of all windows form
    one strided slice of a padded copy of the input).

    On the CPU, MAX and AVE run the compiled loops of `pycaffelite.kernels.pooling` instead:
    Caffe's order of sums; measured on CIFAR10-quick's and CaffeNet's pools, the forward takes
    0.9-1.5x the passes' time (slower on the mid-sized ones), the MAX backward 0.55-0.6x, a net
    gain of 0.5-0.8 ms per training step. The array-module passes above are the device (cupy)
    path, tested on the CPU with `compiled` switched off.
    """

    compiled = True

    def __init__(self, method, image_hw, kernel, stride, pad, ceil_mode, dtype):
        self.method = method
        self.height, self.width = image_hw
        self.kernel, self.stride, self.pad = kernel, stride, pad
        self.dtype = np.dtype(dtype)
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
        self.out_hw = (pooled_size(self.height, kh, sh, ph, ceil_mode),
                       pooled_size(self.width, kw, sw, pw, ceil_mode))
        oh, ow = self.out_hw
        self.rows = _Phases(self.height, kh, sh, ph, oh)
        self.cols = _Phases(self.width, kw, sw, pw, ow)
        self.cells = (self.rows.cells, self.cols.cells)
        self.offset_dtype = _offset_dtype(kernel)
        starts_h = np.arange(oh) * sh - ph
        starts_w = np.arange(ow) * sw - pw
        # Image index h * W + w of each window's top-left cell (outside the image when padded).
        self.origin = starts_h[:, None] * self.width + starts_w[None, :]
        # AVE divisor: the window clipped to the padded image (Caffe's pool_size). A zero size
        # becomes NaN so the empty window's 0 sum gives Caffe's 0/0 = NaN without a warning.
        size_h = np.minimum(starts_h + kh, self.height + ph) - starts_h
        size_w = np.minimum(starts_w + kw, self.width + pw) - starts_w
        divisor = np.outer(size_h, size_w).astype(self.dtype)
        divisor[divisor == 0] = np.nan
        self.divisor = divisor
        # STOCHASTIC: a padded copy of the input, (buffer_h, buffer_w) per image, where offset
        # k = i * kw + j (row-major, Caffe's scan order) of all windows is slices[k].
        self.buffer_hw = (max(ph + self.height, (oh - 1) * sh + kh),
                          max(pw + self.width, (ow - 1) * sw + kw))
        self.slices = [(Ellipsis, slice(i, i + (oh - 1) * sh + 1, sh), slice(j, j + (ow - 1) * sw + 1, sw))
                       for i in range(kh) for j in range(kw)] if method == STOCHASTIC else None
        self.all_valid = True
        self.work = Workspace()
        self._allocated = None

    # -- buffers -------------------------------------------------------------------------------
    def _get(self, xp, name, shape, fill=0, dtype=None):
        """A work array, zero when made unless `fill` says otherwise: parts of the phase buffers
        no window reads still take part in the flat passes and must hold finite values."""
        return self.work.get(xp, name, shape, self.dtype if dtype is None else dtype, fill)

    def _grid(self, xp, name, nc, dtype=None):
        """An (N, C, out_h, out_w) work array."""
        return self._get(xp, name, nc + self.out_hw, dtype=dtype)

    def _cells(self, xp, name, nc, phases=(), dtype=None, fill=0):
        """A (*phases, N, C, row cells, column cells) work array of the phase-split layout."""
        return self._get(xp, name, phases + nc + self.cells, fill, dtype)

    def _base(self, xp, nc):
        """Each window's top-left cell as an index into the flat (N, C, H, W) input."""
        def make(base):
            channel = np.arange(nc[0] * nc[1]).reshape(nc + (1, 1)) * (self.height * self.width)
            base[...] = xp.asarray(channel + self.origin)
        return self.work.get(xp, "base", nc + self.out_hw, np.intp, init=make)

    def _divisor(self, xp, nc):
        """The AVE divisor repeated over the channels: (C, out_h, out_w), so that dividing an
        (N, C, out_h, out_w) array runs in long contiguous stretches."""
        def make(divisor):
            divisor[...] = xp.asarray(self.divisor)
        return self.work.get(xp, "divisor", nc[1:] + self.out_hw, self.dtype, init=make)

    def _runs_compiled(self, xp):
        return self.compiled and xp is np and self.method != STOCHASTIC

    def allocate(self, xp, nc, accumulate=False):
        """Make the work arrays for a batch of `nc` = (N, C) now (reshape time); `accumulate`:
        backward will add to its output."""
        if self._allocated == (xp, nc, accumulate):
            return
        self._allocated = (xp, nc, accumulate)
        if self._runs_compiled(xp):
            if self.method == MAX:
                self._grid(xp, "argmax", nc, np.intp)
            return
        if self.method == STOCHASTIC:
            self._allocate_stochastic(xp, nc, accumulate)
            return
        split = (self.cols.phases, self.rows.phases)
        self._split_input(xp, nc)
        self._cells(xp, "cols", nc, split[1:])
        self._cells(xp, "rows", nc)
        if self.method == AVE:
            self._divisor(xp, nc)
            self._grid(xp, "share", nc)
            self._cells(xp, "rows_grad", nc)
            self._cells(xp, "cols_grad", nc, split[1:])
            self._cells(xp, "split_grad", nc, split)
            return
        for name in ("col_offsets", "run", "differs"):
            self._cells(xp, name, nc, split[1:], np.bool_ if name != "col_offsets" else self.offset_dtype)
        for name in ("row_offsets", "picked", "step"):
            self._cells(xp, name, nc, dtype=self.offset_dtype)
        for name in ("row_offset", "col_offset"):
            self._grid(xp, name, nc, self.offset_dtype)
        for name in ("valid", "invalid"):
            self._grid(xp, name, nc, np.bool_)
        self._grid(xp, "masked", nc)
        self._grid(xp, "index", nc, np.intp)
        self._base(xp, nc)

    def _split_input(self, xp, nc):
        """The phase-split input buffer; cells outside the image are set once, when it is made."""
        return self._cells(xp, "split", nc, (self.cols.phases, self.rows.phases),
                           fill=-np.inf if self.method == MAX else 0)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, xp, x, out, train=False):
        """Pool x (N, C, H, W) into out (N, C, out_h, out_w); STOCHASTIC samples when `train`."""
        nc = x.shape[:2]
        if self._runs_compiled(xp):
            geometry = (self.kernel, self.stride, self.pad)
            if self.method == MAX:
                argmax = self._grid(xp, "argmax", nc, np.intp)
                _over_planes(nc, compiled.max_forward, x, *geometry, out, argmax)
            else:
                _over_planes(nc, compiled.ave_forward, x, *geometry, out)
            return
        if self.method == STOCHASTIC:
            src = self._padded_input(xp, x)
            if train:
                self._forward_stochastic_train(xp, src, out, nc)
            else:
                self._forward_stochastic_test(xp, src, out, nc)
            return
        split = self._split_input(xp, nc)
        for col_phase, col_cells, image_cols in self.cols.copies:
            for row_phase, row_cells, image_rows in self.rows.copies:
                split[col_phase, row_phase][..., row_cells, col_cells] = x[..., image_rows, image_cols]
        cols = self._cells(xp, "cols", nc, (self.rows.phases,))
        rows = self._cells(xp, "rows", nc)
        col_terms = self._col_terms(split, cols)
        row_terms = self._row_terms(cols, rows)
        if self.method == AVE:
            _running(xp.add, col_terms, self._head(cols, col_terms))
            _running(xp.add, row_terms, self._head(rows, row_terms))
            out[...] = rows[..., :self.out_hw[0], :self.out_hw[1]]
            out /= self._divisor(xp, nc)
        else:
            self._forward_max(xp, col_terms, row_terms, cols, rows, out, nc)

    def _col_terms(self, split, cols):
        """The kw column offsets' runs in the flat split input (one per column phase)."""
        length = cols.size - (self.cols.kernel - 1) // self.cols.stride
        return self.cols.terms(split.reshape(self.cols.phases, -1), 1, length)

    def _row_terms(self, cols, rows):
        """The kh row offsets' runs in the flat column-pass result (one per row phase)."""
        length = rows.size - (self.rows.kernel - 1) // self.rows.stride * self.cells[1]
        return self.rows.terms(cols.reshape(self.rows.phases, -1), self.cells[1], length)

    @staticmethod
    def _head(array, terms):
        """The part of flat `array` a pass over `terms` computes (the rest starts no window)."""
        return array.reshape(-1)[:terms[0].size]

    def _forward_max(self, xp, col_terms, row_terms, cols, rows, out, nc):
        """Values and offsets of each window's first maximum; a window without an element above
        -FLT_MAX (all -inf, NaN or padding) gives -FLT_MAX, as Caffe's, and is marked invalid."""
        col_phases = (self.rows.phases,)
        run = self._cells(xp, "run", nc, col_phases, np.bool_).reshape(-1)
        differs = self._cells(xp, "differs", nc, col_phases, np.bool_).reshape(-1)
        col_offsets = self._cells(xp, "col_offsets", nc, col_phases, self.offset_dtype)
        maxima = self._head(cols, col_terms)
        n = maxima.size
        _running(xp.fmax, col_terms, maxima)
        _first_match(xp, col_terms, maxima, self._head(col_offsets, col_terms), run[:n], differs[:n])
        maxima = self._head(rows, row_terms)
        n = maxima.size
        row_offsets = self._cells(xp, "row_offsets", nc, dtype=self.offset_dtype)
        _running(xp.fmax, row_terms, maxima)
        _first_match(xp, row_terms, maxima, self._head(row_offsets, row_terms), run[:n], differs[:n])
        # the column offset in the winning row: offset terms[i] where row_offsets == i, as
        # terms[0] + sum over i of [row offset = i] * (terms[i] - terms[0]) (a masked copy with a
        # random mask is many times slower; unsigned wrap-around leaves the sum exact)
        terms = self._row_terms(col_offsets, rows)
        col_offset = self._cells(xp, "picked", nc, dtype=self.offset_dtype)
        picked = self._head(col_offset, terms)
        step = self._head(self._cells(xp, "step", nc, dtype=self.offset_dtype), terms)
        chosen = run[:n]
        picked[...] = terms[0]
        for i in range(1, len(terms)):
            xp.equal(row_offsets.reshape(-1)[:n], i, out=chosen)
            xp.subtract(terms[i], terms[0], out=step)
            step *= chosen
            picked += step
        window = (Ellipsis, slice(0, self.out_hw[0]), slice(0, self.out_hw[1]))
        out[...] = rows[window]
        self._grid(xp, "row_offset", nc, self.offset_dtype)[...] = row_offsets[window]
        self._grid(xp, "col_offset", nc, self.offset_dtype)[...] = col_offset[window]
        valid = self._grid(xp, "valid", nc, np.bool_)
        xp.greater(out, -FLT_MAX, out=valid)
        self.all_valid = bool(valid.all())
        if not self.all_valid:
            invalid = self._grid(xp, "invalid", nc, np.bool_)
            xp.logical_not(valid, out=invalid)
            xp.copyto(out, -FLT_MAX, where=invalid)

    def _max_index(self, xp, nc):
        """Each window's maximum as an index into the flat (N, C, H, W) input."""
        index = self._grid(xp, "index", nc, np.intp)
        index[...] = self._grid(xp, "row_offset", nc, self.offset_dtype)
        index *= self.width
        index += self._grid(xp, "col_offset", nc, self.offset_dtype)
        index += self._base(xp, nc)
        return index

    def write_mask(self, xp, mask):
        """Caffe's mask top (MAX): the index h * W + w of each window's maximum, -1 if none."""
        nc = mask.shape[:2]
        if self._runs_compiled(xp):
            mask[...] = self._grid(xp, "argmax", nc, np.intp)
            return
        index = self._max_index(xp, nc)
        index -= self._base(xp, nc)
        index += xp.asarray(self.origin)
        mask[...] = index
        if not self.all_valid:
            xp.copyto(mask, -1, where=self._grid(xp, "invalid", nc, np.bool_))

    # -- backward ------------------------------------------------------------------------------
    def backward(self, xp, top_diff, out, x=None, top_data=None, train=False, accumulate=False):
        """Gradient w.r.t. the pooled input, written into (or, if `accumulate`, added to) `out`.

        MAX and STOCHASTIC at train time route each window's gradient to its chosen element.
        STOCHASTIC at test time (where Caffe has no defined backward) uses the exact derivative
        of y = Q/S (S = FLT_MIN + sum x, Q = sum x^2): dy/dx_i = (2 x_i - y) / S; this needs the
        forward's input `x` and output `top_data`.
        """
        nc = top_diff.shape[:2]
        if self._runs_compiled(xp):
            if self.method == MAX:
                _over_planes(nc, compiled.max_backward, top_diff,
                             self._grid(xp, "argmax", nc, np.intp), accumulate, out)
            else:
                _over_planes(nc, compiled.ave_backward, top_diff, self.kernel, self.stride,
                             self.pad, accumulate, out)
            return
        if self.method == MAX:
            self._backward_max(xp, top_diff, out, nc, accumulate)
        elif self.method == AVE:
            self._backward_ave(xp, top_diff, out, nc, accumulate)
        else:
            self._backward_stochastic(xp, top_diff, out, nc, x, top_data, train, accumulate)

    def _backward_max(self, xp, top_diff, out, nc, accumulate):
        index = self._max_index(xp, nc)
        if not self.all_valid:
            invalid = self._grid(xp, "invalid", nc, np.bool_)
            masked = self._grid(xp, "masked", nc)
            xp.copyto(masked, top_diff)
            xp.copyto(masked, 0, where=invalid)
            xp.copyto(index, 0, where=invalid)
            top_diff = masked
        if not accumulate:
            out.fill(0)
        # flat index and values: add.at is several times slower on 4-D ones
        xp.add.at(out.reshape(-1), index.reshape(-1), top_diff.reshape(-1))

    def _backward_ave(self, xp, top_diff, out, nc, accumulate):
        """Each window's top diff / size goes to every cell of the window: the forward's passes
        transposed, from the window starts over the kh row offsets, then the kw column offsets."""
        rows = self._cells(xp, "rows_grad", nc)   # zero outside the windows' starts, ever
        share = self._grid(xp, "share", nc)
        xp.divide(top_diff, self._divisor(xp, nc), out=share)
        rows[..., :self.out_hw[0], :self.out_hw[1]] = share
        cols = self._cells(xp, "cols_grad", nc, (self.rows.phases,))
        split = self._cells(xp, "split_grad", nc, (self.cols.phases, self.rows.phases))
        self.rows.spread(self._head(rows, self._row_terms(cols, rows)),
                         cols.reshape(self.rows.phases, -1), self.cells[1])
        self.cols.spread(self._head(cols, self._col_terms(split, cols)),
                         split.reshape(self.cols.phases, -1), 1)
        if not accumulate and not (self.rows.covers_image and self.cols.covers_image):
            out.fill(0)
        for col_phase, col_cells, image_cols in self.cols.copies:
            for row_phase, row_cells, image_rows in self.rows.copies:
                cells = split[col_phase, row_phase][..., row_cells, col_cells]
                if accumulate:
                    out[..., image_rows, image_cols] += cells
                else:
                    out[..., image_rows, image_cols] = cells

    # -- STOCHASTIC ----------------------------------------------------------------------------
    def _allocate_stochastic(self, xp, nc, accumulate):
        self._padded_input(xp, None, nc)
        self._get(xp, "diff", nc + self.buffer_hw)
        for name in ("window", "temp", "sum", "share"):
            self._grid(xp, name, nc)
        for name in ("arg", "candidate"):
            self._grid(xp, name, nc, np.int32)
        for name in ("flag", "pending"):
            self._grid(xp, name, nc, np.bool_)

    def _padded_input(self, xp, x, nc=None):
        """x copied into a zero-padded (N, C, buffer_h, buffer_w) buffer (made if x is None)."""
        buf = self._get(xp, "input", (x.shape[:2] if x is not None else nc) + self.buffer_hw)
        if x is not None:
            self._image(buf)[...] = x
        return buf

    def _image(self, padded):
        ph, pw = self.pad
        return padded[..., ph:ph + self.height, pw:pw + self.width]

    def _windows(self, xp, src, nc):
        """(k, contiguous copy of offset k's slice of all windows), k in scan order."""
        window = self._grid(xp, "window", nc)
        for k, sl in enumerate(self.slices):
            window[...] = src[sl]
            yield k, window

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

        Branch-free (masked copies are slow on random masks): `first` marks the windows whose
        running sum crosses the threshold for the first time at offset k; arg + 1 and out gain
        k + 1 and the element there.
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

    def _backward_stochastic(self, xp, top_diff, out, nc, x, top_data, train, accumulate):
        diff = self._get(xp, "diff", nc + self.buffer_hw)
        diff.fill(0)
        share = self._grid(xp, "share", nc)
        if train:
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
            if any(pooled_size(*args, self.ceil_mode) < 1
                   for args in zip(image_hw, kernel, self.stride, self.pad)):
                raise self.error(f"the kernel {kernel} (stride {self.stride}, pad {self.pad}) does not "
                                 f"fit the input of height x width {image_hw}; use a smaller kernel "
                                 f"or a larger input")
            pooler = Pooler(self.method, image_hw, kernel, self.stride, self.pad, self.ceil_mode, self.dtype)
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
