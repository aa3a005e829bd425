"""pycaffe's face on pycaffelite: scripts that `import caffe` run unchanged.

This package only gives pycaffelite's objects pycaffe's module names (`caffe`, `caffe.io`,
`caffe.draw`, `caffe.net_spec`, `caffe.proto.caffe_pb2`, ...); no logic lives here. A real pycaffe
that comes earlier on sys.path (PYTHONPATH) is imported instead of this package.
"""
from pycaffelite import (NCCL, TEST, TRAIN, AdaDeltaSolver, AdaGradSolver, AdamSolver, Layer,
                         NesterovSolver, Net, RMSPropSolver, SGDSolver, Timer,
                         get_solver, has_nccl, init_log, layer_type_list, log, set_device,
                         set_mode_cpu, set_mode_gpu, set_multiprocess, set_random_seed,
                         set_solver_count, set_solver_rank, solver_count, solver_rank)

from pycaffelite import CAFFE_VERSION as __version__

from . import proto
from .net_spec import NetSpec, layers, params, to_proto
from . import io
from .classifier import Classifier
from .detector import Detector
