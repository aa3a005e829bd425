"""ImageData: list files, root_folder, resize, gray, shuffle, rand_skip, wrap-around, errors."""
from pathlib import Path

import numpy as np
import pytest

from layer_testing import empty_tops, make_layer
from pycaffelite.errors import PclError

FILES = Path(__file__).resolve().parent.parent / "data" / "files"
ROOT = f"{FILES / 'images'}/"
LIST = FILES / "images" / "list.txt"


def image_data(batch_size, extra="", source=LIST, root=ROOT, tops=2):
    top_text = ' top: "data" top: "label"' if tops == 2 else ' top: "data"'
    layer = make_layer(f'type: "ImageData"{top_text} image_data_param {{ source: "{source}" '
                       f'root_folder: "{root}" batch_size: {batch_size} {extra} }}', dtype=np.float32)
    top = empty_tops(tops, np.float32)
    layer.initialize([], top)
    return layer, top


@pytest.mark.parametrize("gray, name", [("", "lmdb_rgb"), ("is_color: false", "lmdb_gray")])
def test_resized_images_equal_convert_imageset_records(gray, name, any_mode):
    """Caffe's convert_imageset with the same resize made these records from the same files."""
    expected = np.load(FILES / name / "expected.npz")
    layer, top = image_data(8, f"new_height: 32 new_width: 32 {gray}")
    for batch in range(4):  # 24 images: the fourth batch wraps around
        layer.forward([], top)
        rows = [(batch * 8 + i) % 24 for i in range(8)]
        np.testing.assert_array_equal(np.asarray(top[0].read_data()), expected["images"][rows])
        np.testing.assert_array_equal(np.asarray(top[1].read_data()), expected["labels"][rows])


def test_shuffle_visits_every_image_once_per_pass():
    layer, top = image_data(24, "new_height: 8 new_width: 8 shuffle: true")
    for _ in range(2):
        layer.forward([], top)
        assert sorted(top[1].data.tolist()) == sorted([0, 1, 2, 3] * 6)


def test_rand_skip_and_batch_of_one_of_native_size():
    layer, top = image_data(1, "rand_skip: 3", tops=1)
    layer.forward([], top)
    assert top[0].shape[:2] == (1, 3)


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "list.txt").write_text("astronaut/astronaut_0.jpg 0\nno/such.jpg 1\n")
    layer, top = image_data(2, "new_height: 8 new_width: 8", source=tmp_path / "list.txt")
    with pytest.raises(PclError, match='cannot read image ".*no/such.jpg"'):
        layer.forward([], top)


def test_differing_sizes_without_resize():
    layer, top = image_data(2)
    with pytest.raises(PclError, match="all images of a batch must give the same size"):
        layer.forward([], top)


@pytest.mark.parametrize("content, extra, message", [
    (None, "", "cannot open the list file"),
    ("\n\n", "", "lists no images"),
    ("a.jpg x\n", "", "integer label"),
    ("astronaut/astronaut_0.jpg 0\n", "new_height: 8", "set both new_height and new_width"),
    ("missing.jpg 0\n", "", 'cannot read image ".*missing.jpg"'),
])
def test_errors(tmp_path, content, extra, message):
    source = tmp_path / "list.txt"
    if content is not None:
        source.write_text(content)
    with pytest.raises(PclError, match=message):
        image_data(1, extra, source=source)
