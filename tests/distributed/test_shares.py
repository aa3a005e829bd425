"""Which records the data layers of a TRAIN net read as rank r of n (TEST nets read all)."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from layer_testing import empty_tops, make_layer
from parallel_cases import make_folder
from pycaffelite import device
from pycaffelite.distributed import shares
from pycaffelite.io import db
from pycaffelite.errors import PclError
from pycaffelite.proto import caffe_pb2

IMAGES = str(Path(__file__).resolve().parent.parent / "data" / "files" / "images")


@pytest.fixture
def rank_of(monkeypatch):
    """rank_of(r, n): this process is rank r of n solvers until the test ends."""

    def place(rank, size):
        monkeypatch.setattr(device._State, "solver_count", size)  # noqa: SLF001
        monkeypatch.setattr(device._State, "solver_rank", rank)  # noqa: SLF001

    return place


def layer(text, phase=caffe_pb2.TRAIN, tops=2):
    made = make_layer(text, dtype=np.float32, phase=phase)
    top = empty_tops(tops, np.float32)
    made.initialize([], top)
    return made, top


def labels(made, top, batches):
    read = []
    for _ in range(batches):
        made.forward([], top)
        read += top[-1].data.astype(int).tolist()
    return read


@pytest.mark.parametrize("rank, skip", [(0, 0), (1, 0), (2, 0), (1, 2)])
def test_a_share_reader_takes_the_rank_th_of_every_group_of_records(tmp_path, rank, skip):
    make_folder(tmp_path, records=48)
    reader = shares.ShareReader(db.open_reader(str(tmp_path / "db"), db.LMDB), rank, 3)
    reader.skip(skip)  # as rand_skip does: records of this rank's share
    records = [int(reader.next()[0]) for _ in range(20)]  # past the end: 48 = 16 groups of 3
    reader.close()
    assert records == [(3 * skip + rank + 3 * i) % 48 for i in range(20)]


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_data_layers_of_train_nets_read_their_share(tmp_path, rank_of, rank):
    make_folder(tmp_path, records=48)  # record i has label i % 3: rank r reads labels r only
    rank_of(rank, 3)
    made, top = layer(f'type: "Data" top: "data" top: "label" data_param {{ source: '
                      f'"{tmp_path / "db"}" batch_size: 4 backend: LMDB }}')
    assert labels(made, top, 5) == [rank] * 20


def test_test_nets_read_every_record(tmp_path, rank_of):
    make_folder(tmp_path, records=12)
    rank_of(1, 2)
    made, top = layer(f'type: "Data" top: "data" top: "label" data_param {{ source: '
                      f'"{tmp_path / "db"}" batch_size: 6 backend: LMDB }}', phase=caffe_pb2.TEST)
    assert labels(made, top, 2) == [i % 3 for i in range(12)]


def test_image_data_reads_a_fixed_share_shuffled_within(rank_of):
    rank_of(1, 2)
    made, top = layer(f'type: "ImageData" top: "data" top: "label" image_data_param {{ source: '
                      f'"{IMAGES}/list.txt" root_folder: "{IMAGES}/" batch_size: 4 '
                      f"new_height: 8 new_width: 8 }}")
    lines = Path(IMAGES, "list.txt").read_text(encoding="utf-8").splitlines()
    share = [int(line.rsplit(" ", 1)[1]) for line in lines if line][1::2]
    assert labels(made, top, 3) == share
    shuffled, top = layer(f'type: "ImageData" top: "data" top: "label" image_data_param {{ '
                          f'source: "{IMAGES}/list.txt" root_folder: "{IMAGES}/" batch_size: 4 '
                          f"new_height: 8 new_width: 8 shuffle: true }}")
    assert sorted(labels(shuffled, top, 3)) == sorted(share)


def test_hdf5_data_reads_a_fixed_share_of_each_file(tmp_path, monkeypatch, rank_of):
    monkeypatch.chdir(tmp_path)
    for name, rows in (("a.h5", range(5)), ("b.h5", range(5, 8))):
        with h5py.File(name, "w") as handle:
            handle.create_dataset("label", data=np.array(rows, dtype=np.float32))
    (tmp_path / "list.txt").write_text("a.h5\nb.h5\n")
    rank_of(1, 2)
    for shuffle in ("false", "true"):
        made, top = layer('type: "HDF5Data" top: "label" hdf5_data_param { source: "list.txt" '
                          f"batch_size: 1 shuffle: {shuffle} }}", tops=1)
        read = labels(made, top, 3)  # one pass: rows 1, 3 of a.h5 and row 1 of b.h5
        assert sorted(read) == [1, 3, 6]


def test_fewer_items_than_ranks_is_a_clear_error(tmp_path, monkeypatch, rank_of):
    monkeypatch.chdir(tmp_path)
    with h5py.File("one.h5", "w") as handle:
        handle.create_dataset("label", data=np.zeros(1, dtype=np.float32))
    (tmp_path / "list.txt").write_text("one.h5\n")
    rank_of(1, 2)
    with pytest.raises(PclError, match=r'"one.h5" holds 1 rows, fewer than the 2 solvers .* '
                                       r"rank 1 would read none"):
        layer('type: "HDF5Data" top: "label" hdf5_data_param { source: "list.txt" '
              "batch_size: 1 }", tops=1)
