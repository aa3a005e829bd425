"""SyncedMem head states and lazy transfers, on the numpy stand-in device."""
import numpy as np
import pytest

from pycaffelite import device
from pycaffelite.syncedmem import HEAD_AT_CPU, HEAD_AT_GPU, SYNCED, UNINITIALIZED, SyncedMem


def test_starts_uninitialized_and_cpu_access_zero_fills():
    mem = SyncedMem(5)
    assert mem.head == UNINITIALIZED
    data = mem.cpu_data()
    assert mem.head == HEAD_AT_CPU
    np.testing.assert_array_equal(data, np.zeros(5, np.float32))


def test_gpu_first_allocates_on_device_without_transfer(stand_in_device):
    mem = SyncedMem(4)
    mem.gpu_data()
    assert mem.head == HEAD_AT_GPU
    assert stand_in_device.to_device_count == 0 and stand_in_device.to_host_count == 0


def test_cpu_write_then_gpu_read_copies_once_and_syncs(stand_in_device):
    mem = SyncedMem(3)
    mem.mutable_cpu_data()[...] = [1, 2, 3]
    gpu = mem.gpu_data()
    assert mem.head == SYNCED
    assert stand_in_device.to_device_count == 1
    assert gpu is not mem.cpu_data()  # distinct copies
    np.testing.assert_array_equal(gpu, [1, 2, 3])
    mem.gpu_data()
    mem.cpu_data()
    assert stand_in_device.to_device_count == 1 and stand_in_device.to_host_count == 0


def test_gpu_write_then_cpu_read_copies_back(stand_in_device):
    mem = SyncedMem(3)
    mem.mutable_cpu_data()[...] = 1
    mem.mutable_gpu_data()[...] = [4, 5, 6]
    assert mem.head == HEAD_AT_GPU
    np.testing.assert_array_equal(mem.cpu_data(), [4, 5, 6])
    assert mem.head == SYNCED
    assert stand_in_device.to_host_count == 1


def test_mutable_cpu_after_sync_moves_head_and_reuses_device_buffer(stand_in_device):
    mem = SyncedMem(2)
    mem.mutable_cpu_data()[...] = 7
    first = mem.gpu_data()
    mem.mutable_cpu_data()[...] = 8
    assert mem.head == HEAD_AT_CPU
    second = mem.gpu_data()
    assert second is first  # copied into the existing device array
    np.testing.assert_array_equal(second, [8, 8])
    assert stand_in_device.to_device_count == 2


def test_set_cpu_data_adopts_array_and_checks_size():
    mem = SyncedMem(3)
    mem.set_cpu_data(np.arange(3))
    assert mem.head == HEAD_AT_CPU
    np.testing.assert_array_equal(mem.cpu_data(), [0, 1, 2])
    with pytest.raises(ValueError):
        mem.set_cpu_data(np.arange(4))


def test_gpu_mode_without_cupy_is_a_clear_error():
    device.install_device(None)
    with pytest.raises(device.PclError, match="cupy is not installed"):
        device.set_mode_gpu()
    assert device.mode() == device.CPU
