"""pycaffe's NCCL face: multi-GPU gradient exchange.

pycaffelite does not train on several GPUs yet, so `has_nccl()` is false and constructing `NCCL`
(or asking it for a uid) ends in a clear "not supported" error, as a pycaffe built without NCCL
would make scripts take their single-GPU path.
"""
from .errors import NotSupportedError

_WHY = ("not supported: NCCL (training one solver per GPU with gradient all-reduce) is not "
        "implemented in pycaffelite yet; train on one device (caffe.has_nccl() is False)")


def has_nccl():
    """Whether multi-GPU training through NCCL is available: not yet."""
    return False


class NCCL:
    """pycaffe's `caffe.NCCL(solver, uid)`; refuses with a clear message until NCCL exists."""

    def __init__(self, solver, uid):
        raise NotSupportedError(_WHY)

    @staticmethod
    def new_uid():
        raise NotSupportedError(_WHY)
