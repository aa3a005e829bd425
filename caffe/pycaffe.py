"""pycaffe's `caffe.pycaffe` module: the Net and solver classes (pycaffelite's)."""
from pycaffelite import (NCCL, AdaDeltaSolver, AdaGradSolver, AdamSolver, NesterovSolver, Net,
                         RMSPropSolver, SGDSolver, Timer)

__all__ = ["NCCL", "AdaDeltaSolver", "AdaGradSolver", "AdamSolver", "NesterovSolver", "Net",
           "RMSPropSolver", "SGDSolver", "Timer"]
