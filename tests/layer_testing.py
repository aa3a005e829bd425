"""Helpers for layer tests: building a LayerParameter from prototxt text and filled blobs."""
import numpy as np
from google.protobuf import text_format

from pycaffelite.blob import Blob
from pycaffelite.layers import create_layer
from pycaffelite.proto import caffe_pb2


def layer_param(text):
    """A LayerParameter from Caffe's text format, e.g. 'type: "ReLU" relu_param { negative_slope: 0.1 }'."""
    param = caffe_pb2.LayerParameter()
    text_format.Parse(text, param)
    if not param.name:
        param.name = "test"
    return param


def make_layer(text, dtype=np.float64, phase=caffe_pb2.TRAIN):
    return create_layer(layer_param(text), phase=phase, dtype=dtype)


def gaussian_blob(shape, dtype=np.float64, seed=0, std=1.0, mean=0.0):
    blob = Blob(shape, dtype=dtype)
    blob.data[...] = np.random.default_rng(seed).normal(mean, std, size=shape)
    return blob


def blob_from(array, dtype=np.float64):
    array = np.asarray(array, dtype=dtype)
    blob = Blob(array.shape, dtype=dtype)
    blob.data[...] = array
    return blob


def empty_tops(n, dtype=np.float64):
    return [Blob((), dtype=dtype) for _ in range(n)]


def forward_one(layer, x, dtype=np.float64):
    """Set up `layer` on one bottom holding `x`, run forward; returns (layer, bottom, top)."""
    bottom = blob_from(x, dtype)
    tops = empty_tops(1, dtype)
    layer.initialize([bottom], tops)
    layer.forward([bottom], tops)
    return layer, bottom, tops[0]
