"""InnerProduct: shapes for axis / negative axis / transpose, hand-computed values, gradients."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
W = [[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]]
B = [0.5, -1.0]
# X . W^T + B, worked out by hand
Y = [[-1.5, 3.0], [-1.5, 12.0]]


def ip(params, dtype=np.float64):
    return make_layer(f'type: "InnerProduct" inner_product_param {{ {params} }}', dtype=dtype)


def set_up(params, bottom, dtype=np.float64):
    layer = ip(params, dtype)
    tops = empty_tops(1, dtype)
    layer.initialize([bottom], tops)
    return layer, tops


@pytest.mark.parametrize("params, top_shape, weight_shape", [
    ("num_output: 10", (2, 10), (10, 60)),
    ("num_output: 10 axis: 2", (2, 3, 10), (10, 20)),
    ("num_output: 10 axis: -1", (2, 3, 4, 10), (10, 5)),
    ("num_output: 10 axis: 0", (10,), (10, 120)),
    ("num_output: 10 transpose: true", (2, 10), (60, 10)),
])
def test_shapes(params, top_shape, weight_shape):
    layer, tops = set_up(params, gaussian_blob((2, 3, 4, 5)))
    assert tops[0].shape == top_shape
    assert [b.shape for b in layer.blobs] == [weight_shape, (10,)]


def test_no_bias_has_one_blob():
    layer, _ = set_up("num_output: 3 bias_term: false", gaussian_blob((2, 4)))
    assert [b.shape for b in layer.blobs] == [(3, 4)]


def test_fillers():
    layer, _ = set_up('num_output: 3 weight_filler { type: "constant" value: 0.25 } '
                      'bias_filler { type: "constant" value: -2 }', gaussian_blob((2, 4)))
    np.testing.assert_array_equal(layer.blobs[0].data, np.full((3, 4), 0.25))
    np.testing.assert_array_equal(layer.blobs[1].data, [-2, -2, -2])


@pytest.mark.parametrize("transpose", [False, True])
def test_forward_hand_computed(transpose):
    layer, tops = set_up(f"num_output: 2 transpose: {str(transpose).lower()}", blob_from(X))
    layer.blobs[0].data[...] = np.array(W).T if transpose else W
    layer.blobs[1].data[...] = B
    layer.forward([blob_from(X)], tops)
    np.testing.assert_allclose(tops[0].data, Y)


def test_backward_hand_computed_and_param_diffs_accumulate():
    bottom = blob_from(X)
    layer, tops = set_up("num_output: 2", bottom)
    layer.blobs[0].data[...] = W
    layer.forward([bottom], tops)
    tops[0].diff[...] = [[1.0, 0.0], [0.0, 2.0]]
    for _ in range(2):
        layer.backward(tops, [True], [bottom])
    # dX = dY . W, dW = 2 * dY^T . X, db = 2 * column sums of dY
    np.testing.assert_allclose(bottom.diff, [[1.0, 0.0, -1.0], [4.0, 2.0, 0.0]])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * np.array([[1.0, 2.0, 3.0], [8.0, 10.0, 12.0]]))
    np.testing.assert_allclose(layer.blobs[1].diff, [2.0, 4.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose", [False, True])
def test_weight_gradient_accumulates(transpose, dtype):
    """dW gets dY^T . X (or X^T . dY stored transposed) added to what it held (float32 through
    the compiled kernel, float64 through numpy)."""
    x = np.arange(6.0).reshape(2, 3)                       # M = 2 items, K = 3
    dy = np.array([[1.0, 0.0, 2.0, -1.0, 3.0], [0.5, 1.0, 0.0, 2.0, -2.0]])   # N = 5 outputs
    bottom = blob_from(x, dtype)
    layer, tops = set_up(f"num_output: 5 transpose: {str(transpose).lower()}", bottom, dtype)
    layer.forward([bottom], tops)
    tops[0].diff[...] = dy
    layer.blobs[0].diff[...] = 1.0
    layer.backward(tops, [True], [bottom])
    # row n of dY^T . X is dy[0, n] * x[0] + dy[1, n] * x[1], x[0] = (0, 1, 2), x[1] = (3, 4, 5)
    expected = 1.0 + np.array([[1.5, 3.0, 4.5], [3.0, 4.0, 5.0], [0.0, 2.0, 4.0],
                               [6.0, 7.0, 8.0], [-6.0, -5.0, -4.0]])
    np.testing.assert_array_equal(layer.blobs[0].diff, expected.T if transpose else expected)
    np.testing.assert_array_equal(layer.blobs[1].diff, [1.5, 1.0, 2.0, 1.0, 1.0])


def test_backward_respects_param_propagate_down():
    bottom = blob_from(X)
    layer, tops = set_up("num_output: 2", bottom)
    layer.forward([bottom], tops)
    tops[0].diff[...] = 1.0
    layer.param_propagate_down = [False, False]
    layer.backward(tops, [True], [bottom])
    assert not layer.blobs[0].diff.any() and not layer.blobs[1].diff.any()


@pytest.mark.parametrize("params", [
    "num_output: 3",
    "num_output: 3 axis: 2",
    "num_output: 2 axis: -1 transpose: true",
    "num_output: 3 transpose: true bias_term: false",
])
def test_gradient(params):
    layer = ip(params + ' weight_filler { type: "gaussian" std: 1 } '
                        'bias_filler { type: "gaussian" std: 1 }')
    GradientChecker(1e-2, 1e-3).check_gradient(layer, [gaussian_blob((2, 3, 2, 2))], empty_tops(1))


def test_float32_stays_float32():
    layer, tops = set_up("num_output: 2", blob_from(X, np.float32), np.float32)
    layer.forward([blob_from(X, np.float32)], tops)
    assert tops[0].data.dtype == np.float32


def test_missing_num_output_is_an_error():
    with pytest.raises(PclError, match="num_output"):
        set_up("axis: 1", gaussian_blob((2, 3)))


def test_axis_out_of_range_is_an_error():
    with pytest.raises(PclError, match="axis"):
        set_up("num_output: 2 axis: 4", gaussian_blob((2, 3, 4)))


def test_changed_input_size_is_an_error():
    bottom = gaussian_blob((2, 3, 4))
    layer, tops = set_up("num_output: 2", bottom)
    bottom.reshape(5, 3, 4)  # another batch size is fine
    layer.reshape([bottom], tops)
    assert tops[0].shape == (5, 2)
    bottom.reshape(2, 3, 5)
    with pytest.raises(PclError, match="12"):
        layer.reshape([bottom], tops)


def test_in_place_is_refused():
    bottom = gaussian_blob((2, 3))
    with pytest.raises(PclError, match="in place"):
        ip("num_output: 3").initialize([bottom], [bottom])


def test_cpu_and_gpu_give_the_same_result(any_mode):
    bottom = blob_from(X, np.float32)
    layer, tops = set_up("num_output: 2 transpose: true", bottom, np.float32)
    layer.blobs[0].data[...] = np.array(W).T
    layer.blobs[1].data[...] = B
    layer.forward([bottom], tops)
    tops[0].diff[...] = [[1.0, 0.0], [0.0, 2.0]]
    layer.backward(tops, [True], [bottom])
    np.testing.assert_allclose(tops[0].data, Y)
    np.testing.assert_allclose(bottom.diff, [[1.0, 0.0, -1.0], [4.0, 2.0, 0.0]])
    np.testing.assert_allclose(layer.blobs[0].diff, np.array([[1.0, 2.0, 3.0], [8.0, 10.0, 12.0]]).T)
    np.testing.assert_allclose(layer.blobs[1].diff, [1.0, 2.0])
