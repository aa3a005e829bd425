"""LevelDB wherever Caffe takes a backend: the Data layer (LEVELDB is Caffe's default), the
conversion tools, the mean; a database of the other kind read as what it is, with a warning."""
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from layer_testing import empty_tops, make_layer
from pycaffelite.cli import main
from pycaffelite.errors import PclError
from pycaffelite.io import db
from pycaffelite.io.datum import parse_datum
from pycaffelite.net import Net

FILES = Path(__file__).resolve().parent.parent / "data" / "files"
MNIST = np.load(FILES / "mnist_lmdb" / "expected.npz")


def copy_database(source, target, backend):
    with db.AtomicWriter(target, backend) as out:
        for key, value in db.iterate(source, db.detect(source)):
            out.put(key, value)
    return target


def data_layer(source, batch_size, backend=""):
    layer = make_layer(f'type: "Data" top: "data" top: "label" data_param {{ source: "{source}" '
                       f"batch_size: {batch_size} {backend} }}", dtype=np.float32)
    top = empty_tops(2, np.float32)
    layer.initialize([], top)
    return layer, top


def batches(layer, top, count):
    out = []
    for _ in range(count):
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


@pytest.mark.parametrize("backend", ["", "backend: LEVELDB"])
def test_leveldb_batches_equal_the_lmdbs(tmp_path, caplog, backend):
    leveldb = copy_database(FILES / "lmdb_rgb" / "db", tmp_path / "rgb_leveldb", db.LEVELDB)
    with caplog.at_level(logging.WARNING):
        from_leveldb = batches(*data_layer(leveldb, 5, backend), 6)  # 30 of 24 records: wraps
    assert not caplog.records
    from_lmdb = batches(*data_layer(FILES / "lmdb_rgb" / "db", 5, "backend: LMDB"), 6)
    for (data, label), (lmdb_data, lmdb_label) in zip(from_leveldb, from_lmdb):
        np.testing.assert_array_equal(data, lmdb_data)
        np.testing.assert_array_equal(label, lmdb_label)


@pytest.mark.parametrize("backend, found, said", [
    ("", db.LMDB, "names no backend (Caffe then reads LEVELDB)"),
    ("backend: LEVELDB", db.LMDB, "says backend: LEVELDB"),
    ("backend: LMDB", db.LEVELDB, "says backend: LMDB"),
])
def test_the_other_kind_is_read_with_one_warning(tmp_path, caplog, backend, found, said):
    source = FILES / "mnist_lmdb" / "db"
    if found == db.LEVELDB:
        source = copy_database(source, tmp_path / "digits", db.LEVELDB)
    with caplog.at_level(logging.WARNING):
        layer, top = data_layer(source, 4, backend)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, MNIST["images"][:4])
    kind = "an LMDB" if found == db.LMDB else "a LevelDB"
    assert [r.getMessage() for r in caplog.records] == [
        f'layer "test" (Data): "{source}" is {kind} database but data_param {said}; reading it as '
        f"{db.DISPLAY_NAMES[found]}: write backend: {found.upper()} in data_param"]


SIAMESE = """
name: "siamese_style"
layer {{ name: "pair_data" type: "Data" top: "pair_data" top: "sim"
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{source}" batch_size: 4 }} }}
layer {{ name: "slice_pair" type: "Slice" bottom: "pair_data" top: "data" top: "data_p"
  slice_param {{ slice_dim: 1 slice_point: 1 }} }}
layer {{ name: "feat" type: "InnerProduct" bottom: "data" top: "feat"
  param {{ name: "w" }} param {{ name: "b" }}
  inner_product_param {{ num_output: 2 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "feat_p" type: "InnerProduct" bottom: "data_p" top: "feat_p"
  param {{ name: "w" }} param {{ name: "b" }}
  inner_product_param {{ num_output: 2 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "ContrastiveLoss" bottom: "feat" bottom: "feat_p" bottom: "sim"
  top: "loss" contrastive_loss_param {{ margin: 1 }} }}
"""


