"""pycaffelite: Caffe's prototxt/caffemodel workflow in Python, with a pycaffe-like API.

    import pycaffelite as pcl
    net = pcl.Net("deploy.prototxt", pcl.TEST, weights="model.caffemodel")
    out = net.forward(data=images)
"""
from .blob import Blob
from .device import set_device, set_mode_cpu, set_mode_gpu, set_random_seed
from .errors import NotSupportedError, PclError
from .layers.base import Layer
from .net import TEST, TRAIN, Net
from .net_spec import NetSpec, layers, params

from .solvers import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                      SGDSolver, get_solver)

__all__ = ["AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "Blob", "Layer", "Net", "NetSpec",
           "NesterovSolver", "NotSupportedError", "PclError", "RMSPropSolver", "SGDSolver", "TEST",
           "TRAIN", "get_solver", "layers", "params", "set_device", "set_mode_cpu", "set_mode_gpu",
           "set_random_seed"]
