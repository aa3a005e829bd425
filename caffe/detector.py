"""pycaffe's `caffe.detector` module: `Detector` (pycaffelite's)."""
from pycaffelite.detector import Detector

__all__ = ["Detector"]
