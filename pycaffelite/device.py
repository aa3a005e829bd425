"""Compute mode, device selection, array module and random numbers.

Caffe keeps one global mode (CPU or GPU) and one device id. Layers write their math once against
`array_module()` (numpy in CPU mode, cupy in GPU mode); SyncedMem moves data between the host and
the active `Device` lazily.

GPU paths are written against cupy's API but have not yet run on a real GPU: no GPU exists on the
machines this project is developed on. The device logic itself is exercised in tests through
`install_device(...)` with a numpy-backed stand-in device.
"""
import numpy as np

from .errors import PclError

CPU = "CPU"
GPU = "GPU"


class Device:
    """Where device copies of blob memory live. `xp` is the array module that computes on them."""

    name = "device"

    def __init__(self, xp):
        self.xp = xp

    def empty(self, count, dtype):
        return self.xp.empty(count, dtype=dtype)

    def zeros(self, count, dtype):
        return self.xp.zeros(count, dtype=dtype)

    def to_device(self, host_array):
        """Copy a host (numpy) array to a new device array."""
        raise NotImplementedError

    def to_host(self, device_array, out):
        """Copy a device array into the given host (numpy) array."""
        raise NotImplementedError

    def copy_into_device(self, host_array, out):
        """Copy a host array into an existing device array."""
        raise NotImplementedError

    def synchronize(self):
        """Wait for queued device work to finish (for timing)."""


class CupyDevice(Device):
    """A CUDA GPU through cupy. Not yet run on a real GPU (none available in development)."""

    name = "cupy"

    def __init__(self, device_id):
        import cupy  # noqa: PLC0415 - optional dependency, imported only in GPU mode

        super().__init__(cupy)
        self.device_id = device_id
        cupy.cuda.Device(device_id).use()

    def to_device(self, host_array):
        return self.xp.asarray(host_array)

    def to_host(self, device_array, out):
        device_array.get(out=out)

    def copy_into_device(self, host_array, out):
        out.set(host_array)

    def synchronize(self):
        self.xp.cuda.Device(self.device_id).synchronize()


class _State:
    mode = CPU
    device_id = 0
    device = None
    rng = np.random.default_rng()
    seed = None
    solver_count = 1
    solver_rank = 0
    multiprocess = False
    layout = 0  # see layout_changed


def layout_changed():
    """Note that something a layer's reshape depends on has changed: a blob's shape or shared
    memory, the mode, the device, the thread count. Layers reshape again only after this."""
    _State.layout += 1


def layout():
    """The count of `layout_changed` calls: equal counts mean nothing changed in between."""
    return _State.layout


def mode():
    return _State.mode


def on_device():
    """Whether blobs are read and written on the device (GPU mode) rather than the host."""
    return _State.mode == GPU


def set_mode_cpu():
    if _State.mode != CPU:
        layout_changed()
    _State.mode = CPU


def set_mode_gpu():
    """Switch to GPU mode; a clear error if no usable GPU (or cupy) is present."""
    if _State.device is None:
        set_device(_State.device_id)
    if _State.mode != GPU:
        layout_changed()
    _State.mode = GPU


def set_device(device_id):
    _State.device_id = int(device_id)
    try:
        _State.device = CupyDevice(_State.device_id)
    except ImportError:
        raise PclError(
            "GPU mode asked for, but cupy is not installed: install the GPU extra "
            "(pip install -e '.[gpu]') or run on the CPU (leave out --gpu)") from None
    except Exception as exc:  # cupy raises its own CUDA errors when no device exists
        raise PclError(f"GPU {device_id} cannot be used ({exc}); run on the CPU (leave out --gpu)") from None
    layout_changed()


def install_device(device):
    """Make `device` the GPU-mode device (tests use a numpy-backed stand-in)."""
    _State.device = device
    layout_changed()


def current_device():
    return _State.device


def array_module():
    """numpy in CPU mode, the device's module (cupy) in GPU mode."""
    if _State.mode == GPU:
        return _State.device.xp
    return np


def synchronize():
    if _State.mode == GPU:
        _State.device.synchronize()


def set_random_seed(seed):
    """Seed every random stream pycaffelite uses (fillers, dropout, shuffling, crops)."""
    _State.seed = int(seed)
    _State.rng = np.random.default_rng(_State.seed)


def rng():
    """The global numpy Generator (host-side randomness)."""
    return _State.rng


# -- the solvers training side by side (Caffe's solver_count / solver_rank) -----------------------
# Set before a solver is created (pycaffelite.distributed sets them for `pcl train` under mpiexec
# or with several GPUs; pycaffe scripts set them by hand): the data layers of its train net read
# the rank's share of the records, and only rank 0 tests and snapshots.

def solver_count():
    return _State.solver_count


def set_solver_count(count):
    if int(count) < 1:
        raise PclError(f"solver count must be at least 1, got {count}")
    _State.solver_count = int(count)


def solver_rank():
    return _State.solver_rank


def set_solver_rank(rank):
    if not 0 <= int(rank) < _State.solver_count:
        raise PclError(f"solver rank must be in [0, {_State.solver_count - 1}] (the solver count "
                       f"is {_State.solver_count}), got {rank}")
    _State.solver_rank = int(rank)


def multiprocess():
    return _State.multiprocess


def set_multiprocess(value):
    _State.multiprocess = bool(value)


def device_query():
    """Facts about the active GPU, as `pcl device_query` prints them."""
    if _State.device is None:
        set_device(_State.device_id)
    dev = _State.device
    if not isinstance(dev, CupyDevice):
        return {"device": dev.name}
    props = dev.xp.cuda.runtime.getDeviceProperties(dev.device_id)
    return {
        "Device id": dev.device_id,
        "Name": props["name"].decode(),
        "Major revision number": props["major"],
        "Minor revision number": props["minor"],
        "Total global memory": props["totalGlobalMem"],
        "Multiprocessor count": props["multiProcessorCount"],
    }
