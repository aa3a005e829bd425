"""MNIST IDX -> LMDB: Caffe's convert_mnist_data records byte for byte; gz or plain; errors."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from pycaffelite.cli import main
from pycaffelite.errors import PclError
from pycaffelite.io import db
from pycaffelite.io.mnist import convert_mnist

FILES = Path(__file__).resolve().parent.parent / "data" / "files"


def idx_files(folder, compress, count=100, label_count=None):
    """The first `count` digits Caffe converted into mnist_lmdb, as IDX files."""
    expected = np.load(FILES / "mnist_lmdb" / "expected.npz")
    images = expected["images"][:count, 0].astype(np.uint8)
    labels = expected["labels"][:count].astype(np.uint8)
    label_count = count if label_count is None else label_count
    image_bytes = struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes()
    label_bytes = struct.pack(">II", 2049, label_count) + labels[:label_count].tobytes()
    opener = gzip.compress if compress else bytes
    suffix = ".gz" if compress else ""
    (folder / f"images{suffix}").write_bytes(opener(image_bytes))
    (folder / f"labels{suffix}").write_bytes(opener(label_bytes))
    return folder / f"images{suffix}", folder / f"labels{suffix}"


def records(path):
    return list(db.iterate(path, db.detect(path)))


@pytest.mark.parametrize("compress", [True, False])
def test_records_equal_caffes(tmp_path, compress):
    images, labels = idx_files(tmp_path, compress)
    assert convert_mnist(images, labels, tmp_path / "db") == (100, 28, 28)
    made = records(tmp_path / "db")
    assert made == records(FILES / "mnist_lmdb" / "db")
    assert made[42][0] == b"00000042"


def test_command_log(tmp_path, capsys):
    images, labels = idx_files(tmp_path, True, count=3)
    main(["convert_mnist", str(images), str(labels), str(tmp_path / "db")])
    out = capsys.readouterr().err
    assert "A total of 3 items." in out and "Rows: 28 Cols: 28" in out and "Processed 3 files." in out


def test_errors(tmp_path):
    images, labels = idx_files(tmp_path, False, count=4, label_count=3)
    with pytest.raises(PclError, match="4 images but .* 3 labels"):
        convert_mnist(images, labels, tmp_path / "db")
    with pytest.raises(PclError, match="not an MNIST images file .* order of the arguments"):
        convert_mnist(labels, images, tmp_path / "db")
    images.write_bytes(images.read_bytes()[:100])
    with pytest.raises(PclError, match="truncated"):
        convert_mnist(images, labels, tmp_path / "db")
    with pytest.raises(PclError, match="cannot read"):
        convert_mnist(tmp_path / "none", labels, tmp_path / "db")
    assert not (tmp_path / "db").exists()


def test_missing_database_is_made_from_its_recipe(tmp_path, monkeypatch):
    from layer_testing import empty_tops, make_layer

    idx_files(tmp_path, True, count=10)
    (tmp_path / "digits_lmdb.recipe").write_text("# made on first use\nconvert_mnist images.gz labels.gz\n")
    monkeypatch.chdir(tmp_path.parent)
    source = f"{tmp_path.name}/digits_lmdb"
    layer = make_layer(f'type: "Data" top: "data" top: "label" data_param {{ source: "{source}" '
                       "batch_size: 10 backend: LMDB }", dtype=np.float32)
    top = empty_tops(2, np.float32)
    layer.initialize([], top)
    layer.forward([], top)
    expected = np.load(FILES / "mnist_lmdb" / "expected.npz")
    np.testing.assert_array_equal(top[0].data, expected["images"][:10])
    assert (tmp_path / "digits_lmdb" / "data.mdb").exists()


def test_bad_recipe(tmp_path):
    from pycaffelite.io.db import create_from_recipe

    (tmp_path / "x_lmdb.recipe").write_text("rm -rf /\n")
    with pytest.raises(PclError, match="a recipe must be one of the commands"):
        create_from_recipe(tmp_path / "x_lmdb")
