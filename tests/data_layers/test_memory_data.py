"""MemoryData: set_input_arrays, batches in order with wrap-around, shapes, errors."""
import numpy as np
import pytest

from layer_testing import empty_tops, make_layer
from pycaffelite.errors import PclError


def memory_data(batch_size=2, dtype=np.float32):
    layer = make_layer(f'type: "MemoryData" top: "data" top: "label" memory_data_param {{ '
                       f"batch_size: {batch_size} channels: 1 height: 2 width: 3 }}", dtype=dtype)
    top = empty_tops(2, dtype)
    layer.initialize([], top)
    return layer, top


def test_shapes():
    _, top = memory_data()
    assert top[0].shape == (2, 1, 2, 3)
    assert top[1].shape == (2,)


def test_batches_in_order_wrapping_around(any_mode):
    layer, top = memory_data()
    data = np.arange(4 * 6, dtype=np.float32).reshape(4, 1, 2, 3)
    layer.set_input_arrays(data, np.array([5, 6, 7, 8], dtype=np.float32))
    for rows, labels in (([0, 1], [5, 6]), ([2, 3], [7, 8]), ([0, 1], [5, 6])):
        layer.forward([], top)
        np.testing.assert_array_equal(np.asarray(top[0].read_data()), data[rows])
        np.testing.assert_array_equal(np.asarray(top[1].read_data()), labels)


def test_labels_as_n_by_1_by_1_by_1_and_float64():
    layer, top = memory_data(dtype=np.float64)
    layer.set_input_arrays(np.ones((2, 1, 2, 3)), np.array([1, 2]).reshape(2, 1, 1, 1))
    layer.forward([], top)
    np.testing.assert_array_equal(top[1].data, [1, 2])


@pytest.mark.parametrize("data_shape, n_labels, message", [
    ((2, 1, 3, 3), 2, r"data must be N x 1 x 2 x 3"),
    ((2, 1, 2, 3), 3, "one label per data row"),
    ((3, 1, 2, 3), 3, "multiple of batch_size"),
])
def test_bad_arrays(data_shape, n_labels, message):
    layer, _ = memory_data()
    with pytest.raises(PclError, match=message):
        layer.set_input_arrays(np.zeros(data_shape), np.zeros(n_labels))


def test_forward_without_data_and_bad_parameters():
    layer, top = memory_data()
    with pytest.raises(PclError, match="call set_input_arrays"):
        layer.forward([], top)
    bad = make_layer('type: "MemoryData" top: "data" top: "label" memory_data_param { batch_size: 2 }')
    with pytest.raises(PclError, match="must all be set and positive"):
        bad.initialize([], empty_tops(2))

