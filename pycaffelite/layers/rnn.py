"""RNN: Caffe's simple recurrent layer, with a tanh hidden state and a separate tanh output.

    h_t = tanh(W_xh x_t + b_h [+ W_xh_static x_static] + W_hh (cont_t h_{t-1}))
    o_t = tanh(W_ho h_t + b_o)

bottoms: x (T, N, ...), cont (T, N), [x_static (N, ...)], [h0 (1, N, H) with expose_hidden]
tops:    o (T, N, H), [hT (1, N, H) with expose_hidden]
params:  W_xh (H, D), b_h (H,), [W_xh_static (H, S)], W_hh (H, H), W_ho (H, H), b_o (H,), in
         Caffe's order.

Forward: the input products of all steps in one product, then per step the recurrent product and
tanh; the output transform o = tanh(h W_ho^T + b_o) runs once over all T x N rows.
Backward: dz_o = do (1 - o^2) and its products (dW_ho, db_o, the diff it sends to h) over all rows
at once; then per step, from t = T-1 down, dz_t = (dh_t + cont_{t+1} dz_{t+1} W_hh) (1 - h_t^2);
then dW_hh and the input diffs as one product each. The outputs o are kept by the layer (a later
in-place layer such as Dropout may change the top). The frame (bottoms, tops, carried state,
expose_hidden) is described in recurrent.py; why the loop is fused, in lstm.py.
"""
from . import register
from ..gemm import matmul
from .recurrent import RecurrentLayer


@register("RNN")
class RNNLayer(RecurrentLayer):
    """The simple recurrent layer; the math, shapes and params are in the module docstring."""

    state_names = ("h",)

    def gate_rows(self, hidden):
        return hidden

    def add_recurrent_params(self, weight_filler, bias_filler):
        self.w_hh_index = len(self.blobs)
        shape = (self.hidden, self.hidden)
        self.add_param_blob(shape, weight_filler)
        self.add_param_blob(shape, weight_filler)
        self.add_param_blob((self.hidden,), bias_filler)

    def allocate(self, steps, streams, hidden):
        self.states = self.buffer("states", (steps, streams, hidden))
        self.h_conted = self.buffer("h_conted", (steps, streams, hidden))
        self.outputs = self.buffer("outputs", (steps, streams, hidden))

    def forward(self, bottom, top):
        xp, steps, n, hidden = self.xp, self.steps, self.streams, self.hidden
        w_hh, w_ho, b_o = (blob.read_data() for blob in self.blobs[self.w_hh_index:])
        states = self.states
        self.transform_inputs(bottom, states)
        cont = bottom[1].read_data()
        h_prev = self.initial_state(bottom, 0)
        for t in range(steps):
            xp.multiply(h_prev, cont[t].reshape(n, 1), out=self.h_conted[t])
            matmul(self.h_conted[t], w_hh.T, states[t], accumulate=True)
            xp.tanh(states[t], out=states[t])
            h_prev = states[t]
        rows = steps * n
        outputs = self.outputs.reshape(rows, hidden)
        matmul(states.reshape(rows, hidden), w_ho.T, outputs)
        outputs += b_o
        xp.tanh(outputs, out=outputs)
        top[0].write_data()[...] = self.outputs
        self.save_final_state(top, (states[steps - 1],))
        self.debug_steps("Forward", "h_neuron", ("h",), (states,))

    def backward(self, top, propagate_down, bottom):
        xp, steps, n, hidden = self.xp, self.steps, self.streams, self.hidden
        rows = steps * n
        w_hh, w_ho = self.blobs[self.w_hh_index].read_data(), self.blobs[self.w_hh_index + 1].read_data()
        out_diff = self.buffer("out_diff", (rows, hidden))
        xp.multiply(self.outputs.reshape(rows, hidden), self.outputs.reshape(rows, hidden), out=out_diff)
        xp.subtract(1, out_diff, out=out_diff)
        out_diff *= top[0].read_diff().reshape(rows, hidden)
        states = self.states.reshape(rows, hidden)
        if self.param_propagate_down[self.w_hh_index + 1]:
            matmul(out_diff.T, states, self.blobs[self.w_hh_index + 1].write_diff(), accumulate=True)
        if self.param_propagate_down[self.w_hh_index + 2]:
            total = self.buffer("out_bias_sum", (hidden,))
            xp.sum(out_diff, axis=0, out=total)
            self.blobs[self.w_hh_index + 2].write_diff()[...] += total
        h_diff = self.buffer("h_diff", (steps, n, hidden))
        matmul(out_diff, w_ho, h_diff.reshape(rows, hidden))
        diff = self.buffer("z_diff", (steps, n, hidden))
        xp.multiply(self.states, self.states, out=diff)
        xp.subtract(1, diff, out=diff)
        recurrent = self.buffer("recurrent_diff", (n, hidden))
        cont = bottom[1].read_data()
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                h_diff[t] += recurrent
            diff[t] *= h_diff[t]
            if t:
                matmul(diff[t], w_hh, recurrent)
                recurrent *= cont[t].reshape(n, 1)
        self.debug_steps("Backward", "h_neuron", ("h_neuron_input",), (diff,))
        if self.param_propagate_down[self.w_hh_index]:
            matmul(diff.reshape(rows, hidden).T, self.h_conted.reshape(rows, hidden),
                   self.blobs[self.w_hh_index].write_diff(), accumulate=True)
        self.backward_inputs(bottom, propagate_down, diff)
