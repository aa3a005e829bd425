"""pcl compute_image_mean: Caffe's mean file byte for byte and its log wording."""
from pathlib import Path

import numpy as np

from pycaffelite.cli import main
from pycaffelite.commands.compute_image_mean import compute_mean

FILES = Path(__file__).resolve().parent.parent / "data" / "files"


def test_mean_file_equals_caffes(tmp_path, capsys):
    main(["compute_image_mean", str(FILES / "lmdb_rgb" / "db"), str(tmp_path / "mean.binaryproto")])
    out = capsys.readouterr().err
    assert (tmp_path / "mean.binaryproto").read_bytes() == (FILES / "mean.binaryproto").read_bytes()
    for line in ("Processed 24 files.", "Number of channels: 3", "mean_value channel [0]: 82.3334",
                 "mean_value channel [1]: 93.6838", "mean_value channel [2]: 126.818"):
        assert line in out


def test_mean_values_and_without_output(capsys):
    mean = compute_mean(FILES / "mnist_lmdb" / "db", echo=lambda _: None)
    images = np.load(FILES / "mnist_lmdb" / "expected.npz")["images"]
    np.testing.assert_allclose(mean, images.mean(axis=0), rtol=1e-6)
    main(["compute_image_mean", str(FILES / "mnist_lmdb" / "db")])
    assert "Number of channels: 1" in capsys.readouterr().err


def test_images_of_differing_sizes(capsys):
    try:
        main(["compute_image_mean", str(FILES / "lmdb_encoded" / "db")])
    except SystemExit as exc:
        assert exc.code == 1
    assert 'record "00000001_astronaut/astronaut_1.png"' in capsys.readouterr().err
