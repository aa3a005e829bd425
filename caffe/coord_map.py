"""pycaffe's `caffe.coord_map`: coordinate maps between NetSpec tops, and crop (pycaffelite's)."""
from pycaffelite.coord_map import (PASS_THROUGH_LAYERS, AxisMismatchException,
                                   UndefinedMapException, compose, conv_params, coord_map,
                                   coord_map_from_to, crop, crop_params, inverse)

__all__ = ["PASS_THROUGH_LAYERS", "AxisMismatchException", "UndefinedMapException", "compose",
           "conv_params", "coord_map", "coord_map_from_to", "crop", "crop_params", "inverse"]
