"""Writing nets in Python, in the manner of pycaffe's NetSpec.

    from pycaffelite.net_spec import NetSpec, layers as L, params as P
    n = NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[64, 1, 28, 28]), dict(dim=[64])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.loss = L.SoftmaxWithLoss(n.pool1, n.label)
    net_param = n.to_proto()

Keyword arguments that are LayerParameter fields (name, loss_weight, param, include, ...) go to
the layer; the rest go to the layer's own `<type>_param` message (found by the message type
`<Type>Parameter`; Deconvolution and Im2col use convolution_param). Lists become repeated fields
and dicts become sub-messages. `ntop=k` gives a layer k tops (a tuple when k > 1, the layer
function itself when k = 0); `in_place=True` writes the top over the bottom blob.

Names follow pycaffe: a top is named after the NetSpec attribute it was assigned to, and a layer
after its first top (or the attribute holding a top-less layer). Anything unassigned gets its type
and a count per type ("Convolution1"). A bottom is always the producing layer's real top name, so
a layer after an in-place layer reads the blob the in-place layer wrote.
"""
import collections

from .errors import PclError
from .proto import caffe_pb2


def _param_field_by_type():
    """Layer type -> LayerParameter field holding its parameters, e.g. "Pooling" -> "pooling_param"."""
    fields = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith("Parameter"):
                fields[type_name[:-len("Parameter")]] = field.name
    # Layer types that read another type's message.
    fields["Deconvolution"] = fields["Im2col"] = "convolution_param"
    return fields


_PARAM_FIELD = _param_field_by_type()
_LAYER_FIELDS = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name


def _assign(message, name, value, where):
    """Set field `name` of `message` from a Python value (scalar, list, dict)."""
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise PclError(f'{where}: {message.DESCRIPTOR.name} has no field "{name}"')
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        if field.is_repeated:
            target = getattr(message, name)
            for item in values:
                if isinstance(item, dict):
                    _fill(target.add(), item, where)
                else:
                    target.append(item)
        elif isinstance(value, dict):
            _fill(getattr(message, name), value, where)
        else:
            setattr(message, name, value)
    except (TypeError, ValueError) as error:
        raise PclError(f"{where}: cannot set {message.DESCRIPTOR.name}.{name} to {value!r} "
                       f"({error})") from None


def _fill(message, values, where):
    for key, value in values.items():
        _assign(message, key, value, where)


class Top:
    """One output of a layer function; what NetSpec attributes and layer bottoms hold."""

    def __init__(self, function, index):
        self.function = function
        self.index = index

    # pycaffe's attribute names.
    fn = property(lambda self: self.function)
    n = property(lambda self: self.index)

    def to_proto(self):
        """A NetParameter with every layer needed to compute this top."""
        return to_proto(self)


class LayerFunction:
    """One layer: its type, its bottoms (Tops of earlier layers) and its keyword arguments."""

    def __init__(self, type_name, bottoms, kwargs):
        for index, bottom in enumerate(bottoms):
            if not isinstance(bottom, Top):
                raise TypeError(f"{type_name} input {index} is not a Top (type is {type(bottom)})")
        self.type_name = type_name
        self.bottoms = tuple(bottoms)
        self.ntop = kwargs.pop("ntop", 1)
        self.in_place = kwargs.pop("in_place", False)
        self.kwargs = kwargs
        self.tops = tuple(Top(self, i) for i in range(self.ntop))
        if self.in_place and (self.ntop != 1 or not self.bottoms):
            raise PclError(f"{type_name}: in_place needs one bottom and one top")

    # pycaffe's attribute names.
    inputs = property(lambda self: self.bottoms)
    params = property(lambda self: self.kwargs)

    def layer_parameter(self, bottom_names, top_names, name):
        """The LayerParameter of this layer with the given blob and layer names."""
        layer = caffe_pb2.LayerParameter(type=self.type_name, name=name)
        layer.bottom.extend(bottom_names)
        layer.top.extend(top_names)
        where = f'{self.type_name} layer "{name}"'
        for key, value in self.kwargs.items():
            if key == "name":
                continue
            if key in _LAYER_FIELDS:
                _assign(layer, key, value, where)
            elif self.type_name in _PARAM_FIELD:
                _assign(getattr(layer, _PARAM_FIELD[self.type_name]), key, value, where)
            else:
                raise PclError(f'{where}: unknown argument "{key}" (the layer has no '
                               f"{self.type_name}Parameter message); pass it inside the "
                               f"<type>_param dict it belongs to")
        return layer


