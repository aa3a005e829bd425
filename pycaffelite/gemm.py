"""Matrix products for the layers: `matmul(a, b, out)` computes out = a @ b (numpy's matmul rules
for stacked matrices) and with accumulate=True adds a @ b into out; `matmul_sum` sums a batch of
products; `image_matmul` / `image_weight_gradient` multiply by a convolution's im2col matrix
read straight from the images.

float32 on the CPU: the plain products run numpy's matmul (its BLAS, a kept library), split
over `parallel.num_threads()` threads by pcl (one product per thread inside a
`parallel.run_parallel` task, as a convolution's chunks run), with the BLAS held to one thread of
its own (threadpoolctl): a BLAS threading its products inside pcl's threads would oversubscribe
the CPUs, and its idle threads spin after each product, taking a core from the pcl threads
that run next. The image products run pcl's compiled kernel (`pycaffelite.kernels.sgemm`),
which packs the im2col matrix from the images as it multiplies (no column buffer pass).
Everything else (float64 for gradient checks, cupy arrays on a GPU) runs the array module's
matmul.

Measured on a 2-core AVX-512 EPYC with nothing pinned (numpy 2.4.6, OpenBLAS 0.3.31 SkylakeX
kernel; bench/bench_gemm.py, interleaved rounds, load 1.5-4): on 21 shapes of the layers'
products (CaffeNet, GoogLeNet, ResNet-50, MobileNet convolutions, InnerProduct, LSTM) numpy's
matmul ran at 0.98-1.10x pcl's former compiled GEMM on one thread (CPU time) and 0.95-1.15x in
pcl's thread runs, and 1.21-1.40x on InnerProduct's products at batch 16 (M = 16); two-threaded
as the BLAS threads itself against pcl's split, both 150-200 GFLOP/s within the noise. scipy's
sgemm (which could add into its output) holds the GIL: 0.42-0.54x inside pcl's thread runs, so
it is not used. Whole training steps (CPU time, paired, load 4-8) moved within the noise:
ResNet-50 3,162-3,407 ms -> 2,955-3,304, CaffeNet 1,138-1,228 -> 1,233-1,285, GoogLeNet
2,655-2,671 -> 2,721-2,793. The issue's 2-core Xeon measured numpy 302 GFLOP/s against the
kernel's 225 on squares, so the BLAS is the product to use; the image products keep the kernel
(explicit im2col + BLAS instead: CaffeNet's step 1,217-1,295 -> 1,494-1,601 ms, paired).
"""
import functools
import threading
import warnings

import numpy as np

from . import parallel

# Below this many multiply-adds a product runs in one thread: handing parts to the other
# threads costs tens of microseconds.
_THREADING_THRESHOLD = 1 << 19
# Parts of a split product are cut at multiples of this many rows or columns.
_SPLIT_UNIT = 16

_kernel = None
_scratch = threading.local()


def _sgemm_module():
    """The compiled kernel module, imported (and compiled, or loaded from numba's cache) on first
    use so that commands which never multiply images do not pay for it."""
    global _kernel
    if _kernel is None:
        from .kernels import sgemm  # noqa: PLC0415 - deferred: numba start-up and compilation

        _kernel = sgemm
    return _kernel


def matmul(a, b, out, accumulate=False):
    """out = a @ b, or out += a @ b with accumulate; returns out.

    a (..., M, K) and b (..., K, N) broadcast over their leading axes to out's (..., M, N); out
    must not overlap a or b."""
    if not _runs_here(a, b, out):
        if accumulate:
            out += a @ b
        elif isinstance(out, np.ndarray):
            np.matmul(a, b, out=out)
        else:
            _device_matmul(a, b, out)
        return out
    batch = out.shape[:-2]
    rows, depth, columns = a.shape[-2], a.shape[-1], b.shape[-1]
    if a.shape[-2:] != (rows, depth) or b.shape[-2] != depth or out.shape[-2:] != (rows, columns):
        raise ValueError(f"matmul: shapes {a.shape} @ {b.shape} do not give {out.shape}")
    if depth == 0 or out.size == 0:
        if not accumulate:
            out[...] = 0
        return out
    if _in_one_thread(out.size * depth):
        _check_leading_axes(a, batch)
        _check_leading_axes(b, batch)
        _run_blas(a, b, out, accumulate)  # one thread: numpy broadcasts and loops itself
        return out
    a, b = _broadcast(a, batch), _broadcast(b, batch)
    for a3, b3, c3 in _as_batches(a, b, out):
        _run_threaded(a3, b3, c3, accumulate)
    return out


