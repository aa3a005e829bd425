"""Convolution, Deconvolution and Im2col: the layers built on im2col + GEMM.

Shared vocabulary (Caffe's): the bottom's axes are (outer..., C, S_1..S_d); `axis` picks the channel
axis C, the outer axes are flattened into a num N, the d axes after C are spatial. Every spatial
axis has a kernel size k, pad p, stride s and dilation d, given as `kernel_size`/`pad`/`stride`/
`dilation` (once for all axes or once per axis) or, for d = 2 only, `kernel_h/kernel_w`, `pad_h/
pad_w`, `stride_h/stride_w`. force_nd_im2col only picks one of Caffe's two equivalent CPU routines
and changes nothing here; `engine` is ignored.

A convolution maps an "image" side (Ci channels, spatial S) to a "column" side (Co channels,
spatial O, O = floor((S + 2p - (d(k-1)+1)) / s) + 1) through weights (Co, Ci/group, k...). The
Convolution layer's image is its bottom; the Deconvolution layer runs the same map transposed, so
its image is its top and its bottom is the column side.

Speed: images are processed in chunks of n; one chunk's im2col columns form a
(Ci prod(k), prod(O) n) matrix so that each group needs one GEMM per chunk (`pycaffelite.gemm`:
float32 on the CPU runs the compiled kernel, which also adds into its output and reads strided
views). Chunks are sized so the column buffer stays cache-sized (COLUMN_BUDGET), and on the CPU
their number is a multiple of the threads: the chunks run in one run per thread side by side
(`_run_chunks`), each thread with buffers of its own (`_buffer`) and its products in that
thread. The buffers' memory order is picked per layer (`images_inner` in reshape); stride-1
layers im2col all but the first spatial axis and run one GEMM per kernel row on shifted windows
instead (`_column_geometry`); the data direction of suitable stride-1 layers runs as a
convolution with the flipped kernel (`_FlippedConvolution`); with images outermost the forward
direction and the weight gradient run one product per image on the blob's side (no copy of it),
and for float32 2-D layers read the im2col matrix straight from the padded images as the
products pack it (`_implicit`: no column buffer pass); 1x1 convolutions with stride 1 and no pad
skip im2col in the forward and data directions altogether (one batched product over the images).
Depthwise convolutions (2-D, group == channels) run direct loops instead (`layers.depthwise`).
Every choice is checked against direct references and gradient checks in the tests.
"""
import math
import threading

import numpy as np

from .. import memory, parallel
from . import register
from ..gemm import image_matmul, image_weight_gradient, matmul, matmul_sum, row_sums
from .base import Layer, Workspace
from .depthwise import Depthwise, applies as is_depthwise
from .im2col import col2im, conv_output_size, deconv_output_size, im2col, interior, kernel_extent

# Elements of one chunk's column buffer (4 MB of float32): small enough to stay in cache between
# im2col and the GEMM that reads it, which measured faster than whole-batch columns.
COLUMN_BUDGET = 1 << 20
# A batch of one image keeps its images innermost only above this many output values per plane
# (see `_configure`).
SINGLE_IMAGE_INNER_PLANE = 32 * 32


def _move_axis(x, source, destination):
    """x with axis `source` moved to `destination`: numpy's moveaxis without its argument
    checks (3 us a call, against 0.2 us here: at batch 1 a layer makes several per pass)."""
    order = list(range(x.ndim))
    order.insert(destination % x.ndim, order.pop(source % x.ndim))
    return x.transpose(order)


def _per_axis(layer, p, name, num_spatial, default):
    """One value per spatial axis for the `name` field of ConvolutionParameter `p`."""
    values = list(getattr(p, name if name != "kernel" else "kernel_size"))
    list_name = "kernel_size" if name == "kernel" else name
    if name != "dilation" and (p.HasField(f"{name}_h") or p.HasField(f"{name}_w")):
        if num_spatial != 2:
            raise layer.error(f"{name}_h/{name}_w are only for 2-d convolution, but the input has "
                              f"{num_spatial} spatial axes; use {list_name} (once per axis)")
        if values:
            raise layer.error(f"give either {list_name} or {name}_h/{name}_w, not both")
        return (getattr(p, f"{name}_h"), getattr(p, f"{name}_w"))
    if len(values) == num_spatial:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * num_spatial
    if not values and default is not None:
        return (default,) * num_spatial
    raise layer.error(f"{list_name} must be given once or once per spatial axis ({num_spatial}), "
                      f"found {len(values)} values")


def conv_geometry(layer, p, num_spatial):
    """(kernel, stride, pad, dilation) tuples from ConvolutionParameter `p`, checked."""
    kernel = _per_axis(layer, p, "kernel", num_spatial, None)
    stride = _per_axis(layer, p, "stride", num_spatial, 1)
    pad = _per_axis(layer, p, "pad", num_spatial, 0)
    dilation = _per_axis(layer, p, "dilation", num_spatial, 1)
    for name, values in (("kernel size", kernel), ("stride", stride), ("dilation", dilation)):
        if any(v <= 0 for v in values):
            raise layer.error(f"every {name} must be positive, found {values}; set it per axis "
                              f"(a missing kernel_h/kernel_w or stride_h/stride_w counts as 0)")
    return kernel, stride, pad, dilation


