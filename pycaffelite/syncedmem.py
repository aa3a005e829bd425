"""SyncedMem: one array of memory with a host copy and a device copy, synchronised lazily.

Head states (as in Caffe):
  UNINITIALIZED  nothing allocated yet
  HEAD_AT_CPU    the host copy is the newest; the device copy (if any) is stale
  HEAD_AT_GPU    the device copy is the newest; the host copy (if any) is stale
  SYNCED         both copies hold the same values

Reading (`cpu_data`/`gpu_data`) copies across only when the other side is newer; asking for a
mutable pointer moves the head to that side. Memory is a flat 1-D array of `count` elements.
"""
import numpy as np

from . import device as _device

UNINITIALIZED = "UNINITIALIZED"
HEAD_AT_CPU = "HEAD_AT_CPU"
HEAD_AT_GPU = "HEAD_AT_GPU"
SYNCED = "SYNCED"


class SyncedMem:
    def __init__(self, count, dtype=np.float32):
        self.count = int(count)
        self.dtype = np.dtype(dtype)
        self.head = UNINITIALIZED
        self._cpu = None
        self._gpu = None
        self._gpu_device = None

    # -- transfers -------------------------------------------------------------------------
    def _to_cpu(self):
        if self.head == UNINITIALIZED:
            self._cpu = np.zeros(self.count, dtype=self.dtype)
            self.head = HEAD_AT_CPU
        elif self.head == HEAD_AT_GPU:
            if self._cpu is None:
                self._cpu = np.empty(self.count, dtype=self.dtype)
            self._gpu_device.to_host(self._gpu, self._cpu)
            self.head = SYNCED

    def _to_gpu(self):
        dev = _device.current_device()
        if self.head == UNINITIALIZED:
            self._gpu = dev.zeros(self.count, self.dtype)
            self._gpu_device = dev
            self.head = HEAD_AT_GPU
        elif self.head == HEAD_AT_CPU:
            if self._gpu is None:
                self._gpu = dev.to_device(self._cpu)
                self._gpu_device = dev
            else:
                self._gpu_device.copy_into_device(self._cpu, self._gpu)
            self.head = SYNCED

    # -- accessors -------------------------------------------------------------------------
    def cpu_data(self):
        self._to_cpu()
        return self._cpu

    def mutable_cpu_data(self):
        self._to_cpu()
        self.head = HEAD_AT_CPU
        return self._cpu

    def gpu_data(self):
        self._to_gpu()
        return self._gpu

    def mutable_gpu_data(self):
        self._to_gpu()
        self.head = HEAD_AT_GPU
        return self._gpu

    def set_cpu_data(self, array):
        """Adopt a host array (flat, `count` elements) as the memory; the head moves to the CPU."""
        array = np.asarray(array, dtype=self.dtype).reshape(-1)
        if array.size != self.count:
            raise ValueError(f"set_cpu_data: expected {self.count} elements, got {array.size}")
        self._cpu = array
        self.head = HEAD_AT_CPU

    def data(self, on_device):
        if on_device:
            return self.gpu_data()
        if self.head is HEAD_AT_CPU or self.head is SYNCED:
            return self._cpu  # the host copy is current: no call down to _to_cpu
        return self.cpu_data()

    def mutable_data(self, on_device):
        if on_device:
            return self.mutable_gpu_data()
        if self.head is not HEAD_AT_CPU:
            self._to_cpu()
            self.head = HEAD_AT_CPU
        return self._cpu
