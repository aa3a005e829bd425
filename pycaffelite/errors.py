"""User-facing errors.

A `PclError` carries one complete sentence for the user: which file/line/layer, what was expected,
what was found and what to do. The CLI prints it without a traceback and exits non-zero. Library
bugs raise ordinary Python exceptions instead.
"""


class PclError(Exception):
    """A mistake in user input (files, parameters, flags), reported as one clear message."""


class NotSupportedError(PclError):
    """A Caffe feature that pycaffelite deliberately does not implement."""