def spatial_axes(layer, blob, p, minimum=0):
    """(channel axis, number of spatial axes) of `blob` under ConvolutionParameter `p`."""
    n = blob.num_axes
    if not -n <= p.axis < n:
        raise layer.error(f"convolution_param axis {p.axis} is out of range for a bottom of shape "
                          f"{blob.shape}; choose the channel axis")
    channel_axis = p.axis % n
    num_spatial = n - channel_axis - 1
    if num_spatial < minimum:
        raise layer.error(f"needs at least {minimum} spatial axis after the channel axis "
                          f"{channel_axis}, but the bottom has shape {blob.shape}")
    return channel_axis, num_spatial


def _conv_out_shape(layer, in_shape, kernel, stride, pad, dilation):
    """Convolution output spatial shape; an error where the kernel does not fit the padded input."""
    for axis, (size, k, s, p, d) in enumerate(zip(in_shape, kernel, stride, pad, dilation)):
        if kernel_extent(k, d) > size + 2 * p:
            raise layer.error(f"the kernel (extent {kernel_extent(k, d)} with dilation {d}) is "
                              f"larger than the padded input ({size} + 2 x {p}) on spatial axis "
                              f"{axis}; use a smaller kernel or more padding")
    return tuple(conv_output_size(*args) for args in zip(in_shape, kernel, pad, stride, dilation))


