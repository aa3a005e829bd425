"""Layers at the edges of a net: Input, DummyData, Parameter (sources) and Silence (a sink)."""
from ..filler import fill
from ..proto import caffe_pb2
from . import register
from .base import Layer
from .structure import proto_shape


def _one_or_per_top(layer, field, values, num_top, allow_none=False):
    """Check that a repeated field holds one value, one per top (or, if allowed, none)."""
    counts = {1, num_top} | ({0} if allow_none else set())
    if len(values) not in counts:
        raise layer.error(f"gives {len(values)} '{field}' values for {num_top} tops; give one for "
                          f"all tops or one per top{' (or none)' if allow_none else ''}")


def _pick(values, i):
    return values[0] if len(values) == 1 else values[i]


@register("Input")
class InputLayer(Layer):
    """Tops that the user fills (e.g. net.blobs['data'].data[...] = ...); no computation.

    input_param.shape: one shape for all tops, one per top, or none (the tops are shaped later by
    the user). Reshape leaves the tops alone so user reshapes survive.
    """

    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        shapes = self.param.input_param.shape
        _one_or_per_top(self, "shape", shapes, len(top), allow_none=True)
        if len(shapes):
            for i, blob in enumerate(top):
                blob.reshape(proto_shape(_pick(shapes, i)))

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


@register("DummyData")
class DummyDataLayer(Layer):
    """Tops filled by fillers, for tests and benchmarks.

    dummy_data_param: `shape` (one for all tops or one per top) or the legacy num/channels/
    height/width (each given once or once per top); `data_filler` none (constant 0), one for all
    tops, or one per top. Tops with a constant filler are filled once at set-up; the others are
    refilled by every forward (Caffe's rule), and stay zero until the first forward.
    """

    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        param = self.param.dummy_data_param
        num_top = len(top)
        fillers = list(param.data_filler)
        if len(fillers) not in (0, 1, num_top):
            raise self.error(f"gives {len(fillers)} data_filler values for {num_top} tops; give none, "
                             "one for all tops, or one per top")
        if not fillers:
            fillers = [caffe_pb2.FillerParameter(type="constant", value=0)]
        self.fillers = [_pick(fillers, i) for i in range(num_top)]
        for i, (blob, filler) in enumerate(zip(top, self.fillers)):
            shape = self._shape(param, i, num_top)
            self.check_filler(filler, shape, f"the data_filler of top {i}")
            blob.reshape(shape)
        for blob, filler in zip(top, self.fillers):
            if filler.type == "constant":
                fill(blob, filler)

    def _shape(self, param, i, num_top):
        legacy = ("num", "channels", "height", "width")
        if any(len(getattr(param, f)) for f in legacy):
            if len(param.shape):
                raise self.error("dummy_data_param gives both shape and the legacy num/channels/"
                                 "height/width; use only shape")
            for field in legacy:
                _one_or_per_top(self, field, getattr(param, field), num_top)
            return tuple(_pick(getattr(param, f), i) for f in legacy)
        _one_or_per_top(self, "shape", param.shape, num_top)
        return proto_shape(_pick(param.shape, i))

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        for blob, filler in zip(top, self.fillers):
            if filler.type != "constant":
                fill(blob, filler)

    def backward(self, top, propagate_down, bottom):
        pass


@register("Parameter")
class ParameterLayer(Layer):
    """Exposes one learnable blob as its top (e.g. to feed a weight into Eltwise or a loss).

    parameter_param.shape gives the blob's shape; it starts at zero (no filler) unless weights are
    loaded. The top shares the param's data; backward adds the top diff into the param diff.
    """

    exact_num_bottom = 0
    exact_num_top = 1
    reshape_every_pass = True  # the top follows the param blob, which weights may replace

    def setup(self, bottom, top):
        shape = proto_shape(self.param.parameter_param.shape)
        if not self.blobs:
            self.add_param_blob(shape)
        elif self.blobs[0].shape != shape:
            raise self.error(f"the loaded param blob has shape {self.blobs[0].shape} but "
                             f"parameter_param.shape is {shape}; make them agree")

    def reshape(self, bottom, top):
        top[0].reshape(self.blobs[0].shape)
        top[0].share_data(self.blobs[0])

    def forward(self, bottom, top):
        top[0].share_data(self.blobs[0])

    def backward(self, top, propagate_down, bottom):
        if self.param_propagate_down[0]:
            self.blobs[0].write_diff()[...] += top[0].read_diff()


@register("Silence")
class SilenceLayer(Layer):
    """Consumes bottoms that nothing else uses (so they are not reported as outputs); no tops.
    Backward gives the bottoms zero diffs."""

    min_bottom = 1
    exact_num_top = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for blob, down in zip(bottom, propagate_down):
            if down:
                blob.write_diff()[...] = 0
