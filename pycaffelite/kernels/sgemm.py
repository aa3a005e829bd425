"""Single-precision GEMM compiled with numba for a convolution's image products: c[t] = a[t] .
b[t] (or +=) over a batch, where b[t] is the im2col matrix of an image (or its transpose) packed
straight from the image, so a convolution needs no column buffer.

The classic blocked scheme: for each block of KC values of the shared dimension, a is packed
into panels of MR rows (MR values of one column next to each other) and b, NC columns at a time,
into panels of NR columns (NR values of one row next to each other); an MR x NR micro-kernel then
keeps its whole tile of c in vector registers while it runs down the KC shared values, loading
NR / 16 vectors of b and broadcasting MR values of a per step. Packing makes every access in the
micro-kernel contiguous whatever the strides of a and b (transposed views cost nothing extra)
and zero-pads the edges, so the micro-kernel always computes a full tile; edge tiles go through
a small buffer into c, which may be any strided view. Panels of a whose rows are contiguous are
read in place.

Plain products run numpy's BLAS (`pycaffelite.gemm`: as fast as this kernel or faster on an
ordinary machine, see there). This kernel stays for the image products: packing b from the
images saves writing and reading an im2col matrix, and CaffeNet's training step took 1,217-1,295
ms of CPU time this way against 1,494-1,601 ms with an explicit im2col + the BLAS (paired runs,
2 threads, nothing pinned, 2-core AVX-512 EPYC, load 4-8). Compiled for the CPU (numba's
on-disk cache keeps it for later processes); it releases the GIL, so `pycaffelite.gemm` runs
parts of one product, or several products, in several threads.
"""
import numpy as np
from numba import njit, types

from . import CACHE
from .simd import load, store, vadd, vfma, vload, vstore, vzero, wide_vectors

# The micro-tile: MR rows by NR columns of c held in registers. With AVX-512 (32 vector
# registers of 16 floats) 8 rows of two vectors; with AVX2 (16 registers of 8 floats, a 16-lane
# vector taking two) 6 rows of one vector, which leaves room for the loads.
MR, NR = (8, 32) if wide_vectors() else (6, 16)
KC = 256  # shared dimension per packed block: an 8 KB panel of a
NC = 256  # columns of b packed at a time: 8 panels, 256 KB

_FLAT = types.Array(types.float32, 1, "C")
_COMPILE = dict(nogil=True, cache=CACHE, fastmath=True, error_model="numpy")


@njit(inline="always", **_COMPILE)
def _store_vector(c, start, add, vector):
    """c[start:start + 16] (+)= the vector."""
    if add:
        vector = vadd(vector, vload(c, start))
    vstore(c, start, vector)


@njit(inline="always", **_COMPILE)
def _store_row(c, start, add, left, right):
    """c[start:start + 32] (+)= the two vectors."""
    if add:
        left = vadd(left, vload(c, start))
        right = vadd(right, vload(c, start + 16))
    vstore(c, start, left)
    vstore(c, start + 16, right)


