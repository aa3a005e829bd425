"""BatchNorm: batch and global statistics, the running-average blobs, gradients, in place."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from pycaffelite.layers.batch_norm import BatchNormLayer
from pycaffelite.proto import caffe_pb2
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer

# Shape (N=2, C=2, H=1, W=2): channel 0 holds 1, 3, 5, 7 (mean 4, var 5), channel 1 holds
# 0, 2, 4, 10 (mean 4, var 14).
X = [[[[1.0, 3.0]], [[0.0, 2.0]]],
     [[[5.0, 7.0]], [[4.0, 10.0]]]]


def bn(params="", phase=caffe_pb2.TRAIN, extra="", dtype=np.float64):
    return make_layer(f'type: "BatchNorm" {extra} batch_norm_param {{ {params} }}', dtype=dtype,
                      phase=phase)


def set_up(params="", phase=caffe_pb2.TRAIN, bottom=None, dtype=np.float64, extra=""):
    layer = bn(params, phase, extra, dtype)
    bottom = blob_from(X, dtype) if bottom is None else bottom
    tops = empty_tops(1, dtype)
    layer.initialize([bottom], tops)
    return layer, bottom, tops


def channel_values(array, c):
    return np.asarray(array)[:, c].ravel()


def test_shapes_blobs_and_frozen_params():
    layer, _, tops = set_up(bottom=gaussian_blob((2, 3, 4, 5)))
    assert tops[0].shape == (2, 3, 4, 5)
    assert [b.shape for b in layer.blobs] == [(3,), (3,), (1,)]
    assert all(not b.data.any() for b in layer.blobs)
    assert layer.param_propagate_down == [False, False, False]
    assert [spec.lr_mult for spec in layer.param.param] == [0, 0, 0]


def test_one_axis_bottom_is_one_channel():
    layer, _, tops = set_up(bottom=blob_from([1.0, 2.0, 3.0]), params="eps: 0")
    assert [b.shape for b in layer.blobs] == [(1,), (1,), (1,)]
    layer.forward([blob_from([1.0, 2.0, 3.0])], tops)
    np.testing.assert_allclose(tops[0].data, np.array([-1.0, 0.0, 1.0]) / np.sqrt(2.0 / 3.0))


def test_batch_statistics_forward_hand_computed():
    layer, bottom, tops = set_up("eps: 0")
    layer.forward([bottom], tops)
    np.testing.assert_allclose(channel_values(tops[0].data, 0), np.array([-3, -1, 1, 3]) / np.sqrt(5))
    np.testing.assert_allclose(channel_values(tops[0].data, 1), np.array([-4, -2, 0, 6]) / np.sqrt(14))


def test_eps_is_added_to_the_variance():
    layer, bottom, tops = set_up("eps: 1")
    layer.forward([bottom], tops)
    np.testing.assert_allclose(channel_values(tops[0].data, 0), np.array([-3, -1, 1, 3]) / np.sqrt(6))


def test_moving_average_update():
    layer, bottom, tops = set_up("moving_average_fraction: 0.5")
    layer.forward([bottom], tops)
    # m = N*H*W = 4 values per channel: the variance is stored with the m/(m-1) correction.
    np.testing.assert_allclose(layer.blobs[0].data, [4.0, 4.0])
    np.testing.assert_allclose(layer.blobs[1].data, [20.0 / 3, 56.0 / 3])
    np.testing.assert_allclose(layer.blobs[2].data, [1.0])
    layer.forward([bottom], tops)
    np.testing.assert_allclose(layer.blobs[0].data, [6.0, 6.0])
    np.testing.assert_allclose(layer.blobs[1].data, [10.0, 28.0])
    np.testing.assert_allclose(layer.blobs[2].data, [1.5])


def test_default_moving_average_fraction():
    layer, bottom, tops = set_up()
    layer.forward([bottom], tops)
    layer.forward([bottom], tops)
    np.testing.assert_allclose(layer.blobs[2].data, [1.999], rtol=1e-6)


def test_global_statistics_forward_hand_computed():
    layer, bottom, tops = set_up("use_global_stats: true eps: 0")
    layer.blobs[0].data[...] = [6.0, 3.0]
    layer.blobs[1].data[...] = [12.0, 2.0]
    layer.blobs[2].data[...] = [2.0]  # mean = (3, 1.5), var = (6, 1)
    layer.forward([bottom], tops)
    np.testing.assert_allclose(channel_values(tops[0].data, 0), (np.array([1, 3, 5, 7]) - 3) / np.sqrt(6))
    np.testing.assert_allclose(channel_values(tops[0].data, 1), np.array([0, 2, 4, 10]) - 1.5)
    np.testing.assert_allclose(layer.blobs[2].data, [2.0])  # not updated


def test_global_statistics_with_zero_factor_use_zero_stats():
    layer, bottom, tops = set_up("use_global_stats: true eps: 4")
    layer.blobs[0].data[...] = [6.0, 3.0]
    layer.forward([bottom], tops)
    np.testing.assert_allclose(tops[0].data, np.array(X) / 2.0)


@pytest.mark.parametrize("phase, params, expected", [
    (caffe_pb2.TRAIN, "", False),
    (caffe_pb2.TEST, "", True),
    (caffe_pb2.TRAIN, "use_global_stats: true", True),
    (caffe_pb2.TEST, "use_global_stats: false", False),
])
def test_use_global_stats_default_follows_phase(phase, params, expected):
    layer, _, _ = set_up(params, phase)
    assert layer.use_global_stats is expected


def test_backward_global_statistics_divides_by_std():
    layer, bottom, tops = set_up("use_global_stats: true eps: 0")
    layer.blobs[1].data[...] = [4.0, 9.0]
    layer.blobs[2].data[...] = [1.0]
    layer.forward([bottom], tops)
    tops[0].diff[...] = 6.0
    layer.backward(tops, [True], [bottom])
    np.testing.assert_allclose(channel_values(bottom.diff, 0), [3.0] * 4)
    np.testing.assert_allclose(channel_values(bottom.diff, 1), [2.0] * 4)
    assert all(not b.diff.any() for b in layer.blobs)


def test_backward_batch_statistics_removes_mean_and_normalised_direction():
    layer, bottom, tops = set_up("eps: 0")
    layer.forward([bottom], tops)
    # A constant top diff and one along y itself are both projected out.
    tops[0].diff[...] = 1.0 + 2.0 * tops[0].data
    layer.backward(tops, [True], [bottom])
    np.testing.assert_allclose(bottom.diff, 0.0, atol=1e-12)
    assert all(not b.diff.any() for b in layer.blobs)


def test_gradient_batch_statistics():
    checker = GradientChecker(1e-2, 1e-3)
    checker.check_gradient_exhaustive(bn(), [gaussian_blob((2, 3, 2, 2), seed=3)], empty_tops(1))


class StatisticsHidden:
    """The layer as the gradient checker should see it with global statistics: the three blobs
    are fixed statistics, not learned params, so only the bottom gradient is checked."""

    def __init__(self, layer):
        self.layer, self.type, self.blobs = layer, layer.type, []

    def forward_loss(self, bottom, top):
        return self.layer.forward_loss(bottom, top)

    def backward(self, top, propagate_down, bottom):
        self.layer.backward(top, propagate_down, bottom)


def test_gradient_global_statistics():
    layer, bottom, tops = set_up("use_global_stats: true", bottom=gaussian_blob((2, 3, 2, 2), seed=4))
    layer.blobs[0].data[...] = [0.5, -1.0, 2.0]
    layer.blobs[1].data[...] = [1.0, 3.0, 0.5]
    layer.blobs[2].data[...] = [1.5]
    GradientChecker(1e-2, 1e-3).check_gradient_single(StatisticsHidden(layer), [bottom], tops, check_bottom=0)


def test_in_place_matches_out_of_place():
    x = gaussian_blob((3, 2, 2, 2), seed=5)
    layer, _, tops = set_up(bottom=x)
    layer.forward([x], tops)
    tops[0].diff[...] = np.random.default_rng(1).normal(size=tops[0].shape)
    layer.backward(tops, [True], [x])

    inplace = gaussian_blob((3, 2, 2, 2), seed=5)
    layer2 = bn()
    layer2.initialize([inplace], [inplace])
    layer2.forward([inplace], [inplace])
    np.testing.assert_allclose(inplace.data, tops[0].data)
    inplace.diff[...] = tops[0].diff
    layer2.backward([inplace], [True], [inplace])
    np.testing.assert_allclose(inplace.diff, x.diff)


def test_nonzero_lr_mult_is_an_error():
    with pytest.raises(PclError, match="lr_mult"):
        set_up(extra="param { lr_mult: 0 } param { lr_mult: 1 }")


def test_given_zero_lr_mult_specs_are_completed():
    layer, _, _ = set_up(extra="param { lr_mult: 0 decay_mult: 0 }")
    assert [spec.lr_mult for spec in layer.param.param] == [0, 0, 0]


def test_channel_change_is_an_error():
    layer, bottom, tops = set_up()
    bottom.reshape(2, 3, 1, 2)
    with pytest.raises(PclError, match="channels"):
        layer.reshape([bottom], tops)


def test_scalar_bottom_is_an_error():
    with pytest.raises(PclError, match="at least one axis"):
        set_up(bottom=blob_from(1.0))


def test_cpu_and_gpu_give_the_same_result(any_mode):
    layer, bottom, tops = set_up("eps: 0 moving_average_fraction: 0.5", dtype=np.float32)
    layer.forward([bottom], tops)
    tops[0].diff[...] = 1.0 + 2.0 * tops[0].data
    layer.backward(tops, [True], [bottom])
    assert tops[0].data.dtype == np.float32
    np.testing.assert_allclose(channel_values(tops[0].data, 0), np.array([-3, -1, 1, 3]) / np.sqrt(5),
                               rtol=1e-6)
    np.testing.assert_allclose(layer.blobs[1].data, [20.0 / 3, 56.0 / 3], rtol=1e-6)
    np.testing.assert_allclose(bottom.diff, 0.0, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("phase", [caffe_pb2.TRAIN, caffe_pb2.TEST])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 5), (3, 4, 2, 3, 2)])
def test_compiled_and_array_module_paths_agree(monkeypatch, dtype, phase, in_place, shape):
    """The CPU's compiled passes against the array-module code the device runs."""
    results = []
    for compiled in (True, False):
        monkeypatch.setattr(BatchNormLayer, "compiled", compiled)
        x = gaussian_blob(shape, dtype=dtype, seed=2)
        x.data[...] = 3 * x.data + 1
        layer = bn("moving_average_fraction: 0.9", phase=phase, dtype=dtype)
        top = x if in_place else empty_tops(1, dtype)[0]
        layer.initialize([x], [top])
        for blob, value in zip(layer.blobs, (0.5, 2.0, 1.5)):
            blob.data[...] = value
        layer.forward([x], [top])
        data = top.data.copy()
        top.diff[...] = gaussian_blob(shape, dtype=dtype, seed=3).data
        layer.backward([top], [True], [x])
        results.append([data, x.diff.copy()] + [b.data.copy() for b in layer.blobs])
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for ours, theirs in zip(*results):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance)
