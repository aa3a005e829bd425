"""pcl convert_imageset: the same records as Caffe's tool, folder mode, skips, atomic creation."""
import os
import shutil
from pathlib import Path

import pytest

from pycaffelite.cli import main
from pycaffelite.commands import convert_imageset as tool
from pycaffelite.io import db
from pycaffelite.io.datum import datum_to_array, parse_datum

FILES = Path(__file__).resolve().parent.parent / "data" / "files"


def records(path):
    return list(db.iterate(path, db.detect(path)))


def run(capsys, *args):
    try:
        main(["convert_imageset"] + [str(a) for a in args])
    except SystemExit as exc:
        assert exc.code == 1
    return capsys.readouterr()


@pytest.mark.parametrize("flags, reference", [
    (["-resize_width=32", "-resize_height=32"], "lmdb_rgb"),
    (["--resize_width", "32", "--resize_height=32", "--gray=true"], "lmdb_gray"),
    (["-encoded", "-encode_type=png"], "lmdb_encoded"),
])
def test_same_records_as_caffe(tmp_path, capsys, monkeypatch, flags, reference):
    monkeypatch.chdir(FILES)
    out = run(capsys, *flags, "images/", "images/list.txt", tmp_path / "db")
    assert "A total of 24 images." in out.err and "Processed 24 files." in out.err
    assert records(tmp_path / "db") == records(FILES / reference / "db")  # byte for byte
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


def test_folder_mode_labels_in_sorted_class_order(tmp_path, capsys):
    out = run(capsys, "--resize_height=16", "--resize_width=16", "--shuffle", FILES / "images",
              tmp_path / "db")
    assert "Wrote 24 records" in out.err
    assert (tmp_path / "db_labels.txt").read_text().split() == ["astronaut", "cat", "coffee", "rocket"]
    seen = {}
    for key, value in records(tmp_path / "db"):
        path = key.decode().split("_", 1)[1]
        datum = parse_datum(value)
        assert datum_to_array(datum).shape == (3, 16, 16)
        seen[path] = datum.label
    assert len(seen) == 24
    assert {path.split("/")[0]: label for path, label in seen.items()} == \
        {"astronaut": 0, "cat": 1, "coffee": 2, "rocket": 3}


def test_unreadable_images_are_skipped_with_a_warning(tmp_path, capsys):
    shutil.copy(FILES / "images" / "cat" / "cat_0.jpg", tmp_path / "a.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "list.txt").write_text("a.jpg 1\nbroken.jpg 2\nmissing.png 3\na.jpg 4\n")
    out = run(capsys, f"{tmp_path}/", tmp_path / "list.txt", tmp_path / "db")
    assert "broken.jpg" in out.err and "missing.png" in out.err and "skipped" in out.err
    assert "skipped 2 unreadable" in out.err
    # keys keep the line numbers, as Caffe's tool writes them
    assert [key for key, _ in records(tmp_path / "db")] == [b"00000000_a.jpg", b"00000003_a.jpg"]


def test_check_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(FILES)
    out = run(capsys, "--check_size", "images/", "images/list.txt", tmp_path / "db")
    assert "all images must have one size" in out.err
    assert not (tmp_path / "db").exists()


def test_existing_database_and_bad_arguments(tmp_path, capsys):
    (tmp_path / "db").mkdir()
    (tmp_path / "list.txt").write_text("x.jpg 0\n")
    assert "already exists" in run(capsys, f"{tmp_path}/", tmp_path / "list.txt", tmp_path / "db").err
    assert "--backend must be lmdb or leveldb; found 'rocksdb'" in run(
        capsys, "--backend=rocksdb", "a/", "b", "c").err
    assert "expected ROOTFOLDER/ LISTFILE DB_NAME" in run(capsys, "a", "b", "c", "d").err
    assert "none of the 1 images" in run(capsys, f"{tmp_path}/", tmp_path / "list.txt",
                                         tmp_path / "db2").err
    assert not (tmp_path / "db2").exists()


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(FILES)
    entries = [("cat/cat_0.jpg", 0)] * 3000
    real = tool.RecordMaker("images/", True, 8, 8, "", False)
    calls = []

    def interrupted(entry):
        calls.append(1)
        if len(calls) == 2500:
            raise KeyboardInterrupt
        return real(entry)

    with pytest.raises(KeyboardInterrupt):
        tool.convert("images/", entries, tmp_path / "db", interrupted, echo=lambda _: None)
    assert os.listdir(tmp_path) == []


def test_gray_png_kept_as_file_only_when_it_matches(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(FILES)
    (tmp_path / "list.txt").write_text("cat/cat_1.png 0\ncat/cat_0.jpg 1\n")
    run(capsys, "--encoded", "images/", tmp_path / "list.txt", tmp_path / "db")
    (png_key, png), (jpg_key, jpg) = records(tmp_path / "db")
    assert parse_datum(png).data == (FILES / "images" / "cat" / "cat_1.png").read_bytes()
    assert parse_datum(jpg).data == (FILES / "images" / "cat" / "cat_0.jpg").read_bytes()
    assert parse_datum(jpg).encoded and png_key.endswith(b"png") and jpg_key.endswith(b"jpg")


def test_leveldb_holds_the_same_records_as_the_lmdb(tmp_path, capsys, monkeypatch):
    """Same keys and Datum bytes, whichever backend; Caffe's own LMDB is the reference."""
    monkeypatch.chdir(FILES)
    run(capsys, "--backend", "leveldb", "-resize_width=32", "-resize_height=32", "images/",
        "images/list.txt", tmp_path / "db")
    assert db.detect(tmp_path / "db") == db.LEVELDB
    assert records(tmp_path / "db") == records(FILES / "lmdb_rgb" / "db")
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


def test_interrupted_leveldb_conversion_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(FILES)
    real = tool.RecordMaker("images/", True, 8, 8, "", False)
    calls = []

    def interrupted(entry):
        calls.append(1)
        if len(calls) == 1500:
            raise KeyboardInterrupt
        return real(entry)

    with pytest.raises(KeyboardInterrupt):
        tool.convert("images/", [("cat/cat_0.jpg", 0)] * 2000, tmp_path / "db", interrupted,
                     echo=lambda _: None, backend=db.LEVELDB)
    assert os.listdir(tmp_path) == []
