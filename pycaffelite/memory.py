"""The memory guard: sizes are checked against the machine before anything is allocated.

A shape from a user's file (`kernel_size: 99999999`, `num_output: 2147483648`, an Input shape
whose element count overflows 64 bits) must end in one clear message, not in numpy's allocation
error or the kernel's out-of-memory killer. Blobs and the layers' work buffers ask `check_bytes`
before they allocate; the Net asks `check_total` as its blobs add up. The limit is what this
process can have: the RAM plus swap, or a lower cgroup (container) limit.
"""
import functools
import os

from .errors import PclError

_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max",                    # cgroup v2
                  "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # cgroup v1


def _swap_bytes():
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("SwapTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cgroup_bytes():
    for path in _CGROUP_LIMITS:
        try:
            with open(path, encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
    return None


@functools.cache
def machine_bytes():
    """The bytes this process can hold at most (RAM + swap, or the cgroup's limit if lower);
    None where the system does not say."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") + _swap_bytes()
    except (ValueError, OSError, AttributeError):
        return None
    limit = _cgroup_bytes()
    return total if limit is None else min(total, limit)


def format_bytes(count):
    """`1.5 GiB`, `853 PiB`, `4.0e+25 bytes`: a size for messages."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value /= 1024
    else:
        return f"{float(count):.1e} bytes"
    if unit == "bytes":
        return f"{int(count)} bytes"
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


_NET_SIZES = "check the sizes that make it (batch size, num_output, kernel_size, pad, input shape)"


def check_bytes(nbytes, what, advice=_NET_SIZES):
    """Raise a PclError when one allocation of `nbytes` for `what` (e.g. "a blob of shape ...")
    cannot fit in this machine's memory; `advice` says what to do."""
    limit = machine_bytes()
    if limit is not None and nbytes > limit:
        raise PclError(f"{what} would need {format_bytes(nbytes)}, more than this machine's "
                       f"memory ({format_bytes(limit)}); {advice}")


def check_total(nbytes, what):
    """Raise a PclError when blobs adding up to `nbytes` (`what` says whose) cannot all fit."""
    limit = machine_bytes()
    if limit is not None and nbytes > limit:
        raise PclError(f"{what} need {format_bytes(nbytes)} of memory in all, more than this "
                       f"machine has ({format_bytes(limit)}); lower the batch size or the layers' "
                       f"sizes")
