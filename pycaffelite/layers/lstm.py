"""LSTMUnit (one LSTM step) and LSTM (T steps with shared weights), as in BVLC Caffe.

One step, for N streams of H cells, from the pre-activations a (N, 4H) laid out as Caffe's gate
rows [i' | f' | o' | g'], the previous cell c_prev (N, H) and the flags cont (N,):

    i = sigmoid(i'),  f = cont * sigmoid(f'),  o = sigmoid(o'),  g = tanh(g')
    c = f * c_prev + i * g
    h = o * tanh(c)

Backward (Caffe's formulas; f is the cont-scaled gate, so df' = dc_term c_prev f (1 - f) is exact
for binary flags): with dc_term = dc + dh o (1 - tanh(c)^2),

    dc_prev = dc_term f      di' = dc_term g i (1 - i)      df' = dc_term c_prev f (1 - f)
    do' = dh tanh(c) o (1 - o)                              dg' = dc_term i (1 - g^2)

The factors that do not depend on the incoming diffs (g i (1 - i), c_prev f (1 - f), ...) are
computed for all steps at once before the backward time loop, which is then a few products per
step.

LSTM pre-activations: a_t = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t h_{t-1}); params
W_xc (4H, D), b_c (4H,), [W_xc_static (4H, S)], W_hc (4H, H), in Caffe's order. The frame (bottoms,
tops, carried state, expose_hidden) is described in recurrent.py.

Why a fused time loop rather than Caffe's unrolled inner Net (T copies of Scale, InnerProduct,
Eltwise and LSTMUnit layers with shared weights, plus Slice/Concat): both give the same numbers
(tests/layers/test_recurrent.py runs the unrolled net as an oracle); the fused loop makes no
per-step layer calls, slices or concatenations, and sums the weight gradients of all steps in
one product each. Measured with bench/bench_recurrent.py --cpu-time (one forward + backward,
float32, process CPU time of 2 threads, median of 5, the two ways in turns; the 2 cores were
shared, load average about 4):

    layer  T x N x D -> H           fused ms  unrolled ms  unrolled / fused
    LSTM   10 x 16 x 32 -> 32           1.10         3.30      3.0
    LSTM   20 x 32 x 128 -> 256        30.2         39.1       1.3
    LSTM   20 x 100 x 1000 -> 1000   1221         1299         1.06   (coco_caption's size)
    RNN    10 x 16 x 32 -> 32           0.40         2.61      6.5
    RNN    20 x 32 x 128 -> 256        11.1         21.5       1.9
    RNN    20 x 100 x 1000 -> 1000    454          517         1.14

Wall time gave the same picture for the small and medium sizes (3.4-14x, 1.1-2.5x) and parity
within the load's noise at coco's size, where both ways run the same matrix products.
"""
import numpy as np

from . import register
from ..gemm import matmul
from .base import Layer, Workspace
from .recurrent import RecurrentLayer

# Slots of the gate axis in a (N, 4, H) view of the pre-activations.
I, F, O, G = range(4)


def sigmoid_(xp, a):
    """a = 1 / (1 + exp(-a)) in place, Caffe's formula. exp overflowing to inf (a < -88 in
    float32) gives the right limit 0: callers silence numpy's warning (`quiet_overflow`)."""
    xp.negative(a, out=a)
    xp.exp(a, out=a)
    a += 1
    xp.reciprocal(a, out=a)


def quiet_overflow():
    return np.errstate(over="ignore")


def unit_forward(xp, gates, c_prev, cont, c, tanh_c, h, scratch):
    """One step: gates (N, 4, H) pre-activations become the activations i, f (cont-scaled), o,
    g in place; writes c, tanh(c) and h (N, H). cont is (N, 1)."""
    sigmoid_(xp, gates[:, :G])
    xp.tanh(gates[:, G], out=gates[:, G])
    gates[:, F] *= cont
    xp.multiply(gates[:, F], c_prev, out=c)
    xp.multiply(gates[:, I], gates[:, G], out=scratch)
    c += scratch
    xp.tanh(c, out=tanh_c)
    xp.multiply(gates[:, O], tanh_c, out=h)


