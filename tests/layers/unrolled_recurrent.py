"""Caffe's way of running LSTM and RNN: an inner Net unrolled over the T steps, built from
pycaffelite's own layers (Input, Slice, InnerProduct, Scale, Eltwise, LSTMUnit, TanH, Concat,
Split, Reshape, Reduction) with weights shared across steps by ParamSpec name.

Used as an independent oracle for the fused layers (tests/layers/test_recurrent.py) and as the
"unrolled" side of bench/bench_recurrent.py. The structure follows what Caffe's
RecurrentLayer/LSTMLayer/RNNLayer build (blob and layer names, the pseudo-loss Reductions that make
the inner net run backward, data-only sharing of exposed states); it is written here from those
facts, as a NetParameter.
"""
import numpy as np

from pycaffelite.net import Net
from pycaffelite.proto import caffe_pb2


def _layer(net, name, type_, bottoms=(), tops=(), params=(), **fields):
    layer = net.layer.add(name=name, type=type_, bottom=list(bottoms), top=list(tops))
    for param_name in params:
        layer.param.add(name=param_name)
    for field, value in fields.items():
        getattr(layer, field).CopyFrom(value)
    return layer


def _inner_product(num_output, axis, rp, bias):
    return caffe_pb2.InnerProductParameter(num_output=num_output, axis=axis, bias_term=bias,
                                           weight_filler=rp.weight_filler,
                                           bias_filler=rp.bias_filler if bias else None)


def unrolled_net_param(kind, rp, x_shape, cont_shape, static_shape=None):
    """The NetParameter of Caffe's unrolled net for `kind` "LSTM" or "RNN"; rp is the layer's
    RecurrentParameter."""
    steps, streams, hidden = x_shape[0], x_shape[1], rp.num_output
    gates = 4 * hidden if kind == "LSTM" else hidden
    wx, b, ws, wh = (("W_xc", "b_c", "W_xc_static", "W_hc") if kind == "LSTM"
                     else ("W_xh", "b_h", "W_xh_static", "W_hh"))
    net = caffe_pb2.NetParameter(name=f"unrolled_{kind}")
    shapes = [x_shape, cont_shape] + ([static_shape] if static_shape else [])
    _layer(net, "input", "Input", tops=["x", "cont"] + (["x_static"] if static_shape else []),
           input_param=caffe_pb2.InputParameter(shape=[caffe_pb2.BlobShape(dim=s) for s in shapes]))
    state = caffe_pb2.BlobShape(dim=[1, streams, hidden])
    state_tops = ["c_0", "h_0"] if kind == "LSTM" else ["h_0"]
    _layer(net, "state_input", "Input", tops=state_tops,
           input_param=caffe_pb2.InputParameter(shape=[state] * len(state_tops)))
    _layer(net, "cont_slice", "Slice", ["cont"], [f"cont_{t}" for t in range(1, steps + 1)],
           slice_param=caffe_pb2.SliceParameter(axis=0))
    x_transform = _layer(net, "x_transform", "InnerProduct", ["x"], [f"{wx}_x"], [wx, b],
                         inner_product_param=_inner_product(gates, 2, rp, True))
    x_transform.propagate_down.append(True)
    if static_shape:
        static = _layer(net, f"{wx}_x_static", "InnerProduct", ["x_static"],
                        [f"{wx}_x_static_preshape"], [ws],
                        inner_product_param=_inner_product(gates, 1, rp, False))
        static.propagate_down.append(True)
        _layer(net, f"{wx}_x_static_reshape", "Reshape", [f"{wx}_x_static_preshape"],
               [f"{wx}_x_static"], reshape_param=caffe_pb2.ReshapeParameter(
                   shape=caffe_pb2.BlobShape(dim=[1, -1, gates])))
    _layer(net, f"{wx}_x_slice", "Slice", [f"{wx}_x"], [f"{wx}_x_{t}" for t in range(1, steps + 1)],
           slice_param=caffe_pb2.SliceParameter(axis=0))
    outputs = []
    for t in range(1, steps + 1):
        _layer(net, f"h_conted_{t - 1}", "Scale", [f"h_{t - 1}", f"cont_{t}"], [f"h_conted_{t - 1}"],
               scale_param=caffe_pb2.ScaleParameter(axis=0))
        _layer(net, f"{wh}_h_{t - 1}", "InnerProduct", [f"h_conted_{t - 1}"], [f"{wh}_h_{t - 1}"],
               [wh], inner_product_param=_inner_product(gates, 2, rp, False))
        summed = [f"{wh}_h_{t - 1}", f"{wx}_x_{t}"] + ([f"{wx}_x_static"] if static_shape else [])
        if kind == "LSTM":
            _layer(net, f"gate_input_{t}", "Eltwise", summed, [f"gate_input_{t}"])
            _layer(net, f"unit_{t}", "LSTMUnit", [f"c_{t - 1}", f"gate_input_{t}", f"cont_{t}"],
                   [f"c_{t}", f"h_{t}"])
            outputs.append(f"h_{t}")
        else:
            _layer(net, f"h_input_sum_{t}", "Eltwise", summed, [f"h_neuron_input_{t}"])
            _layer(net, f"h_neuron_{t}", "TanH", [f"h_neuron_input_{t}"], [f"h_{t}"])
            _layer(net, f"W_ho_h_{t}", "InnerProduct", [f"h_{t}"], [f"W_ho_h_{t}"], ["W_ho", "b_o"],
                   inner_product_param=_inner_product(hidden, 2, rp, True))
            _layer(net, f"o_neuron_{t}", "TanH", [f"W_ho_h_{t}"], [f"o_{t}"])
            outputs.append(f"o_{t}")
    if kind == "LSTM":
        _layer(net, "c_T_copy", "Split", [f"c_{steps}"], ["c_T"])
    output = "h" if kind == "LSTM" else "o"
    _layer(net, f"{output}_concat", "Concat", outputs, [output],
           concat_param=caffe_pb2.ConcatParameter(axis=0))
    loss = _layer(net, f"{output}_pseudoloss", "Reduction", [output], [f"{output}_pseudoloss"])
    loss.loss_weight.append(1)
    return net


