"""Compiled kernels (numba) for the CPU paths numpy cannot run fast enough: `sgemm`, `pooling`,
`im2col` (with `simd` for the vectors).

They are compiled for this CPU at first use and kept in numba's on-disk cache (`__pycache__`
here, else numba's user cache folder or NUMBA_CACHE_DIR). Where neither can be written (a
read-only installation), they are compiled in every process instead, with a warning.
"""
import warnings

from numba import njit


def _probe():
    """Decorated below only to learn whether numba can cache functions of this folder."""


def _cache_available():
    try:
        njit(cache=True)(_probe)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        warnings.warn("pycaffelite: no writable cache folder for the compiled kernels (a read-only "
                      "installation?); they are compiled again in every process. Set "
                      "NUMBA_CACHE_DIR to a writable folder to keep them.", stacklevel=2)
        return False
    return True


CACHE = _cache_available()
