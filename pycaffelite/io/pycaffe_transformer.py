"""pycaffe's `caffe.io.Transformer`: Python images -> net input arrays and back.

For an input named `in_` with blob shape (N, K, H, W), `preprocess(in_, image)` does, in order:

    x = image as float32 (a copy: the caller's array is never changed; the steps keep float32)
    x = resize_image(x, (H, W))           if x's first two axes are not (H, W)
    x = x.transpose(transpose)             e.g. (2, 0, 1): H x W x K -> K x H x W
    x = x[channel_swap]                    e.g. (2, 1, 0): RGB -> BGR
    x = x * raw_scale                      e.g. 255: [0, 1] -> [0, 255]
    x = x - mean                           per channel (K,) or per pixel (K x H x W)
    x = x * input_scale

and `deprocess` undoes the steps after the resize in reverse order. Steps not set are skipped.
"""
import numpy as np

from ..errors import PclError
from .pycaffe_images import resize_image
from .pycaffe_io import ArgumentError


class Transformer:
    """Preprocessing settings for the inputs named in `inputs` ({name: blob shape N x K x H x W})."""

    def __init__(self, inputs):
        self.inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        self.transpose = {}
        self.channel_swap = {}
        self.raw_scale = {}
        self.mean = {}
        self.input_scale = {}

    def _check_input(self, in_):
        if in_ not in self.inputs:
            raise PclError(f'Transformer: "{in_}" is not one of its inputs {list(self.inputs)}; '
                           "use an input name given to Transformer(...)")

    def preprocess(self, in_, data):
        """One image (H' x W' x K for the usual transpose) as a net input array (K x H x W)."""
        self._check_input(in_)
        x = np.array(data, dtype=np.float32)
        in_dims = self.inputs[in_][2:]
        if x.shape[:2] != in_dims:
            x = resize_image(x, in_dims)
        if in_ in self.transpose:
            x = x.transpose(self.transpose[in_])
        if x.shape != self.inputs[in_][1:]:
            raise PclError(f'Transformer.preprocess("{in_}"): the image becomes {x.shape} but the '
                           f"input is {self.inputs[in_][1:]}; give H x W x "
                           f"{self.inputs[in_][1]} images (and set_transpose(\"{in_}\", (2, 0, 1)))")
        if in_ in self.channel_swap:
            x = x[list(self.channel_swap[in_])]
        if in_ in self.raw_scale:
            x *= self.raw_scale[in_]
        if in_ in self.mean:
            x -= self.mean[in_]
        if in_ in self.input_scale:
            x *= self.input_scale[in_]
        return x

    def deprocess(self, in_, data):
        """A net input array (K x H x W, or 1 x K x H x W) back in the image layout: the inverse
        of `preprocess` up to its resize."""
        self._check_input(in_)
        x = np.asarray(data)
        x = x.astype(np.promote_types(x.dtype, np.float32))  # a copy
        if x.ndim == len(self.inputs[in_]) and x.shape[0] == 1:
            x = x[0]
        if in_ in self.input_scale:
            x /= self.input_scale[in_]
        if in_ in self.mean:
            x += self.mean[in_]
        if in_ in self.raw_scale:
            x /= self.raw_scale[in_]
        if in_ in self.channel_swap:
            x = x[np.argsort(self.channel_swap[in_])]
        if in_ in self.transpose:
            x = x.transpose(np.argsort(self.transpose[in_]))
        return x

    def set_transpose(self, in_, order):
        """The axis order taking an image to the blob's layout, e.g. (2, 0, 1) for H x W x K ->
        K x H x W: a permutation of one axis fewer than the blob has (no batch axis)."""
        self._check_input(in_)
        axes = len(self.inputs[in_]) - 1
        if sorted(order) != list(range(axes)):
            raise PclError(f'Transformer.set_transpose("{in_}", {tuple(order)}): the order must be a '
                           f"permutation of 0..{axes - 1} (one entry per image axis)")
        self.transpose[in_] = tuple(order)

    def set_channel_swap(self, in_, order):
        """The channel order taken after the transpose, e.g. (2, 1, 0) for RGB -> BGR: a
        permutation of the blob's K channels."""
        self._check_input(in_)
        channels = self.inputs[in_][1]
        if sorted(order) != list(range(channels)):
            raise PclError(f'Transformer.set_channel_swap("{in_}", {tuple(order)}): the order must '
                           f"be a permutation of the input's {channels} channels 0..{channels - 1}")
        self.channel_swap[in_] = tuple(order)

    def set_raw_scale(self, in_, scale):
        """The factor applied before the mean is subtracted (255 for models trained on 0..255
        pixels, since load_image gives 0..1)."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """The mean subtracted after raw_scale: K values (one per channel) or a K x H x W (or
        H x W) array. A mean of another height and width is resized to the input's."""
        self._check_input(in_)
        mean = np.asarray(mean)
        shape = self.inputs[in_][1:]
        if mean.ndim == 1:
            if mean.shape[0] != shape[0]:
                raise ArgumentError(f'Transformer.set_mean("{in_}"): {mean.shape[0]} mean values '
                                    f"for an input of {shape[0]} channels; give one per channel")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if mean.ndim == 2:
                mean = mean[np.newaxis]
            if mean.ndim != 3 or mean.shape[0] not in (1, shape[0]):
                raise ArgumentError(f'Transformer.set_mean("{in_}"): a mean of shape {mean.shape} '
                                    f"does not fit the input's {shape}; give K values or a K x H x W "
                                    "array")
            if mean.shape[1:] != shape[1:]:
                mean = resize_image(mean.transpose(1, 2, 0), shape[1:]).transpose(2, 0, 1)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """The factor applied last, after the mean is subtracted."""
        self._check_input(in_)
        self.input_scale[in_] = scale
