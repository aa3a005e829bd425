"""Convolution and Deconvolution: shapes, forward against direct nested-loop references, gradient
checks over the parameter combinations Caffe allows, accumulation and error messages."""
import itertools

import numpy as np
import pytest

from layer_testing import empty_tops, gaussian_blob, make_layer
from pycaffelite import device, parallel
from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from pycaffelite.layers import conv

FILLERS = 'weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "gaussian" std: 0.5 }'


def conv_layer(params, dtype=np.float64, kind="Convolution"):
    return make_layer(f'type: "{kind}" convolution_param {{ {params} {FILLERS} }}', dtype)


def setup(layer, *shapes, dtype=np.float64):
    bottom = [gaussian_blob(shape, dtype=dtype, seed=i) for i, shape in enumerate(shapes)]
    top = empty_tops(len(shapes), dtype)
    layer.initialize(bottom, top)
    return bottom, top


def reference_conv(x, w, b, stride, pad, dilation, group):
    """Direct cross-correlation: y[n, m, o] = b[m] + sum_{c, k} w[m, c, k] x[n, c, o s + k d - p]."""
    num, channels, *size = x.shape
    outputs, kernel = w.shape[0], w.shape[2:]
    out = [(s + 2 * p - (d * (k - 1) + 1)) // st + 1
           for s, k, p, st, d in zip(size, kernel, pad, stride, dilation)]
    y = np.zeros((num, outputs, *out))
    cg, mg = channels // group, outputs // group
    for n, m in itertools.product(range(num), range(outputs)):
        g = m // mg
        for o in itertools.product(*map(range, out)):
            total = 0.0 if b is None else b[m]
            for c, k in itertools.product(range(cg), itertools.product(*map(range, kernel))):
                at = [oi * st + ki * d - p for oi, ki, st, d, p in zip(o, k, stride, dilation, pad)]
                if all(0 <= a < s for a, s in zip(at, size)):
                    total += w[(m, c) + k] * x[(n, g * cg + c) + tuple(at)]
            y[(n, m) + o] = total
    return y


def reference_deconv(x, w, b, stride, pad, dilation, group, out=None):
    """Direct scatter: every x[n, c, i] adds x * w[c, m, k] to y[n, m, i s + k d - p], for y of
    spatial shape `out` (default: Deconvolution's output shape)."""
    num, channels, *size = x.shape
    kernel = w.shape[2:]
    mg = w.shape[1]
    out = out or [st * (s - 1) + d * (k - 1) + 1 - 2 * p
                  for s, k, p, st, d in zip(size, kernel, pad, stride, dilation)]
    y = np.zeros((num, mg * group, *out))
    cg = channels // group
    for n, c in itertools.product(range(num), range(channels)):
        g = c // cg
        for i in itertools.product(*map(range, size)):
            for m, k in itertools.product(range(mg), itertools.product(*map(range, kernel))):
                at = [ii * st + ki * d - p for ii, ki, st, d, p in zip(i, k, stride, dilation, pad)]
                if all(0 <= a < o for a, o in zip(at, out)):
                    y[(n, g * mg + m) + tuple(at)] += w[(c, m) + k] * x[(n, c) + i]
    if b is not None:
        y += b.reshape((-1,) + (1,) * len(size))
    return y


def params_of(layer):
    w = layer.blobs[0].data.copy()
    b = layer.blobs[1].data.copy() if len(layer.blobs) > 1 else None
    return w, b


