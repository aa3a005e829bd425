"""DataTransformer against hand-computed values: scale, means, crops, mirror, Datum forms, errors."""
import numpy as np
import pytest
from google.protobuf import text_format

from pycaffelite.errors import PclError
from pycaffelite.io import images
from pycaffelite.io.datum import array_to_datum, encoded_datum
from pycaffelite.io.transformer import DataTransformer
from pycaffelite.proto import caffe_pb2

# A 2 x 3 x 4 image: channel c, row h, column w holds 100*c + 10*h + w.
IMAGE = (100 * np.arange(2)[:, None, None] + 10 * np.arange(3)[None, :, None]
         + np.arange(4)[None, None, :]).astype(np.uint8)


def transformer(text="", phase=caffe_pb2.TRAIN, dtype=np.float32):
    param = text_format.Parse(text, caffe_pb2.TransformationParameter())
    return DataTransformer(param, phase=phase, dtype=dtype)


def test_identity_and_scale():
    np.testing.assert_array_equal(transformer().transform(IMAGE), IMAGE)
    out = transformer("scale: 0.5").transform(IMAGE)
    assert out.dtype == np.float32
    assert out[1, 2, 3] == 61.5  # 123 * 0.5
    assert out[0, 0, 1] == 0.5


def test_mean_values_then_scale():
    out = transformer("mean_value: 10 scale: 2").transform(IMAGE)
    assert out[0, 0, 0] == -20  # (0 - 10) * 2
    assert out[1, 2, 3] == 226  # (123 - 10) * 2
    out = transformer("mean_value: 1 mean_value: 100").transform(IMAGE)
    assert out[0, 1, 2] == 11  # 12 - 1
    assert out[1, 1, 2] == 12  # 112 - 100


def test_center_crop_in_test_phase():
    out = transformer("crop_size: 2", phase=caffe_pb2.TEST).transform(IMAGE)
    # (3-2)//2 = 0 rows off, (4-2)//2 = 1 column off
    np.testing.assert_array_equal(out[0], [[1, 2], [11, 12]])
    np.testing.assert_array_equal(out[1], [[101, 102], [111, 112]])


def test_random_crop_in_train_phase_covers_all_offsets():
    t = transformer("crop_size: 2")
    corners = {tuple(t.transform(IMAGE)[0, 0].tolist()) for _ in range(200)}
    # top-left values of every 2 x 2 window: rows 0..1, columns 0..2
    assert {c[0] for c in corners} == {0, 1, 2, 10, 11, 12}


def test_mirror_flips_columns_about_half_the_time():
    t = transformer("mirror: true")
    flipped = 0
    for _ in range(200):
        out = t.transform(IMAGE)
        if out[0, 0, 0] == 3:
            np.testing.assert_array_equal(out[1, 2], [123, 122, 121, 120])
            flipped += 1
        else:
            np.testing.assert_array_equal(out, IMAGE)
    assert 60 < flipped < 140


def test_mean_file_is_cropped_at_the_input_position_before_mirroring(tmp_path):
    mean = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) / 4
    proto = caffe_pb2.BlobProto(num=1, channels=2, height=3, width=4)
    proto.data.extend(mean.ravel().tolist())
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(proto.SerializeToString())
    t = transformer(f'mean_file: "{path}" crop_size: 2 mirror: true scale: 2', phase=caffe_pb2.TEST)
    out = t.transform(IMAGE, choice=(True, 1, 2))
    # input window rows 1..2, columns 2..3; channel 0 row 0: pixels 12, 13, means 6/4, 7/4
    np.testing.assert_allclose(out[0, 0], [(13 - 7 / 4) * 2, (12 - 6 / 4) * 2])
    np.testing.assert_allclose(out[1, 1], [(123 - 23 / 4) * 2, (122 - 22 / 4) * 2])


def test_datum_forms():
    t = transformer("scale: 0.5")
    np.testing.assert_array_equal(t.transform_datum(array_to_datum(IMAGE)), IMAGE * np.float32(0.5))
    floats = array_to_datum(IMAGE.astype(np.float32) + 0.25)
    assert len(floats.float_data) == IMAGE.size and not floats.data
    np.testing.assert_array_equal(t.transform_datum(floats), (IMAGE + np.float32(0.25)) * 0.5)


def test_encoded_datum_force_color_and_gray():
    gray = np.arange(12, dtype=np.uint8).reshape(1, 3, 4) * 20
    datum = encoded_datum(images.encode(gray, "png"), label=3)
    np.testing.assert_array_equal(transformer().transform_datum(datum), gray)
    color = transformer("force_color: true").transform_datum(datum)
    assert color.shape == (3, 3, 4)
    for channel in color:  # gray to BGR copies the value into each channel
        np.testing.assert_array_equal(channel, gray[0])
    bgr = np.stack([gray[0], gray[0] // 2, gray[0] // 4])
    datum = encoded_datum(images.encode(bgr, "png"))
    np.testing.assert_array_equal(transformer().transform_datum(datum), bgr)
    assert transformer("force_gray: true").transform_datum(datum).shape == (1, 3, 4)


def test_float64_output():
    out = transformer("scale: 0.1", dtype=np.float64).transform(IMAGE)
    assert out.dtype == np.float64
    assert out[1, 2, 3] == 123 * np.float64(np.float32(0.1))


def test_transform_batch_fills_rows():
    out = np.empty((2, 2, 3, 4), dtype=np.float32)
    transformer("mean_value: 1").transform_batch([IMAGE, IMAGE[:, ::-1, :]], out)
    np.testing.assert_array_equal(out[0], IMAGE - 1.0)
    np.testing.assert_array_equal(out[1, :, 0], IMAGE[:, 2] - 1.0)


def test_seeded_draws_repeat():
    from pycaffelite import device

    def draws():
        device.set_random_seed(5)
        t = transformer("crop_size: 2 mirror: true")
        return [t.draw(IMAGE.shape) for _ in range(10)]

    assert draws() == draws()


@pytest.mark.parametrize("text, message", [
    ("force_color: true force_gray: true", "both force_color and force_gray"),
    ('mean_file: "m.binaryproto" mean_value: 3', "mean_file and mean_value"),
    ('mean_file: "does_not_exist.binaryproto"', "no such file"),
])
def test_bad_parameters(text, message):
    with pytest.raises(PclError, match=message):
        transformer(text)


@pytest.mark.parametrize("text, message", [
    ("crop_size: 4", "crop_size 4 is larger than image"),
    ("mean_value: 1 mean_value: 2 mean_value: 3", "1 mean_value or as many as channels"),
])
def test_bad_parameters_for_the_image(text, message):
    with pytest.raises(PclError, match=message):
        transformer(text).transform(IMAGE)


def test_mean_file_of_another_size(tmp_path):
    proto = caffe_pb2.BlobProto(num=1, channels=2, height=2, width=2)
    proto.data.extend([0.0] * 8)
    (tmp_path / "m.binaryproto").write_bytes(proto.SerializeToString())
    with pytest.raises(PclError, match=r"mean image is \(2, 2, 2\)"):
        transformer(f'mean_file: "{tmp_path / "m.binaryproto"}"').transform(IMAGE)


def test_undecodable_encoded_datum():
    with pytest.raises(PclError, match="cannot be decoded"):
        transformer().transform_datum(encoded_datum(b"not an image"), where='record "k1"')