@njit(**_COMPILE)
def _micro_8x32(a, a_start, a_row, a_step, b, b_start, b_step, kc, c, c_start, c_step, add):
    """c[i, j] (+)= sum over p < kc of a[i, p] b[p, j] for i < 8, j < 32, where a[i, p] is
    the element a_start + i a_row + p a_step places past a's first, b[p, j] is b_start +
    p b_step + j past b's first and c[i, j] c_start + i c_step + j past c's first. (A packed
    panel of a has a_row 1 and a_step MR.) For AVX-512."""
    c00 = vzero(); c01 = vzero(); c10 = vzero(); c11 = vzero()  # noqa: E702
    c20 = vzero(); c21 = vzero(); c30 = vzero(); c31 = vzero()  # noqa: E702
    c40 = vzero(); c41 = vzero(); c50 = vzero(); c51 = vzero()  # noqa: E702
    c60 = vzero(); c61 = vzero(); c70 = vzero(); c71 = vzero()  # noqa: E702
    a0 = a_start
    a1, a2, a3 = a0 + a_row, a0 + 2 * a_row, a0 + 3 * a_row
    a4, a5, a6, a7 = a0 + 4 * a_row, a0 + 5 * a_row, a0 + 6 * a_row, a0 + 7 * a_row
    bi = b_start
    for _ in range(kc):
        b0 = vload(b, bi)
        b1 = vload(b, bi + 16)
        x = load(a, a0)
        c00 = vfma(x, b0, c00); c01 = vfma(x, b1, c01)  # noqa: E702
        x = load(a, a1)
        c10 = vfma(x, b0, c10); c11 = vfma(x, b1, c11)  # noqa: E702
        x = load(a, a2)
        c20 = vfma(x, b0, c20); c21 = vfma(x, b1, c21)  # noqa: E702
        x = load(a, a3)
        c30 = vfma(x, b0, c30); c31 = vfma(x, b1, c31)  # noqa: E702
        x = load(a, a4)
        c40 = vfma(x, b0, c40); c41 = vfma(x, b1, c41)  # noqa: E702
        x = load(a, a5)
        c50 = vfma(x, b0, c50); c51 = vfma(x, b1, c51)  # noqa: E702
        x = load(a, a6)
        c60 = vfma(x, b0, c60); c61 = vfma(x, b1, c61)  # noqa: E702
        x = load(a, a7)
        c70 = vfma(x, b0, c70); c71 = vfma(x, b1, c71)  # noqa: E702
        a0 += a_step; a1 += a_step; a2 += a_step; a3 += a_step  # noqa: E702
        a4 += a_step; a5 += a_step; a6 += a_step; a7 += a_step  # noqa: E702
        bi += b_step
    _store_row(c, c_start, add, c00, c01)
    _store_row(c, c_start + c_step, add, c10, c11)
    _store_row(c, c_start + 2 * c_step, add, c20, c21)
    _store_row(c, c_start + 3 * c_step, add, c30, c31)
    _store_row(c, c_start + 4 * c_step, add, c40, c41)
    _store_row(c, c_start + 5 * c_step, add, c50, c51)
    _store_row(c, c_start + 6 * c_step, add, c60, c61)
    _store_row(c, c_start + 7 * c_step, add, c70, c71)


@njit(**_COMPILE)
def _micro_6x16(a, a_start, a_row, a_step, b, b_start, b_step, kc, c, c_start, c_step, add):
    """As `_micro_8x32`, for a 6 x 16 tile (AVX2)."""
    c0 = vzero(); c1 = vzero(); c2 = vzero(); c3 = vzero(); c4 = vzero(); c5 = vzero()  # noqa: E702
    a0 = a_start
    a1, a2, a3, a4, a5 = a0 + a_row, a0 + 2 * a_row, a0 + 3 * a_row, a0 + 4 * a_row, a0 + 5 * a_row
    bi = b_start
    for _ in range(kc):
        vector = vload(b, bi)
        c0 = vfma(load(a, a0), vector, c0)
        c1 = vfma(load(a, a1), vector, c1)
        c2 = vfma(load(a, a2), vector, c2)
        c3 = vfma(load(a, a3), vector, c3)
        c4 = vfma(load(a, a4), vector, c4)
        c5 = vfma(load(a, a5), vector, c5)
        a0 += a_step; a1 += a_step; a2 += a_step; a3 += a_step; a4 += a_step  # noqa: E702
        a5 += a_step
        bi += b_step
    _store_vector(c, c_start, add, c0)
    _store_vector(c, c_start + c_step, add, c1)
    _store_vector(c, c_start + 2 * c_step, add, c2)
    _store_vector(c, c_start + 3 * c_step, add, c3)
    _store_vector(c, c_start + 4 * c_step, add, c4)
    _store_vector(c, c_start + 5 * c_step, add, c5)


_micro_kernel = _micro_8x32 if (MR, NR) == (8, 32) else _micro_6x16