# (convolution_param text, bottom shape, stride, pad, dilation, group) -- the combinations real
# Caffe was run with in the reference nets, plus 3-d spatial and 1x1 cases.
CONV_CASES = [
    ("num_output: 4 kernel_size: 3", (2, 3, 5, 6), (1, 1), (0, 0), (1, 1), 1),
    ("num_output: 6 bias_term: false group: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 "
     "stride_h: 2 stride_w: 1", (2, 4, 9, 10), (2, 1), (1, 0), (1, 1), 2),
    ("num_output: 4 kernel_size: 3 dilation: 2 pad: 2 stride: 1", (2, 4, 9, 10), (1, 1), (2, 2), (2, 2), 1),
    ("num_output: 8 group: 4 kernel_size: 3 pad: 1 stride: 2 stride: 3", (2, 4, 9, 10), (2, 3), (1, 1),
     (1, 1), 4),
    ("num_output: 3 kernel_size: 1 stride: 2", (2, 4, 9, 10), (2, 2), (0, 0), (1, 1), 1),
    ("num_output: 4 kernel_size: 1 group: 2", (3, 4, 3, 5), (1, 1), (0, 0), (1, 1), 2),
    ("num_output: 2 kernel_size: 2 kernel_size: 3 kernel_size: 2 pad: 1 stride: 2 dilation: 1 "
     "dilation: 1 dilation: 2", (2, 3, 3, 4, 5), (2, 2, 2), (1, 1, 1), (1, 1, 2), 1),
    ("num_output: 3 kernel_size: 3 pad: 1", (2, 2, 7), (1,), (1,), (1,), 1),
]


@pytest.mark.parametrize("params,shape,stride,pad,dilation,group", CONV_CASES)
def test_convolution_forward_matches_direct_reference(params, shape, stride, pad, dilation, group):
    layer = conv_layer(params)
    bottom, top = setup(layer, shape)
    layer.forward(bottom, top)
    w, b = params_of(layer)
    expected = reference_conv(bottom[0].data, w, b, stride, pad, dilation, group)
    assert top[0].shape == expected.shape
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-12, atol=1e-12)


def test_convolution_forward_hand_computed():
    # 1 x 1 x 3 x 3 input 1..9, kernel [[1, 0], [0, -1]] (x[i, j] - x[i+1, j+1] = -4), bias 0.5:
    # with stride 1 the 2 x 2 output is all -3.5. With pad 1 and stride 2 the windows start at
    # padded (0, 0), (0, 2), (2, 0), (2, 2): 0 - x[0,0], 0 - x[0,2], 0 - x[2,0], x[1,1] - x[2,2].
    layer = make_layer('type: "Convolution" convolution_param { num_output: 1 kernel_size: 2 }')
    bottom = [gaussian_blob((1, 1, 3, 3))]
    bottom[0].data[...] = np.arange(1, 10).reshape(1, 1, 3, 3)
    top = empty_tops(1)
    layer.initialize(bottom, top)
    layer.blobs[0].data[...] = [[[[1, 0], [0, -1]]]]
    layer.blobs[1].data[...] = 0.5
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, np.full((1, 1, 2, 2), -3.5))

    layer = make_layer('type: "Convolution" convolution_param { num_output: 1 kernel_size: 2 '
                       'pad: 1 stride: 2 bias_term: false }')
    layer.initialize(bottom, top)
    layer.blobs[0].data[...] = [[[[1, 0], [0, -1]]]]
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, [[[[-1, -3], [-7, -4]]]])


