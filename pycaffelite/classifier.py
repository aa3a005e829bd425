"""pycaffe's `caffe.Classifier`: a TEST-phase Net that classifies images.

`predict` resizes every image to `image_dims`, takes the net's input-sized crops (the centre, or
the ten views of `oversample`: four corners, centre and their mirrors), preprocesses them with a
`Transformer` (transpose to K x H x W, then channel_swap, raw_scale, mean, input_scale), runs them
through `forward_all` and returns the first output; with oversampling each image's row is the
mean over its ten views.
"""
import numpy as np

from .errors import PclError
from .io import pycaffe_images
from .io.pycaffe_transformer import Transformer
from .net import TEST, Net


def configured_transformer(net, mean, input_scale, raw_scale, channel_swap):
    """A Transformer for the net's first input, taking H x W x K images (pycaffe's setup for the
    Classifier and the Detector)."""
    in_ = net.inputs[0]
    transformer = Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer


class Classifier(Net):
    """`Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None)`; `image_dims` (height, width) is the size images are
    resized to before cropping, the net's input size by default."""

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        super().__init__(model_file, TEST, weights=pretrained_file)
        if not self.inputs:
            raise PclError(f"{self.source}: a Classifier needs a net with an input blob (input: or "
                           "an Input layer)")
        self.transformer = configured_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[self.inputs[0]].data.shape[2:])
        no_dims = image_dims is None or len(image_dims) == 0
        self.image_dims = self.crop_dims if no_dims else image_dims

    def predict(self, inputs, oversample=True):
        """Class scores (N x C, the net's first output) for N images (H x W x K arrays, e.g. from
        load_image), averaged over the ten oversampled views, or of the centre crop alone when
        `oversample` is False."""
        if len(inputs) == 0:
            raise PclError("Classifier.predict: no images given; pass a list of H x W x K arrays")
        image_h, image_w = (int(d) for d in self.image_dims[:2])
        crop_h, crop_w = (int(d) for d in self.crop_dims)
        if image_h < crop_h or image_w < crop_w:
            raise PclError(f"Classifier: image_dims {(image_h, image_w)} are smaller than the net's "
                           f"input {(crop_h, crop_w)}; give image_dims at least that large")
        resized = [pycaffe_images.resize_image(image, (image_h, image_w)) for image in inputs]
        channels = sorted({image.shape[2] for image in resized})
        if len(channels) > 1:
            raise PclError(f"Classifier.predict: the images have {channels} channels; give images "
                           "with the same number of channels (load_image gives 3)")
        resized = np.stack(resized)
        if oversample:
            crops = pycaffe_images.oversample(resized, (crop_h, crop_w))
        else:
            top, left = pycaffe_images.crop_boxes((image_h, image_w), (crop_h, crop_w))[4]
            crops = resized[:, top:top + crop_h, left:left + crop_w]
        in_ = self.inputs[0]
        caffe_in = np.stack([self.transformer.preprocess(in_, crop) for crop in crops])
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape(len(inputs), 10, -1).mean(axis=1)
        return predictions