@njit(**_COMPILE)
def _pack_a(a, start, row_step, col_step, rows, first_panel, k0, kc, packed):
    """packed[panel, p, i] = a[panel MR + i, k0 + p] for panels from first_panel on, zero past
    the last row; a is the matrix `start` elements past a's first, with the given element
    steps."""
    for panel in range(first_panel, (rows + MR - 1) // MR):
        base = panel * kc * MR
        last = min(MR, rows - panel * MR)
        if last < MR:
            packed[base:base + kc * MR] = 0.0
        first_row = start + panel * MR * row_step + k0 * col_step
        if row_step < col_step:  # read a in its memory order
            for p in range(kc):
                source = first_row + p * col_step
                for i in range(last):
                    packed[base + p * MR + i] = load(a, source + i * row_step)
        else:
            for i in range(last):
                source = first_row + i * row_step
                for p in range(kc):
                    packed[base + p * MR + i] = load(a, source + p * col_step)


@njit(inline="always", **_COMPILE)
def _zero_last_panel(packed, width, panel_size):
    """Zero the panel of a packed block of `width` columns that they fill only partly (the
    micro-kernel computes whole panels)."""
    full = width // NR
    if width % NR:
        packed[full * panel_size:(full + 1) * panel_size] = 0.0


IMAGE_COLUMNS, IMAGE_ROWS = 1, 2  # what b is: see sgemm_image


@njit(**_COMPILE)
def _tap_source(start, steps, geometry, k, pixel):
    """Where row k of an image's im2col matrix (channel, kernel row i, kernel column j) reads
    output pixel `pixel`: (offset from the image's first element, the pixel's column). The
    image is `start` elements past the array's first, with (-, channel, row, column) steps."""
    kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, out_w = geometry
    taps = kernel_h * kernel_w
    channel = k // taps
    i, j = (k - channel * taps) // kernel_w, (k - channel * taps) % kernel_w
    row, column = pixel // out_w, pixel % out_w
    return (start + channel * steps[1] + (row * stride_h + i * dilation_h) * steps[2]
            + j * dilation_w * steps[3]), column


@njit(**_COMPILE)
def _pack_image_columns(image, start, steps, geometry, k0, kc, first, width, packed):
    """The packing of b (packed[q, p, j] = b[k0 + p, q NR + j] for the ceil(width / NR) panels q
    of a block of `width` <= NC columns, zero past the last column) for the im2col matrix of the image `start` elements past image's first
    (channel, row, column steps = steps[1:]), columns (output pixels) first .. first + width,
    read straight from the image. geometry = (kernel h, w, stride h, w, dilation h, w, output
    width)."""
    stride_h, stride_w, out_w = geometry[2], geometry[3], geometry[6]
    panel_size = kc * NR
    _zero_last_panel(packed, width, panel_size)
    for p in range(kc):
        source, column = _tap_source(start, steps, geometry, k0 + p, first)
        for q in range(width):
            packed[q // NR * panel_size + p * NR + q % NR] = \
                load(image, source + column * stride_w * steps[3])
            column += 1
            if column == out_w:
                column = 0
                source += stride_h * steps[2]


@njit(**_COMPILE)
def _pack_image_rows(image, start, steps, geometry, k0, kc, first, width, packed):
    """_pack_image_columns' packing of the transposed im2col matrix (rows: output pixels k0 .. k0 + kc,
    columns: im2col rows first .. first + width) of the image `start` elements past image's
    first."""
    stride_h, stride_w, out_w = geometry[2], geometry[3], geometry[6]
    panel_size = kc * NR
    _zero_last_panel(packed, width, panel_size)
    for q in range(width):
        source, column = _tap_source(start, steps, geometry, first + q, k0)
        target = q // NR * panel_size + q % NR
        for p in range(kc):
            packed[target + p * NR] = load(image, source + column * stride_w * steps[3])
            column += 1
            if column == out_w:
                column = 0
                source += stride_h * steps[2]


_BATCH = types.Array(types.float32, 3, "A")
_BATCH_IN = types.Array(types.float32, 3, "A", readonly=True)
_IMAGES_IN = types.Array(types.float32, 4, "A", readonly=True)
_STEPS = types.UniTuple(types.intp, 3)
_IMAGE_STEPS = types.UniTuple(types.intp, 4)
_GEOMETRY = types.UniTuple(types.intp, 7)
_SHAPE = types.UniTuple(types.intp, 4)


@njit(**_COMPILE)
def scratch_sizes(rows, depth):
    """Sizes of sgemm's three scratch buffers (packed a, packed b, tile) for a product with
    `rows` rows of a and a shared dimension `depth`."""
    kc = min(depth, KC)
    return (rows + MR - 1) // MR * MR * kc, kc * NC, MR * NR


@njit(**_COMPILE)
def _product(a, a_steps, b, b_steps, b_kind, geometry, c, c_steps, shape, accumulate,
             a_packed, a_packed_in, b_packed, tile):
    """The blocked product of `sgemm_image`: b an image batch of the given kind, b_steps its 4
    strides in elements."""
    items, rows, depth, columns = shape
    if items == 0 or rows == 0 or columns == 0:
        return
    panels = (rows + MR - 1) // MR
    c_row, c_col = c_steps[1], c_steps[2]
    for item in range(items):
        a_item, b_item = item * a_steps[0], item * b_steps[0]
        c_item = item * c_steps[0]
        for k0 in range(0, depth, KC):
            kc = min(KC, depth - k0)
            add = accumulate or k0 > 0 or (item > 0 and c_steps[0] == 0)
            # panels of a with unit steps along k are read in place, any others are packed
            in_place = rows // MR if a_steps[2] == 1 else 0
            _pack_a(a, a_item, a_steps[1], a_steps[2], rows, in_place, k0, kc, a_packed)
            for block in range(0, columns, NC):
                block_width = min(NC, columns - block)
                if b_kind == IMAGE_COLUMNS:
                    _pack_image_columns(b, b_item, b_steps, geometry, k0, kc, block, block_width,
                                        b_packed)
                else:
                    _pack_image_rows(b, b_item, b_steps, geometry, k0, kc, block, block_width,
                                     b_packed)
                for j0 in range(block, block + block_width, NR):
                    width = min(NR, columns - j0)
                    b_first = (j0 - block) * kc
                    for panel in range(panels):
                        i0 = panel * MR
                        target = c_item + i0 * c_row + j0 * c_col
                        direct = c_col == 1 and width == NR and i0 + MR <= rows
                        # a whole tile goes into c, an edge tile into `tile` first (one type
                        # for both, so each micro-kernel call compiles once: see sgemm_image)
                        out, out_start, out_step, out_add = c, target, c_row, add
                        if not direct:
                            out, out_start, out_step, out_add = tile, 0, NR, False
                        # a's panel in place or packed (read through a's type), times b's
                        # packed panel
                        source, first, row_step, step = a, a_item + i0 * a_steps[1] + k0, \
                            a_steps[1], 1
                        if panel >= in_place:
                            source, first, row_step, step = a_packed_in, i0 * kc, 1, MR
                        _micro_kernel(source, first, row_step, step, b_packed, b_first, NR, kc,
                                      out, out_start, out_step, out_add)
                        if direct:
                            continue
                        for i in range(min(MR, rows - i0)):
                            row = target + i * c_row
                            for j in range(width):
                                value = load(tile, i * NR + j)
                                if add:
                                    value += load(c, row + j * c_col)
                                store(c, row + j * c_col, value)


@njit(types.void(_BATCH_IN, _STEPS, _IMAGES_IN, _IMAGE_STEPS, types.intp, _GEOMETRY, _BATCH,
                 _STEPS, _SHAPE, types.boolean, _FLAT, _BATCH_IN, _FLAT, _BATCH), **_COMPILE)
def sgemm_image(a, a_steps, images, image_steps, kind, geometry, c, c_steps, shape, accumulate,
                a_packed, a_packed_in, b_packed, tile):
    """c[t] = a[t] . b[t] (accumulate: c[t] += ...) for t < T, all float32, where shape =
    (T, M, K, N), b[t] is the im2col matrix of images[t] (C, Hp, Wp) (kind IMAGE_COLUMNS: rows
    (channel, kernel row, kernel column), columns output pixels) or its transpose (IMAGE_ROWS),
    read from the image while packing (no im2col buffer), and a and c come with their (batch,
    row, column) strides in elements (any non-negative ones: views, transposes, broadcasts).
    K must be positive; a batch stride of 0 for c sums the products of all t into it.
    geometry = (kernel h, w, stride h, w, dilation h, w, output width); image_steps are the
    images' (batch, channel, row, column) strides in elements. The caller checks that every
    pixel read lies in the image. Scratch: as `scratch_sizes` says; a_packed comes twice, flat
    for packing and as a read-only (1, 1, size) view for the micro-kernel, and the tile as a
    (1, 1, size) array: a's panels and the packed ones then share one type, as do c and the
    tile, so the micro-kernel compiles once (four variants took 6.3 s to compile, two 4.7 s,
    one 3.8 s). Runs in the calling thread, without the GIL: callers split large products
    into parts and run them side by side."""
    _product(a, a_steps, images, image_steps, kind, geometry, c, c_steps, shape, accumulate,
             a_packed, a_packed_in, b_packed, tile)


@njit(types.void(_FLAT, types.intp, types.intp, _FLAT), **_COMPILE)
def row_sums(x, rows, length, out):
    """out[r] = the sum of x[r length:(r + 1) length] for r < rows (a product with a vector of
    ones, without the multiplications)."""
    for r in range(rows):
        total = np.float32(0.0)
        start = r * length
        for j in range(length):
            total += x[start + j]
        out[r] = total
