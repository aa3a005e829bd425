"""pycaffe's `caffe.Detector`: a TEST-phase Net that classifies windows of images (R-CNN style).

`detect_windows` crops each window (ymin, xmin, ymax, xmax) out of its image, warps it to the net's
input size, preprocesses it like the Classifier does and returns one prediction per window.

With `context_pad` p the crop takes surrounding context, as R-CNN does: the window is grown about
its centre so that, once warped to the S x S input, the window itself covers the central
S - 2p pixels and a p-pixel border is context (see `context_geometry`). Where the grown box leaves
the image, the missing part is filled with the mean (in raw image values), so after mean
subtraction it is zero.
"""
import numpy as np

from .classifier import configured_transformer
from .errors import NotSupportedError, PclError
from .io import pycaffe_images
from .net import TEST, Net

SELECTIVE_SEARCH_UNSUPPORTED = (
    "not supported: Detector.detect_selective_search needs selective search proposals, made by "
    "an external MATLAB tool (selective_search_ijcv_with_python) that pycaffelite does not run; "
    "compute the windows beforehand and pass (filename, windows) pairs to Detector.detect_windows "
    "(detect.py: --crop_mode list)")


def context_geometry(window, input_dims, context_pad, image_dims):
    """Where a window with context comes from and goes to, in pycaffe's arithmetic.

    For the window (y0, x0, y1, x1) and an input of S_y x S_x pixels, per axis (shown for y):

        half  = (y1 - y0 + 1) / 2,   centre = y0 + half
        box   = round(centre -/+ half * S / (S - 2 * context_pad))      (the grown box)
        s     = S / (box_end - box_start + 1)                           (warp factor)
        pad   = round(max(0, -box_start) * s)                           (rows above the image)
        box   clipped to [0, image height]
        size  = min(round((box_end - box_start + 1) * s), S - pad)

    Rounding is half to even (numpy's, as pycaffe's np.round and Python 3's round). Returns the clipped box (y0, x0, y1, x1) as
    ints, the offset (pad_y, pad_x) and the size (h, w) its warped pixels take in the input.
    """
    window = np.asarray(window, dtype=np.float64)
    sizes = np.asarray(input_dims, dtype=np.float64)
    half = (window[2:] - window[:2] + 1) / 2.0
    centre = window[:2] + half
    grown = half * sizes / (sizes - 2 * context_pad)
    box = np.round(np.concatenate([centre - grown, centre + grown]))
    warp = sizes / (box[2:] - box[:2] + 1)
    pad = np.round(np.maximum(0, -box[:2]) * warp).astype(int)
    limits = np.tile(np.asarray(image_dims[:2], dtype=np.float64), 2)
    box = np.clip(box, 0, limits)
    size = np.round((box[2:] - box[:2] + 1) * warp).astype(int)
    size = np.minimum(size, sizes.astype(int) - pad)
    return box.astype(int), pad, size


class Detector(Net):
    """`Detector(model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
    channel_swap=None, context_pad=None)`."""

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None, raw_scale=None,
                 channel_swap=None, context_pad=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        if not self.inputs:
            raise PclError(f"{self.source}: a Detector needs a net with an input blob (input: or "
                           "an Input layer)")
        self.transformer = configured_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows):
        """Predictions for windows of images: `images_windows` is a sequence of (image filename,
        windows), each window (ymin, xmin, ymax, xmax). Returns one dict per window, in order:
        {"window": the window as given, "prediction": the net's first output for it,
        "filename": its image}."""
        images_windows = [(filename, list(windows)) for filename, windows in images_windows]
        crops = []
        for filename, windows in images_windows:
            image = pycaffe_images.load_image(filename)
            for window in windows:
                crop = self.crop(image, window)
                if crop.size == 0:
                    raise PclError(f"Detector: window {np.asarray(window).tolist()} of {filename} "
                                   f"holds no pixels of the {image.shape[0]} x {image.shape[1]} "
                                   "image; windows are (ymin, xmin, ymax, xmax) inside the image")
                crops.append(crop)
        if not crops:
            return []
        in_ = self.inputs[0]
        caffe_in = np.stack([self.transformer.preprocess(in_, crop) for crop in crops])
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        windows = [(filename, window) for filename, windows in images_windows for window in windows]
        return [{"window": window, "prediction": prediction, "filename": filename}
                for (filename, window), prediction in zip(windows, predictions)]

    def detect_selective_search(self, image_fnames):
        """Refused: selective search is an external MATLAB tool; use detect_windows."""
        raise NotSupportedError(SELECTIVE_SEARCH_UNSUPPORTED)

    def crop(self, im, window):
        """The window (ymin, xmin, ymax, xmax; end exclusive) of an H x W x K image; with a
        context pad, the input-sized crop with context and mean filling described above."""
        window = np.asarray(window).astype(int)
        if not self.context_pad:
            return im[window[0]:window[2], window[1]:window[3]]
        box, (pad_y, pad_x), (crop_h, crop_w) = context_geometry(
            window, self.crop_dims[:2], self.context_pad, im.shape)
        context = im[box[0]:box[2], box[1]:box[3]]
        if context.size == 0 or crop_h <= 0 or crop_w <= 0:
            raise PclError(f"Detector: window {window.tolist()} with context_pad {self.context_pad} "
                           f"lies outside the {im.shape[0]} x {im.shape[1]} image")
        crop = np.empty(self.crop_dims, dtype=np.float32)
        crop[...] = self.crop_mean
        crop[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = pycaffe_images.resize_image(
            context, (crop_h, crop_w))
        return crop

    def configure_crop(self, context_pad):
        """Set the crop size (the net input as H x W x K) and the context pad; with a pad, also
        `crop_mean`, the mean in raw image layout and scale (H x W x K or 1 x 1 x K) that fills
        context beyond the image."""
        in_ = self.inputs[0]
        inverse = np.argsort(self.transformer.transpose[in_])
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inverse]
        self.context_pad = context_pad
        if not context_pad:
            return
        if 2 * context_pad >= min(self.crop_dims[:2]):
            raise PclError(f"Detector: context_pad {context_pad} leaves no room for the window in "
                           f"the net's {self.crop_dims[0]} x {self.crop_dims[1]} input; use a "
                           f"context_pad below {min(self.crop_dims[:2]) / 2:g}")
        mean = self.transformer.mean.get(in_)
        if mean is None:
            self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
            return
        crop_mean = np.array(mean, dtype=np.float32).transpose(inverse)
        channel_swap = self.transformer.channel_swap.get(in_)
        if channel_swap is not None and crop_mean.shape[2] > 1:
            crop_mean = crop_mean[:, :, np.argsort(channel_swap)]
        raw_scale = self.transformer.raw_scale.get(in_)
        if raw_scale is not None:
            crop_mean /= raw_scale
        self.crop_mean = crop_mean
