"""Generated protobuf schema (Caffe's messages under package `pycaffelite`).

`caffe_pb2` is produced by tools/gen_proto.py from proto/caffe.proto; do not edit it by hand.
"""