def matmul_sum(a, b, out, accumulate=False):
    """out = the sum over t of a[t] @ b[t] (or out += it with accumulate); returns out.

    a (T, M, K), b (T, K, N), out (M, N): one product with the shared dimension running over
    both t and K, for operands whose (t, K) axes cannot be merged into one."""
    if not _runs_here(a, b, out):
        total = (a @ b).sum(axis=0)
        if accumulate:
            out += total
        else:
            out[...] = total
        return out
    items, rows, depth = a.shape
    if b.shape[:2] != (items, depth) or out.shape != (rows, b.shape[2]):
        raise ValueError(f"matmul_sum: shapes {a.shape} @ {b.shape} do not sum to {out.shape}")
    if items == 0 or depth == 0:
        if not accumulate:
            out[...] = 0
        return out
    _run_threaded(a, b, _summed(out, items), accumulate)
    return out


def image_matmul(weights, images, geometry, out, accumulate=False):
    """out[t] (+)= weights (M, K) @ col(images[t]) for float32 CPU arrays, where col is the
    im2col matrix (K = C kh kw rows, P output pixels) of the image (C, Hp, Wp) for geometry =
    (kernel h, w, stride h, w, dilation h, w), read from the image as the product packs it;
    out is (T, M, P). Split over threads by images outside a `parallel` task."""
    sgemm = _sgemm_module()
    out_w = _check_image_product(images, geometry, weights.shape[1], out.shape[2])
    full_geometry = tuple(geometry) + (out_w,)
    items = images.shape[0]
    a = weights[None] if items == 1 else np.broadcast_to(weights, (items,) + weights.shape)

    def run(lo, hi):
        _run_kernel(a[lo:hi], images[lo:hi], out[lo:hi], accumulate, sgemm.IMAGE_COLUMNS,
                    full_geometry)
    parallel.over_ranges(images.shape[0], run)
    return out


def image_weight_gradient(side, images, geometry, out, accumulate=True):
    """out (M, K) (+)= the sum over t of side[t] (M, P) @ col(images[t])^T (see image_matmul),
    for float32 CPU arrays: a convolution's weight gradient straight from its input images.
    Split over threads by rows of out outside a `parallel` task."""
    sgemm = _sgemm_module()
    out_w = _check_image_product(images, geometry, out.shape[1], side.shape[2])
    full_geometry = tuple(geometry) + (out_w,)
    summed = _summed(out, images.shape[0])

    def run(lo, hi):
        _run_kernel(side[:, lo:hi], images, summed[:, lo:hi], accumulate, sgemm.IMAGE_ROWS,
                    full_geometry)
    parallel.over_ranges(out.shape[0], run, sgemm.MR)
    return out