def unit_backward_factors(xp, acts, c_prev, tanh_c, factors, cell_factor):
    """The diff-independent parts of the step's backward, for any number of rows M:
    factors (M, 4, H) = [g i (1 - i), c_prev f (1 - f), tanh(c) o (1 - o), i (1 - g^2)] and
    cell_factor (M, H) = o (1 - tanh(c)^2), from acts (M, 4, H), c_prev and tanh_c (M, H)."""
    for slot, other in ((I, acts[:, G]), (F, c_prev), (O, tanh_c)):
        gate, out = acts[:, slot], factors[:, slot]
        xp.subtract(1, gate, out=out)
        out *= gate
        out *= other
    out = factors[:, G]
    xp.multiply(acts[:, G], acts[:, G], out=out)
    xp.subtract(1, out, out=out)
    out *= acts[:, I]
    xp.multiply(tanh_c, tanh_c, out=cell_factor)
    xp.subtract(1, cell_factor, out=cell_factor)
    cell_factor *= acts[:, O]


def unit_backward_step(xp, gate_diff, dh, dc, cell_factor, forget, dc_term, dc_prev):
    """One step's diffs: gate_diff (N, 4, H) holds the step's factors and becomes the
    pre-activation diff; dc_term = dc + dh * cell_factor; dc_prev = dc_term * forget (the
    cont-scaled f). dc may be None (no diff into the cell)."""
    xp.multiply(dh, cell_factor, out=dc_term)
    if dc is not None:
        dc_term += dc
    gate_diff[:, O] *= dh
    gate_diff[:, :O] *= dc_term[:, None]
    gate_diff[:, G] *= dc_term
    xp.multiply(dc_term, forget, out=dc_prev)


@register("LSTMUnit")
class LSTMUnitLayer(Layer):
    """One LSTM step (the formulas in the module docstring) for N streams of H cells.

    bottoms: c_prev (1, N, H), gates (1, N, 4H) pre-activations [i' f' o' g'], cont (1, N)
    tops:    c (1, N, H), h (1, N, H)

    No gradient flows to cont (asking for one is an error). No params.
    """

    exact_num_bottom = 3
    exact_num_top = 2
    allows_in_place = False

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def setup(self, bottom, top):
        self.work = Workspace()

    def reshape(self, bottom, top):
        c_prev, gates, cont = bottom
        if c_prev.num_axes != 3 or c_prev.shape[0] != 1:
            raise self.error(f"bottom 0 (c_prev) must be 1 x N x H, found shape {c_prev.shape}")
        streams, hidden = c_prev.shape[1:]
        if gates.shape != (1, streams, 4 * hidden):
            raise self.error(f"bottom 1 (gates) must have shape (1, N, 4H) = {(1, streams, 4 * hidden)} "
                             f"for c_prev {c_prev.shape}, found {gates.shape}")
        if cont.shape != (1, streams):
            raise self.error(f"bottom 2 (cont) must have shape (1, N) = {(1, streams)}, found "
                             f"{cont.shape}")
        self.streams, self.hidden = streams, hidden
        for blob in top:
            blob.reshape(c_prev.shape)

    def _buffer(self, name, shape):
        return self.work.get(self.xp, name, shape, self.dtype)

    def forward(self, bottom, top):
        n, h = self.streams, self.hidden
        acts = self._buffer("acts", (n, 4, h))
        acts[...] = bottom[1].read_data().reshape(n, 4, h)
        with quiet_overflow():
            unit_forward(self.xp, acts, bottom[0].read_data().reshape(n, h),
                         bottom[2].read_data().reshape(n, 1), top[0].write_data().reshape(n, h),
                         self._buffer("tanh_c", (n, h)), top[1].write_data().reshape(n, h),
                         self._buffer("scratch", (n, h)))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            raise self.error("cannot backpropagate to the sequence continuation flags (bottom 2, "
                             "cont); set propagate_down: false for it")
        if not (propagate_down[0] or propagate_down[1]):
            return
        xp, n, h = self.xp, self.streams, self.hidden
        acts = self._buffer("acts", (n, 4, h))
        c_prev = bottom[0].read_data().reshape(n, h)
        gate_diff = (bottom[1].write_diff().reshape(n, 4, h) if propagate_down[1]
                     else self._buffer("gate_diff", (n, 4, h)))
        cell_factor = self._buffer("cell_factor", (n, h))
        unit_backward_factors(xp, acts, c_prev, self._buffer("tanh_c", (n, h)), gate_diff, cell_factor)
        dc_prev = (bottom[0].write_diff().reshape(n, h) if propagate_down[0]
                   else self._buffer("dc_prev", (n, h)))
        unit_backward_step(xp, gate_diff, top[1].read_diff().reshape(n, h),
                           top[0].read_diff().reshape(n, h), cell_factor, acts[:, F],
                           self._buffer("dc_term", (n, h)), dc_prev)


