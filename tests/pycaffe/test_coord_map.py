"""caffe.coord_map: maps worked out by hand for conv, pool, deconv and crop chains (padding,
stride, dilation, per-axis sizes), the errors pycaffe raises, and crop() layers that a Net builds
and that line up pixel for pixel."""
import numpy as np
import pytest

import caffe
from caffe import layers as L, params as P
from caffe.coord_map import (AxisMismatchException, UndefinedMapException, compose, coord_map,
                             coord_map_from_to, crop, inverse)
from pycaffelite.errors import PclError


def spec(height=20):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, height, height]))
    return n


def as_tuple(mapping):
    axis, scale, offset = mapping
    return axis, np.ravel(scale).tolist(), np.ravel(offset).tolist()


@pytest.mark.parametrize("kwargs, expected", [
    # output y covers inputs s*y - p .. s*y - p + extent - 1; the map gives the window's centre
    (dict(kernel_size=3), (1, [1], [1])),
    (dict(kernel_size=3, pad=1), (1, [1], [0])),
    (dict(kernel_size=3, stride=2), (1, [2], [1])),
    (dict(kernel_size=3, stride=2, pad=1, dilation=2), (1, [2], [1])),
    (dict(kernel_size=[3, 5], stride=[1, 2], pad=[0, 1]), (1, [1, 2], [1, 1])),
    (dict(convolution_param=dict(kernel_size=5, stride=4)), (1, [4], [2])),
])
def test_convolution_maps_output_to_window_centre(kwargs, expected):
    n = spec()
    n.conv = L.Convolution(n.data, num_output=2, **kwargs)
    assert as_tuple(coord_map_from_to(n.conv, n.data)) == expected


def test_pooling_and_deconvolution():
    n = spec()
    n.pool = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    assert as_tuple(coord_map_from_to(n.pool, n.data)) == (1, [2], [0.5])
    n.legacy = L.Pooling(n.data, kernel_h=2, kernel_w=4, stride_h=2, stride_w=4)
    assert as_tuple(coord_map_from_to(n.legacy, n.data)) == (1, [2, 4], [0.5, 1.5])
    n.up = L.Deconvolution(n.data, convolution_param=dict(num_output=1, kernel_size=4, stride=2,
                                                          pad=1))
    assert as_tuple(coord_map_from_to(n.up, n.data)) == (1, [0.5], [-0.25])


def test_conv_pool_deconv_chain_and_padding():
    def chain(pad=0, pool=2, dpad=0):
        n = spec()
        n.conv = L.Convolution(n.data, num_output=2, kernel_size=3, pad=pad)
        n.relu = L.ReLU(n.conv, in_place=True)
        n.pool = L.Pooling(n.relu, kernel_size=pool, stride=pool)
        n.up = L.Deconvolution(n.pool, num_output=2, kernel_size=2 * pool, stride=pool, pad=dpad)
        return as_tuple(coord_map_from_to(n.up, n.data))

    assert chain() == (1, [1], [0])
    assert chain(pool=4) == (1, [1], [-1])
    assert chain(pad=3) == (1, [1], [-3])   # conv padding shifts the output back
    assert chain(dpad=3) == (1, [1], [3])   # deconv padding shifts it forward
    assert chain(pad=3, dpad=3) == (1, [1], [0])


def test_crop_of_crop_and_identity():
    n = spec()
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3)
    n.crop = L.Crop(n.conv, n.data, axis=2, offset=2)
    assert as_tuple(coord_map_from_to(n.crop, n.data)) == (1, [1], [3])
    assert coord_map_from_to(n.data, n.data) == (None, 1, 0)


def test_compose_and_inverse():
    assert compose((None, 2, 1), (1, 3, 4)) == (1, 6, 9)
    assert inverse((1, 2.0, 1.0)) == (1, 0.5, -0.5)
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))


def test_axis_mismatch_in_a_net():
    n = spec()
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3)
    n.crop = L.Crop(n.conv, n.data, axis=3, offset=1)
    with pytest.raises(AxisMismatchException, match="axis 2 and axis 1"):
        coord_map_from_to(n.crop, n.data)
    assert issubclass(AxisMismatchException, PclError)


def test_undefined_maps():
    n = spec()
    n.ip = L.InnerProduct(n.data, num_output=3)
    n.gap = L.Pooling(n.data, global_pooling=True)
    n.nokernel = L.Convolution(n.data, num_output=3)
    with pytest.raises(UndefinedMapException, match="InnerProduct layers have no coordinate map"):
        coord_map(n.ip.fn)
    with pytest.raises(UndefinedMapException, match="global_pooling"):
        coord_map(n.gap.fn)
    with pytest.raises(PclError, match="no kernel size"):
        coord_map(n.nokernel.fn)
    with pytest.raises(RuntimeError, match="share no ancestor") as caught:
        coord_map_from_to(n.ip, n.data)
    assert isinstance(caught.value, PclError)


@pytest.mark.parametrize("make, message", [
    (lambda n: (L.Pooling(n.data, kernel_size=2, stride=2), n.data), "differ in scale"),
    (lambda n: (L.Convolution(n.data, num_output=1, kernel_size=3), n.data), "smaller"),
    (lambda n: (n.data, L.Convolution(n.data, num_output=1, kernel_size=2)), "fractional"),
])
def test_impossible_crops_are_assertion_errors(make, message):
    with pytest.raises(AssertionError, match=message) as caught:
        crop(*make(spec()))
    assert isinstance(caught.value, PclError)


def test_crop_lines_up_pixels_in_a_built_net():
    n = spec(10)
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, bias_term=False)
    n.cropped = crop(n.data, n.conv)
    n.same = crop(L.ReLU(n.data), n.data)
    layer = n.to_proto().layer[2]
    assert (layer.crop_param.axis, list(layer.crop_param.offset)) == (2, [1])
    net = caffe.Net(n.to_proto(), caffe.TEST)
    weights = net.params["conv"][0].data
    weights[...] = 0
    weights[0, 0, 1, 1] = 1  # the conv copies each window's centre
    net.blobs["data"].data[...] = np.random.default_rng(0).standard_normal((1, 1, 10, 10))
    out = net.forward()
    np.testing.assert_array_equal(out["cropped"], net.blobs["conv"].data)
    np.testing.assert_array_equal(out["same"], np.maximum(net.blobs["data"].data, 0))


def test_crop_after_upsampling_restores_the_input_size():
    n = spec(20)
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=3)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=4, stride=4)
    n.up = L.Deconvolution(n.pool, convolution_param=dict(num_output=2, kernel_size=8, stride=4))
    n.score = crop(n.up, n.data)
    net = caffe.Net(n.to_proto(), caffe.TEST)
    assert net.blobs["up"].data.shape == (1, 2, 24, 24)
    assert net.blobs["score"].data.shape == (1, 2, 20, 20)


def test_residual_nets_are_walked_once_per_top():
    n = spec()
    top = L.Convolution(n.data, num_output=2, kernel_size=3, pad=1)
    for _ in range(80):  # 2**80 paths back to the input
        top = L.Eltwise(L.ReLU(L.Convolution(top, num_output=2, kernel_size=3, pad=1)), top)
    assert as_tuple(coord_map_from_to(top, n.data)) == (1, [1], [0])
