"""Compiled kernels (numba) for the CPU paths numpy cannot run fast enough; see `sgemm`."""
