"""Data layer over LMDB: Caffe-made databases read record for record, wrap-around, prefetch, errors."""
from pathlib import Path

import numpy as np
import pytest

from layer_testing import empty_tops, make_layer
from pycaffelite.errors import PclError
from pycaffelite.io.datum import array_to_datum, encoded_datum
from pycaffelite.io.db import AtomicWriter
from pycaffelite.proto import caffe_pb2

FILES = Path(__file__).resolve().parent.parent / "data" / "files"


def data_layer(source, batch_size, tops=2, extra="", dtype=np.float32, phase=caffe_pb2.TRAIN):
    top_text = ' top: "data" top: "label"' if tops == 2 else ' top: "data"'
    layer = make_layer(f'type: "Data"{top_text} {extra} data_param {{ source: "{source}" '
                       f"batch_size: {batch_size} backend: LMDB }}", dtype=dtype, phase=phase)
    top = empty_tops(tops, dtype=dtype)
    layer.initialize([], top)
    return layer, top


def write_db(path, records):
    with AtomicWriter(path) as db:
        for key, datum in records:
            db.put(key, datum.SerializeToString())
    return str(path)


@pytest.mark.parametrize("name", ["lmdb_rgb", "lmdb_gray", "mnist_lmdb"])
def test_caffe_made_lmdbs_read_record_for_record(name, any_mode):
    expected = np.load(FILES / name / "expected.npz")
    count = len(expected["labels"])
    layer, top = data_layer(FILES / name / "db", 5)
    assert top[0].shape == (5,) + expected["images"].shape[1:]
    assert top[1].shape == (5,)
    for batch in range(count // 5 + 2):  # past the end: wraps around to the first record
        layer.forward([], top)
        rows = [(batch * 5 + i) % count for i in range(5)]
        np.testing.assert_array_equal(np.asarray(top[0].read_data()), expected["images"][rows])
        np.testing.assert_array_equal(np.asarray(top[1].read_data()), expected["labels"][rows])


@pytest.mark.parametrize("force, prefix", [("", "native"), ("force_color: true", "color")])
def test_caffe_encoded_lmdb_decodes_like_caffe(force, prefix):
    expected = np.load(FILES / "lmdb_encoded" / "expected.npz")
    layer, top = data_layer(FILES / "lmdb_encoded" / "db", 1, extra=f"transform_param {{ {force} }}")
    for i in range(len(expected["labels"])):
        layer.forward([], top)
        np.testing.assert_array_equal(top[0].data[0], expected[f"{prefix}/{i}"])
        assert top[1].data[0] == expected["labels"][i]


def test_lenet_scaling_of_mnist():
    expected = np.load(FILES / "mnist_lmdb" / "expected.npz")
    layer, top = data_layer(FILES / "mnist_lmdb" / "db", 100, extra="transform_param { scale: 0.00390625 }")
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data,
                                  expected["images"].astype(np.float32) * np.float32(0.00390625))


def test_data_only_top_and_test_phase_center_crop():
    expected = np.load(FILES / "lmdb_rgb" / "expected.npz")
    layer, top = data_layer(FILES / "lmdb_rgb" / "db", 2, tops=1, phase=caffe_pb2.TEST,
                            extra="transform_param { crop_size: 30 }")
    layer.forward([], top)
    assert top[0].shape == (2, 3, 30, 30)
    np.testing.assert_array_equal(top[0].data, expected["images"][:2, :, 1:31, 1:31])


def test_rand_skip_starts_within_the_first_records():
    expected = np.load(FILES / "mnist_lmdb" / "expected.npz")
    layer = make_layer(f'type: "Data" top: "data" top: "label" data_param {{ source: '
                       f'"{FILES / "mnist_lmdb" / "db"}" batch_size: 1 rand_skip: 10 backend: LMDB }}',
                       dtype=np.float32)
    top = empty_tops(2, np.float32)
    layer.initialize([], top)
    layer.forward([], top)
    first = [i for i in range(10) if np.array_equal(top[0].data[0], expected["images"][i])]
    assert first


def test_float_data_records_and_float64(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(1, 3, 4) - 5.5
    source = write_db(tmp_path / "db", [(b"a", array_to_datum(values, label=7))])
    layer, top = data_layer(source, 2, dtype=np.float64)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, np.stack([values, values]))
    np.testing.assert_array_equal(top[1].data, [7, 7])


def test_two_layers_on_one_database():
    source = FILES / "mnist_lmdb" / "db"
    first, top1 = data_layer(source, 3)
    second, top2 = data_layer(source, 3)
    first.forward([], top1)
    second.forward([], top2)
    np.testing.assert_array_equal(top1[0].data, top2[0].data)


def test_no_backward():
    layer, top = data_layer(FILES / "mnist_lmdb" / "db", 1)
    layer.backward(top, [], [])  # no bottoms, nothing to do


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(PclError, match="no LMDB database at"):
        data_layer(tmp_path / "missing", 1)
    source = write_db(tmp_path / "empty", [])
    with pytest.raises(PclError, match="is empty"):
        data_layer(source, 1)
    with pytest.raises(PclError, match="batch_size must be positive"):
        data_layer(source, 0)


def test_undecodable_record_names_its_key(tmp_path):
    good = array_to_datum(np.zeros((1, 2, 2), np.uint8))
    source = write_db(tmp_path / "db", [(b"00000000", good), (b"00000001", encoded_datum(b"junk"))])
    layer, top = data_layer(source, 2)
    with pytest.raises(PclError, match='record "00000001" .* cannot be decoded'):
        layer.forward([], top)
    with AtomicWriter(tmp_path / "db3") as db:
        db.put(b"bad", b"\xff\xff\xff")
    with pytest.raises(PclError, match='record "bad" .* does not parse'):
        data_layer(tmp_path / "db3", 1)


def test_differing_sizes_name_the_record(tmp_path):
    source = write_db(tmp_path / "db", [(b"a", array_to_datum(np.zeros((1, 2, 2), np.uint8))),
                                        (b"b", array_to_datum(np.zeros((1, 3, 2), np.uint8)))])
    layer, top = data_layer(source, 2)
    with pytest.raises(PclError, match='record "b" of .* is 3 x 2 with 1 channel but record "a"'):
        layer.forward([], top)
