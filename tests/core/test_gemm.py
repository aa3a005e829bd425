"""pycaffelite.gemm: the float32 products against float64 references: the plain products (numpy's
BLAS in pcl's threads: transposes, strided views, batches, column/row/item splits, summed
batches, sums into the output) and the image products of the compiled kernel (packed or
in-place operands, edge tiles, k blocks, both image packers, its AVX2 tile)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pycaffelite import gemm, parallel

RNG = np.random.default_rng(7)


def normal(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def check(a, b, out_shape, accumulate=False):
    start = normal(*out_shape)
    out = start.copy()
    result = gemm.matmul(a, b, out, accumulate=accumulate)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    if accumulate:
        expected = expected + start
    assert result is out
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6 * scale * max(1, a.shape[-1]) ** 0.5)


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}threads")
def threads(request, use_threads):
    use_threads(request.param)
    return request.param


# small, odd and edge sizes (tiles, blocks, splits)
SHAPES = [(1, 1, 1), (7, 3, 5), (8, 16, 32), (9, 17, 33), (17, 300, 65), (64, 257, 96),
          (3, 600, 200), (40, 2, 70)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_row_major_operands(threads, m, k, n, accumulate):
    check(normal(m, k), normal(k, n), (m, n), accumulate)


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("a_t,b_t", [(True, False), (False, True), (True, True)])
def test_transposed_operands(threads, m, k, n, a_t, b_t):
    a = normal(k, m).T if a_t else normal(m, k)
    b = normal(n, k).T if b_t else normal(k, n)
    check(a, b, (m, n))


def test_strided_views_and_strided_output(threads):
    """Operands with gaps between rows and columns, and an output that is a column slice."""
    a = normal(40, 90)[::2, 1::3]           # (20, 30), column step 3
    b = normal(31, 120)[1:, ::2]            # (30, 60), column step 2
    big = normal(20, 150)
    out = big[:, 10:70]
    expected = big.copy()
    expected[:, 10:70] += a.astype(np.float64) @ b
    gemm.matmul(a, b, out, accumulate=True)
    np.testing.assert_allclose(big, expected, atol=1e-4)
    transposed = np.zeros((60, 20), np.float32)
    gemm.matmul(a, b, transposed.T)          # an output whose columns are not contiguous
    np.testing.assert_allclose(transposed.T, a.astype(np.float64) @ b, atol=1e-4)


@pytest.mark.parametrize("a_shape,b_shape,out_shape", [
    ((5, 12, 40), (5, 40, 33), (5, 12, 33)),             # a batch: split by items
    ((12, 40), (5, 40, 33), (5, 12, 33)),                 # a broadcast
    ((1, 12, 40), (3, 4, 40, 33), (3, 4, 12, 33)),        # broadcast over two batch axes
    ((3, 1, 12, 40), (1, 4, 40, 33), (3, 4, 12, 33)),     # both broadcast
])
def test_batches_broadcast_like_numpy(threads, a_shape, b_shape, out_shape):
    check(normal(*a_shape), normal(*b_shape), out_shape, accumulate=True)


def test_batch_axes_that_cannot_merge(threads):
    """A (2, 3) batch whose items are not evenly spaced runs as separate products."""
    b = normal(3, 2, 40, 33).swapaxes(0, 1)   # (2, 3, 40, 33), axis 0 step < axis 1 step
    check(normal(2, 3, 12, 40), b, (2, 3, 12, 33))


@pytest.mark.parametrize("accumulate", [False, True])
def test_matmul_sum_adds_the_batch_into_one_product(threads, accumulate):
    a, b = normal(6, 20, 50), normal(6, 50, 40).swapaxes(1, 2).copy().swapaxes(1, 2)
    start = normal(20, 40)
    out = start.copy()
    gemm.matmul_sum(a, b, out, accumulate=accumulate)
    expected = np.einsum("tmk,tkn->mn", a.astype(np.float64), b) + (start if accumulate else 0)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_every_split_of_a_large_product_agrees(threads):
    """Large enough to be threaded: many columns (column split), one column panel (row split),
    and a batch (item split)."""
    check(normal(16, 300), normal(300, 700), (16, 700))
    check(normal(700, 300), normal(300, 20), (700, 20))
    check(normal(4, 64, 200), normal(4, 200, 96), (4, 64, 96))


def test_empty_shared_dimension_gives_zeros_or_keeps_out():
    out = np.ones((3, 4), np.float32)
    gemm.matmul(np.empty((3, 0), np.float32), np.empty((0, 4), np.float32), out)
    assert not out.any()
    out[...] = 2
    gemm.matmul(np.empty((3, 0), np.float32), np.empty((0, 4), np.float32), out, accumulate=True)
    assert (out == 2).all()


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_other_types_use_numpy(dtype):
    a, b = normal(5, 7, dtype=np.float64).astype(dtype), normal(7, 3, dtype=np.float64).astype(dtype)
    out = np.ones((5, 3), dtype)
    gemm.matmul(a, b, out, accumulate=True)
    np.testing.assert_allclose(out, 1 + a @ b)


def test_negative_strides_use_numpy():
    a = normal(6, 9)[::-1]
    check(a, normal(9, 4), (6, 4))


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="do not give"):
        gemm.matmul(normal(3, 4), normal(4, 5), np.empty((3, 6), np.float32))
    with pytest.raises(ValueError, match="do not broadcast"):
        gemm.matmul(normal(2, 3, 4), normal(3, 4, 5), np.empty((3, 3, 5), np.float32))


def test_row_sums():
    x = normal(37, 129)
    out = np.empty(37, np.float32)
    gemm.row_sums(x, out)
    np.testing.assert_allclose(out, x.astype(np.float64).sum(axis=1), atol=1e-4)


def test_products_inside_parallel_tasks_agree(threads):
    """Products run side by side in run_parallel's tasks, one per thread (each task's products
    serially in its own thread)."""
    pairs = [(normal(40, 300), normal(300, 200)) for _ in range(threads)]
    outs = [np.empty((40, 200), np.float32) for _ in pairs]
    tasks = [lambda a=a, b=b, out=out: gemm.matmul(a, b, out) for (a, b), out in zip(pairs, outs)]
    parallel.run_parallel(tasks)
    for (a, b), out in zip(pairs, outs):
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, atol=1e-3)


AVX2_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+lzcnt,+mmx,+movbe,+popcnt,"
                 "+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3")

def im2col_reference(images, geometry):
    """(T, C kh kw, OH OW) im2col matrices of images (T, C, H, W), computed directly."""
    kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w = geometry
    items, channels, height, width = images.shape
    out_h = (height - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    col = np.empty((items, channels, kernel_h, kernel_w, out_h, out_w), np.float64)
    for i in range(kernel_h):
        for j in range(kernel_w):
            col[:, :, i, j] = images[:, :, i * dilation_h::stride_h, j * dilation_w::stride_w][
                :, :, :out_h, :out_w]
    return col.reshape(items, channels * kernel_h * kernel_w, out_h * out_w)


IMAGE_CASES = [((3, 4, 9, 11), (3, 3, 1, 1, 1, 1), 10), ((2, 3, 17, 13), (5, 3, 2, 3, 1, 2), 37),
               ((1, 40, 8, 40), (1, 1, 1, 1, 1, 1), 9), ((2, 70, 12, 12), (3, 3, 1, 1, 1, 1), 20)]


@pytest.mark.parametrize("shape,geometry,rows", IMAGE_CASES)
def test_image_products_match_im2col(threads, shape, geometry, rows):
    """image_matmul (b the im2col matrix) and image_weight_gradient (b its transpose), packed
    from the images, against products with the im2col matrix made directly; 70 channels x 9
    taps runs over two k blocks."""
    images = normal(*shape)
    col = im2col_reference(images, geometry)
    weights = normal(rows, col.shape[1])
    out = normal(shape[0], rows, col.shape[2])
    start = out.copy()
    gemm.image_matmul(weights, images, geometry, out, accumulate=True)
    np.testing.assert_allclose(out, start + weights.astype(np.float64) @ col, atol=2e-3)
    side = normal(shape[0], rows, col.shape[2])
    gradient = np.ones((rows, col.shape[1]), np.float32)
    gemm.image_weight_gradient(side, images, geometry, gradient)
    expected = 1 + (side.astype(np.float64) @ col.transpose(0, 2, 1)).sum(axis=0)
    np.testing.assert_allclose(gradient, expected, atol=5e-3)


AVX2_SCRIPT = """
import sys
import numpy as np
from pycaffelite import gemm, parallel
from pycaffelite.kernels import sgemm
from test_gemm import IMAGE_CASES, im2col_reference
assert (sgemm.MR, sgemm.NR) == (6, 16), (sgemm.MR, sgemm.NR)
rng = np.random.default_rng(0)
parallel.set_num_threads(2)
for shape, geometry, rows in IMAGE_CASES:
    images = rng.standard_normal(shape).astype(np.float32)
    col = im2col_reference(images, geometry)
    weights = rng.standard_normal((rows, col.shape[1])).astype(np.float32)
    out = np.ones((shape[0], rows, col.shape[2]), np.float32)
    gemm.image_matmul(weights, images, geometry, out, accumulate=True)
    np.testing.assert_allclose(out, 1 + weights.astype(np.float64) @ col, atol=2e-3)
print("ok")
"""


def test_the_avx2_micro_kernel(tmp_path):
    """On a CPU without AVX-512 the kernel uses its 6 x 16 tile: compiled here for an AVX2 target
    (numba's NUMBA_CPU_NAME/NUMBA_CPU_FEATURES) in a fresh process."""
    root, here = Path(__file__).resolve().parents[2], Path(__file__).resolve().parent
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=AVX2_FEATURES,
               NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=f"{root}{os.pathsep}{here}")
    result = subprocess.run([sys.executable, "-c", AVX2_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
