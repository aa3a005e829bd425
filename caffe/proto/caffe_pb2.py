"""pycaffe's `caffe.proto.caffe_pb2`: pycaffelite's schema module (Caffe's messages, field names
and numbers, under the protobuf package `pycaffelite`)."""
from pycaffelite.proto.caffe_pb2 import *  # noqa: F401,F403 - the whole schema, re-exported
from pycaffelite.proto.caffe_pb2 import DESCRIPTOR  # noqa: F401