@pytest.mark.parametrize("params,shape,expected", [
    # shapes real Caffe produced for the reference nets
    ("num_output: 6 bias_term: false group: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 "
     "stride_h: 2 stride_w: 1", (2, 4, 9, 10), (2, 6, 5, 9)),
    ("num_output: 4 kernel_size: 3 dilation: 2 pad: 2 stride: 1", (2, 4, 9, 10), (2, 4, 9, 10)),
    ("num_output: 8 group: 4 kernel_size: 3 pad: 1 stride: 2 stride: 3", (2, 4, 9, 10), (2, 8, 5, 4)),
    ("num_output: 3 kernel_size: 1 stride: 2", (2, 4, 9, 10), (2, 3, 5, 5)),
    # CaffeNet conv1 (floor): (227 - 11) / 4 + 1 = 55; LeNet conv1 28 - 5 + 1 = 24
    ("num_output: 2 kernel_size: 11 stride: 4", (1, 3, 227, 227), (1, 2, 55, 55)),
    ("num_output: 2 kernel_size: 5", (1, 1, 28, 28), (1, 2, 24, 24)),
    # floor, not ceil: (10 + 0 - 3) / 2 + 1 = 4
    ("num_output: 2 kernel_size: 3 stride: 2", (1, 1, 10, 10), (1, 2, 4, 4)),
    # axis: channels on axis 2, two outer axes
    ("num_output: 5 kernel_size: 2 axis: 2", (2, 3, 4, 6, 6), (2, 3, 5, 5, 5)),
    ("num_output: 5 kernel_size: 2 axis: -3", (2, 3, 4, 6, 6), (2, 3, 5, 5, 5)),
    # no spatial axes: a 1x1 convolution over the channels
    ("num_output: 3 axis: 1", (4, 2), (4, 3)),
])
def test_convolution_shapes(params, shape, expected):
    layer = conv_layer(params, dtype=np.float32)
    bottom, top = setup(layer, shape, dtype=np.float32)
    assert top[0].shape == expected
    layer.forward(bottom, top)
    group = layer.param.convolution_param.group
    kernel = layer.kernel
    assert layer.blobs[0].shape == (expected[layer.channel_axis], shape[layer.channel_axis] // group) + kernel
    if layer.param.convolution_param.bias_term:
        assert layer.blobs[1].shape == (expected[layer.channel_axis],)


def test_convolution_with_axis_matches_per_item_reference():
    layer = conv_layer("num_output: 2 kernel_size: 2 axis: 2")
    bottom, top = setup(layer, (2, 2, 3, 4, 4))
    layer.forward(bottom, top)
    w, b = params_of(layer)
    flat = bottom[0].data.reshape(4, 3, 4, 4)
    expected = reference_conv(flat, w, b, (1, 1), (0, 0), (1, 1), 1).reshape(top[0].shape)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-12, atol=1e-12)


def test_convolution_several_bottoms_share_weights():
    layer = conv_layer("num_output: 3 kernel_size: 3 pad: 1")
    bottom, top = setup(layer, (2, 2, 4, 5), (2, 2, 4, 5))
    layer.forward(bottom, top)
    w, b = params_of(layer)
    for x, y in zip(bottom, top):
        np.testing.assert_allclose(y.data, reference_conv(x.data, w, b, (1, 1), (1, 1), (1, 1), 1),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("params,shape,shifts,flipped", [
    ("num_output: 3 kernel_size: 3", (2, 3, 5, 4), 3, False),  # flipping would cost more
    ("num_output: 3 kernel_size: 3 pad: 1", (2, 3, 5, 4), 3, True),
    ("num_output: 2 kernel_size: 3 pad: 1", (2, 4, 4, 3), 3, True),
    ("num_output: 4 group: 2 kernel_size: 3 pad: 1 stride: 2", (1, 4, 5, 5), 1, False),
    ("num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 2 stride_h: 2 stride_w: 1", (1, 2, 5, 4), 1,
     False),
    ("num_output: 2 kernel_size: 2 dilation: 2 pad: 1", (2, 2, 5, 5), 2, True),
    ("num_output: 2 kernel_size: 2 pad: 2", (2, 2, 3, 4), 2, False),  # pad beyond the kernel
    ("num_output: 6 group: 3 kernel_h: 2 kernel_w: 3 pad_h: 1 pad_w: 0", (2, 3, 4, 5), 2, False),
    ("num_output: 2 bias_term: false kernel_size: 2 pad: 1 stride: 2", (1, 2, 3, 4, 3), 1, False),
    ("num_output: 2 kernel_size: 2 kernel_size: 3 kernel_size: 2 pad: 1 dilation: 2 dilation: 1 "
     "dilation: 1", (2, 2, 3, 3, 2), 2, True),
    ("num_output: 2 kernel_size: 3 pad: 1 group: 2", (2, 2, 6), 3, True),
    ("num_output: 4 kernel_size: 1 group: 2", (2, 4, 3, 3), 1, False),
    ("num_output: 2 kernel_size: 2 axis: 2", (2, 1, 2, 3, 3), 2, False),
])
def test_convolution_gradient(params, shape, shifts, flipped):
    layer = conv_layer(params)
    bottom = [gaussian_blob(shape)]
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, bottom, empty_tops(1))
    # the code paths: GEMMs per kernel row on column windows (shifts > 1), or one on the full
    # column; the bottom gradient as a convolution with the flipped kernel, or by col2im
    assert (layer.shifts, layer._flipped is not None) == (shifts, flipped)