class _ConvolutionBase(Layer):
    """Parameters, buffers and the three GEMM directions shared by Convolution and Deconvolution.

    With W viewed per group g as a (Co/G, Ci/G * prod(k)) matrix and col(X) the im2col matrix of
    an image chunk X:
      forward direction     Y = W . col(X)                     (Convolution forward)
      data direction        X = col2im(W^T . Y)                (Deconvolution forward)
      weight gradient      dW += Y . col(X)^T
    Where the column holds only a partial im2col (see `_column_geometry`), each product is a sum
    over the kernel rows j of products of W's slice j with a window of the column.
    """

    min_bottom = 1
    min_top = 1
    allows_in_place = False
    transposed = False  # Deconvolution: the bottom is the column side
    is_mirror = False  # _FlippedConvolution: runs the forward direction only

    def setup(self, bottom, top):
        if len(bottom) != len(top):
            raise self.error(f"needs one top per bottom, found {len(bottom)} bottoms and "
                             f"{len(top)} tops")
        p = self.param.convolution_param
        self.channel_axis, self.num_spatial = spatial_axes(self, bottom[0], p)
        self.kernel, self.stride, self.pad, self.dilation = conv_geometry(self, p, self.num_spatial)
        self.channels = bottom[0].shape[self.channel_axis]
        self.num_output = p.num_output
        self.group = p.group
        if self.num_output <= 0:
            raise self.error("needs convolution_param { num_output: N } with N > 0, found "
                             f"{self.num_output}; give the number of output channels")
        if self.channels <= 0:
            raise self.error(f"the bottom has no channels (shape {bottom[0].shape}, channel axis "
                             f"{self.channel_axis}); give it at least one")
        if self.group <= 0 or self.channels % self.group or self.num_output % self.group:
            raise self.error(f"group {self.group} must divide both the input channels "
                             f"({self.channels}) and num_output ({self.num_output}); change group")
        # Image side (Ci) and column side (Co) of the underlying convolution.
        if self.transposed:
            self.ci, self.co = self.num_output, self.channels
        else:
            self.ci, self.co = self.channels, self.num_output
        self.is_1x1 = all(k == 1 and s == 1 and q == 0
                          for k, s, q in zip(self.kernel, self.stride, self.pad))
        self.bias_term = p.bias_term
        self.output_spatial_shape(bottom[0].shape[self.channel_axis + 1:])  # the kernel fits
        self.add_param_blob((self.co, self.ci // self.group) + self.kernel, p.weight_filler)
        if self.bias_term:
            self.add_param_blob((self.num_output,), p.bias_filler)
        self._buffer_key = None
        self._flipped = None

    def output_spatial_shape(self, in_shape):
        raise NotImplementedError

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != self.channel_axis + 1 + self.num_spatial:
            raise self.error(f"the bottom changed its number of axes to {len(shape)} (shape "
                             f"{shape}); it was set up with {self.channel_axis + 1 + self.num_spatial}")
        if shape[self.channel_axis] != self.channels:
            raise self.error(f"the bottom has {shape[self.channel_axis]} channels on axis "
                             f"{self.channel_axis}, but the layer was set up with {self.channels}")
        for i, blob in enumerate(bottom[1:], start=1):
            if blob.shape != shape:
                raise self.error(f"all bottoms must have the same shape: bottom 0 is {shape}, "
                                 f"bottom {i} is {blob.shape}")
        in_spatial = shape[self.channel_axis + 1:]
        out_spatial = self.output_spatial_shape(in_spatial)
        for blob in top:
            blob.reshape(shape[:self.channel_axis] + (self.num_output,) + out_spatial)
        self.num = bottom[0].count(0, self.channel_axis)
        # Image side S and column side O of the underlying convolution.
        self.s_shape, self.o_shape = (out_spatial, in_spatial) if self.transposed \
            else (in_spatial, out_spatial)
        # The data direction of a stride-1 convolution is itself a convolution (of the column
        # side with the flipped kernel); run so, it needs no col2im and its shifted windows
        # accumulate Ci rows instead of Ci k_2..k_d. Measured faster where it costs no more
        # multiplications (image side no larger than the column side: "same" padding) and its
        # GEMMs are no thinner (Ci >= Co); a pad beyond the kernel's reach cannot be flipped.
        s_count = int(np.prod(self.s_shape, dtype=np.int64))
        flip = (all(s == 1 for s in self.stride) and not self.is_1x1
                and all(p < kernel_extent(k, d) for k, d, p in zip(self.kernel, self.dilation, self.pad))
                and s_count <= int(np.prod(self.o_shape, dtype=np.int64)) and self.ci >= self.co)
        if not flip:
            self._flipped = None
        elif self._flipped is None:
            self._flipped = _FlippedConvolution(self)
        self._configure()
        if self._flipped is not None:
            self._flipped.configure()
        self._depthwise = Depthwise(self) if is_depthwise(self) else None

    def _configure(self):
        """Derived sizes, buffer layout, chunk size and buffers, from the channels, geometry,
        num, s_shape and o_shape."""
        self.o_count = int(np.prod(self.o_shape, dtype=np.int64))
        self.kernel_dim = (self.ci // self.group) * int(np.prod(self.kernel, dtype=np.int64))
        # Memory order of a chunk's images in the padded, column and side buffers. Innermost, a
        # kernel offset's window moves in runs of (last spatial axis x n) contiguous values, which
        # makes im2col/col2im several times faster, but the side and the image then need
        # transposing copies to and from the blobs. So: innermost where every stride is 1 (else
        # the runs are single values) and the column has at least 3x the side's rows (measured
        # break-even of the faster im2col/col2im against the transposes); else outermost. A
        # batch of one image gains no longer runs from it: there the image product reading the
        # padded image (`_implicit`) wins unless the output plane is large (batch-1 forward, one
        # thread: ResNet-50's 3x3 layers at 14x14 3.7 -> 2.8 ms, GoogLeNet's at 7x7 1.5-2.0 ->
        # 0.7-1.0 ms, LeNet's conv2 138 -> 81 us; at 28x28 even, at 56x56 innermost wins by
        # 10-30%).
        self.images_inner = (all(s == 1 for s in self.stride)
                             and self.kernel_dim * self.group >= 3 * self.co
                             and (self.num > 1 or self.o_count > SINGLE_IMAGE_INNER_PLANE))
        self._column_geometry()
        col_per_image = self.col_rows * self.group * self.col_count
        # On the CPU the chunks run in one run per thread (`_run_chunks`): their number is
        # made a multiple of the threads, so that the runs get equal shares of the images.
        runs = parallel.num_threads() if self.xp is np else 1
        count = -(-self.num // max(1, min(self.num, COLUMN_BUDGET // max(col_per_image, 1))))
        count = max(1, -(-count // runs)) * runs  # at least one run, even for an empty batch
        self.chunk = max(1, -(-self.num // count))
        self._allocate_buffers()

    def _column_geometry(self):
        """What the column buffer holds: the full im2col, or with images innermost and a kernel
        taller than 1 on the first spatial axis, the im2col over the other axes only, keeping
        that axis whole. Rows o_1 + j d_1 of such a column, for o_1 < O_1, are the rows kernel row j
        reads, and (images and later axes being inner) they are a contiguous block of GEMM
        columns: so the GEMMs run once per kernel row j ("shift") on a window of the column
        instead of once on a column k_1 times larger."""
        shift = self.images_inner and self.num_spatial > 0 and self.kernel[0] > 1
        self.shifts = self.kernel[0] if shift else 1
        if shift:
            self.col_kernel = (1,) + self.kernel[1:]
            self.col_stride = (1,) + self.stride[1:]
            self.col_dilation = (1,) + self.dilation[1:]
            self.col_shape = (self.s_shape[0] + 2 * self.pad[0],) + self.o_shape[1:]
        else:
            self.col_kernel, self.col_stride, self.col_dilation = self.kernel, self.stride, self.dilation
            self.col_shape = self.o_shape
        self.col_rows = (self.ci // self.group) * int(np.prod(self.col_kernel, dtype=np.int64))
        self.col_count = int(np.prod(self.col_shape, dtype=np.int64))

    # -- buffers -------------------------------------------------------------------------------
    def _allocate_buffers(self):
        """Column, column-side and padded-image buffers for a full chunk, in the current array
        module; kept when a reshape (or a mode switch back) needs the same ones. The buffers are
        flat: a chunk of n images (the last may be short) uses a contiguous prefix shaped for n."""
        xp = self.xp
        chunk = self.chunk
        self.padded_shape = tuple(s + 2 * q for s, q in zip(self.s_shape, self.pad))
        padded_size = self.ci * int(np.prod(self.padded_shape, dtype=np.int64)) * chunk
        col_size = self.col_rows * self.group * chunk * self.col_count
        side_size = self.co * chunk * self.o_count
        weights = (self.shifts, self.group, self.co // self.group, self.col_rows)
        col2im_here = self._flipped is None and not self.is_mirror
        rows_size = 0 if self.is_mirror else self.num * self.num_output  # bias gradient rows
        key = (xp, chunk, self.images_inner, self.padded_shape, col_size, side_size, weights,
               col2im_here, rows_size)
        if self._buffer_key == key:
            return
        self._buffer_key = key
        # Images outermost and no pad: im2col reads the blob itself, col2im writes it.
        use_padded = self.images_inner or any(self.pad)
        dw_shape = (self.shifts, self.group, self.col_rows, self.co // self.group) \
            if self.images_inner else (self.group, self.co // self.group, self.col_rows)
        self._buffer_sizes = {
            "col": col_size,
            "side": side_size,
            "pad_in": padded_size if use_padded else None,
            "pad_out": padded_size if use_padded and col2im_here else None,
            "shifted_weight": weights,
            "shifted_dw": None if self.is_mirror else dw_shape,
            "bias_rows": rows_size,
            # a mirror's weights: the owner's, flipped (see _FlippedConvolution)
            "weight": (self.co, self.ci // self.group) + self.kernel if self.is_mirror else None,
        }
        per_thread = sum(math.prod(size) if isinstance(size, tuple) else size
                         for size in self._buffer_sizes.values() if size is not None)
        threads = parallel.num_threads() if xp is np else 1
        memory.check_bytes(per_thread * threads * self.dtype.itemsize,
                           f"the work buffers ({threads} thread(s) x {per_thread} values)")
        self._buffer_sets = {}
        self._buffer("col")  # the calling thread's set now, at reshape time

    def _buffer_set(self):
        """The calling thread's buffers: every thread that runs chunks (`_run_chunks`) has a
        set of its own, made on its first use."""
        buffers = self._buffer_sets.get(threading.get_ident())
        if buffers is None or buffers["xp"] is not self.xp:
            xp = self.xp
            buffers = {name: None if size is None else xp.empty(size, self.dtype)
                       for name, size in self._buffer_sizes.items()}
            buffers["xp"] = xp
            buffers["zero_border_images"] = None  # the n pad_in's zero border is laid out for
            self._buffer_sets[threading.get_ident()] = buffers
        return buffers

    def _buffer(self, name):
        return self._buffer_set()[name]

    def _run_chunks(self, work):
        """work(chunks) for runs of the chunks (n0, n): one run per thread, side by side
        (products inside stay in their thread), when there are several chunks and threads and
        the arrays are numpy's; else one run of all. The runs' results, in order."""
        chunks = list(self._chunks())
        if self.xp is not np:
            return [work(chunks)]
        return parallel.over_ranges(len(chunks), lambda lo, hi: work(chunks[lo:hi]))

    # -- array views ----------------------------------------------------------------------------
    def _image(self, array):
        return array.reshape((self.num, self.ci) + self.s_shape)

    def _side(self, array):
        return array.reshape(self.num, self.co, self.o_count)

    def _grouped_weight(self):
        return self.blobs[0].read_data().reshape(self.group, self.co // self.group, self.kernel_dim)

    def _shifted_weight(self):
        """The weights as (shifts, G, Co/G, column rows): per kernel row j of the first spatial
        axis when shifting (a copy into a buffer), else the grouped weights as they are."""
        if self.shifts == 1:
            return self._grouped_weight()[None]
        cog, cig = self.co // self.group, self.ci // self.group
        weight = self.blobs[0].read_data().reshape(self.group, cog, cig, self.shifts, -1)
        shifted = self._buffer("shifted_weight")
        shifted.reshape(self.shifts, self.group, cog, cig, -1)[...] = weight.transpose(3, 0, 1, 2, 4)
        return shifted

    def _window(self, j, n):
        """The GEMM columns of a column matrix (for n images) that shift j multiplies."""
        if self.shifts == 1:
            return slice(0, n * self.col_count)
        run = self.o_count // self.o_shape[0] * n  # GEMM columns per row of the first axis
        start = j * self.dilation[0] * run
        return slice(start, start + self.o_shape[0] * run)

    def _bias(self, ndim):
        """The bias shaped to broadcast over axis 0 of a channels-first array of ndim axes."""
        return self.blobs[1].read_data().reshape((-1,) + (1,) * (ndim - 1))

    def _chunks(self):
        for n0 in range(0, self.num, self.chunk):
            yield n0, min(self.chunk, self.num - n0)

    def _padded(self, name, n):
        """Padded buffer `name` for n images as a logical (Ci, *Sp, n) view, or None. pad_in keeps
        a zero border: it is cleared whenever n (and with it the layout) changes."""
        flat = self._buffer(name)
        if flat is None:
            return None
        shape = (self.ci,) + self.padded_shape + (n,) if self.images_inner \
            else (self.ci, n) + self.padded_shape
        physical = flat[:int(np.prod(shape, dtype=np.int64))].reshape(shape)
        buffers = self._buffer_set()
        if name == "pad_in" and buffers["zero_border_images"] != n:
            physical[...] = 0
            buffers["zero_border_images"] = n
        return physical if self.images_inner else _move_axis(physical, 1, -1)

    def _column_buffer(self, n):
        """The column buffer for n images: its logical (Ci, *K', *O', n) view (K', O' from
        `_column_geometry`) and its (G, column rows, prod(O') n) matrix."""
        flat = self._buffer("col")[:self.col_rows * self.group * n * self.col_count]
        matrix = flat.reshape(self.group, self.col_rows, n * self.col_count)
        if self.images_inner:
            return flat.reshape((self.ci,) + self.col_kernel + self.col_shape + (n,)), matrix
        logical = flat.reshape((self.ci,) + self.col_kernel + (n,) + self.col_shape)
        return _move_axis(logical, 1 + self.num_spatial, -1), matrix

    def _side_chunk(self, array):
        """The side buffer's (Co, P, n) array (images innermost) as a (n, Co, P) view."""
        return array.transpose(2, 0, 1)

    def _side_buffer(self, n):
        """The side buffer for n images: (its (Co, P, n) or (Co, n, P) array, its matrix)."""
        flat = self._buffer("side")[:self.co * n * self.o_count]
        shape = (self.co, self.o_count, n) if self.images_inner else (self.co, n, self.o_count)
        return flat.reshape(shape), flat.reshape(self.group, self.co // self.group, n * self.o_count)

    # -- chunk helpers --------------------------------------------------------------------------
    def _to_logical(self, target, chunk):
        """target (C, ..., n) = chunk (n, C, ...) with the images moved last. With images
        innermost in memory this copies image by image: reading each image contiguously measured
        1.5-4x faster than one transposing copy."""
        if self.images_inner:
            for i in range(chunk.shape[0]):
                target[..., i] = chunk[i]
        else:
            target[...] = _move_axis(chunk, 0, -1)

    def _columns(self, image, n0, n):
        """im2col of images n0..n0+n of `image` (N, Ci, *S), as the column buffer's matrix."""
        column, matrix = self._column_buffer(n)
        if self.is_1x1:  # the column is the image (dropping its unit kernel axes keeps a view)
            self._to_logical(column.reshape(self.ci, *self.s_shape, n), image[n0:n0 + n])
            return matrix
        im2col(self._image_source(image, n0, n), self.col_kernel, self.col_stride,
               self.col_dilation, column)
        return matrix

    def _image_source(self, image, n0, n):
        """Images n0..n0+n of `image` (N, Ci, *S) as the logical (Ci, *Sp, n) padded image that
        im2col reads: the pad_in buffer with the images copied in, or (no pad, images
        outermost) a view of `image` itself."""
        padded = self._padded("pad_in", n)
        if padded is None:
            return _move_axis(image[n0:n0 + n], 0, -1)
        self._to_logical(interior(padded, self.pad), image[n0:n0 + n])
        return padded

    def _implicit(self):
        """Whether the products read the im2col matrix straight from the padded images
        (`pycaffelite.gemm.image_matmul`): float32 numpy arrays, 2-D, images outermost."""
        return (self.xp is np and self.dtype == np.float32 and self.num_spatial == 2
                and not self.images_inner and not self.is_1x1)

    def _image_groups(self, image, n0, n):
        """The padded images n0..n0+n as (n, Ci, Hp, Wp), one view per group of channels."""
        source = _move_axis(self._image_source(image, n0, n), -1, 0)
        cig = self.ci // self.group
        return [source[:, g * cig:(g + 1) * cig] for g in range(self.group)]

    def _geometry(self):
        return tuple(self.kernel) + tuple(self.stride) + tuple(self.dilation)

    def _add_columns_to_image(self, column, image, n0, n, add_bias):
        """Overwrite images n0..n0+n of `image` (N, Ci, *S) with col2im of the logical `column`
        (+ bias if asked)."""
        target = _move_axis(image[n0:n0 + n], 0, -1)
        padded = self._padded("pad_out", n)
        geometry = (self.col_kernel, self.col_stride, self.col_dilation)
        if padded is None:
            col2im(column, *geometry, target)
            if add_bias:
                target += self._bias(target.ndim)
            return
        col2im(column, *geometry, padded)
        source = _move_axis(interior(padded, self.pad), -1, 0)
        if add_bias:
            self.xp.add(source, self._bias(source.ndim - 1), out=image[n0:n0 + n])
        else:
            image[n0:n0 + n] = source

    def _side_matrix(self, side, n0, n):
        """Images n0..n0+n of the column side (N, Co, P) as a (G, Co/G, n P) matrix (a copy into
        the side buffer unless n == 1)."""
        if n == 1:
            return side[n0].reshape(self.group, self.co // self.group, self.o_count)
        array, matrix = self._side_buffer(n)
        if self.images_inner:
            self._to_logical(array, side[n0:n0 + n])
        else:
            array[...] = side[n0:n0 + n].swapaxes(0, 1)
        return matrix

    def _multiply_images_into_side(self, weights, image, side, n0, n, add_bias):
        """side[n0:n0+n] = weights . col(images n0..n0+n) (+ bias), images outermost, the
        columns read from the images as the products pack them (no column buffer)."""
        target = side[n0:n0 + n].reshape(n, self.group, self.co // self.group, self.o_count)
        for g, images in enumerate(self._image_groups(image, n0, n)):
            image_matmul(weights[0, g], images, self._geometry(), target[:, g])
        if add_bias:
            side[n0:n0 + n] += self._bias(2)

    def _multiply_into_side(self, weights, col, side, n0, n, add_bias):
        """side[n0:n0+n] = the sum over shifts j of weights[j] . col[window j] (+ bias), per
        group, from (shifts, G, Co/G, rows) weights and a (G, rows, columns) column matrix.
        With images outermost (and so one shift), one product per image writes the side
        directly (no side buffer and copy)."""
        xp = self.xp
        if not self.images_inner:
            target = side[n0:n0 + n]
            per_image = col.reshape(self.group, self.col_rows, n, self.o_count).transpose(2, 0, 1, 3)
            matmul(weights[0], per_image,
                   target.reshape(n, self.group, self.co // self.group, self.o_count))
            if add_bias:
                target += self._bias(2)
            return
        if n == 1:
            target = side[n0]
            out = target.reshape(self.group, self.co // self.group, self.o_count)
        else:
            array, out = self._side_buffer(n)
        for j in range(self.shifts):
            matmul(weights[j], col[..., self._window(j, n)], out, accumulate=j > 0)
        if n == 1:
            if add_bias:
                target += self._bias(2)
        # (written in the blob's memory order: a ufunc writing through a transposed view is slow)
        elif add_bias:
            xp.add(self._side_chunk(array), self._bias(2), out=side[n0:n0 + n])
        else:
            side[n0:n0 + n] = self._side_chunk(array)

    # -- the three directions -------------------------------------------------------------------
    def _forward_direction(self, image, side, add_bias):
        """side (N, Co, P) = W . col(image (N, Ci, *S)) (+ bias)."""
        if self.is_1x1:
            out = side.reshape(self.num, self.group, self.co // self.group, self.o_count)
            matmul(self._grouped_weight(), image.reshape(out.shape[:2] + (-1, self.o_count)), out)
            if add_bias:
                side += self._bias(2)
            return
        weights = self._shifted_weight()

        def run(chunks):
            for n0, n in chunks:
                if self._implicit():
                    self._multiply_images_into_side(weights, image, side, n0, n, add_bias)
                else:
                    self._multiply_into_side(weights, self._columns(image, n0, n), side, n0, n,
                                             add_bias)
        self._run_chunks(run)

    def _data_direction(self, side, image, add_bias):
        """image (N, Ci, *S) = col2im(W^T . side (N, Co, P)) (+ bias)."""
        if self._flipped is not None:
            self._flipped.run(side, image, add_bias)
            return
        if self.is_1x1:
            out = image.reshape(self.num, self.group, self.ci // self.group, self.o_count)
            matmul(self._grouped_weight().swapaxes(1, 2),
                   side.reshape(out.shape[:2] + (-1, self.o_count)), out)
            if add_bias:
                image += self._bias(image.ndim - 1)
            return
        weights_t = self._shifted_weight().swapaxes(2, 3)

        def run(chunks):
            for n0, n in chunks:
                column, matrix = self._column_buffer(n)
                side_matrix = self._side_matrix(side, n0, n)
                # shift 0 writes its window, the columns after it start at 0, later shifts add
                first = self._window(0, n)
                matmul(weights_t[0], side_matrix, matrix[..., first])
                matrix[..., first.stop:] = 0
                for j in range(1, self.shifts):
                    matmul(weights_t[j], side_matrix, matrix[..., self._window(j, n)],
                           accumulate=True)
                self._add_columns_to_image(column, image, n0, n, add_bias)
        self._run_chunks(run)

    def _add_weight_gradient(self, image, side):
        """dW += side (N, Co, P) . col(image (N, Ci, *S))^T, summed over the images.

        With images innermost, computed transposed, as col . side^T per shift into (shifts, G,
        rows, Co/G) (this long-and-thin product measured 1.6x faster than side . col^T with
        numpy's BLAS); with images outermost, per image into (G, Co/G, rows)
        (`_add_outer_weight_gradient`). Each run of chunks sums into its thread's buffer; the
        runs' sums are added to the gradient at the end."""
        def run(chunks):
            total = self._buffer("shifted_dw")
            total[...] = 0
            for n0, n in chunks:
                if not self.images_inner:  # (then shifts == 1)
                    self._add_outer_weight_gradient(image, side, n0, n, total)
                    continue
                col = self._columns(image, n0, n)
                side_t = self._side_matrix(side, n0, n).swapaxes(1, 2)
                for j in range(self.shifts):
                    matmul(col[..., self._window(j, n)], side_t, total[j], accumulate=True)
            return total
        cog, cig = self.co // self.group, self.ci // self.group
        dweight = self.blobs[0].write_diff().reshape(self.group, cog, cig, self.shifts, -1)
        for total in self._run_chunks(run):  # one per run of chunks
            if self.images_inner:
                total = total.reshape(self.shifts, self.group, cig, -1, cog).transpose(1, 4, 2, 0, 3)
            dweight += total.reshape(dweight.shape)

    def _add_outer_weight_gradient(self, image, side, n0, n, total):
        """total (G, Co/G, rows) += the weight gradient of images n0..n0+n, with images
        outermost: per group, the sum over the images of side_i . col_i^T, straight from the side
        (no copy of it into the side buffer), and from the images where `_implicit`."""
        cog = self.co // self.group
        side_g = side[n0:n0 + n].reshape(n, self.group, cog, self.o_count)
        if self._implicit():
            for g, images in enumerate(self._image_groups(image, n0, n)):
                image_weight_gradient(side_g[:, g], images, self._geometry(), total[g])
            return
        col = self._columns(image, n0, n)
        per_image_t = col.reshape(self.group, self.col_rows, n, self.o_count).transpose(0, 2, 3, 1)
        for g in range(self.group):
            matmul_sum(side_g[:, g], per_image_t[g], total[g], accumulate=True)

    def _add_bias_gradient(self, top_diff):
        """db += the sum of the top diff over the num and spatial axes: per image and channel
        a sum over space, then a sum over the images (numpy's sum over the two axes at once
        measured 6x slower)."""
        per_image = self._buffer("bias_rows")
        row_sums(top_diff.reshape(self.num * self.num_output, -1), per_image)
        db = self.blobs[1].write_diff()
        db += per_image.reshape(self.num, self.num_output).sum(axis=0)


class _FlippedConvolution(_ConvolutionBase):
    """The data direction of a stride-1 convolution as a forward direction. With kernel size K,
    dilation d and pad p on an axis, and q = d (K - 1) - p:

        image[n, c, i] = sum_{m, k} W[m, c, k] side_padded[n, m, i + q - k d]
                       = sum_{m, j} W'[c, m, j] side_padded[n, m, i + j d],   j = K - 1 - k,

    a convolution of the side, padded by q, with W'[c, m, j] = W[m, c, K - 1 - j] (channel axes
    swapped within each group, kernel flipped). Not a layer of a net: it works for `owner`, with
    a flipped copy of the owner's weights (refreshed every pass) and its bias."""

    is_mirror = True

    def __init__(self, owner):  # not Layer.__init__: no LayerParameter of its own
        self.owner = owner
        self.dtype = owner.dtype
        self.blobs = [_ArrayHolder(), None]
        self._buffer_key = None
        self._flipped = None

    def configure(self):
        o = self.owner
        self.ci, self.co, self.group = o.co, o.ci, o.group
        self.kernel, self.dilation, self.stride = o.kernel, o.dilation, o.stride
        self.pad = tuple(kernel_extent(k, d) - 1 - q for k, d, q in zip(o.kernel, o.dilation, o.pad))
        self.num_spatial, self.is_1x1 = o.num_spatial, False
        self.num, self.s_shape, self.o_shape = o.num, o.o_shape, o.s_shape
        self._configure()

    def run(self, side, image, add_bias):
        """The owner's image (N, Ci, *S) from its side (N, Co, P) (+ bias)."""
        o = self.owner
        weight = o.blobs[0].read_data().reshape((o.group, o.co // o.group, o.ci // o.group) + o.kernel)
        flipped = self._buffer("weight")
        flipped.reshape(weight.swapaxes(1, 2).shape)[...] = \
            weight.swapaxes(1, 2)[(Ellipsis,) + (slice(None, None, -1),) * self.num_spatial]
        self.blobs[0].array = flipped
        self.blobs[1] = o.blobs[1] if o.bias_term else None
        self._forward_direction(side.reshape((self.num, self.ci) + self.s_shape),
                                image.reshape(self.num, self.co, self.o_count), add_bias)


class _ArrayHolder:
    """Blob-like access (read_data) to an array computed on the fly."""

    array = None

    def read_data(self):
        return self.array


@register("Convolution")
class ConvolutionLayer(_ConvolutionBase):
    """Convolution (cross-correlation, as Caffe) with groups, pad, stride and dilation, any number
    of spatial axes d.

        top[n, m, o] = b[m] + sum_{c in group(m), k} W[m, c', k] * x_pad[n, c, o * s + k * dil]

    bottom: (outer..., C, S_1..S_d)      top: (outer..., num_output, O_1..O_d)
    O_i = floor((S_i + 2 p_i - (dil_i (k_i - 1) + 1)) / s_i) + 1; x_pad is the bottom with p_i
    zeros on both sides of axis i; group g sees channels [g C/G, (g+1) C/G) and makes outputs
    [g M/G, (g+1) M/G), c' is the channel index within its group.
    params: W (num_output, C/group, k_1..k_d), b (num_output,) unless bias_term is false.
    Several bottoms (of one shape) are convolved with the same weights into as many tops.

    Backward: dW += sum_n top_diff . col(x)^T, db += sum of top_diff over n and o,
    bottom_diff = col2im(W^T . top_diff).
    """

    def output_spatial_shape(self, in_shape):
        return _conv_out_shape(self, in_shape, self.kernel, self.stride, self.pad, self.dilation)

    def forward(self, bottom, top):
        if not self.num:
            return  # an empty batch: nothing to compute, no gradient to add
        for b, t in zip(bottom, top):
            if self._depthwise is not None:
                self._depthwise.forward(b.read_data(), t.write_data())
                continue
            self._forward_direction(self._image(b.read_data()), self._side(t.write_data()),
                                    self.bias_term)

    def backward(self, top, propagate_down, bottom):
        if not self.num:
            return  # an empty batch: nothing to compute, no gradient to add
        for i, (t, b) in enumerate(zip(top, bottom)):
            top_diff = self._side(t.read_diff())
            if self.bias_term and self.param_propagate_down[1]:
                self._add_bias_gradient(top_diff)
            if self._depthwise is not None:
                self._depthwise.backward(b.read_data(), t.read_diff(),
                                         b.write_diff() if propagate_down[i] else None,
                                         self.param_propagate_down[0])
                continue
            if self.param_propagate_down[0]:
                self._add_weight_gradient(self._image(b.read_data()), top_diff)
            if propagate_down[i]:
                self._data_direction(top_diff, self._image(b.write_diff()), False)


@register("Deconvolution")
class DeconvolutionLayer(_ConvolutionBase):
    """Deconvolution: the transpose (adjoint) of Convolution with the same parameters, e.g. for
    learned upsampling. Each bottom pixel adds its value times the kernel into a window of the top.

        top = col2im(W^T . bottom) + b

    bottom: (outer..., C, S_1..S_d)      top: (outer..., num_output, O_1..O_d)
    O_i = s_i (S_i - 1) + dil_i (k_i - 1) + 1 - 2 p_i (the pad is cropped off the result).
    params: W (C, num_output/group, k_1..k_d) -- Caffe's order, input channels first --
    and b (num_output,) unless bias_term is false.

    Backward: dW += sum_n bottom . col(top_diff)^T, db += sum of top_diff over n and o,
    bottom_diff = W . col(top_diff) (a Convolution of top_diff).
    """

    transposed = True

    def output_spatial_shape(self, in_shape):
        out = tuple(deconv_output_size(*args)
                    for args in zip(in_shape, self.kernel, self.pad, self.stride, self.dilation))
        if any(o <= 0 for o in out):
            raise self.error(f"the output would have spatial shape {out} for input {in_shape}; "
                             f"the pad is too large for this kernel and stride")
        return out

    def forward(self, bottom, top):
        if not self.num:
            return  # an empty batch: nothing to compute, no gradient to add
        for b, t in zip(bottom, top):
            self._data_direction(self._side(b.read_data()), self._image(t.write_data()),
                                 self.bias_term)

    def backward(self, top, propagate_down, bottom):
        if not self.num:
            return  # an empty batch: nothing to compute, no gradient to add
        for i, (t, b) in enumerate(zip(top, bottom)):
            top_diff = self._image(t.read_diff())
            if self.bias_term and self.param_propagate_down[1]:
                self._add_bias_gradient(top_diff)
            if self.param_propagate_down[0]:
                self._add_weight_gradient(top_diff, self._side(b.read_data()))
            if propagate_down[i]:
                self._forward_direction(top_diff, self._side(b.write_diff()), False)


@register("Im2col")
class Im2colLayer(Layer):
    """Im2col: the columns a Convolution with these convolution_param settings would multiply.

        top[n, c * prod(k) + flat(k), o] = x_pad[n, c, o * s + k * dil]

    bottom: (outer..., C, S_1..S_d), d >= 1      top: (outer..., C prod(k), O_1..O_d)
    with O as for Convolution (num_output, group and the fillers are not used).
    Backward: bottom_diff = col2im(top_diff), the sum of every column entry at the place it was
    read from.
    """

    exact_num_bottom = 1
    exact_num_top = 1
    allows_in_place = False

    def setup(self, bottom, top):
        p = self.param.convolution_param
        self.channel_axis, self.num_spatial = spatial_axes(self, bottom[0], p, minimum=1)
        self.kernel, self.stride, self.pad, self.dilation = conv_geometry(self, p, self.num_spatial)
        self._pad_buffers = Workspace()

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != self.channel_axis + 1 + self.num_spatial:
            raise self.error(f"the bottom changed its number of axes to {len(shape)} (shape "
                             f"{shape}); it was set up with {self.channel_axis + 1 + self.num_spatial}")
        self.num = bottom[0].count(0, self.channel_axis)
        self.channels = shape[self.channel_axis]
        self.in_shape = shape[self.channel_axis + 1:]
        self.out_shape = _conv_out_shape(self, self.in_shape, self.kernel, self.stride, self.pad,
                                         self.dilation)
        kernel_count = int(np.prod(self.kernel, dtype=np.int64))
        top[0].reshape(shape[:self.channel_axis] + (self.channels * kernel_count,) + self.out_shape)
        self._padded("in")
        self._padded("out")

    def _padded(self, name):
        """The image buffer `name` ("in": zero border, for im2col; "out": for col2im) as a logical
        (C, *(S + 2p), N) view, made in reshape (again if the mode changed since); None without
        pad."""
        if not any(self.pad):
            return None
        shape = (self.channels, self.num) + tuple(s + 2 * q for s, q in zip(self.in_shape, self.pad))
        buffer = self._pad_buffers.get(self.xp, name, shape, self.dtype, fill=0)
        return _move_axis(buffer, 1, -1)

    def _image(self, array):
        """A bottom array as the logical (C, *S, N) image."""
        return _move_axis(array.reshape((self.num, self.channels) + self.in_shape), 0, -1)

    def _columns(self, array):
        """A top array as the logical (C, *K, *O, N) column."""
        view = array.reshape((self.num, self.channels) + self.kernel + self.out_shape)
        return _move_axis(view, 0, -1)

    def forward(self, bottom, top):
        x = self._image(bottom[0].read_data())
        padded = self._padded("in")
        if padded is not None:
            interior(padded, self.pad)[...] = x
            x = padded
        im2col(x, self.kernel, self.stride, self.dilation, self._columns(top[0].write_data()))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        col = self._columns(top[0].read_diff())
        dx = self._image(bottom[0].write_diff())
        padded = self._padded("out")
        if padded is None:
            col2im(col, self.kernel, self.stride, self.dilation, dx)
        else:
            col2im(col, self.kernel, self.stride, self.dilation, padded)
            dx[...] = interior(padded, self.pad)