class UnrolledRecurrent:
    """Runs `layer_param` (an LSTM or RNN LayerParameter) the way Caffe does, on outer blobs:
    `setup(bottom, top)`, `forward(bottom, top)`, `backward(bottom)`; `params` are the inner
    net's owned param blobs, in the order Caffe gives them to the outer layer."""

    def __init__(self, layer_param, dtype=np.float32):
        self.param = layer_param
        self.kind = layer_param.type
        self.dtype = dtype

    def setup(self, bottom, top):
        rp = self.param.recurrent_param
        self.states = ("h_0", "c_0") if self.kind == "LSTM" else ("h_0",)
        self.finals = (f"h_{bottom[0].shape[0]}", "c_T") if self.kind == "LSTM" else \
            (f"h_{bottom[0].shape[0]}",)
        exposed = len(self.states) if rp.expose_hidden else 0
        self.static = len(bottom) > 2 + exposed
        net_param = unrolled_net_param(self.kind, rp, bottom[0].shape, bottom[1].shape,
                                       bottom[2].shape if self.static else None)
        self.net = Net(net_param, caffe_pb2.TRAIN, dtype=self.dtype, source="unrolled")
        self.last = len(self.net.layers) - 2  # the pseudo-loss is not run
        self.params = list(self.net.learnable_params)
        blobs = self.net.blobs
        for name, blob in zip(["x", "cont", "x_static"][:2 + self.static], bottom):
            blobs[name].share_data(blob)
            if name != "cont":
                blobs[name].share_diff(blob)
        if rp.expose_hidden:
            for name, blob in zip(self.states, bottom[2 + self.static:]):
                blobs[name].share_data(blob)
        output = blobs["h" if self.kind == "LSTM" else "o"]
        top[0].reshape(output.shape)
        top[0].share_data(output)
        top[0].share_diff(output)
        for blob in top[1:]:
            blob.reshape(blobs[self.states[0]].shape)

    def forward(self, bottom, top):
        blobs = self.net.blobs
        if not self.param.recurrent_param.expose_hidden:
            for start, final in zip(self.states, self.finals):
                blobs[start].data[...] = blobs[final].data
        self.net.forward_from_to(0, self.last)
        for blob, final in zip(top[1:], self.finals):
            blob.data[...] = blobs[final].data

    def backward(self):
        self.net.backward_from_to(self.last, 0)
