"""The frame shared by the recurrent layers LSTM and RNN (Caffe's RecurrentLayer).

Bottoms, in this order:
  x          (T, N, ...)  T time steps of N independent streams; the axes from 2 on are one input
                          vector of D values per step and stream
  cont       (T, N)       sequence continuation flags: the state carried in from step t-1 is
                          multiplied by cont[t, n], so 0 starts a new sequence at step t
  x_static   (N, ...)     optional: an input seen at every step (the axes from 1 on: S values)
  h0 [, c0]  (1, N, H)    only with recurrent_param { expose_hidden: true }: the initial state
Tops:
  out        (T, N, H)    H = recurrent_param.num_output
  hT [, cT]  (1, N, H)    only with expose_hidden: the state after the last step

Every step's gate (or hidden) pre-activation is  W_x x_t + b + W_static x_static + W_h (cont_t h_{t-1}),
with one set of weights shared by all steps. The input products of all T steps run as one matrix
product before the time loop, and the weight gradients as one product each after it; only the
recurrent product runs per step.

Caffe's semantics, kept here because trained models and other tools depend on them:
- Without expose_hidden the initial state is the final state of the layer's previous forward call
  (zeros on the first call, and again whenever the number of streams N changes); cont[0] decides
  whether it is used. The state is carried across calls, never backpropagated across them.
- With expose_hidden the state comes from the h0 (, c0) bottoms, yet Caffe shares only their data
  with its unrolled net: their diffs are zero, and diffs written into the hT (, cT) tops are
  ignored. Both are reproduced (tests/test_caffe_ref_layers.py checks them against Caffe).
- No gradient flows to cont (asking for one is an error), and T is fixed when the layer is set up.
  The carried state is part of a solver's run state (`get_run_state` / `set_run_state`), so a
  resumed run continues its sequences as the uninterrupted one would.
- The param blobs, their order and shapes are those of Caffe's unrolled net, so caffemodels move
  between the two: W_x (G, D), b (G,), [W_static (G, S)], then the subclass's recurrent blobs
  (G = 4H gate rows for an LSTM, H for an RNN).
- recurrent_param.debug_info logs each step's state (forward) and pre-activation diff (backward)
  as Caffe's debug lines for the blobs of its unrolled net.

The time loop is fused here rather than run as an unrolled inner Net: see the measurements in
lstm.py.
"""
import logging

import numpy as np

from ..errors import PclError
from ..gemm import matmul
from ..proto import caffe_pb2
from .base import Layer, Workspace

log = logging.getLogger("pycaffelite")


