"""Shared fixtures: every test starts in CPU mode with a fixed seed; `gpu_stand_in` runs a test
in GPU mode on a numpy-backed stand-in device that counts its transfers."""
import numpy as np
import pytest

from pycaffelite import device, parallel
from pycaffelite.cli import main as pcl_main


def pytest_addoption(parser):
    parser.addoption("--fuzz-cases", type=int, default=None,
                     help="mutated-file cases for tests/test_fuzz.py (default: PCL_FUZZ_CASES or 160)")
    parser.addoption("--fuzz-seed", default="pcl", help="the seed of tests/test_fuzz.py's mutations")


class StandInDevice(device.Device):
    """A 'device' whose arrays are distinct numpy arrays; counts host<->device copies."""

    name = "stand-in"

    def __init__(self):
        super().__init__(np)
        self.to_device_count = 0
        self.to_host_count = 0

    def to_device(self, host_array):
        self.to_device_count += 1
        return np.array(host_array, copy=True)

    def to_host(self, device_array, out):
        self.to_host_count += 1
        out[...] = device_array

    def copy_into_device(self, host_array, out):
        self.to_device_count += 1
        out[...] = host_array


@pytest.fixture(autouse=True)
def _cpu_mode_and_seed():
    device.set_mode_cpu()
    device.set_random_seed(1701)
    yield
    device.set_mode_cpu()
    device.install_device(None)


@pytest.fixture
def stand_in_device():
    dev = StandInDevice()
    device.install_device(dev)
    return dev


@pytest.fixture(params=["CPU", "GPU-stand-in"])
def any_mode(request):
    """Run the test once in CPU mode and once in GPU mode on the stand-in device."""
    if request.param == "CPU":
        device.set_mode_cpu()
    else:
        device.install_device(StandInDevice())
        device.set_mode_gpu()
    return request.param


@pytest.fixture
def use_threads():
    """`use_threads(n)` runs pcl on n threads for the rest of the test; the count it had before
    comes back afterwards."""
    before = parallel.num_threads()
    yield parallel.set_num_threads
    parallel.set_num_threads(before)


@pytest.fixture
def run_pcl(capsys):
    """`run_pcl(*args)` runs `pcl ARGS` in this process; returns (exit status, stdout, stderr)."""

    def run(*args):
        try:
            pcl_main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
