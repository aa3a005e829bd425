"""Depthwise convolution (group == channels): the direct paths (compiled CPU loops and the
array-module passes the device runs) against the im2col + GEMM path on the same weights."""
import numpy as np
import pytest
from layer_testing import empty_tops, gaussian_blob
from test_conv import conv_layer

from pycaffelite import device
from pycaffelite.gradient_check import GradientChecker
from pycaffelite.layers import conv
from pycaffelite.layers.depthwise import Depthwise

CASES = [  # convolution_param, bottom shape
    ("num_output: 8 group: 8 kernel_size: 3 pad: 1", (2, 8, 9, 7)),
    ("num_output: 6 group: 6 kernel_size: 3 pad: 1 stride: 2", (3, 6, 11, 12)),
    ("num_output: 8 group: 4 kernel_h: 2 kernel_w: 3 pad_h: 0 pad_w: 2 stride_h: 2 stride_w: 1", (2, 4, 8, 5)),
    ("num_output: 3 group: 3 kernel_size: 3 dilation: 2 pad: 1 bias_term: false", (2, 3, 9, 10)),
    ("num_output: 5 group: 5 kernel_size: 5 pad: 3 stride: 3", (1, 5, 4, 6)),
]


def run(params, shape, dtype, direct, compiled=True, monkeypatch=None):
    """Forward and backward of one layer; (top, bottom diff, param diffs, the layer)."""
    if not direct:
        monkeypatch.setattr(conv, "is_depthwise", lambda layer: False)
    monkeypatch.setattr(Depthwise, "compiled", compiled)
    device.set_random_seed(5)  # the same weights in every run
    layer = conv_layer(params, dtype=dtype)
    bottom, top = [gaussian_blob(shape, dtype=dtype, seed=3)], empty_tops(1, dtype)
    layer.initialize(bottom, top)
    assert (layer._depthwise is not None) == direct
    layer.forward(bottom, top)
    top[0].diff[...] = gaussian_blob(top[0].shape, dtype=dtype, seed=4).data
    for blob in layer.blobs:
        blob.diff[...] = 1  # param gradients are added
    layer.backward(top, [True], bottom)
    monkeypatch.undo()
    return top[0].data.copy(), bottom[0].diff.copy(), [b.diff.copy() for b in layer.blobs]


@pytest.mark.parametrize("params,shape", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "array-module"])
@pytest.mark.parametrize("threads", [1, 2])
def test_direct_paths_match_im2col(monkeypatch, params, shape, dtype, compiled, threads,
                                   use_threads):
    use_threads(threads)
    expected = run(params, shape, dtype, False, monkeypatch=monkeypatch)
    got = run(params, shape, dtype, True, compiled, monkeypatch=monkeypatch)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for ours, theirs in zip([got[0], got[1]] + got[2], [expected[0], expected[1]] + expected[2]):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance)


def test_random_shapes_match_im2col(monkeypatch):
    rng = np.random.default_rng(11)
    for _ in range(12):
        channels, mult = int(rng.integers(1, 6)), int(rng.integers(1, 3))
        kh, kw = (int(k) for k in rng.integers(1, 5, size=2))
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, size=4))
        ph, pw = int(rng.integers(0, kh + 1)), int(rng.integers(0, kw + 1))
        height = int(rng.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 13))
        width = int(rng.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 13))
        params = (f"num_output: {channels * mult} group: {channels} kernel_h: {kh} kernel_w: {kw} "
                  f"stride_h: {sh} stride_w: {sw} pad_h: {ph} pad_w: {pw} dilation: {dh} "
                  f"dilation: {dw}")
        shape = (int(rng.integers(1, 4)), channels, height, width)
        if channels == 1:
            continue  # one group is not depthwise
        expected = run(params, shape, np.float64, False, monkeypatch=monkeypatch)
        for compiled in (True, False):
            got = run(params, shape, np.float64, True, compiled, monkeypatch=monkeypatch)
            for ours, theirs in zip([got[0], got[1]] + got[2],
                                    [expected[0], expected[1]] + expected[2]):
                np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, err_msg=params)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "array-module"])
def test_depthwise_gradient(monkeypatch, compiled):
    monkeypatch.setattr(Depthwise, "compiled", compiled)
    layer = conv_layer("num_output: 4 group: 2 kernel_size: 3 pad: 1 stride: 2")
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, [gaussian_blob((2, 2, 5, 4))],
                                                          empty_tops(1))
    assert layer._depthwise is not None


def test_same_in_cpu_and_gpu_stand_in(any_mode, monkeypatch):
    """In GPU mode (the stand-in device) the layer runs its array-module passes on device arrays;
    the results agree with the CPU's compiled loops."""
    params, shape = CASES[1]
    got = run(params, shape, np.float32, True, monkeypatch=monkeypatch)
    monkeypatch.undo()
    expected = run(params, shape, np.float32, False, monkeypatch=monkeypatch)
    for ours, theirs in zip([got[0], got[1]] + got[2], [expected[0], expected[1]] + expected[2]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