@register("LSTM")
class LSTMLayer(RecurrentLayer):
    """Long short-term memory over T x N sequences (Caffe's LSTM layer).

    bottoms: x (T, N, ...), cont (T, N), [x_static (N, ...)], [h0, c0 (1, N, H) with expose_hidden]
    tops:    h (T, N, H), [hT, cT (1, N, H) with expose_hidden]
    params:  W_xc (4H, D), b_c (4H,), [W_xc_static (4H, S)], W_hc (4H, H)

    Forward: the input products of all steps in one product, then per step t
    a_t += W_hc (cont_t h_{t-1}) and one LSTMUnit step. Backward: per step, from t = T-1 down,
    the unit's diffs and dh_{t-1} = cont_t (da_t W_hc); then dW_hc, dW_xc, db_c, dx as one
    product each over all T x N rows.
    """

    state_names = ("h", "c")

    def gate_rows(self, hidden):
        return 4 * hidden

    def add_recurrent_params(self, weight_filler, bias_filler):
        self.w_hc_index = len(self.blobs)
        self.add_param_blob((4 * self.hidden, self.hidden), weight_filler)

    def allocate(self, steps, streams, hidden):
        self.gates = self.buffer("gates", (steps, streams, 4, hidden))
        self.cells = self.buffer("cells", (steps + 1, streams, hidden))
        self.tanh_c = self.buffer("tanh_c", (steps, streams, hidden))
        self.h_conted = self.buffer("h_conted", (steps, streams, hidden))
        self.scratch = self.buffer("scratch", (streams, hidden))

    def forward(self, bottom, top):
        xp, steps, n, hidden = self.xp, self.steps, self.streams, self.hidden
        gates = self.gates
        self.transform_inputs(bottom, gates.reshape(steps, n, 4 * hidden))
        cont = bottom[1].read_data()
        h_out = top[0].write_data()
        w_hc_t = self.blobs[self.w_hc_index].read_data().T
        h_prev = self.initial_state(bottom, 0)
        self.cells[0] = self.initial_state(bottom, 1)
        with quiet_overflow():
            for t in range(steps):
                flags = cont[t].reshape(n, 1)
                xp.multiply(h_prev, flags, out=self.h_conted[t])
                matmul(self.h_conted[t], w_hc_t, gates[t].reshape(n, 4 * hidden), accumulate=True)
                unit_forward(xp, gates[t], self.cells[t], flags, self.cells[t + 1], self.tanh_c[t],
                             h_out[t], self.scratch)
                h_prev = h_out[t]
        self.save_final_state(top, (h_out[steps - 1], self.cells[steps]))
        self.debug_steps("Forward", "unit", ("c", "h"), (self.cells[1:], h_out))

    def backward(self, top, propagate_down, bottom):
        xp, steps, n, hidden = self.xp, self.steps, self.streams, self.hidden
        diff = self.buffer("gate_diff", (steps, n, 4, hidden))
        cell_factor = self.buffer("cell_factor", (steps, n, hidden))
        rows = steps * n
        unit_backward_factors(xp, self.gates.reshape(rows, 4, hidden),
                              self.cells[:steps].reshape(rows, hidden),
                              self.tanh_c.reshape(rows, hidden), diff.reshape(rows, 4, hidden),
                              cell_factor.reshape(rows, hidden))
        h_diff = top[0].read_diff()
        cont = bottom[1].read_data()
        w_hc = self.blobs[self.w_hc_index].read_data()
        dh, dc_term = self.buffer("dh", (n, hidden)), self.buffer("dc_term", (n, hidden))
        dc = self.buffer("dc", (n, hidden))
        dh[...] = h_diff[steps - 1]
        for t in range(steps - 1, -1, -1):
            unit_backward_step(xp, diff[t], dh, dc if t < steps - 1 else None, cell_factor[t],
                               self.gates[t, :, F], dc_term, dc)
            if t:
                matmul(diff[t].reshape(n, 4 * hidden), w_hc, dh)
                dh *= cont[t].reshape(n, 1)
                dh += h_diff[t - 1]
        self.debug_steps("Backward", "unit", ("gate_input",), (diff,))
        flat = diff.reshape(rows, 4 * hidden)
        if self.param_propagate_down[self.w_hc_index]:
            matmul(flat.T, self.h_conted.reshape(rows, hidden),
                   self.blobs[self.w_hc_index].write_diff(), accumulate=True)
        self.backward_inputs(bottom, propagate_down, diff.reshape(steps, n, 4 * hidden))
