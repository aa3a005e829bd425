"""DataTransformer: Caffe's TransformationParameter applied to images (C x H x W arrays or Datums).

For an input image x (C x H x W, BGR channel order, uint8 or float) the output is

    y[c, h, w'] = (x[c, h_off + h, w_off + w] - m) * scale,   w' = W_out - 1 - w if mirrored else w

with m = mean_file[c, h_off + h, w_off + w] (the mean image, taken at the input position, so a
mirrored crop subtracts the mirrored mean), or m = mean_value[c] (one value for all channels or one
per channel), or m = 0. `crop_size` k gives k x k outputs: a random offset in TRAIN
(h_off uniform in 0..H-k), the centre ((H-k)//2) otherwise. `mirror` flips with probability 1/2 in
every phase, as Caffe does. Arithmetic is in the output dtype: (x - m) first, then * scale.

Encoded Datums are decoded first: `force_color` -> 3 channels, `force_gray` -> 1 channel, neither
-> as the file holds them. Randomness comes from a generator drawn from `device.rng()` at creation.
"""
import logging

import numpy as np

from .. import device
from ..errors import PclError
from ..proto import caffe_pb2
from . import datum as datum_io

log = logging.getLogger(__name__)


class DataTransformer:
    def __init__(self, param=None, phase=caffe_pb2.TRAIN, dtype=np.float32, where="transform_param"):
        self.param = param if param is not None else caffe_pb2.TransformationParameter()
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.where = where
        p = self.param
        self.crop_size = int(p.crop_size)
        self.scale = self.dtype.type(p.scale)
        if p.force_color and p.force_gray:
            raise self._error("cannot set both force_color and force_gray; choose one")
        if p.HasField("mean_file") and len(p.mean_value):
            raise self._error("cannot use mean_file and mean_value at the same time; keep one")
        self.mean = self._load_mean(p.mean_file) if p.HasField("mean_file") else None
        self.mean_values = np.asarray(p.mean_value, dtype=self.dtype)
        self.rng = np.random.default_rng(device.rng().integers(1 << 63))
        self._warned_force = False

    def _error(self, message):
        return PclError(f"{self.where}: {message}")

    def _load_mean(self, path):
        from ..blob import Blob  # noqa: PLC0415
        from .protoio import read_blob_proto  # noqa: PLC0415

        proto = read_blob_proto(path)
        shape = Blob.shape_of_proto(proto)
        values = np.asarray(proto.double_data if len(proto.double_data) else proto.data, dtype=self.dtype)
        if values.size != int(np.prod(shape)) or values.size == 0:
            raise self._error(f'mean file "{path}" holds {values.size} values for shape {shape}')
        if len(shape) < 3 or int(np.prod(shape[:-3])) != 1:
            raise self._error(f'mean file "{path}" has shape {shape}; expected one C x H x W image '
                              "(as compute_image_mean writes)")
        return values.reshape(shape[-3:])

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, datum, where="record"):
        """The image of a Datum (C x H x W): decoded with force_color/force_gray if encoded."""
        color = None
        if self.param.force_color or self.param.force_gray:
            if datum.encoded:
                color = bool(self.param.force_color)
            elif not self._warned_force:
                log.warning("force_color and force_gray apply only to encoded records; %s is raw, "
                            "so it is used as stored", where)
                self._warned_force = True
        return datum_io.datum_to_array(datum, color=color, where=where)

    # -- shapes -----------------------------------------------------------------------------
    def output_shape(self, image_shape, where="image"):
        """The C x H x W this transformer makes from an image of `image_shape`; checks crop and mean."""
        channels, height, width = image_shape
        if self.crop_size and (height < self.crop_size or width < self.crop_size):
            raise self._error(f"crop_size {self.crop_size} is larger than {where} ({height} x {width}); "
                              "use a smaller crop_size or larger images")
        if self.mean is not None and self.mean.shape != tuple(image_shape):
            raise self._error(f"the mean image is {self.mean.shape} (C x H x W) but {where} is "
                              f"{tuple(image_shape)}; compute the mean on the same images")
        if self.mean_values.size not in (0, 1, channels):
            raise self._error(f"give either 1 mean_value or as many as channels ({channels}); found "
                              f"{self.mean_values.size}")
        if self.crop_size:
            return channels, self.crop_size, self.crop_size
        return channels, height, width

    # -- transforming -----------------------------------------------------------------------
    def draw(self, image_shape):
        """Random choices for one image: (mirror, h_off, w_off), in Caffe's order (mirror first)."""
        _, height, width = image_shape
        mirror = bool(self.param.mirror) and bool(self.rng.integers(2))
        h_off = w_off = 0
        if self.crop_size:
            if self.phase == caffe_pb2.TRAIN:
                h_off = int(self.rng.integers(height - self.crop_size + 1))
                w_off = int(self.rng.integers(width - self.crop_size + 1))
            else:
                h_off = (height - self.crop_size) // 2
                w_off = (width - self.crop_size) // 2
        return mirror, h_off, w_off

    def transform(self, image, out=None, choice=None, where="image"):
        """Transform one C x H x W image into `out` (allocated if None); returns `out`.

        `choice` is a `draw()` result; drawn here when not given."""
        image = np.asarray(image)
        if image.ndim != 3:
            raise self._error(f"{where} must be C x H x W; got shape {image.shape}")
        shape = self.output_shape(image.shape, where)
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif out.shape != shape:
            raise self._error(f"{where} is {image.shape[1]} x {image.shape[2]} (C={image.shape[0]}) but "
                              f"earlier images of this batch give {out.shape}; all images of a batch "
                              "must have the same size (resize them, or use batch_size 1)")
        mirror, h_off, w_off = choice if choice is not None else self.draw(image.shape)
        rows = slice(h_off, h_off + shape[1])
        cols = slice(w_off, w_off + shape[2])
        out[...] = image[:, rows, cols]
        if self.mean is not None:
            out -= self.mean[:, rows, cols]
        elif self.mean_values.size:
            out -= self.mean_values.reshape(-1, 1, 1)
        if self.scale != 1:
            out *= self.scale
        if mirror:
            out[...] = out[:, :, ::-1].copy()
        return out

    def transform_batch(self, images, out, where=None):
        """Transform a sequence of C x H x W images into the rows of `out` (N x C x H' x W').
        Random choices are drawn in order, one image after the other."""
        for i, image in enumerate(images):
            self.transform(image, out[i], where=where[i] if where else f"image {i}")
        return out

    def transform_datum(self, datum, out=None, where="record"):
        return self.transform(self.decode(datum, where), out, where=where)
