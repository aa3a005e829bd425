"""WindowData: Caffe's warp/square geometry with context padding (worked by hand), foreground and
background sampling, mirror, mean subtraction, labels, cache_images, and malformed window files."""
import logging

import numpy as np
import pytest

from layer_testing import empty_tops, make_layer
from pycaffelite.errors import PclError
from pycaffelite.io import images as image_io
from pycaffelite.io import protoio
from pycaffelite.layers.window_data import window_geometry
from pycaffelite.proto import caffe_pb2

COLOR = np.array([100, 120, 140], np.float32)  # B, G, R of the uniform test image


def write_image(path, image):
    path.write_bytes(image_io.encode(np.asarray(image, np.uint8), "png"))


def uniform_image(height=50, width=80):
    return np.broadcast_to(COLOR.astype(np.uint8).reshape(3, 1, 1), (3, height, width))


def window_file(path, images):
    """images: [(image path, height, width, [(class, overlap, x1, y1, x2, y2), ...]), ...]"""
    lines = []
    for index, (name, height, width, windows) in enumerate(images):
        lines += [f"# {index}", name, "3", str(height), str(width), str(len(windows))]
        lines += [" ".join(map(str, window)) for window in windows]
    path.write_text("\n".join(lines) + "\n")
    return path


def window_layer(source, root, batch_size=4, crop_size=20, params="", transform="", prefetch=""):
    layer = make_layer(f'type: "WindowData" top: "data" top: "label" '
                       f"transform_param {{ crop_size: {crop_size} {transform} }} "
                       f'window_data_param {{ source: "{source}" root_folder: "{root}/" '
                       f"batch_size: {batch_size} {params} }} {prefetch}", dtype=np.float32)
    top = empty_tops(2, np.float32)
    layer.initialize([], top)
    return layer, top


def forward(layer, top):
    layer.forward([], top)
    return top[0].data.copy(), top[1].data.copy()


# -- geometry, worked by hand --------------------------------------------------------------------
# crop_size 20 with context_pad 2 enlarges windows by 20 / 16 = 1.25 about their centre: a 16-pixel
# window (half 8, so 10 after scaling) spans centre - 10 .. centre + 10, 21 pixels, which are then
# warped by 20 / 21 (float32 0.95238096).

@pytest.mark.parametrize("box, mirror, expected", [
    # inside the 80 x 50 image: centre (38, 23) -> x 28..48, y 13..33, warped to 20 x 20 at (0, 0)
    ((30, 15, 45, 30), False, ((28, 13, 48, 33), (20, 20), (0, 0))),
    # top-left corner: centre (8, 8) -> -2..18, clipped to 0..18 (19 pixels, round(19 * 20/21) = 18)
    # with 2 pixels cut on the left and top: placed at round(2 * 20/21) = 2
    ((0, 0, 15, 15), False, ((0, 0, 18, 18), (18, 18), (2, 2))),
    # mirrored, the columns cut on the left end up on the right: placed at column 0
    ((0, 0, 15, 15), True, ((0, 0, 18, 18), (18, 18), (2, 0))),
    # bottom-right corner: centre (72, 42) -> 62..82 and 32..52, 3 pixels past the 80 x 50 image:
    # clipped to 62..79 and 32..49 (18 pixels -> round(17.14) = 17), placed at (0, 0)
    ((64, 34, 79, 49), False, ((62, 32, 79, 49), (17, 17), (0, 0))),
    # mirrored: the 3 cut columns (round(3 * 20/21) = 3) go to the left
    ((64, 34, 79, 49), True, ((62, 32, 79, 49), (17, 17), (0, 3))),
])
def test_context_pad_geometry(box, mirror, expected):
    assert window_geometry(box, 50, 80, 20, context_pad=2, mirror=mirror) == expected


