"""`pcl extract_features`: Caffe's argument order and record format (keys "%010d", float Datums with
the blob's legacy dimensions), LevelDB and HDF5 outputs, Caffe's trailing words, errors."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from layer_testing import empty_tops, make_layer
from pycaffelite.cli import main
from pycaffelite.io import db
from pycaffelite.io.datum import parse_datum
from pycaffelite.net import Net

MNIST = Path(__file__).resolve().parent.parent / "data" / "files" / "mnist_lmdb"

NET = f"""
name: "features"
layer {{ name: "data" type: "Data" top: "data" top: "label"
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{MNIST / 'db'}" batch_size: 3 backend: LMDB }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param {{ num_output: 2 kernel_size: 5 stride: 5
                      weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
"""


@pytest.fixture
def trained(tmp_path):
    """The net and weights of random (filled) values, and the blobs of its first two batches."""
    (tmp_path / "net.prototxt").write_text(NET)
    net = Net(str(tmp_path / "net.prototxt"), "TEST")
    net.save(str(tmp_path / "w.caffemodel"))
    reference = Net(str(tmp_path / "net.prototxt"), "TEST", weights=str(tmp_path / "w.caffemodel"))
    batches = []
    for _ in range(2):
        reference.forward()
        batches.append({name: reference.blobs[name].data.copy() for name in ("conv", "ip", "label")})
    return tmp_path, {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def run(capsys, *args):
    try:
        main(["extract_features", *map(str, args)])
    except SystemExit as exc:
        assert exc.code == 1
    return capsys.readouterr().err


@pytest.mark.parametrize("backend_args, backend", [
    ([], db.LMDB),
    (["--backend", "leveldb"], db.LEVELDB),
    (["leveldb", "CPU"], db.LEVELDB),  # Caffe's trailing words
])
def test_records_as_caffe_writes_them(trained, capsys, backend_args, backend):
    folder, expected = trained
    err = run(capsys, folder / "w.caffemodel", folder / "net.prototxt", "ip,conv",
              f"{folder / 'ip_db'},{folder / 'conv_db'}", 2, *backend_args)
    assert "Extracted features of 6 query images for feature blob ip" in err
    assert "Successfully extracted the features!" in err
    for blob, dims in (("ip", (4, 1, 1)), ("conv", (2, 5, 5))):
        records = list(db.iterate(folder / f"{blob}_db", db.detect(folder / f"{blob}_db")))
        assert db.detect(folder / f"{blob}_db") == backend
        assert [key for key, _ in records] == [b"%010d" % i for i in range(6)]
        for (_, value), item in zip(records, expected[blob]):
            datum = parse_datum(value)
            assert (datum.channels, datum.height, datum.width) == dims
            assert not datum.data and not datum.HasField("label") and not datum.HasField("encoded")
            np.testing.assert_array_equal(np.asarray(datum.float_data, np.float32), item.ravel())


def test_hdf5_file_per_blob_and_shared_files(trained, capsys):
    folder, expected = trained
    run(capsys, folder / "w.caffemodel", folder / "net.prototxt", "conv,ip,label",
        f"{folder / 'conv.h5'},{folder / 'feats.h5'},{folder / 'feats.h5'}", 2, "--backend=hdf5")
    with h5py.File(folder / "conv.h5", "r") as handle:
        assert list(handle) == ["conv"]
        np.testing.assert_array_equal(handle["conv"][...], expected["conv"])
    with h5py.File(folder / "feats.h5", "r") as handle:
        assert sorted(handle) == ["ip", "label"] and handle["ip"].dtype == np.float32
        np.testing.assert_array_equal(handle["ip"][...], expected["ip"])
        np.testing.assert_array_equal(handle["label"][...], expected["label"])
    # an HDF5Data layer with tops named like the blobs reads the shared file back
    (folder / "list.txt").write_text(f"{folder / 'feats.h5'}\n")
    layer = make_layer(f'type: "HDF5Data" top: "ip" top: "label" hdf5_data_param {{ source: '
                       f'"{folder / "list.txt"}" batch_size: 6 }}', dtype=np.float32)
    top = empty_tops(2, np.float32)
    layer.initialize([], top)
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, expected["ip"])
    assert sorted(p.name for p in folder.iterdir()) == \
        ["conv.h5", "feats.h5", "list.txt", "net.prototxt", "w.caffemodel"]


@pytest.mark.parametrize("args, message", [
    (["ip,conv", "{f}/a", 1], "2 blob names (ip,conv) but 1 database names"),
    (["fc7", "{f}/a", 1], 'the net has no blob "fc7" to extract; its blobs are data, label, conv, ip'),
    (["ip,conv", "{f}/a,{f}/a", 1], "is named more than once"),
    (["ip", "{f}/net.prototxt", 1, "--backend=hdf5"], "net.prototxt\" already exists"),
    (["ip", "{f}/a", 1, "lmdb", "--backend=leveldb"], "the backend is given twice"),
    (["ip", "{f}/a", 1, "GPU", "1", "--gpu=0"], "the device is given twice"),
    (["ip", "{f}/a", 1, "lmdb", "TPU"], "unexpected arguments after NUM_BATCHES: TPU"),
    (["ip", "{f}/a", 1, "--backend=csv"], "--backend must be lmdb, leveldb or hdf5"),
])
def test_errors(trained, capsys, args, message):
    folder, _ = trained
    args = [str(a).replace("{f}", str(folder)) for a in args]
    err = run(capsys, folder / "w.caffemodel", folder / "net.prototxt", *args)
    assert message in err and "Traceback" not in err
    assert not (folder / "a").exists()


def test_a_failed_run_leaves_nothing(trained, capsys, monkeypatch):
    folder, _ = trained
    from pycaffelite.commands import extract_features

    def failing_add(self, blob):
        raise KeyboardInterrupt

    monkeypatch.setattr(extract_features.HDF5Features, "add", failing_add)
    with pytest.raises(SystemExit, match="130"):  # Ctrl-C
        main(["extract_features", str(folder / "w.caffemodel"), str(folder / "net.prototxt"), "ip",
              str(folder / "ip.h5"), "1", "hdf5"])
    monkeypatch.setattr(extract_features.DatumFeatures, "add", failing_add)
    with pytest.raises(SystemExit, match="130"):
        main(["extract_features", str(folder / "w.caffemodel"), str(folder / "net.prototxt"), "ip",
              str(folder / "ip_db"), "1", "leveldb"])
    assert sorted(p.name for p in folder.iterdir()) == ["net.prototxt", "w.caffemodel"]
