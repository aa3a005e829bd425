"""Input, DummyData, Parameter, Silence."""
import numpy as np
import pytest

from pycaffelite import device
from pycaffelite.errors import PclError
from pycaffelite.gradient_check import GradientChecker
from tests.layer_testing import empty_tops, gaussian_blob, make_layer


def setup_layer(text, bottoms=(), num_top=1):
    layer = make_layer(text)
    tops = empty_tops(num_top)
    layer.initialize(list(bottoms), tops)
    return layer, tops


# -- Input --------------------------------------------------------------------------------------
def test_input_one_shape_for_all_tops():
    _, tops = setup_layer('type: "Input" input_param { shape { dim: 2 dim: 3 } }', num_top=2)
    assert [t.shape for t in tops] == [(2, 3), (2, 3)]


def test_input_one_shape_per_top_and_reshape_keeps_user_shapes():
    layer, tops = setup_layer('type: "Input" input_param { shape { dim: 4 } shape { dim: 1 dim: 2 } }',
                              num_top=2)
    assert [t.shape for t in tops] == [(4,), (1, 2)]
    tops[0].reshape(7)
    layer.reshape([], tops)
    layer.forward([], tops)
    assert tops[0].shape == (7,)


def test_input_without_shapes_leaves_tops_alone():
    _, (top,) = setup_layer('type: "Input"')
    assert top.shape == ()


def test_input_shape_count_must_fit_the_tops():
    with pytest.raises(PclError, match="2 'shape' values for 3 tops"):
        setup_layer('type: "Input" input_param { shape { dim: 1 } shape { dim: 2 } }', num_top=3)


def test_input_takes_no_bottoms():
    with pytest.raises(PclError, match="exactly 0 bottom"):
        setup_layer('type: "Input" input_param { shape { dim: 1 } }', [gaussian_blob((1,))])


# -- DummyData ----------------------------------------------------------------------------------
def test_dummy_data_default_is_zeros():
    layer, (top,) = setup_layer('type: "DummyData" dummy_data_param { shape { dim: 2 dim: 3 } }')
    assert top.shape == (2, 3)
    layer.forward([], [top])
    np.testing.assert_array_equal(top.data, np.zeros((2, 3)))


def test_dummy_data_legacy_dims_and_one_filler_for_all():
    text = ('type: "DummyData" dummy_data_param { num: 2 num: 1 channels: 3 height: 1 width: 2 '
            'data_filler { type: "constant" value: 7 } }')
    _, tops = setup_layer(text, num_top=2)
    assert [t.shape for t in tops] == [(2, 3, 1, 2), (1, 3, 1, 2)]
    assert all((t.data == 7).all() for t in tops)


def test_dummy_data_constant_filled_once_others_every_forward():
    text = ('type: "DummyData" dummy_data_param { shape { dim: 3 } '
            'data_filler { type: "constant" value: 2 } data_filler { type: "uniform" min: 1 max: 2 } }')
    layer, (const, rand) = setup_layer(text, num_top=2)
    np.testing.assert_array_equal(const.data, [2, 2, 2])
    np.testing.assert_array_equal(rand.data, [0, 0, 0])   # not filled until the first forward
    const.data[...] = -1
    layer.forward([], [const, rand])
    first = rand.data.copy()
    assert ((first >= 1) & (first < 2)).all()
    layer.forward([], [const, rand])
    assert not np.array_equal(rand.data, first)
    np.testing.assert_array_equal(const.data, [-1, -1, -1])


@pytest.mark.parametrize("text, num_top, message", [
    ('shape { dim: 1 } shape { dim: 2 }', 3, "2 'shape' values for 3 tops"),
    ('shape { dim: 1 } num: 1 channels: 1 height: 1 width: 1', 1, "both shape and the legacy"),
    ('num: 1 channels: 1 height: 1', 1, "0 'width' values"),
    ('shape { dim: 1 } data_filler { } data_filler { }', 3, "2 data_filler values for 3 tops"),
    ('shape { dim: 1 } data_filler { type: "bogus" }', 1, 'data_filler of top 0 .*unknown filler type "bogus"'),
])
def test_dummy_data_bad_parameters(text, num_top, message):
    with pytest.raises(PclError, match=message):
        setup_layer(f'type: "DummyData" dummy_data_param {{ {text} }}', num_top=num_top)


def test_dummy_data_fills_in_both_modes(any_mode):
    text = 'type: "DummyData" dummy_data_param { shape { dim: 4 } data_filler { type: "gaussian" } }'
    layer, (top,) = setup_layer(text)
    device.set_random_seed(5)
    layer.forward([], [top])
    expected = np.random.default_rng(5).normal(0.0, 1.0, size=4)
    np.testing.assert_allclose(top.data, expected)


# -- Parameter ----------------------------------------------------------------------------------
def test_parameter_exposes_its_blob_as_top():
    layer, (top,) = setup_layer('type: "Parameter" parameter_param { shape { dim: 2 dim: 3 } }')
    assert len(layer.blobs) == 1 and layer.blobs[0].shape == (2, 3)
    assert top.shape == (2, 3)
    np.testing.assert_array_equal(top.data, np.zeros((2, 3)))
    layer.blobs[0].data[...] = np.arange(6).reshape(2, 3)
    layer.forward([], [top])
    np.testing.assert_array_equal(top.data, np.arange(6).reshape(2, 3))


def test_parameter_backward_accumulates_into_the_param_diff():
    layer, (top,) = setup_layer('type: "Parameter" parameter_param { shape { dim: 2 } }')
    layer.blobs[0].diff[...] = [1, 1]
    top.diff[...] = [3, 4]
    layer.backward([top], [], [])
    np.testing.assert_array_equal(layer.blobs[0].diff, [4, 5])
    layer.set_param_propagate_down(0, False)
    layer.backward([top], [], [])
    np.testing.assert_array_equal(layer.blobs[0].diff, [4, 5])


def test_parameter_gradient():
    layer = make_layer('type: "Parameter" parameter_param { shape { dim: 2 dim: 2 } }')
    tops = empty_tops(1)
    layer.initialize([], tops)
    layer.blobs[0].data[...] = [[1.0, -2.0], [0.5, 3.0]]
    GradientChecker(1e-2, 1e-3).check_gradient_single(layer, [], tops)


def test_parameter_in_both_modes(any_mode):
    layer, (top,) = setup_layer('type: "Parameter" parameter_param { shape { dim: 3 } }')
    layer.blobs[0].data[...] = [1, 2, 3]
    layer.forward([], [top])
    np.testing.assert_array_equal(top.data, [1, 2, 3])
    top.diff[...] = [1, 0, 2]
    layer.backward([top], [], [])
    np.testing.assert_array_equal(layer.blobs[0].diff, [1, 0, 2])


# -- Silence ------------------------------------------------------------------------------------
def test_silence_has_no_tops_and_zeroes_diffs(any_mode):
    a, b = gaussian_blob((2, 2)), gaussian_blob((3,))
    a.diff[...] = 5
    b.diff[...] = 5
    layer, _ = setup_layer('type: "Silence"', [a, b], num_top=0)
    layer.forward([a, b], [])
    layer.backward([], [True, False], [a, b])
    np.testing.assert_array_equal(a.diff, np.zeros((2, 2)))
    np.testing.assert_array_equal(b.diff, np.full(3, 5.0))


def test_silence_refuses_tops():
    with pytest.raises(PclError, match="exactly 0 top"):
        setup_layer('type: "Silence"', [gaussian_blob((1,))], num_top=1)