def test_convolution_gradient_two_bottoms():
    layer = conv_layer("num_output: 2 kernel_size: 2 stride: 2 pad: 1")
    bottom = [gaussian_blob((1, 2, 3, 3), seed=1), gaussian_blob((1, 2, 3, 3), seed=2)]
    GradientChecker(1e-2, 1e-3).check_gradient(layer, bottom, empty_tops(2))


@pytest.mark.parametrize("params,images_inner", [
    ("num_output: 4 group: 2 kernel_size: 3 pad: 1 stride: 2", False),   # images outermost
    ("num_output: 4 kernel_size: 2 stride: 2", False),                    # ... read in place
    ("num_output: 4 group: 2 kernel_size: 3 pad: 1 dilation: 2", True),   # images innermost
    ("num_output: 4 group: 2 kernel_size: 3 pad: 1", True),               # ... flipped kernel
    ("num_output: 4 kernel_size: 1", False),                              # 1x1
])
@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("images_per_chunk", [1, 2])
@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
def test_chunking_gives_the_same_results(monkeypatch, params, images_inner, images_per_chunk, kind,
                                         threads):
    """Small column budgets split the batch of 5 into chunks of 1, or of 2, 2 and 1 images; with
    2 or 4 threads the chunks run in runs side by side, each on buffers of its own."""
    def run():
        device.set_random_seed(3)
        layer = conv_layer(params, kind=kind)
        bottom, top = setup(layer, (5, 4, 6, 5))
        layer.forward(bottom, top)
        top[0].diff[...] = gaussian_blob(top[0].shape, seed=7).data
        layer.backward(top, [True], bottom)
        return layer, [top[0].data.copy(), bottom[0].diff.copy(), layer.blobs[0].diff.copy(),
                       layer.blobs[1].diff.copy()]

    monkeypatch.setattr(parallel, "_num_threads", 1)
    layer, expected = run()
    assert layer.chunk == 5 and layer.images_inner == images_inner
    monkeypatch.setattr(conv, "COLUMN_BUDGET", images_per_chunk * layer.col_rows * layer.group
                        * layer.col_count)
    monkeypatch.setattr(parallel, "_num_threads", threads)
    layer, got = run()
    assert layer.chunk == images_per_chunk
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_images_outermost_per_image_products_match_references(monkeypatch):
    """A CIFAR conv1-like layer (few input channels: images outermost) in chunks of 2 images, with
    groups: the per-image forward and weight-gradient products and the ones-vector bias gradient
    against direct sums."""
    layer = conv_layer("num_output: 8 group: 2 kernel_size: 3 pad: 1")
    monkeypatch.setattr(conv, "COLUMN_BUDGET", 2 * 9 * 2 * 25)  # 2 images of 9 rows, 2 groups
    bottom, top = setup(layer, (5, 2, 5, 5))
    assert not layer.images_inner and layer.chunk == 2
    layer.forward(bottom, top)
    w, b = params_of(layer)
    x = bottom[0].data
    np.testing.assert_allclose(top[0].data, reference_conv(x, w, b, (1, 1), (1, 1), (1, 1), 2),
                               rtol=1e-12, atol=1e-12)
    dy = gaussian_blob(top[0].shape, seed=5).data
    top[0].diff[...] = dy
    layer.backward(top, [False], bottom)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dw = np.zeros(w.shape)
    for m, i, j in itertools.product(range(8), range(3), range(3)):  # group m // 4 reads channel m // 4
        dw[m, 0, i, j] = (dy[:, m] * padded[:, m // 4, i:i + 5, j:j + 5]).sum()
    np.testing.assert_allclose(layer.blobs[0].diff, dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].diff, dy.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


def test_convolution_float32_stays_float32():
    layer = conv_layer("num_output: 4 kernel_size: 3 pad: 1", dtype=np.float32)
    bottom, top = setup(layer, (2, 3, 6, 6), dtype=np.float32)
    layer.forward(bottom, top)
    top[0].diff[...] = 1
    layer.backward(top, [True], bottom)
    assert top[0].data.dtype == np.float32 and bottom[0].diff.dtype == np.float32
    w, b = params_of(layer)
    expected = reference_conv(bottom[0].data.astype(np.float64), w, b, (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-4, atol=1e-4)


def test_param_gradients_accumulate_and_respect_propagate_down():
    layer = conv_layer("num_output: 2 kernel_size: 3")
    bottom, top = setup(layer, (2, 2, 4, 4))
    layer.forward(bottom, top)
    top[0].diff[...] = gaussian_blob(top[0].shape, seed=3).data
    layer.backward(top, [False], bottom)
    once = [blob.diff.copy() for blob in layer.blobs]
    layer.backward(top, [False], bottom)
    for blob, first in zip(layer.blobs, once):
        np.testing.assert_allclose(blob.diff, 2 * first)
    # bias gradient: the top diff summed over num and space
    np.testing.assert_allclose(once[1], top[0].diff.sum(axis=(0, 2, 3)))

    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.set_param_propagate_down(0, False)
    bottom[0].diff[...] = 123
    layer.backward(top, [True], bottom)
    assert not layer.blobs[0].diff.any()
    assert layer.blobs[1].diff.any()
    assert not (bottom[0].diff == 123).any()


def test_convolution_same_in_cpu_and_gpu_stand_in(any_mode):
    layer = conv_layer("num_output: 4 group: 2 kernel_size: 3 pad: 1 stride: 2", dtype=np.float32)
    bottom, top = setup(layer, (3, 4, 7, 6), dtype=np.float32)
    layer.forward(bottom, top)
    top[0].diff[...] = gaussian_blob(top[0].shape, seed=5).data
    layer.backward(top, [True], bottom)
    w, b = params_of(layer)
    x = bottom[0].data.astype(np.float64)
    np.testing.assert_allclose(top[0].data, reference_conv(x, w, b, (2, 2), (1, 1), (1, 1), 2),
                               rtol=1e-4, atol=1e-4)
    # the bottom gradient of a convolution scatters the top diff back through the same weights
    expected_dx = reference_deconv(top[0].diff.astype(np.float64), w, None, (2, 2), (1, 1), (1, 1), 2,
                                   out=[7, 6])
    np.testing.assert_allclose(bottom[0].diff, expected_dx, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("params,shape,message", [
    ("num_output: 2 kernel_size: 5", (1, 1, 4, 6), "larger than the padded input"),
    ("num_output: 2 kernel_size: 3 dilation: 3", (1, 1, 6, 6), "larger than the padded input"),
    ("num_output: 2 kernel_size: 3 stride: 0", (1, 1, 6, 6), "stride must be positive"),
    ("num_output: 2 kernel_size: 3 stride_h: 2", (1, 1, 6, 6), "stride must be positive"),
    ("num_output: 2 kernel_h: 3", (1, 1, 6, 6), "kernel size must be positive"),
    ("num_output: 2 kernel_size: 0", (1, 1, 6, 6), "kernel size must be positive"),
    ("num_output: 2 kernel_size: 3 dilation: 0", (1, 1, 6, 6), "dilation must be positive"),
    ("num_output: 2", (1, 1, 6, 6), "kernel_size must be given once or once per spatial axis"),
    ("num_output: 2 kernel_size: 3 kernel_size: 3 kernel_size: 3", (1, 1, 6, 6), "found 3 values"),
    ("num_output: 2 kernel_size: 3 pad: 1 pad: 1 pad: 1", (1, 1, 6, 6), "pad must be given once"),
    ("num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 1, 6, 6), "not both"),
    ("num_output: 2 kernel_size: 3 pad: 1 pad_h: 1", (1, 1, 6, 6), "not both"),
    ("num_output: 2 kernel_h: 3 kernel_w: 3", (1, 1, 6, 6, 6), "only for 2-d"),
    ("num_output: 2 kernel_size: 3 group: 2", (1, 3, 6, 6), "must divide both"),
    ("num_output: 3 kernel_size: 3 group: 2", (1, 4, 6, 6), "must divide both"),
    ("num_output: 0 kernel_size: 3", (1, 1, 6, 6), "num_output"),
    ("num_output: 2 kernel_size: 3 axis: 4", (1, 1, 6, 6), "axis 4 is out of range"),
])
def test_convolution_bad_parameters(params, shape, message):
    layer = conv_layer(params)
    with pytest.raises(PclError, match=message) as info:
        setup(layer, shape)
    assert 'layer "test" (Convolution)' in str(info.value)


@pytest.mark.parametrize("num_output,images_inner", [(3, True), (12, False)])
def test_reshape_to_another_shape_of_the_same_size(num_output, images_inner):
    """Buffers laid out for one spatial shape are not reused for another one of the same size."""
    layer = conv_layer(f"num_output: {num_output} kernel_size: 3 pad: 1")
    bottom, top = setup(layer, (2, 3, 6, 8))
    assert layer.images_inner == images_inner
    layer.forward(bottom, top)
    w, b = params_of(layer)
    for shape in ((2, 3, 8, 6), (1, 3, 8, 12), (2, 3, 6, 8)):
        x = gaussian_blob(shape, seed=4)
        layer.reshape([x], top)
        layer.forward([x], top)
        np.testing.assert_allclose(top[0].data, reference_conv(x.data, w, b, (1, 1), (1, 1), (1, 1), 1),
                                   rtol=1e-12, atol=1e-12)


def test_convolution_bad_bottoms():
    layer = conv_layer("num_output: 2 kernel_size: 3")
    bottom, top = setup(layer, (1, 2, 6, 6))
    with pytest.raises(PclError, match="set up with 2"):
        layer.reshape([gaussian_blob((1, 3, 6, 6))], top)
    with pytest.raises(PclError, match="number of axes"):
        layer.reshape([gaussian_blob((1, 2, 6, 6, 6))], top)
    layer = conv_layer("num_output: 2 kernel_size: 3")
    with pytest.raises(PclError, match="same shape"):
        setup(layer, (1, 2, 6, 6), (1, 2, 6, 7))
    layer = conv_layer("num_output: 2 kernel_size: 3")
    with pytest.raises(PclError, match="one top per bottom"):
        layer.initialize([gaussian_blob((1, 2, 6, 6))], empty_tops(2))


# -- Deconvolution ------------------------------------------------------------------------------
DECONV_CASES = [
    # the reference net's deconv_a, deconv_b (dilation) and deconv_up (grouped, bilinear-sized)
    ("num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2", (2, 4, 5, 4), (2, 2), (1, 1), (1, 1), 2,
     (2, 6, 10, 8)),
    ("num_output: 3 bias_term: false kernel_h: 3 kernel_w: 2 stride_h: 3 stride_w: 2 dilation: 2",
     (2, 4, 5, 4), (3, 2), (0, 0), (2, 2), 1, (2, 3, 17, 9)),
    ("num_output: 4 group: 4 bias_term: false kernel_size: 4 stride: 2 pad: 1", (2, 4, 5, 4), (2, 2),
     (1, 1), (1, 1), 4, (2, 4, 10, 8)),
    ("num_output: 2 kernel_size: 1", (2, 3, 3, 4), (1, 1), (0, 0), (1, 1), 1, (2, 2, 3, 4)),
    ("num_output: 3 kernel_size: 3 pad: 1 dilation: 2", (2, 2, 3, 4), (1, 1), (1, 1), (2, 2), 1,
     (2, 3, 5, 6)),
    ("num_output: 3 kernel_size: 3 pad: 1", (2, 2, 3, 4), (1, 1), (1, 1), (1, 1), 1, (2, 3, 3, 4)),
    ("num_output: 2 kernel_size: 2 stride: 2 pad: 1", (1, 2, 3, 2, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), 1,
     (1, 2, 4, 2, 4)),
]


@pytest.mark.parametrize("params,shape,stride,pad,dilation,group,expected_shape", DECONV_CASES)
def test_deconvolution_forward_matches_direct_reference(params, shape, stride, pad, dilation, group,
                                                        expected_shape):
    layer = conv_layer(params, kind="Deconvolution")
    bottom, top = setup(layer, shape)
    assert top[0].shape == expected_shape
    w, b = params_of(layer)
    assert w.shape == (shape[1], expected_shape[1] // group) + layer.kernel
    layer.forward(bottom, top)
    expected = reference_deconv(bottom[0].data, w, b, stride, pad, dilation, group)
    np.testing.assert_allclose(top[0].data, expected, rtol=1e-12, atol=1e-12)


def test_deconvolution_forward_hand_computed():
    # two input pixels [1, 2], kernel [1, 10, 100], stride 2: [1, 10, 100 + 2, 20, 200]; pad 1
    # crops one from each end; bias 0.5 is added everywhere.
    layer = make_layer('type: "Deconvolution" convolution_param { num_output: 1 kernel_h: 1 '
                       'kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 0 pad_w: 1 }')
    bottom = [gaussian_blob((1, 1, 1, 2))]
    bottom[0].data[...] = [[[[1, 2]]]]
    top = empty_tops(1)
    layer.initialize(bottom, top)
    layer.blobs[0].data[...] = [[[[1, 10, 100]]]]
    layer.blobs[1].data[...] = 0.5
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, [[[[10.5, 102.5, 20.5]]]])


@pytest.mark.parametrize("params,shape,shifts,flipped", [
    ("num_output: 4 kernel_size: 3 stride: 2 pad: 1 group: 2", (1, 2, 3, 3), 1, False),
    ("num_output: 2 bias_term: false kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 dilation: 2",
     (1, 2, 3, 2), 1, False),
    ("num_output: 2 kernel_size: 2 stride: 2", (1, 2, 2, 2, 2), 1, False),
    ("num_output: 3 kernel_size: 3 pad: 1 dilation: 2", (2, 2, 3, 3), 3, False),
    ("num_output: 3 kernel_size: 3 pad: 1", (2, 2, 3, 3), 3, True),
    ("num_output: 4 group: 2 kernel_size: 2 pad: 1", (2, 2, 3, 3), 2, True),
    ("num_output: 3 kernel_size: 1", (2, 2, 2, 3), 1, False),
])
def test_deconvolution_gradient(params, shape, shifts, flipped):
    layer = conv_layer(params, kind="Deconvolution")
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, [gaussian_blob(shape)], empty_tops(1))
    assert (layer.shifts, layer._flipped is not None) == (shifts, flipped)


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
@pytest.mark.parametrize("params,shape", [
    ("num_output: 3 kernel_size: 3 pad: 1", (1, 2, 3, 3)),
    ("num_output: 6 group: 3 kernel_h: 2 kernel_w: 3 pad_h: 1 pad_w: 0", (1, 3, 4, 5)),
])
def test_a_single_image_runs_images_outermost(params, shape, kind):
    """With one image (a deploy net's batch) and a small plane the images stay outermost (the
    image product reads the padded image); the layers the test above sends innermost at batch
    2 check their gradients so too."""
    layer = conv_layer(params, kind=kind)
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, [gaussian_blob(shape)], empty_tops(1))
    assert not layer.images_inner and layer.shifts == 1


def test_a_single_image_with_a_large_plane_keeps_images_innermost():
    layer = conv_layer("num_output: 2 kernel_size: 3 pad: 1")
    setup(layer, (1, 4, 40, 40))  # 1600 output values per plane
    assert layer.images_inner and layer.shifts == 3


def test_deconvolution_is_the_adjoint_of_convolution(any_mode):
    """<conv(x), y> == <x, deconv(y)> with the same weights and no bias."""
    params = "num_output: 6 bias_term: false group: 2 kernel_h: 3 kernel_w: 2 pad: 1 stride: 2 dilation: 2"
    convolution = conv_layer(params)
    (x,), (cx,) = setup(convolution, (2, 4, 9, 7))
    convolution.forward([x], [cx])
    deconvolution = make_layer('type: "Deconvolution" convolution_param { num_output: 4 bias_term: false '
                               'group: 2 kernel_h: 3 kernel_w: 2 pad: 1 stride: 2 dilation: 2 }')
    y = gaussian_blob(cx.shape, seed=9)
    (dy,) = empty_tops(1)
    deconvolution.initialize([y], [dy])
    deconvolution.blobs[0].data[...] = convolution.blobs[0].data
    deconvolution.forward([y], [dy])
    assert dy.shape == x.shape
    np.testing.assert_allclose(np.vdot(cx.data, y.data), np.vdot(x.data, dy.data), rtol=1e-10)


@pytest.mark.parametrize("params,shape,message", [
    ("num_output: 2 kernel_size: 2 pad: 3", (1, 1, 2, 2), "pad is too large"),
    ("num_output: 3 kernel_size: 2 group: 2", (1, 2, 3, 3), "must divide both"),
    ("num_output: 2 kernel_size: 2 stride: 0", (1, 1, 3, 3), "stride must be positive"),
])
def test_deconvolution_bad_parameters(params, shape, message):
    layer = conv_layer(params, kind="Deconvolution")
    with pytest.raises(PclError, match=message) as info:
        setup(layer, shape)
    assert "(Deconvolution)" in str(info.value)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("params,shape", [
    ("num_output: 12 kernel_size: 3 pad: 1", (5, 3, 9, 8)),                          # CIFAR conv1-like
    ("num_output: 8 group: 2 kernel_size: 5 stride: 3 dilation: 2 pad: 2", (3, 4, 17, 15)),
    ("num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 4 stride_w: 2", (4, 2, 19, 11)),  # no pad
])
def test_float32_products_from_the_images_match_float64(monkeypatch, params, shape, threads):
    """float32 with the images outermost reads the im2col matrix straight from the images in
    the forward product and the weight gradient; it agrees with the float64 path (numpy, im2col
    buffer) on the top, the bottom diff and both parameter diffs, chunked into runs."""
    monkeypatch.setattr(parallel, "_num_threads", threads)
    monkeypatch.setattr(conv, "COLUMN_BUDGET", 2 * 200 * 60)   # a few images per chunk
    results = []
    for dtype in (np.float32, np.float64):
        device.set_random_seed(5)
        layer = conv_layer(params, dtype=dtype)
        bottom, top = setup(layer, shape, dtype=dtype)
        assert layer._implicit() == (dtype == np.float32)
        layer.forward(bottom, top)
        top[0].diff[...] = gaussian_blob(top[0].shape, seed=9).data
        layer.backward(top, [True], bottom)
        results.append([top[0].data, bottom[0].diff, layer.blobs[0].diff, layer.blobs[1].diff])
    for single, double in zip(*results):
        np.testing.assert_allclose(single, double, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
def test_an_empty_batch_gives_an_empty_top_and_no_gradient(kind):
    layer = conv_layer("num_output: 4 kernel_size: 3", kind=kind)
    bottom, top = setup(layer, (0, 3, 8, 8))
    assert top[0].shape == ((0, 4, 6, 6) if kind == "Convolution" else (0, 4, 10, 10))
    layer.forward(bottom, top)
    layer.backward(top, [True], bottom)
    assert not layer.blobs[0].diff.any() and not layer.blobs[1].diff.any()


def test_a_bottom_without_channels_is_refused():
    with pytest.raises(PclError, match=r"the bottom has no channels \(shape \(2, 0, 8, 8\)"):
        setup(conv_layer("num_output: 4 kernel_size: 3"), (2, 0, 8, 8))