def test_square_geometry_and_rounding_halves_away_from_zero():
    # 10 x 20 window: the square around its longer side, half 10 about the centre (35, 20):
    # 25..45 x 10..30 (21 pixels, as Caffe's region is one pixel larger than twice the half)
    assert window_geometry((30, 10, 39, 29), 50, 80, 20, square=True) == \
        ((25, 10, 45, 30), (20, 20), (0, 0))
    # crop 16, context_pad 4: scale 2; a 5-pixel window at 11..15 has centre 13.5 and half 5:
    # 8.5 -> 9 and 18.5 -> 19 (C's round, not the banker's 8 and 18)
    assert window_geometry((11, 11, 15, 15), 40, 40, 16, context_pad=4) == \
        ((9, 9, 19, 19), (16, 16), (0, 0))


def test_geometry_of_windows_that_do_not_fit():
    assert window_geometry((5, 3, 24, 22), 30, 40, 20) == ((5, 3, 24, 22), (20, 20), (0, 0))
    assert window_geometry((30, 0, 45, 10), 30, 40, 20) is None  # past the right edge, no padding
    assert window_geometry((100, 100, 110, 110), 30, 40, 20, context_pad=2) is None


# -- the layer -----------------------------------------------------------------------------------
@pytest.fixture
def photo(tmp_path):
    """A 30 x 40 random image and a window file with one 20 x 20 foreground window on it."""
    image = np.random.default_rng(3).integers(0, 256, (3, 30, 40)).astype(np.uint8)
    write_image(tmp_path / "photo.png", image)
    source = window_file(tmp_path / "windows.txt",
                         [("photo.png", 30, 40, [(3, 0.9, 5, 3, 24, 22), (0, 0.1, 5, 3, 24, 22)])])
    return image, source


def test_warp_without_context_is_the_window_itself(tmp_path, photo):
    image, source = photo
    layer, top = window_layer(source, tmp_path, batch_size=4, params="fg_fraction: 0.5")
    data, label = forward(layer, top)
    assert top[0].shape == (4, 3, 20, 20) and top[1].shape == (4,)
    np.testing.assert_array_equal(label, [0, 0, 3, 3])  # background first, then foreground
    for item in data:
        np.testing.assert_array_equal(item, image[:, 3:23, 5:25])


def test_mirror_flips_some_windows(tmp_path, photo):
    image, source = photo
    layer, top = window_layer(source, tmp_path, batch_size=16, transform="mirror: true")
    data, _ = forward(layer, top)
    crop = image[:, 3:23, 5:25].astype(np.float32)
    flipped = [np.array_equal(item, crop[:, :, ::-1]) for item in data]
    assert all(f or np.array_equal(item, crop) for f, item in zip(flipped, data))
    assert 0 < sum(flipped) < 16


def placed(row, col, rows, cols, values=COLOR):
    """The expected output: `values` in the placed rectangle, zero around it."""
    out = np.zeros((3, 20, 20), np.float32)
    out[:, row:row + rows, col:col + cols] = np.asarray(values).reshape(3, 1, 1) \
        if np.ndim(values) == 1 else values
    return out


@pytest.mark.parametrize("box, plain, mirrored", [
    ((0, 0, 15, 15), (2, 2, 18, 18), (2, 0, 18, 18)),
    ((64, 34, 79, 49), (0, 0, 17, 17), (0, 3, 17, 17)),
])
def test_context_padding_places_the_clipped_window(tmp_path, box, plain, mirrored):
    write_image(tmp_path / "uniform.png", uniform_image())
    source = window_file(tmp_path / "w.txt", [("uniform.png", 50, 80, [(1, 1.0, *box)])])
    layer, top = window_layer(source, tmp_path, batch_size=12,
                              params="fg_fraction: 1 context_pad: 2", transform="mirror: true")
    data, _ = forward(layer, top)
    matches = [np.array_equal(item, placed(*mirrored)) for item in data]
    assert all(m or np.array_equal(item, placed(*plain)) for m, item in zip(matches, data))
    assert 0 < sum(matches) < 12


