"""Python layers: `type: "Python"` with `python_param { module layer param_str }`.

As in Caffe, `module` is imported by name from sys.path (PYTHONPATH; the `pcl` command also
looks in the current folder, as `python` does for a script), the class named `layer` in it is
called with the LayerParameter, and that object is the layer. It subclasses pycaffelite.Layer
(`caffe.Layer`) and defines `setup`, `reshape`, `forward` and `backward(top, propagate_down,
bottom)` over Blobs whose `.data` / `.diff` are numpy arrays; before `setup` it is given
`param_str` (the python_param string) and `phase` (TRAIN or TEST). Params made with
`self.blobs.add_blob(*shape)` are learnable: the Net registers them after setup, solvers update
them and caffemodels hold them. `share_in_parallel` only matters to several solvers training
side by side, which pycaffelite does not do yet.

An exception raised by the user's code is re-raised unchanged (pycaffe scripts catch it by its
type), carrying one sentence that names the layer, its module and class, and the user's own line
(`describe_user_error`); the `pcl` command prints that sentence instead of a traceback.
"""
import importlib
import inspect
import os
import sys
import traceback

from ..errors import USER_CODE_ATTRIBUTE, PclError
from . import register_factory
from .base import Layer


def _import_user_module(name, layer_name):
    """Import `name` as Python would for a script run here: from sys.path, then the current
    folder (a `pcl` console script's sys.path starts with its own bin folder, not the cwd)."""
    own_names = (name, name.split(".")[0])
    cwd = os.getcwd()
    for extra_path in (None, cwd):
        if extra_path is not None:
            if extra_path in sys.path or "" in sys.path:
                break
            sys.path.append(extra_path)
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in own_names:
                raise  # the user's module was found but failed to import something of its own
    raise PclError(f'layer "{layer_name}" (Python): cannot import module "{name}": it is not on '
                   f"the Python path (the current folder and PYTHONPATH); put {name}.py in the "
                   f"current folder or add its folder to PYTHONPATH")


def create_python_layer(layer_param, phase=None, dtype=None):
    """The user's layer object for a `type: "Python"` LayerParameter."""
    spec = layer_param.python_param
    name = layer_param.name
    if not spec.module or not spec.layer:
        raise PclError(f'layer "{name}" (Python): python_param needs both module and layer (the '
                       f'module to import and the class in it), found module "{spec.module}", '
                       f'layer "{spec.layer}"')
    try:
        module = _import_user_module(spec.module, name)
    except PclError:
        raise
    except Exception as exc:  # the user's module raised while being imported
        exc_with_origin(exc, f'layer "{name}" (Python): importing module "{spec.module}" failed')
        raise
    cls = getattr(module, spec.layer, None)
    if cls is None:
        classes = sorted(n for n, v in vars(module).items()
                         if inspect.isclass(v) and issubclass(v, Layer) and v is not Layer)
        raise PclError(f'layer "{name}" (Python): module "{spec.module}" ({module.__file__}) has no '
                       f'class "{spec.layer}"; its layer classes: {", ".join(classes) or "none"}')
    if not (inspect.isclass(cls) and issubclass(cls, Layer)):
        raise PclError(f'layer "{name}" (Python): {spec.module}.{spec.layer} is not a layer class; '
                       f"a Python layer subclasses caffe.Layer (pycaffelite.Layer)")
    try:
        layer = cls(layer_param, phase=phase, dtype=dtype)
    except Exception as exc:
        exc_with_origin(exc, f'layer "{name}" (Python {spec.module}.{spec.layer}): creating it '
                             "failed")
        raise
    layer.type = "Python"
    layer.param_str = spec.param_str
    layer.is_user_code = True
    layer.reshape_every_pass = True  # the user's reshape may follow anything, as in Caffe
    return layer


register_factory("Python", create_python_layer)


def describe_user_error(exc, layer, stage):
    """Mark `exc`, raised by a Python layer's `stage` (setup, forward...), with where it happened."""
    spec = layer.param.python_param
    exc_with_origin(exc, f'layer "{layer.name}" (Python {spec.module}.{spec.layer}): {stage} '
                         f"failed", inspect.getsourcefile(type(layer)))


def exc_with_origin(exc, what, user_file=None):
    """Set the one-sentence description the `pcl` command prints for an exception of user code:
    `what`, the exception, and the innermost line of `user_file` (else of the traceback) that it
    passed through."""
    if getattr(exc, USER_CODE_ATTRIBUTE, None) is not None:
        return
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    else:
        user_path = os.path.abspath(user_file) if user_file else None
        own = [f for f in frames if os.path.abspath(f.filename) == user_path]
        frame = (own or frames or [None])[-1]
        where = f" ({frame.filename}:{frame.lineno}: {frame.line})" if frame else ""
    message = str(exc) or "(no message)"
    setattr(exc, USER_CODE_ATTRIBUTE, f"{what}: {type(exc).__name__}: {message}{where}")