def test_siamese_style_net_without_backend_reads_a_leveldb(tmp_path, caplog):
    """Caffe's siamese example names no backend: its pair LevelDB (2 x 28 x 28 records, label 1
    for a pair of the same digit) is read as Caffe's default backend."""
    from pycaffelite.proto import caffe_pb2

    images, labels = MNIST["images"][:, 0].astype(np.uint8), MNIST["labels"].astype(int)
    with db.AtomicWriter(tmp_path / "pairs_leveldb", db.LEVELDB) as out:
        for i in range(8):
            datum = caffe_pb2.Datum(channels=2, height=28, width=28,
                                    label=int(labels[i] == labels[i + 8]),
                                    data=images[i].tobytes() + images[i + 8].tobytes())
            out.put(b"%08d" % i, datum.SerializeToString())
    (tmp_path / "net.prototxt").write_text(SIAMESE.format(source=tmp_path / "pairs_leveldb"))
    with caplog.at_level(logging.WARNING):
        net = Net(str(tmp_path / "net.prototxt"), "TRAIN")
        net.forward()
    assert not caplog.records
    scale = np.float32(0.00390625)
    np.testing.assert_array_equal(net.blobs["data"].data[:, 0], images[:4] * scale)
    np.testing.assert_array_equal(net.blobs["data_p"].data[:, 0], images[8:12] * scale)
    np.testing.assert_array_equal(net.blobs["sim"].data, (labels[:4] == labels[8:12]).astype(float))
    assert np.isfinite(net.blobs["loss"].data).all()


def test_missing_neither_and_empty(tmp_path):
    with pytest.raises(PclError, match=r'no LevelDB database at ".*missing" \(data_param names no '
                                       r"backend, so Caffe's default, LEVELDB, is expected\); check "
                                       r"the path \(it is the folder holding CURRENT\)"):
        data_layer(tmp_path / "missing", 1)
    (tmp_path / "folder").mkdir()
    with pytest.raises(PclError, match="neither an LMDB nor a LevelDB database"):
        data_layer(tmp_path / "folder", 1)
    with db.AtomicWriter(tmp_path / "empty", db.LEVELDB):
        pass
    with pytest.raises(PclError, match='LevelDB database ".*empty" is empty'):
        data_layer(tmp_path / "empty", 1)


def test_leveldb_open_in_another_process(tmp_path):
    source = copy_database(FILES / "mnist_lmdb" / "db", tmp_path / "digits", db.LEVELDB)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, plyvel
        database = plyvel.DB({str(source)!r})
        print("open", flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(PclError, match="is open in another process .* one process at a time"):
            data_layer(source, 1)
    finally:
        holder.communicate("")


def test_two_layers_share_one_leveldb(tmp_path):
    source = copy_database(FILES / "mnist_lmdb" / "db", tmp_path / "digits", db.LEVELDB)
    first, top1 = data_layer(source, 3)
    second, top2 = data_layer(source, 3)
    first.forward([], top1)
    second.forward([], top2)
    np.testing.assert_array_equal(top1[0].data, top2[0].data)


def test_convert_mnist_leveldb_and_recipe(tmp_path, monkeypatch):
    from test_mnist import idx_files

    images, labels = idx_files(tmp_path, True, count=20)
    main(["convert_mnist", "--backend=leveldb", str(images), str(labels), str(tmp_path / "db")])
    made = list(db.iterate(tmp_path / "db", db.LEVELDB))
    assert made == list(db.iterate(FILES / "mnist_lmdb" / "db", db.LMDB))[:20]
    recipe = "convert_mnist --backend=leveldb images.gz labels.gz\n"
    (tmp_path / "digits_leveldb.recipe").write_text(recipe)
    monkeypatch.chdir(tmp_path)
    layer, top = data_layer("digits_leveldb", 20)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, MNIST["images"][:20])
    assert db.detect(tmp_path / "digits_leveldb") == db.LEVELDB


def test_compute_image_mean_of_a_leveldb(tmp_path, capsys):
    source = copy_database(FILES / "lmdb_rgb" / "db", tmp_path / "rgb", db.LEVELDB)
    main(["compute_image_mean", "-backend=leveldb", str(source), str(tmp_path / "mean.binaryproto")])
    assert (tmp_path / "mean.binaryproto").read_bytes() == (FILES / "mean.binaryproto").read_bytes()
    assert "warning" not in capsys.readouterr().err
    main(["compute_image_mean", str(source), str(tmp_path / "mean2.binaryproto")])  # default lmdb
    assert (tmp_path / "mean2.binaryproto").read_bytes() == (FILES / "mean.binaryproto").read_bytes()
    assert (f'warning: "{source}" is a LevelDB database, not an LMDB; reading it as LevelDB: pass '
            "--backend leveldb") in capsys.readouterr().err


def test_leveldb_records_parse_as_written(tmp_path):
    source = copy_database(FILES / "lmdb_encoded" / "db", tmp_path / "encoded", db.LEVELDB)
    for (key, value), (lmdb_key, lmdb_value) in zip(db.iterate(source, db.LEVELDB),
                                                    db.iterate(FILES / "lmdb_encoded" / "db", db.LMDB)):
        assert key == lmdb_key and value == lmdb_value
        assert parse_datum(value).encoded
