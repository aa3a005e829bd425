"""The compiled kernels' cache: used where numba can write it, a warning where it cannot."""
import pytest

from pycaffelite import kernels


def test_cache_is_used_in_a_writable_checkout():
    assert kernels.CACHE


def test_no_writable_cache_folder_warns_and_compiles_without(monkeypatch):
    def refusing_njit(**options):
        def decorate(function):
            raise RuntimeError(f"cannot cache function {function.__name__!r}: no locator available")
        return decorate

    monkeypatch.setattr(kernels, "njit", refusing_njit)
    with pytest.warns(UserWarning, match="NUMBA_CACHE_DIR"):
        assert kernels._cache_available() is False
