"""LSTM, RNN and LSTMUnit as ONNX nodes, the recurrent layers unrolled over their T steps.

T is fixed when a Caffe recurrent layer is set up, so the loop is written out step by step with
Caffe's arithmetic in Caffe's order: the input products of all steps at once (x W_x^T + b,
plus x_static W_static^T), then per step the recurrent product of the cont-masked previous state
added in, and the unit (LSTM) or tanh (RNN).

State. With expose_hidden the initial state comes from the layer's bottoms and the final state
goes to its tops, as in Caffe. Without it, Caffe carries the final state of one forward call into
the next; an ONNX graph keeps nothing between runs, so the exporter makes the state explicit: the
graph gets inputs "<layer>/h0" (and "<layer>/c0") of shape (1, N, H), zeros for a first call,
and outputs "<layer>/hT" (and "<layer>/cT") to feed back in on the next call. Fed that way, every
call computes what the pycaffelite net computes on the same call.
"""
from .graph import converts


def _step(g, values, t, shape):
    """values[t] as (N, ...) from a (T, N, ...) value."""
    picked = g.add("Slice", [values, g.ints([t]), g.ints([t + 1]), g.ints([0])])
    return g.reshape(picked, shape)


def _state(g, s, index, name):
    """The initial state (N, H): exposed bottom `index` or a graph input of the layer's own."""
    layer = s.layer
    shape = (1, layer.streams, layer.hidden)
    if layer.expose_hidden:
        value = s.inputs[2 + layer.static_input + index]
    else:
        value = g.graph_input(g.fresh(f"{layer.name}/{name}0"), shape)
    return g.reshape(value, shape[1:])


def _final_state(g, s, index, name, value):
    """Hand the final state (N, H) on: to top 1 + index, or to an extra graph output."""
    layer = s.layer
    shape = (1, layer.streams, layer.hidden)
    if layer.expose_hidden:
        return g.reshape(value, shape, s.out(1 + index))
    g.extra_outputs.append((g.reshape(value, shape, g.fresh(f"{layer.name}/{name}T")), shape))
    return None


def _input_products(g, s):
    """(T, N, G) = x W_x^T + b [+ x_static W_static^T], for all steps at once."""
    layer = s.layer
    steps, streams = layer.steps, layer.streams
    x = g.reshape(s.inputs[0], (steps * streams, layer.input_dim))
    products = g.add("Gemm", [x, g.param(layer.blobs[0], "W_x"), g.param(layer.blobs[1], "b")],
                     transB=1)
    products = g.reshape(products, (steps, streams, -1))
    if layer.static_input:
        static = g.reshape(s.inputs[2], (streams, layer.static_dim))
        static = g.add("Gemm", [static, g.param(layer.blobs[2], "W_static")], transB=1)
        products = g.add("Add", [products, static])
    return products


def _stack(g, steps_values, streams, hidden, output):
    """The per-step (N, H) values as one (T, N, H) value."""
    rows = [g.reshape(value, (1, streams, hidden)) for value in steps_values]
    return g.add("Concat", rows, output, axis=0) if len(rows) > 1 else g.identity(rows[0], output)


@converts("LSTM")
def lstm(g, s):
    layer = s.layer
    n, hidden = layer.streams, layer.hidden
    products = _input_products(g, s)
    w_hc = g.initializer(layer.blobs[layer.w_hc_index].cpu_data().T, "W_hc_transposed")
    h, c = _state(g, s, 0, "h"), _state(g, s, 1, "c")
    outputs = []
    for t in range(layer.steps):
        cont = _step(g, s.inputs[1], t, (n, 1))
        gates = g.add("Add", [_step(g, products, t, (n, 4 * hidden)),
                              g.add("MatMul", [g.add("Mul", [h, cont]), w_hc])])
        c, h = _unit(g, gates, c, cont, hidden)
        outputs.append(h)
    tops = [_stack(g, outputs, n, hidden, s.out(0))]
    for index, (name, value) in enumerate((("h", h), ("c", c))):
        top = _final_state(g, s, index, name, value)
        if top is not None:
            tops.append(top)
    return tops


@converts("RNN")
def rnn(g, s):
    layer = s.layer
    n, hidden = layer.streams, layer.hidden
    w_hh, w_ho, b_o = layer.blobs[layer.w_hh_index:]
    products = _input_products(g, s)
    w_hh = g.initializer(w_hh.cpu_data().T, "W_hh_transposed")
    h = _state(g, s, 0, "h")
    states = []
    for t in range(layer.steps):
        conted = g.add("Mul", [h, _step(g, s.inputs[1], t, (n, 1))])
        h = g.add("Tanh", [g.add("Add", [_step(g, products, t, (n, hidden)),
                                         g.add("MatMul", [conted, w_hh])])])
        states.append(h)
    all_states = g.reshape(_stack(g, states, n, hidden, None), (layer.steps * n, hidden))
    out = g.add("Tanh", [g.add("Gemm", [all_states, g.param(w_ho, "W_ho"), g.param(b_o, "b_o")],
                               transB=1)])
    tops = [g.reshape(out, (layer.steps, n, hidden), s.out(0))]
    final = _final_state(g, s, 0, "h", h)
    return tops + ([final] if final is not None else [])


def _unit(g, gates, c_prev, cont, hidden, outputs=(None, None)):
    """One LSTM step from pre-activations [i' f' o' g'] (..., 4H): i, o = sigmoid,
    f = cont * sigmoid(f'), g = tanh; c = f c_prev + i g, h = o tanh(c). Returns (c, h)."""
    i, f, o, candidate = g.add("Split", [gates, g.ints([hidden] * 4)], 4, axis=-1)
    forget = g.add("Mul", [g.add("Sigmoid", [f]), cont])
    update = g.add("Mul", [g.add("Sigmoid", [i]), g.add("Tanh", [candidate])])
    c = g.add("Add", [g.add("Mul", [forget, c_prev]), update], outputs[0])
    h = g.add("Mul", [g.add("Sigmoid", [o]), g.add("Tanh", [c])], outputs[1])
    return c, h


@converts("LSTMUnit")
def lstm_unit(g, s):
    """One LSTM step on c_prev (1, N, H), gates (1, N, 4H) and cont (1, N)."""
    c_prev, gates, cont = s.inputs
    keep = g.reshape(cont, tuple(s.in_shapes[2]) + (1,))
    return list(_unit(g, gates, c_prev, keep, s.in_shapes[0][2], s.outs()))