class RecurrentLayer(Layer):
    """Shared set-up, checks, input transform and state handling; subclasses add the recurrence.

    Subclasses define `state_names` (("h",) or ("h", "c")), `gate_rows(H)` (G),
    `add_recurrent_params(weight_filler, bias_filler)` (their param blobs, after the frame's
    W_x, b and, with a static input, W_static) and `allocate(T, N, H)` (their forward buffers,
    called by reshape)."""

    state_names = ()
    allows_in_place = False

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    # -- blob layout ---------------------------------------------------------------------------
    def _layout(self):
        names = ", ".join(f"{name}0" for name in self.state_names)
        if self.param.recurrent_param.expose_hidden:
            return (f"bottoms x, cont, [x_static,] {names} and tops out, "
                    f"{', '.join(f'{name}T' for name in self.state_names)} (expose_hidden)")
        return "bottoms x, cont, [x_static] and one top"

    def check_blob_counts(self, bottom, top):
        exposed = len(self.state_names) if self.param.recurrent_param.expose_hidden else 0
        if not 2 + exposed <= len(bottom) <= 3 + exposed or len(top) != 1 + exposed:
            raise self.error(f"takes {self._layout()}: {2 + exposed} or {3 + exposed} bottoms and "
                             f"{1 + exposed} top(s), found {len(bottom)} bottoms and {len(top)} "
                             f"top(s); fix the bottom/top list"
                             + ("" if exposed else " or set recurrent_param { expose_hidden: true }"))

    # -- set-up and reshape --------------------------------------------------------------------
    def setup(self, bottom, top):
        p = self.param.recurrent_param
        if p.num_output <= 0:
            raise self.error("needs recurrent_param { num_output: H } with H > 0, found none; give "
                             "the size of the hidden state")
        self.hidden = p.num_output
        self.expose_hidden = p.expose_hidden
        self.static_input = len(bottom) > 2 + (len(self.state_names) if self.expose_hidden else 0)
        self._check_x_and_cont(bottom)
        self.steps = bottom[0].shape[0]
        self.input_dim = bottom[0].count(2)
        self.static_dim = bottom[2].count(1) if self.static_input else 0
        gates = self.gate_rows(self.hidden)
        self.add_param_blob((gates, self.input_dim), p.weight_filler)
        self.add_param_blob((gates,), p.bias_filler)
        if self.static_input:
            self.add_param_blob((gates, self.static_dim), p.weight_filler)
        self.add_recurrent_params(p.weight_filler, p.bias_filler)
        self.work = Workspace()

    def _check_x_and_cont(self, bottom):
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 3:
            raise self.error(f"bottom 0 (x) must be T x N x features (at least 3 axes), found shape "
                             f"{x.shape}; reshape it, e.g. to (T, N, 1)")
        if cont.shape != x.shape[:2]:
            raise self.error(f"bottom 1 (cont) must have shape (T, N) = {x.shape[:2]} to match x "
                             f"{x.shape}, found {cont.shape}; give one flag per step and stream")
        if self.static_input:
            static = bottom[2]
            if static.num_axes < 2 or static.shape[0] != x.shape[1]:
                raise self.error(f"bottom 2 (x_static) must be N x features with N = {x.shape[1]} "
                                 f"(the streams of x), found shape {static.shape}")

    def reshape(self, bottom, top):
        self._check_x_and_cont(bottom)
        x = bottom[0]
        if x.shape[0] != self.steps:
            raise self.error(f"the layer was set up for T = {self.steps} time steps, found x of shape "
                             f"{x.shape}; Caffe's recurrent layers keep T fixed: use a net of the "
                             f"new length")
        if x.count(2) != self.input_dim:
            raise self.error(f"x has {x.count(2)} values per step (shape {x.shape}), but the weights "
                             f"were made for {self.input_dim}; feed inputs of the set-up size")
        if self.static_input and bottom[2].count(1) != self.static_dim:
            raise self.error(f"x_static has {bottom[2].count(1)} values per stream (shape "
                             f"{bottom[2].shape}), but the weights were made for {self.static_dim}")
        self.streams = x.shape[1]
        state_shape = (1, self.streams, self.hidden)
        if self.expose_hidden:
            for index, (name, blob) in enumerate(zip(self.state_names, bottom[self._state_offset():])):
                if blob.shape != state_shape:
                    raise self.error(f"bottom {self._state_offset() + index} ({name}0) must have "
                                     f"shape {state_shape} (1 x N x num_output), found {blob.shape}")
        top[0].reshape((self.steps, self.streams, self.hidden))
        for blob in top[1:]:
            blob.reshape(state_shape)
        self.allocate(self.steps, self.streams, self.hidden)

    def _state_offset(self):
        return 2 + self.static_input

    def buffer(self, name, shape, fill=None):
        return self.work.get(self.xp, name, shape, self.dtype, fill=fill)

    # -- state ---------------------------------------------------------------------------------
    def initial_state(self, bottom, index):
        """State `index` (N, H) the first step starts from: the exposed bottom, or what the
        previous forward call left (zeros at first)."""
        if self.expose_hidden:
            return bottom[self._state_offset() + index].read_data().reshape(self.streams, self.hidden)
        return self.buffer(f"carried_{index}", (self.streams, self.hidden), fill=0)

    def save_final_state(self, top, states):
        """Keep the last step's states (N, H) for the next call, or write them to the exposed tops."""
        for index, state in enumerate(states):
            if self.expose_hidden:
                top[1 + index].write_data()[0] = state
            else:
                self.buffer(f"carried_{index}", (self.streams, self.hidden), fill=0)[...] = state

    def get_run_state(self):
        """The states carried into the next call (none with expose_hidden), as a LayerRunState."""
        if self.expose_hidden:
            return None
        state = caffe_pb2.LayerRunState()
        for index in range(len(self.state_names)):
            carried = self.buffer(f"carried_{index}", (self.streams, self.hidden), fill=0)
            host = carried if isinstance(carried, np.ndarray) else carried.get()
            blob = state.blob.add()
            blob.shape.dim.extend(host.shape)
            (blob.double_data if host.dtype == np.float64 else blob.data).extend(host.ravel().tolist())
        return state

    def set_run_state(self, state):
        """Carry the states of a `get_run_state()` into the next call; a PclError if they do not fit."""
        shape = (self.streams, self.hidden)
        values = [blob.double_data if len(blob.double_data) else blob.data for blob in state.blob]
        if self.expose_hidden or len(values) != len(self.state_names) or any(
                tuple(blob.shape.dim) != shape or len(v) != self.streams * self.hidden
                for blob, v in zip(state.blob, values)):
            raise PclError(f"its saved carried state does not fit {len(self.state_names)} state(s) "
                           f"of {self.streams} x {self.hidden} (streams x num_output)")
        for index, value in enumerate(values):
            carried = self.buffer(f"carried_{index}", shape, fill=0)
            carried[...] = self.xp.asarray(np.asarray(value, dtype=self.dtype).reshape(shape))

    # -- the input transform, forward and backward ---------------------------------------------
    def transform_inputs(self, bottom, out):
        """out (T, N, G) = x_t W_x^T + b (+ x_static W_static^T) for every step at once."""
        rows = self.steps * self.streams
        x = bottom[0].read_data().reshape(rows, self.input_dim)
        matmul(x, self.blobs[0].read_data().T, out.reshape(rows, -1))
        out += self.blobs[1].read_data()
        if self.static_input:
            static = self.buffer("static_term", out.shape[1:])
            xs = bottom[2].read_data().reshape(self.streams, self.static_dim)
            matmul(xs, self.blobs[2].read_data().T, static)
            out += static

    def backward_inputs(self, bottom, propagate_down, gate_diff):
        """Param diffs of W_x, b (, W_static) and the diffs of x (, x_static) from the
        pre-activation diffs gate_diff (T, N, G); zero diffs for exposed initial states."""
        if propagate_down[1]:
            raise self.error("cannot backpropagate to the sequence continuation flags (bottom 1, "
                             "cont); set propagate_down: false for it")
        xp = self.xp
        rows = self.steps * self.streams
        diff = gate_diff.reshape(rows, -1)
        x = bottom[0].read_data().reshape(rows, self.input_dim)
        if self.param_propagate_down[0]:
            matmul(diff.T, x, self.blobs[0].write_diff(), accumulate=True)
        if self.param_propagate_down[1]:
            total = self.buffer("bias_sum", diff.shape[1:])
            xp.sum(diff, axis=0, out=total)
            self.blobs[1].write_diff()[...] += total
        if self.static_input and (self.param_propagate_down[2] or propagate_down[2]):
            static_diff = self.buffer("static_diff", gate_diff.shape[1:])
            xp.sum(gate_diff, axis=0, out=static_diff)
            if self.param_propagate_down[2]:
                xs = bottom[2].read_data().reshape(self.streams, self.static_dim)
                matmul(static_diff.T, xs, self.blobs[2].write_diff(), accumulate=True)
            if propagate_down[2]:
                matmul(static_diff, self.blobs[2].read_data(),
                       bottom[2].write_diff().reshape(self.streams, self.static_dim))
        if propagate_down[0]:
            matmul(diff, self.blobs[0].read_data(), bottom[0].write_diff().reshape(rows, self.input_dim))
        if self.expose_hidden:
            for index in range(len(self.state_names)):
                if propagate_down[self._state_offset() + index]:
                    bottom[self._state_offset() + index].write_diff()[...] = 0

    # -- debug_info ------------------------------------------------------------------------------
    def debug_steps(self, direction, layer_suffix, blob_names, per_step):
        """With recurrent_param.debug_info, Caffe's debug line for each step's blobs of the
        unrolled net: mean absolute value of `per_step[k][t]` as blob `blob_names[k]_<t+1>`."""
        if not self.param.recurrent_param.debug_info:
            return
        what, kind = ("top", "data") if direction == "Forward" else ("bottom", "diff")
        for t in range(self.steps):
            for name, values in zip(blob_names, per_step):
                mean_abs = float(self.xp.abs(values[t]).mean()) if values[t].size else 0.0
                log.info("    [%s] Layer %s_%s_%d, %s blob %s_%d %s: %g", direction, self.name,
                         layer_suffix, t + 1, what, name, t + 1, kind, mean_abs)

    # -- for subclasses --------------------------------------------------------------------------
    def gate_rows(self, hidden):
        raise NotImplementedError

    def add_recurrent_params(self, weight_filler, bias_filler):
        raise NotImplementedError

    def allocate(self, steps, streams, hidden):
        raise NotImplementedError
