"""Layer registry: Caffe's type string (e.g. "Convolution") -> layer class.

Every module in this package is imported on first use of the registry, so a new layer family is
one new module whose classes carry the `@register("TypeName")` decorator.
"""
import difflib
import importlib
import pkgutil

from .. import forks
from ..errors import PclError

_REGISTRY = {}
_loaded = False


def register(type_name):
    """Class decorator that registers a Layer subclass under Caffe's type string."""

    def decorate(cls):
        cls.type = type_name
        register_factory(type_name, cls)
        return cls

    return decorate


def register_factory(type_name, factory):
    """Register `factory(layer_param, phase=, dtype=)` -> layer under Caffe's type string (a
    Layer class, or a function choosing the class, as the Python layer's does)."""
    if type_name in _REGISTRY:
        raise RuntimeError(f"layer type {type_name!r} registered twice")
    _REGISTRY[type_name] = factory


def _load_all():
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True


def registered_types():
    _load_all()
    return sorted(_REGISTRY)


def layer_factory(type_name, layer_name="?"):
    _load_all()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise PclError(f'layer "{layer_name}": unknown layer type "{type_name}"; '
                       f"{_unknown_type_hint(type_name)}") from None


def _unknown_type_hint(type_name):
    """What to say about an unknown type: a fork's type is named as such; else a case slip,
    or the nearest types (registered, or a fork's, marked so)."""
    note = forks.type_note(type_name)
    if note:
        return note
    same = [t for t in _REGISTRY if t.lower() == type_name.lower()]
    if same:
        return f'did you mean "{same[0]}"? (type strings are case-sensitive)'
    by_lower = {t.lower(): t for t in list(_REGISTRY) + list(forks.TYPES)}
    near = [by_lower[t] for t in difflib.get_close_matches(type_name.lower(), by_lower, n=3, cutoff=0.6)]
    if near:
        return "the nearest known types are " + ", ".join(
            f'"{t}"' + (f" from {forks.TYPES[t][0]}" if t in forks.TYPES else "") for t in near)
    return (f"no BVLC Caffe layer type is close to it ({len(_REGISTRY)} known, e.g. "
            f'"Convolution", "InnerProduct", "ReLU"); check the spelling')


def create_layer(layer_param, phase=None, dtype=None):
    """Instantiate the registered class for `layer_param.type`."""
    import numpy as np  # noqa: PLC0415

    factory = layer_factory(layer_param.type, layer_param.name)
    return factory(layer_param, phase=phase, dtype=np.float32 if dtype is None else dtype)
