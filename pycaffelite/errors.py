"""User-facing errors.

A `PclError` carries one complete sentence for the user: which file/line/layer, what was expected,
what was found and what to do. The CLI prints it without a traceback and exits non-zero. Library
bugs raise ordinary Python exceptions instead.
"""


class PclError(Exception):
    """A mistake in user input (files, parameters, flags), reported as one clear message."""


class NotSupportedError(PclError):
    """A Caffe feature that pycaffelite deliberately does not implement."""


# An exception raised by the user's own code (a Python layer's setup, forward...) is re-raised
# unchanged, as pycaffe does, with this attribute set to one sentence saying which layer, module
# and line raised it; the `pcl` command prints that sentence instead of a traceback.
USER_CODE_ATTRIBUTE = "pcl_user_code_error"
