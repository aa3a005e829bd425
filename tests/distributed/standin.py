"""A stand-in for cupy and its NCCL bindings, for running NcclCommunicator without a GPU.

"Device" arrays are numpy arrays whose `.data.ptr` is their address; the stand-in `nccl` module's
communicators, one per thread, exchange through those addresses: each rank deposits a copy of its
buffer, all wait at a barrier, each computes the sum (in rank order) or takes root's, all wait
again. Streams and events are immediate (everything has finished when it is queued).
"""
import ctypes
import threading
import types

import numpy as np

from pycaffelite import device

NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT64, NCCL_SUM = "float32", "float64", "int64", "sum"
_C_TYPES = {NCCL_FLOAT32: ctypes.c_float, NCCL_FLOAT64: ctypes.c_double, NCCL_INT64: ctypes.c_int64}


class DeviceArray(np.ndarray):
    """A numpy array posing as a cupy one: `.data.ptr` and `.get()`."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def get(self):
        return np.array(self)


class _Stream:
    ptr = 0

    def __init__(self, non_blocking=False):
        self.non_blocking = non_blocking

    def wait_event(self, event):
        assert event.recorded


class _Event:
    recorded = False
    done = True

    def record(self, stream=None):
        self.recorded = True

    def synchronize(self):
        assert self.recorded


class _Cupy(types.ModuleType):
    """numpy under cupy's name: arrays made here are DeviceArrays; everything else is numpy's."""

    cuda = types.SimpleNamespace(Stream=_Stream, Event=_Event)

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def asarray(array, dtype=None):
        return np.array(array, dtype=dtype).view(DeviceArray)

    @staticmethod
    def empty(shape, dtype=np.float32):
        return np.empty(shape, dtype=dtype).view(DeviceArray)

    @staticmethod
    def zeros(shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype).view(DeviceArray)


cupy = _Cupy("cupy")


class StandInGpu(device.Device):
    """A GPU-mode device whose arrays are the stand-in cupy's DeviceArrays."""

    name = "stand-in GPU"

    def __init__(self):
        super().__init__(cupy)

    def to_device(self, host_array):
        return cupy.asarray(host_array)

    def to_host(self, device_array, out):
        out[...] = device_array

    def copy_into_device(self, host_array, out):
        out[...] = host_array


def _view(ptr, count, dtype):
    return np.ctypeslib.as_array((_C_TYPES[dtype] * count).from_address(ptr))


class _Rendezvous:
    def __init__(self, size):
        self.barrier = threading.Barrier(size, timeout=20)
        self.slots = [None] * size


class NcclCommunicator:
    """Rank `rank` of `size` threads that share the id `uid` (a key of `groups`)."""

    groups = {}
    _lock = threading.Lock()

    def __init__(self, size, uid, rank):
        with self._lock:
            self.group = self.groups.setdefault(uid, _Rendezvous(size))
        self.rank = rank
        self.calls = []

    def _exchange(self, send, combine):
        group = self.group
        group.slots[self.rank] = send.copy()
        group.barrier.wait()
        result = combine(group.slots)
        group.barrier.wait()
        return result

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):  # noqa: N802 - cupy's name
        assert op == NCCL_SUM
        self.calls.append(("allReduce", count, datatype))
        total = self._exchange(_view(sendbuf, count, datatype), lambda slots: sum(slots[1:], slots[0]))
        _view(recvbuf, count, datatype)[...] = total

    def bcast(self, buff, count, datatype, root, stream):
        self.calls.append(("bcast", count, datatype))
        _view(buff, count, datatype)[...] = self._exchange(_view(buff, count, datatype),
                                                           lambda slots: slots[root])


nccl = types.SimpleNamespace(NCCL_FLOAT32=NCCL_FLOAT32, NCCL_FLOAT64=NCCL_FLOAT64,
                             NCCL_INT64=NCCL_INT64, NCCL_SUM=NCCL_SUM, available=True,
                             NcclCommunicator=NcclCommunicator)
