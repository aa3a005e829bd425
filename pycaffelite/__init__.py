"""pycaffelite: Caffe's prototxt/caffemodel workflow in Python, with pycaffe's API.

    import pycaffelite as pcl
    net = pcl.Net("deploy.prototxt", pcl.TEST, weights="model.caffemodel")
    out = net.forward(data=images)

The `caffe` package shipped beside it gives these same objects pycaffe's module names.
"""
from .blob import Blob
from .device import (set_device, set_mode_cpu, set_mode_gpu, set_multiprocess, set_random_seed,
                     set_solver_count, set_solver_rank, solver_count, solver_rank)
from .errors import NotSupportedError, PclError
from .layers import registered_types as layer_type_list
from .layers.base import Layer
from .nccl import NCCL, has_nccl
from .net import TEST, TRAIN, Net
from .net_spec import NetSpec, layers, params
from .solvers import (AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, RMSPropSolver,
                      SGDSolver, get_solver)
from .timing import Timer
from .training_log import init_log, log

__version__ = "0.1.0"
# The BVLC Caffe release whose behaviour and pycaffe API this package reproduces
# (what `caffe.__version__` reports).
CAFFE_VERSION = "1.0.0"

__all__ = ["AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "Blob", "CAFFE_VERSION", "Layer",
           "NCCL", "Net", "NetSpec", "NesterovSolver", "NotSupportedError", "PclError",
           "RMSPropSolver", "SGDSolver", "TEST", "TRAIN", "Timer", "get_solver", "has_nccl",
           "init_log", "layer_type_list", "layers", "log", "params", "set_device",
           "set_mode_cpu", "set_mode_gpu", "set_multiprocess", "set_random_seed",
           "set_solver_count", "set_solver_rank", "solver_count", "solver_rank"]
