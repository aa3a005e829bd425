"""HDF5Data and HDF5Output: shapes, row order, wrap-around across files, shuffle, round trip, errors."""
import h5py
import numpy as np
import pytest

from layer_testing import blob_from, empty_tops, make_layer
from pycaffelite.errors import PclError


def write_h5(path, **datasets):
    with h5py.File(path, "w") as handle:
        for name, values in datasets.items():
            handle.create_dataset(name, data=values)


@pytest.fixture
def two_files(tmp_path, monkeypatch):
    """Two files of 3 and 2 rows; data row i is filled with i, label i is 10*i. Listed relative to cwd."""
    monkeypatch.chdir(tmp_path)
    rows = np.arange(5, dtype=np.float32)
    data = np.broadcast_to(rows[:, None, None, None], (5, 2, 3, 4)).copy()
    write_h5("a.h5", data=data[:3], label=10 * rows[:3])
    write_h5("b.h5", data=data[3:], label=(10 * rows[3:]).astype(np.int32))
    (tmp_path / "list.txt").write_text("a.h5\nb.h5\n")
    return tmp_path


def hdf5_data(batch_size, shuffle=False, source="list.txt", dtype=np.float32):
    text = (f'type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ source: "{source}" '
            f"batch_size: {batch_size} shuffle: {str(shuffle).lower()} }}")
    layer = make_layer(text, dtype=dtype)
    top = empty_tops(2, dtype=dtype)
    layer.initialize([], top)
    return layer, top


def test_shapes(two_files):
    _, top = hdf5_data(4)
    assert top[0].shape == (4, 2, 3, 4)
    assert top[1].shape == (4,)


def test_rows_in_order_wrapping_across_files(two_files, any_mode):
    layer, top = hdf5_data(3)
    seen = []
    for _ in range(4):
        layer.forward([], top)
        data = np.array(top[0].read_data())
        seen.extend(data[:, 0, 0, 0].tolist())
        np.testing.assert_array_equal(np.array(top[1].read_data()), 10 * data[:, 0, 0, 0])
        assert (data == data[:, :1, :1, :1]).all()
    assert seen == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_shuffle_visits_every_row_once_per_pass(two_files):
    layer, top = hdf5_data(5, shuffle=True)
    for _ in range(3):
        layer.forward([], top)
        assert sorted(top[0].data[:, 0, 0, 0].tolist()) == [0, 1, 2, 3, 4]


def test_float64_net(two_files):
    layer, top = hdf5_data(2, dtype=np.float64)
    layer.forward([], top)
    assert top[0].data.dtype == np.float64
    np.testing.assert_array_equal(top[1].data, [0, 10])


def test_output_round_trip_through_data(tmp_path, monkeypatch, any_mode):
    monkeypatch.chdir(tmp_path)
    data = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2) / 7
    label = np.array([3, 1], dtype=np.float32)
    out = make_layer('type: "HDF5Output" hdf5_output_param { file_name: "out.h5" }', dtype=np.float32)
    bottom = [blob_from(data, np.float32), blob_from(label, np.float32)]
    out.initialize(bottom, [])
    out.forward(bottom, [])
    out.forward(bottom, [])  # a second pass appends
    with h5py.File("out.h5", "r") as handle:
        assert handle["label"].shape == (4, 1, 1, 1)  # Caffe's legacy 4-d shape
        np.testing.assert_array_equal(handle["data"][:2], data)
        np.testing.assert_array_equal(handle["data"][2:], data)
    (tmp_path / "list.txt").write_text("out.h5\n")
    layer, top = hdf5_data(4)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, np.concatenate([data, data]))
    np.testing.assert_array_equal(top[1].data.ravel(), [3, 1, 3, 1])


def test_output_backward_gives_zero_diffs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = make_layer('type: "HDF5Output" hdf5_output_param { file_name: "o.h5" }')
    bottom = [blob_from(np.ones((2, 3))), blob_from(np.ones(2))]
    out.initialize(bottom, [])
    bottom[0].diff[...] = 5
    out.backward([], [True, False], bottom)
    assert (bottom[0].diff == 0).all()


@pytest.mark.parametrize("text, message", [
    ('hdf5_data_param { source: "missing.txt" batch_size: 2 }', "cannot open the source list"),
    ('hdf5_data_param { source: "empty.txt" batch_size: 2 }', "names no HDF5 file"),
    ('hdf5_data_param { source: "bad.txt" batch_size: 2 }', 'cannot open HDF5 file "nope.h5"'),
    ('hdf5_data_param { source: "list.txt" batch_size: 0 }', "batch_size must be a positive"),
    ('hdf5_data_param { source: "list.txt" batch_size: 2 } transform_param { scale: 2 }',
     "does not transform data"),
])
def test_data_errors(two_files, text, message):
    (two_files / "empty.txt").write_text("\n")
    (two_files / "bad.txt").write_text("nope.h5\n")
    layer = make_layer(f'type: "HDF5Data" top: "data" top: "label" {text}')
    with pytest.raises(PclError, match=message):
        layer.initialize([], empty_tops(2))


def test_data_missing_dataset_and_row_mismatch(two_files):
    layer = make_layer('type: "HDF5Data" top: "data" top: "weights" '
                       'hdf5_data_param { source: "list.txt" batch_size: 2 }')
    with pytest.raises(PclError, match='no dataset "weights"'):
        layer.initialize([], empty_tops(2))
    write_h5("c.h5", data=np.zeros((3, 2)), label=np.zeros(2))
    (two_files / "c.txt").write_text("c.h5")
    layer = make_layer('type: "HDF5Data" top: "data" top: "label" '
                       'hdf5_data_param { source: "c.txt" batch_size: 2 }')
    with pytest.raises(PclError, match="same number of rows"):
        layer.initialize([], empty_tops(2))


def test_output_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = make_layer('type: "HDF5Output" hdf5_output_param { file_name: "o.h5" }')
    with pytest.raises(PclError, match="same num"):
        out.initialize([blob_from(np.ones((2, 3))), blob_from(np.ones(3))], [])
    out = make_layer('type: "HDF5Output" hdf5_output_param { file_name: "no/such/dir/o.h5" }')
    with pytest.raises(PclError, match="cannot create"):
        out.initialize([blob_from(np.ones((2, 3))), blob_from(np.ones(2))], [])
