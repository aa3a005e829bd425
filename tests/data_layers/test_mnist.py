"""MNIST IDX -> LMDB: Caffe's convert_mnist_data records byte for byte; gz or plain; errors."""
import gzip
import struct
from pathlib import Path

import lmdb
import numpy as np
import pytest

from pycaffelite.cli import main
from pycaffelite.errors import PclError
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
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = list(txn.cursor())
    env.close()
    return items


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
    out = capsys.readouterr().out
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