def _check_image_product(images, geometry, depth, pixels):
    """The output width; an error where the geometry reads outside the images (the compiled
    packing does not check) or the sizes disagree."""
    kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w = geometry
    channels, height, width = images.shape[1:]
    out_h = (height - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    if depth != channels * kernel_h * kernel_w or pixels != out_h * out_w or min(out_h, out_w) < 1:
        raise ValueError(f"image product: images {images.shape} with geometry {geometry} give "
                         f"{channels * kernel_h * kernel_w} x {out_h * out_w} columns, not "
                         f"{depth} x {pixels}")
    return out_w


def _summed(out, items):
    """out (M, N) seen as `items` products all adding into it: a batch with stride 0."""
    return np.lib.stride_tricks.as_strided(out, (items,) + out.shape, (0,) + out.strides)


def row_sums(x, out):
    """out[r] = x[r].sum() for a 2-d x (float32 CPU rows summed by the compiled kernel);
    returns out."""
    if not (_runs_here(x, x, x) and isinstance(out, np.ndarray) and out.dtype == np.float32
            and x.flags.c_contiguous and out.flags.c_contiguous):
        return x.sum(axis=1, out=out)
    _sgemm_module().row_sums(x.reshape(-1), x.shape[0], x.shape[1], out)
    return out


def _device_matmul(a, b, out):
    import cupy  # noqa: PLC0415 - only reached with device arrays (not yet run on a real GPU)

    cupy.matmul(a, b, out=out)


def _runs_here(a, b, out):
    """Whether the product runs pcl's way (float32 numpy arrays of non-negative strides)."""
    for x in (a, b, out):  # (a loop: this runs before every product, generators cost)
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim < 2 \
                or min(x.strides) < 0:
            return False
    return True


def _check_leading_axes(x, batch):
    """An error unless x's leading axes broadcast to `batch` (checked without making a view)."""
    lead = x.shape[:-2]
    if lead != batch and (len(lead) > len(batch) or any(
            n not in (1, m) for n, m in zip(reversed(lead), reversed(batch)))):
        raise ValueError(f"matmul: leading axes {lead} do not broadcast to {batch}")


def _broadcast(x, batch):
    """x (..., R, C) as a (read-only) view of shape batch + (R, C)."""
    if x.shape[:-2] == batch:
        return x
    try:
        return np.broadcast_to(x, batch + x.shape[-2:])
    except ValueError:
        raise ValueError(f"matmul: leading axes {x.shape[:-2]} do not broadcast to {batch}") \
            from None


def _as_batches(a, b, c):
    """The stacked products as 3-d (batch, rows, columns) views: unit leading axes dropped, the
    innermost leading axes merged into one as far as the three arrays' strides allow, any
    outer ones looped over here."""
    lead = c.shape[:-2]
    keep = tuple([0 if n == 1 else slice(None) for n in lead])
    a, b, c = (x[keep] for x in (a, b, c))
    count = c.ndim - 2
    inner = min(count, 1)
    while inner < count and all(x.strides[count - inner - 1] == x.strides[count - inner] *
                                x.shape[count - inner] for x in (a, b, c)):
        inner += 1
    for index in np.ndindex(*c.shape[:count - inner]):
        yield tuple([_three_axes(x[index], inner) for x in (a, b, c)])


def _three_axes(x, batch_axes):
    """x with its `batch_axes` leading axes merged into one (a view: checked mergeable), or a
    leading unit axis added when there are none."""
    if batch_axes == 0:
        return x[None]
    return x.reshape((-1,) + x.shape[batch_axes:])


def _run_threaded(a, b, c, accumulate):
    """c[t] (+)= a[t] @ b[t] for 3-d views; where c's batch stride is 0 the products are summed.
    Large products (_THREADING_THRESHOLD) outside a `parallel` task run in parts side by side:
    by batch items where there are enough, else by columns, else by rows."""
    items, rows, depth = a.shape
    if _in_one_thread(items * rows * depth * b.shape[2]):
        _run_blas(a, b, c, accumulate)
        return
    parallel.run_parallel([functools.partial(_run_blas, *part, accumulate)
                           for part in _split(a, b, c, parallel.num_threads())])


def _in_one_thread(multiply_adds):
    """Whether a product runs in the calling thread alone: inside a task, with one thread, or
    too small to hand parts to other threads."""
    return (parallel.in_task() or parallel.num_threads() == 1
            or multiply_adds < _THREADING_THRESHOLD)


def _split(a, b, c, parts):
    """(a, b, c) views of up to `parts` near-equal parts of the product."""
    items, rows, columns = c.shape
    if items >= parts and c.strides[0] != 0:  # (stride 0: every item adds into one c)
        return [(a[lo:hi], b[lo:hi], c[lo:hi]) for lo, hi in parallel.ranges(items, parts)]
    if -(-columns // _SPLIT_UNIT) >= parts:
        return [(a, b[:, :, lo:hi], c[:, :, lo:hi])
                for lo, hi in parallel.ranges(columns, parts, _SPLIT_UNIT)]
    return [(a[:, lo:hi], b, c[:, lo:hi]) for lo, hi in parallel.ranges(rows, parts, _SPLIT_UNIT)]


def _run_blas(a, b, c, accumulate):
    """c (+)= a @ b in the calling thread, by numpy's BLAS held to one thread, with numpy's
    stacking rules; where c's first axis has stride 0, c[0] += the sum of a[t] @ b[t]. A sum goes
    through the thread's scratch matrix (numpy cannot add into its output)."""
    _hold_blas_to_one_thread()
    if c.ndim == 2 or c.strides[0] != 0:  # one call for the whole batch (numpy loops over it)
        if accumulate:
            scratch = _scratch_matrix(c.shape)
            np.matmul(a, b, out=scratch)
            c += scratch
        else:
            np.matmul(a, b, out=c)
        return
    for t in range(a.shape[0]):  # every product summed into c[0]
        if accumulate or t > 0:
            scratch = _scratch_matrix(c.shape[1:])
            np.matmul(a[t], b[t], out=scratch)
            c[0] += scratch
        else:
            np.matmul(a[t], b[t], out=c[0])


_blas_held = False


def _hold_blas_to_one_thread():
    """Limit numpy's BLAS to one thread, once (pcl's threads do the splitting)."""
    global _blas_held
    if _blas_held:
        return
    _blas_held = True
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - first product only
    except ImportError:
        warnings.warn("pycaffelite: threadpoolctl is not installed, so numpy's BLAS keeps its own "
                      "threads inside pcl's; install threadpoolctl for full speed", stacklevel=3)
        return
    threadpool_limits(1, user_api="blas")


def _scratch_matrix(shape):
    """The calling thread's float32 scratch of prod(shape) values, as that shape."""
    size = int(np.prod(shape))
    flat = getattr(_scratch, "matrix", None)
    if flat is None or flat.size < size:
        flat = _scratch.matrix = np.empty(size, np.float32)
    return flat[:size].reshape(shape)


def _run_kernel(a, b, c, accumulate, b_kind, geometry):
    """The compiled image product in the calling thread, with that thread's scratch buffers
    (b an image batch for b_kind IMAGE_COLUMNS / IMAGE_ROWS)."""
    sgemm = _sgemm_module()
    items, rows, depth = a.shape
    a_size, b_size, tile_size = sgemm.scratch_sizes(rows, depth)
    buffers = getattr(_scratch, "kernel_buffers", None)
    if buffers is None or buffers[0].size < a_size or buffers[2].size < b_size:
        buffers = _scratch.kernel_buffers = _kernel_buffers(
            max(a_size, 0 if buffers is None else buffers[0].size),
            max(b_size, 0 if buffers is None else buffers[2].size), tile_size)
    shape = (items, rows, depth, c.shape[2])
    sgemm.sgemm_image(a, _steps(a), b, _steps(b), b_kind, geometry, c, _steps(c), shape,
                      accumulate, *buffers)


def _kernel_buffers(a_size, b_size, tile_size):
    """The image kernel's scratch (see `sgemm_image`): packed a, flat and as a read-only
    (1, 1, size) view; packed b; the edge tile as (1, 1, size). Kept per thread, views included
    (made once, not per call)."""
    a_packed = np.empty(a_size, np.float32)
    a_packed_in = a_packed.reshape(1, 1, -1)
    a_packed_in.flags.writeable = False
    return (a_packed, a_packed_in, np.empty(b_size, np.float32),
            np.empty((1, 1, tile_size), np.float32))


def _steps(x):
    """x's strides in elements. (tuple([...]), not tuple(generator): the generator form leaves
    a resized tuple block in CPython's free lists on every call, which the allocation test sees
    as memory held.)"""
    size = x.itemsize
    return tuple([stride // size for stride in x.strides])
