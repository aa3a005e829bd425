"""pycaffe's `caffe.io`: image loading and preprocessing, array <-> BlobProto/Datum (pycaffelite's)."""
from pycaffelite.io.pycaffe_images import load_image, oversample, resize_image
from pycaffelite.io.pycaffe_io import (array_to_blobproto, array_to_datum,
                                       arraylist_to_blobprotovector_str, blobproto_to_array,
                                       blobprotovector_str_to_arraylist, datum_to_array)
from pycaffelite.io.pycaffe_transformer import Transformer
from pycaffelite.proto import caffe_pb2

__all__ = ["Transformer", "array_to_blobproto", "array_to_datum",
           "arraylist_to_blobprotovector_str", "blobproto_to_array",
           "blobprotovector_str_to_arraylist", "caffe_pb2", "datum_to_array", "load_image",
           "oversample", "resize_image"]
