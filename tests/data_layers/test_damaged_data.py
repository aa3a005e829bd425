"""Damaged databases and records never crash pcl: LMDBs cut short at several points or with a page
zeroed (which liblmdb would map and then die on: SIGBUS, SIGABRT), a damaged LevelDB or HDF5
file, and records that are not Datums, do not decode or have the wrong size. Each case runs
through `pcl` in a child process (tests/pcl_driver.py) and must end in exactly one `pcl: error:`
line naming the database (or the record's key) and exit status 1."""
import os
import shutil
import struct
from pathlib import Path

import h5py
import numpy as np
import plyvel
import pytest

from pcl_driver import run_cases
from pycaffelite.io import db, lmdb_check
from pycaffelite.io.datum import array_to_datum, encoded_datum
from pycaffelite.errors import PclError

FILES = Path(__file__).resolve().parent.parent / "data" / "files"
PAGE = 4096


def copy_db(name, tmp_path, label):
    target = tmp_path / label
    shutil.copytree(FILES / name / "db", target)
    return target


def page_kinds(folder):
    """The flags of each page of an LMDB data file (2 leaf, 1 branch, 4 overflow, 8 meta)."""
    data = (folder / "data.mdb").read_bytes()
    return [struct.unpack_from("<H", data, page * PAGE + 10)[0] for page in range(len(data) // PAGE)]


def truncate(folder, size):
    with open(folder / "data.mdb", "r+b") as handle:
        handle.truncate(size)


def zero_page(folder, page):
    with open(folder / "data.mdb", "r+b") as handle:
        handle.seek(page * PAGE)
        handle.write(bytes(PAGE))


def train_args(tmp_path, name, data_layer):
    """`pcl train` arguments for a one-iteration solver over a net reading with `data_layer`."""
    (tmp_path / f"{name}.prototxt").write_text(data_layer + """
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }""")
    (tmp_path / f"{name}_solver.prototxt").write_text(
        f'net: "{tmp_path / name}.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 2 snapshot_after_train: false')
    return ["train", "--no-progress", "--solver", str(tmp_path / f"{name}_solver.prototxt")]


def data_layer(source, backend="LMDB"):
    return (f'layer {{ name: "data" type: "Data" top: "data" top: "label" data_param {{ '
            f'source: "{source}" batch_size: 4 backend: {backend} }} }}')


def lmdb_cases(tmp_path):
    """(name, argv, words the error must hold) for damaged LMDBs."""
    cases = []
    for name in ("mnist_lmdb", "lmdb_rgb"):
        size = (FILES / name / "db" / "data.mdb").stat().st_size
        for cut in (0, 100, PAGE, 2 * PAGE + 100, size // 2, size - PAGE, size - 1):
            folder = copy_db(name, tmp_path, f"{name}_cut_{cut}")
            truncate(folder, cut)
            cases.append((f"{name} cut at {cut}", ["compute_image_mean", folder],
                          [str(folder), "re-create it"]))
    folder = copy_db("mnist_lmdb", tmp_path, "cut_train")
    truncate(folder, 20 * PAGE)
    cases.append(("Data layer over a cut LMDB", train_args(tmp_path, "cut", data_layer(folder)),
                  ['layer "data"', "cut short", "re-create it"]))
    kinds = page_kinds(FILES / "mnist_lmdb" / "db")
    for what, page in (("meta", 0), ("branch", kinds.index(1)), ("leaf", kinds.index(2)),
                       ("last leaf", len(kinds) - 1)):
        folder = copy_db("mnist_lmdb", tmp_path, f"zeroed_{page}")
        zero_page(folder, page)
        cases.append((f"zeroed {what} page", ["compute_image_mean", folder],
                      [str(folder), "is damaged", "re-create it"]))
    folder = copy_db("mnist_lmdb", tmp_path, "zeroed_train")
    zero_page(folder, kinds.index(2, 10))
    cases.append(("Data layer over a zeroed leaf page", train_args(tmp_path, "zeroed", data_layer(folder)),
                  ['layer "data"', "is damaged"]))
    folder = copy_db("lmdb_rgb", tmp_path, "zeroed_value")
    zero_page(folder, page_kinds(folder).index(4, 10))  # an image's bytes: the record is named
    cases.append(("zeroed value page", ["compute_image_mean", folder],
                  ["record \"0000", "is not a Caffe Datum record"]))
    return cases


def record_cases(tmp_path):
    path = tmp_path / "records"
    with db.AtomicWriter(path) as out:
        out.put(b"00_good", array_to_datum(np.zeros((1, 4, 4), np.uint8)).SerializeToString())
        out.put(b"01_not_a_datum", b"\xff\xff\xff\xff not protobuf")
    cases = [("record that is not a Datum", ["compute_image_mean", path],
              ['record "01_not_a_datum"', "not a Caffe Datum record"])]
    path = tmp_path / "undecodable"
    with db.AtomicWriter(path) as out:
        out.put(b"00_broken_png", encoded_datum(b"\x89PNG\r\n\x1a\n broken").SerializeToString())
    cases.append(("undecodable image", train_args(tmp_path, "undecodable", data_layer(path)),
                  ['record "00_broken_png"', "cannot be decoded"]))
    path = tmp_path / "short"
    with db.AtomicWriter(path) as out:
        datum = array_to_datum(np.zeros((1, 4, 4), np.uint8))
        datum.data = datum.data[:7]
        out.put(b"00_short", datum.SerializeToString())
    cases.append(("record of the wrong size", ["compute_image_mean", path],
                  ['record "00_short"', "7 data bytes"]))
    return cases


def other_file_cases(tmp_path):
    leveldb = tmp_path / "leveldb"
    with db.AtomicWriter(leveldb, db.LEVELDB) as out:
        for key, value in db.iterate(FILES / "lmdb_rgb" / "db", db.LMDB):
            out.put(key, value)
    with plyvel.DB(str(leveldb)) as database:  # moves the records from the log into a table file
        database.compact_range()
    table = next(name for name in os.listdir(leveldb) if name.endswith(".ldb"))
    with open(leveldb / table, "r+b") as handle:
        handle.truncate(os.path.getsize(leveldb / table) // 2)
    no_manifest = tmp_path / "no_manifest"
    shutil.copytree(leveldb, no_manifest)
    for name in os.listdir(no_manifest):
        if name.startswith("MANIFEST"):
            os.remove(no_manifest / name)
    h5 = tmp_path / "cut.h5"
    with h5py.File(h5, "w") as f:
        f["data"] = np.zeros((50, 3, 8, 8), np.float32)
        f["label"] = np.zeros(50, np.float32)
    h5.write_bytes(h5.read_bytes()[:6000])
    (tmp_path / "h5list.txt").write_text(f"{h5}\n")
    hdf5_layer = (f'layer {{ name: "data" type: "HDF5Data" top: "data" top: "label" '
                  f'hdf5_data_param {{ source: "{tmp_path / "h5list.txt"}" batch_size: 4 }} }}')
    return [("LevelDB with a table cut short", ["compute_image_mean", "--backend", "leveldb", leveldb],
             [str(leveldb), "is damaged", "re-create it"]),
            ("LevelDB without its MANIFEST", ["compute_image_mean", "--backend", "leveldb",
                                              no_manifest], [str(no_manifest), "is damaged"]),
            ("HDF5 file cut short", train_args(tmp_path, "hdf5", hdf5_layer), [str(h5)])]


def test_damaged_files_end_in_one_error(tmp_path):
    cases = lmdb_cases(tmp_path) + record_cases(tmp_path) + other_file_cases(tmp_path)
    words = {name: expected for name, _, expected in cases}
    results = run_cases([(name, argv) for name, argv, _ in cases], cwd=tmp_path)
    problems = []
    for result in results:
        errors = [line for line in result["stderr"].splitlines() if line.startswith("pcl: error:")]
        if "crash" in result or "traceback" in result:
            problems.append(f"{result['name']}: {result.get('crash') or result['traceback']}")
        elif result["code"] != 1 or len(errors) != 1 or "Traceback" in result["stderr"]:
            problems.append(f"{result['name']}: exit {result['code']}, stderr {result['stderr']!r}")
        elif not all(word in errors[0] for word in words[result["name"]]):
            problems.append(f"{result['name']}: {errors[0]!r} lacks {words[result['name']]}")
    assert not problems, "\n".join(problems)
    assert len(results) == len(cases)


def test_sound_databases_pass_the_check():
    for name in ("lmdb_rgb", "lmdb_gray", "lmdb_encoded", "mnist_lmdb"):
        lmdb_check.check(str(FILES / name / "db"))


def test_check_names_what_is_wrong(tmp_path):
    folder = copy_db("mnist_lmdb", tmp_path, "cut")
    truncate(folder, 10 * PAGE)
    with pytest.raises(PclError, match=r'"[^"]*cut" is damaged: .*outside the file\'s 10 pages '
                                       r"\(the file may be cut short\); re-create it"):
        lmdb_check.check(str(folder))
    folder = copy_db("mnist_lmdb", tmp_path, "zeroed")
    leaf = page_kinds(folder).index(2, 5)
    zero_page(folder, leaf)
    with pytest.raises(PclError, match=rf"page {leaf} is not the leaf page expected there"):
        lmdb_check.check(str(folder))
