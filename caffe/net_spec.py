"""pycaffe's `caffe.net_spec`: writing nets in Python (pycaffelite's NetSpec)."""
from pycaffelite.net_spec import NetSpec, layers, params, to_proto

__all__ = ["NetSpec", "layers", "params", "to_proto"]
