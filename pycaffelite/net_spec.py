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
`<Type>Parameter`). Lists become repeated fields and dicts become sub-messages. A top's name is
the NetSpec attribute it was assigned to; unassigned tops are named after their layer.
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
    return fields


_PARAM_FIELD = _param_field_by_type()


def _assign(message, name, value):
    """Set field `name` of `message` from a Python value (scalar, list, dict)."""
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise PclError(f'{message.DESCRIPTOR.name} has no field "{name}"')
    values = value if isinstance(value, (list, tuple)) else [value]
    if field.is_repeated:
        target = getattr(message, name)
        for item in values:
            if isinstance(item, dict):
                _fill(target.add(), item)
            else:
                target.append(item)
    elif isinstance(value, dict):
        _fill(getattr(message, name), value)
    else:
        setattr(message, name, value)


def _fill(message, values):
    for key, value in values.items():
        _assign(message, key, value)


class Top:
    """One output of a layer function; what NetSpec attributes and layer bottoms hold."""

    def __init__(self, function, index):
        self.function = function
        self.index = index


class LayerFunction:
    def __init__(self, type_name, bottoms, kwargs):
        self.type_name = type_name
        self.bottoms = bottoms
        self.ntop = kwargs.pop("ntop", 1)
        self.in_place = kwargs.pop("in_place", False)
        self.kwargs = kwargs
        self.tops = tuple(Top(self, i) for i in range(self.ntop))
        if self.in_place and (self.ntop != 1 or not bottoms):
            raise PclError(f"{type_name}: in_place needs one bottom and one top")

    def to_proto(self, name_of, layers):
        """Add this layer (after its inputs) to `layers`, an ordered function -> LayerParameter map."""
        if self in layers:
            return
        for bottom in self.bottoms:
            bottom.function.to_proto(name_of, layers)
        layer = caffe_pb2.LayerParameter(type=self.type_name)
        layer.bottom.extend(name_of(b) for b in self.bottoms)
        top_names = [name_of(self.bottoms[0])] if self.in_place else [name_of(t) for t in self.tops]
        layer.top.extend(top_names)
        default_name = name_of(self.tops[0]) if self.tops else self.type_name.lower()
        layer.name = self.kwargs.get("name", default_name)
        for key, value in self.kwargs.items():
            if key == "name":
                continue
            if key in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name:
                _assign(layer, key, value)
            elif self.type_name in _PARAM_FIELD:
                _assign(getattr(layer, _PARAM_FIELD[self.type_name]), key, value)
            else:
                raise PclError(f'{self.type_name}: unknown argument "{key}" (the layer has no '
                               f"{self.type_name}Parameter message)")
        layers[self] = layer


class NetSpec:
    """Collects named tops; `to_proto()` returns the NetParameter that produces them."""

    def __init__(self):
        super().__setattr__("tops", collections.OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    __setitem__ = __setattr__
    __getitem__ = __getattr__

    def to_proto(self):
        names = {top: name for name, top in self.tops.items() if isinstance(top, Top)}

        def name_of(top):
            return names.setdefault(top, f"{top.function.type_name.lower()}{len(names)}")

        layers = collections.OrderedDict()
        for top in self.tops.values():
            function = top if isinstance(top, LayerFunction) else top.function
            function.to_proto(name_of, layers)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


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