def _dependency_order(functions):
    """Every function the given ones need, each after the producers of its bottoms.

    A depth-first walk in bottom order (pycaffe's recursive order), kept on an explicit stack so
    that nets hundreds of layers deep do not reach Python's recursion limit.
    """
    order, seen = [], set()
    for root in functions:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(root.bottoms))]
        while stack:
            function, bottoms = stack[-1]
            for bottom in bottoms:
                producer = bottom.function
                if producer not in seen:
                    seen.add(producer)
                    stack.append((producer, iter(producer.bottoms)))
                    break
            else:
                stack.pop()
                order.append(function)
    return order


def _net_parameter(functions, names):
    """The NetParameter of `functions` and their inputs; `names` maps Tops and top-less
    functions to user-given names (others are named type + count, as pycaffe does)."""
    names = dict(names)
    counts = collections.Counter()

    def auto_name(key, type_name):
        if key not in names:
            counts[type_name] += 1
            names[key] = f"{type_name}{counts[type_name]}"
        return names[key]

    layers = {}
    for function in _dependency_order(functions):
        bottoms = [layers[b.function].top[b.index] for b in function.bottoms]
        tops = bottoms if function.in_place else [auto_name(t, function.type_name)
                                                  for t in function.tops]
        if "name" in function.kwargs:
            name = function.kwargs["name"]
        elif function.tops:
            name = auto_name(function.tops[0], function.type_name)
        else:
            name = auto_name(function, function.type_name)
        layers[function] = function.layer_parameter(bottoms, tops, name)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


def to_proto(*tops):
    """A NetParameter with every layer needed to compute `tops` (blob names generated)."""
    return _net_parameter([_function_of(top, f"to_proto argument {i}")
                           for i, top in enumerate(tops)], {})


def _function_of(value, where):
    if isinstance(value, Top):
        return value.function
    if isinstance(value, LayerFunction):
        return value
    raise PclError(f"{where} is a {type(value).__name__}, not a layer's top; unpack layers with "
                   f"several tops (a, b = L.Type(..., ntop=2))")


class NetSpec:
    """Collects named tops; `to_proto()` returns the NetParameter that produces them."""

    def __init__(self):
        super().__setattr__("tops", collections.OrderedDict())

    def __setattr__(self, name, value):
        _function_of(value, f'NetSpec attribute "{name}"')
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    __setitem__ = __setattr__
    __getitem__ = __getattr__

    def to_proto(self):
        names = {value: name for name, value in self.tops.items()}
        functions = [_function_of(value, name) for name, value in self.tops.items()]
        return _net_parameter(functions, names)


class _Layers:
    """`layers.Convolution(bottom, ...)` makes a layer of type "Convolution" and returns its top(s)."""

    def __getattr__(self, type_name):
        def make(*bottoms, **kwargs):
            function = LayerFunction(type_name, bottoms, kwargs)
            if function.ntop == 0:
                return function
            return function.tops[0] if function.ntop == 1 else function.tops

        return make


class _Params:
    """`params.Pooling.MAX` is the enum value MAX of PoolingParameter."""

    def __getattr__(self, type_name):
        message = getattr(caffe_pb2, type_name + "Parameter", None)
        if message is None:
            raise AttributeError(f"no {type_name}Parameter message")
        return message


layers = _Layers()
params = _Params()
