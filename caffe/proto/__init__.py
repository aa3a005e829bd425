"""pycaffe's `caffe.proto` package: `from caffe.proto import caffe_pb2`."""
from . import caffe_pb2