def test_square_mode_fills_the_crop(tmp_path):
    write_image(tmp_path / "uniform.png", uniform_image())
    source = window_file(tmp_path / "w.txt", [("uniform.png", 50, 80, [(1, 1.0, 30, 10, 39, 29)])])
    layer, top = window_layer(source, tmp_path, batch_size=1,
                              params='fg_fraction: 1 crop_mode: "square"')
    data, _ = forward(layer, top)
    np.testing.assert_array_equal(data[0], placed(0, 0, 20, 20))


def test_foreground_and_background_counts(tmp_path):
    write_image(tmp_path / "a.png", uniform_image())
    write_image(tmp_path / "b.png", uniform_image())
    source = window_file(tmp_path / "w.txt", [
        ("a.png", 50, 80, [(1, 0.9, 0, 0, 19, 19), (5, 0.1, 20, 20, 39, 39), (7, 0.4, 0, 0, 19, 19)]),
        ("b.png", 50, 80, [(2, 0.5, 10, 10, 29, 29), (0, 0.3, 0, 0, 19, 19)]),
    ])
    # 10 * 0.25 = 2.5: 2 foreground windows (overlap >= 0.5) after 8 background ones (< 0.35);
    # the 0.4 window is neither
    layer, top = window_layer(source, tmp_path, batch_size=10, params="bg_threshold: 0.35")
    seen = set()
    for _ in range(5):
        _, label = forward(layer, top)
        np.testing.assert_array_equal(label[:8], 0)
        assert set(label[8:]) <= {1, 2}
        seen |= set(label[8:])
    assert seen == {1, 2}


def test_mean_value_and_scale(tmp_path):
    write_image(tmp_path / "uniform.png", uniform_image())
    source = window_file(tmp_path / "w.txt", [("uniform.png", 50, 80, [(1, 1.0, 0, 0, 15, 15)])])
    layer, top = window_layer(source, tmp_path, batch_size=1,
                              params="fg_fraction: 1 context_pad: 2 scale: 0.5",
                              transform="mean_value: 10 mean_value: 20 mean_value: 30")
    data, _ = forward(layer, top)
    np.testing.assert_array_equal(data[0], placed(2, 2, 18, 18, (COLOR - [10, 20, 30]) * 0.5))


def test_mean_file_is_read_at_the_output_position(tmp_path):
    """A 24 x 24 mean with crop 20: its centre starts at (24 - 20) / 2 = 2, and the value at
    output (r, c) is taken at mean (2 + r, 2 + c), padding included."""
    mean = np.random.default_rng(5).uniform(0, 50, (3, 24, 24)).astype(np.float32)
    proto = caffe_pb2.BlobProto(num=1, channels=3, height=24, width=24)
    proto.data.extend(mean.ravel().tolist())
    protoio.write_binary_proto(str(tmp_path / "mean.binaryproto"), proto)
    write_image(tmp_path / "uniform.png", uniform_image())
    source = window_file(tmp_path / "w.txt", [("uniform.png", 50, 80, [(1, 1.0, 0, 0, 15, 15)])])
    layer, top = window_layer(source, tmp_path, batch_size=1, params="fg_fraction: 1 context_pad: 2",
                              transform=f'mean_file: "{tmp_path / "mean.binaryproto"}"')
    data, _ = forward(layer, top)
    expected = COLOR.reshape(3, 1, 1) - mean[:, 2 + 2:2 + 20, 2 + 2:2 + 20]
    np.testing.assert_array_equal(data[0], placed(2, 2, 18, 18, expected))


def test_cache_images_gives_the_same_batches(tmp_path, photo):
    from pycaffelite import device

    _, source = photo
    results = []
    for cache in ("false", "true"):
        device.set_random_seed(7)
        layer, top = window_layer(source, tmp_path, batch_size=6, transform="mirror: true",
                                  params=f"cache_images: {cache}")
        results.append([forward(layer, top) for _ in range(2)])
    for (data, label), (cached_data, cached_label) in zip(*results):
        np.testing.assert_array_equal(data, cached_data)
        np.testing.assert_array_equal(label, cached_label)


