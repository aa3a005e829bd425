"""Scale and Bias: param and two-bottom forms, axis/num_axes broadcasting, gradients, in place."""
import numpy as np
import pytest

from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from pycaffelite.layers.scale_bias import ScaleLayer
from tests.layer_testing import blob_from, empty_tops, gaussian_blob, make_layer

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def layer_of(kind, params="", dtype=np.float64):
    field = "scale_param" if kind == "Scale" else "bias_param"
    return make_layer(f'type: "{kind}" {field} {{ {params} }}', dtype=dtype)


def set_up(kind, params, bottoms, dtype=np.float64):
    layer = layer_of(kind, params, dtype)
    tops = empty_tops(1, dtype)
    layer.initialize(bottoms, tops)
    return layer, tops


def run(kind, params, arrays, values=None):
    """Forward with the given bottoms (and param values); return the layer, bottoms and top."""
    bottoms = [blob_from(a) for a in arrays]
    layer, tops = set_up(kind, params, bottoms)
    for blob, value in zip(layer.blobs, values or []):
        blob.data[...] = value
    layer.forward(bottoms, tops)
    return layer, bottoms, tops[0]


# -- shapes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Scale", "Bias"])
@pytest.mark.parametrize("params, param_shape", [
    ("", (3,)),
    ("num_axes: -1", (3, 4)),
    ("num_axes: 0", ()),
    ("axis: 0 num_axes: 2", (2, 3)),
    ("axis: -1", (4,)),
    ("axis: 2 num_axes: -1", (4,)),
])
def test_param_shapes(kind, params, param_shape):
    layer, tops = set_up(kind, params, [gaussian_blob((2, 3, 4))])
    assert tops[0].shape == (2, 3, 4)
    assert [b.shape for b in layer.blobs] == [param_shape]


def test_default_fillers_are_one_for_scale_and_zero_for_bias():
    scale, _ = set_up("Scale", "bias_term: true", [gaussian_blob((2, 3))])
    np.testing.assert_array_equal(scale.blobs[0].data, [1, 1, 1])
    np.testing.assert_array_equal(scale.blobs[1].data, [0, 0, 0])
    bias, _ = set_up("Bias", "", [gaussian_blob((2, 3))])
    np.testing.assert_array_equal(bias.blobs[0].data, [0, 0, 0])


def test_given_fillers_are_used():
    layer, _ = set_up("Scale", 'bias_term: true filler { type: "constant" value: 3 } '
                      'bias_filler { type: "constant" value: -1 }', [gaussian_blob((2, 3))])
    np.testing.assert_array_equal(layer.blobs[0].data, [3, 3, 3])
    np.testing.assert_array_equal(layer.blobs[1].data, [-1, -1, -1])


def test_two_bottom_scale_with_bias_learns_a_bias_of_the_scale_shape():
    layer, _ = set_up("Scale", "axis: 0 bias_term: true", [gaussian_blob((2, 3, 4)), gaussian_blob((2, 3))])
    assert [b.shape for b in layer.blobs] == [(2, 3)]


# -- forward, hand-computed -------------------------------------------------------------------

def test_bias_forward():
    _, _, top = run("Bias", "", [X], [[10.0, 20.0, 30.0]])
    np.testing.assert_allclose(top.data, [[11, 22, 33], [14, 25, 36]])


def test_bias_forward_two_bottoms_axis_0():
    _, _, top = run("Bias", "axis: 0", [X, [100.0, -100.0]])
    np.testing.assert_allclose(top.data, [[101, 102, 103], [-96, -95, -94]])


def test_scale_forward_with_bias():
    _, _, top = run("Scale", "bias_term: true", [X], [[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]])
    np.testing.assert_allclose(top.data, [[1.5, 4, -2], [4.5, 10, -5]])


def test_scale_forward_scalar():
    _, _, top = run("Scale", "num_axes: 0", [X], [2.0])
    np.testing.assert_allclose(top.data, 2 * np.array(X))


def test_scale_forward_two_bottoms_middle_axis():
    x = np.arange(12.0).reshape(2, 3, 2)
    _, _, top = run("Scale", "", [x, [1.0, 0.0, -2.0]])
    np.testing.assert_allclose(top.data, [[[0, 1], [0, 0], [-8, -10]], [[6, 7], [0, 0], [-20, -22]]])


# -- backward ---------------------------------------------------------------------------------

def test_scale_backward_hand_computed_and_param_diffs_accumulate():
    layer, bottoms, top = run("Scale", "bias_term: true", [X], [[1.0, 2.0, -1.0], [0.0, 0.0, 0.0]])
    top.diff[...] = [[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]]
    for _ in range(2):
        layer.backward([top], [True], bottoms)
    np.testing.assert_allclose(bottoms[0].diff, [[1, 2, -1], [2, 0, 1]])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * np.array([1 + 8, 2 + 0, 3 - 6]))
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * np.array([3, 1, 0]))


def test_two_bottom_diffs_are_written_not_accumulated():
    layer, bottoms, top = run("Bias", "axis: 0", [X, [1.0, 2.0]])
    top.diff[...] = [[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]]
    for _ in range(2):
        layer.backward([top], [True, True], bottoms)
    np.testing.assert_allclose(bottoms[0].diff, top.diff)
    np.testing.assert_allclose(bottoms[1].diff, [6.0, -1.0])


