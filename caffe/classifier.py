"""pycaffe's `caffe.classifier` module: `Classifier` (pycaffelite's)."""
from pycaffelite.classifier import Classifier

__all__ = ["Classifier"]