def test_misplaced_fields_are_named(tmp_path, photo, caplog):
    _, source = photo
    with caplog.at_level(logging.WARNING):
        window_layer(source, tmp_path, transform="scale: 0.5", params="mirror: true")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "window_data_param.mirror is not read" in messages
    assert "transform_param.scale is not read" in messages
    with pytest.raises(PclError, match=r"set transform_param.crop_size, .* \(window_data_param."
                                       r"crop_size is not read: move it there\)"):
        window_layer(source, tmp_path, crop_size=0, params="crop_size: 20")


@pytest.mark.parametrize("text, message", [
    ("# 0\nphoto.png\n3 30 40\n1\n3 0.9 5 3 x 22\n",
     r"windows.txt:5: expected the window's x2 \(an integer\), found 'x'"),
    ("# 0\nphoto.png\n3 30 40\n2\n3 0.9 5 3 24 22\n",
     r"windows.txt:5: the file ends where the window's class"),
    ("# 1\nphoto.png\n3 30 40\n0\n", r"windows.txt:1: image index 1 where 0 was expected"),
    ("#0\nphoto.png\n", r'windows.txt:1: expected "#", the start of an image\'s block, found \'#0\''),
    ("# 0\nphoto.png\n1 30 40\n0\n", r"windows.txt:3: image 0 has 1 channels; .* write 3"),
    ("# 0\nphoto.png\n3 30 40\n1\n0 0.9 5 3 24 22\n",
     r"windows.txt:5: a foreground window \(overlap 0.9 >= fg_threshold 0.5\) needs a class above 0"),
    ("# 0\nphoto.png\n3 30 40\n1\n3 0.9 24 3 5 22\n", r"windows.txt:5: window .* is empty"),
    ("# 0\nmissing.png\n3 30 40\n1\n3 0.9 5 3 24 22\n",
     r'windows.txt:2: image ".*/missing.png" does not exist'),
    ("# 0\nphoto.png\n3 30 40\n1\n3 0.9 5 3 24 22\n",
     r"has no background window \(overlap < bg_threshold 0.5\) but each batch needs 3"),
    ("", r"is empty; it must list at least one image"),
])
def test_malformed_window_files(tmp_path, photo, text, message):
    _, source = photo
    source.write_text(text)
    with pytest.raises(PclError, match=message):
        window_layer(source, tmp_path)


def test_problems_found_while_loading_name_the_line(tmp_path, photo):
    _, source = photo
    source.write_text("# 0\nphoto.png\n3 30 40\n1\n3 0.9 30 3 49 22\n")  # past the 40-pixel width
    layer, top = window_layer(source, tmp_path, params="fg_fraction: 1")
    with pytest.raises(PclError, match=r'windows.txt:5: window x1 y1 x2 y2 = 30 3 49 22 does not fit '
                                       r'its image ".*photo.png" \(30 x 40\)'):
        layer.forward([], top)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    source.write_text("# 0\nbroken.png\n3 30 40\n1\n3 0.9 5 3 24 22\n")
    layer, top = window_layer(source, tmp_path, params="fg_fraction: 1")
    with pytest.raises(PclError, match=r'windows.txt:2: cannot read image ".*broken.png"'):
        layer.forward([], top)


@pytest.mark.parametrize("params, transform, message", [
    ('crop_mode: "stretch"', "", 'crop_mode must be "warp" or "square"'),
    ("context_pad: 10", "", "context_pad 10 leaves nothing"),
    ("fg_fraction: 1.5", "", r"fg_fraction must be in \[0, 1\]"),
    ("", "mean_value: 1 mean_value: 2", "give 1 mean_value or 3"),
])
def test_bad_parameters(tmp_path, photo, params, transform, message):
    _, source = photo
    with pytest.raises(PclError, match=message):
        window_layer(source, tmp_path, params=params, transform=transform)