@pytest.mark.parametrize("kind, params, shapes", [
    ("Scale", "bias_term: true", [(2, 3, 2)]),
    ("Scale", "axis: 0 num_axes: -1", [(2, 3, 2)]),
    ("Scale", "num_axes: 0 bias_term: true", [(2, 3, 2)]),
    ("Scale", "", [(2, 3, 2), (3,)]),
    ("Scale", "axis: 0 bias_term: true", [(2, 3, 2), (2, 3)]),
    ("Scale", "axis: -1", [(2, 3, 2), (2,)]),
    ("Bias", "num_axes: 2", [(2, 3, 2)]),
    ("Bias", "axis: 0", [(2, 3, 2), (2,)]),
    ("Bias", "", [(2, 3, 2), ()]),
])
def test_gradient(kind, params, shapes):
    fillers = ' filler { type: "gaussian" }'
    if kind == "Scale" and "bias_term" in params:
        fillers += ' bias_filler { type: "gaussian" }'
    layer = layer_of(kind, params + (fillers if len(shapes) == 1 else ""))
    bottoms = [gaussian_blob(shape, seed=i) for i, shape in enumerate(shapes)]
    GradientChecker(1e-2, 1e-3).check_gradient_exhaustive(layer, bottoms, empty_tops(1))


@pytest.mark.parametrize("kind, params", [("Scale", "bias_term: true"), ("Bias", ""), ("Scale", "")])
def test_in_place_matches_out_of_place(kind, params):
    values = [[1.5, -2.0, 0.5], [0.25, 1.0, -1.0]]
    out, bottoms, top = run(kind, params, [X], values)
    top.diff[...] = [[1.0, -1.0, 2.0], [0.5, 3.0, 1.0]]
    out.backward([top], [True], bottoms)

    blob = blob_from(X)
    inplace = layer_of(kind, params)
    inplace.initialize([blob], [blob])
    for param, value in zip(inplace.blobs, values):
        param.data[...] = value
    inplace.forward([blob], [blob])
    np.testing.assert_allclose(blob.data, top.data)
    blob.diff[...] = top.diff
    inplace.backward([blob], [True], [blob])
    np.testing.assert_allclose(blob.diff, bottoms[0].diff)
    for mine, theirs in zip(inplace.blobs, out.blobs):
        np.testing.assert_allclose(mine.diff, theirs.diff)


# -- bad parameters and shapes ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Scale", "Bias"])
@pytest.mark.parametrize("params, shapes, message", [
    ("", [(2, 3, 4), (4,)], "does not fit"),
    ("axis: 0", [(2, 3, 4), (2, 4)], "does not fit"),
    ("axis: 2", [(2, 3, 4), (4, 1)], "does not fit"),
    ("num_axes: 3", [(2, 3, 4)], "runs past"),
    ("num_axes: -2", [(2, 3, 4)], "num_axes"),
    ("axis: 3", [(2, 3, 4)], "axis"),
    ("axis: -4", [(2, 3, 4), (2,)], "axis"),
])
def test_bad_shapes_and_params_are_errors(kind, params, shapes, message):
    with pytest.raises(PclError, match=message):
        set_up(kind, params, [gaussian_blob(s) for s in shapes])


def test_changed_second_bottom_shape_is_an_error_on_reshape():
    bottoms = [gaussian_blob((2, 3)), gaussian_blob((3,))]
    layer, tops = set_up("Scale", "", bottoms)
    bottoms[1].reshape(2)
    with pytest.raises(PclError, match="does not fit"):
        layer.reshape(bottoms, tops)


def test_cpu_and_gpu_give_the_same_result(any_mode):
    bottoms = [blob_from(X, np.float32), blob_from([2.0, -1.0], np.float32)]
    layer, tops = set_up("Scale", "axis: 0 bias_term: true", bottoms, np.float32)
    layer.blobs[0].data[...] = [0.5, 1.0]
    layer.forward(bottoms, tops)
    tops[0].diff[...] = 1.0
    layer.backward(tops, [True, True], bottoms)
    assert tops[0].data.dtype == np.float32
    np.testing.assert_allclose(tops[0].data, [[2.5, 4.5, 6.5], [-3, -4, -5]])
    np.testing.assert_allclose(bottoms[0].diff, [[2, 2, 2], [-1, -1, -1]])
    np.testing.assert_allclose(bottoms[1].diff, [6, 15])
    np.testing.assert_allclose(layer.blobs[0].diff, [3, 3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("params, shapes", [
    ("bias_term: true", [(4, 3, 5, 6)]),
    ("", [(2, 3, 4)]),
    ("axis: 0 num_axes: 2 bias_term: true", [(2, 3, 4)]),
    ("num_axes: 0", [(2, 3, 4)]),
    ("axis: 1 bias_term: true", [(2, 3, 4, 5), (3, 4)]),
])
def test_compiled_and_array_module_paths_agree(monkeypatch, dtype, in_place, params, shapes):
    """The CPU's compiled passes against the array-module code the device runs."""
    results = []
    for compiled in (True, False):
        monkeypatch.setattr(ScaleLayer, "compiled", compiled)
        bottoms = [gaussian_blob(s, dtype=dtype, seed=i) for i, s in enumerate(shapes)]
        layer = layer_of("Scale", params, dtype)
        top = bottoms[0] if in_place else empty_tops(1, dtype)[0]
        layer.initialize(bottoms, [top])
        for i, blob in enumerate(layer.blobs):
            blob.data[...] = gaussian_blob(blob.shape, dtype=dtype, seed=5 + i).data
            blob.diff[...] = 1  # param diffs are added
        layer.forward(bottoms, [top])
        data = top.data.copy()
        top.diff[...] = gaussian_blob(top.shape, dtype=dtype, seed=9).data
        layer.backward([top], [True] * len(bottoms), bottoms)
        results.append([data] + [b.diff.copy() for b in bottoms + layer.blobs])
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for ours, theirs in zip(*results):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance)
