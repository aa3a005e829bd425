"""Stochastic gradient descent (with momentum) and Nesterov's accelerated gradient.

Every update rule in pycaffelite is an SGDSolver subclass, as in Caffe: one update runs

    rate = lr_policy(iter)                                  (logged on display iterations)
    clip: if ||g||_2 over all learnable params > clip_gradients, g *= clip_gradients / ||g||_2
    per learnable param i, with lr_i = rate * lr_mult_i and decay_i = weight_decay * decay_mult_i:
        g *= 1 / iter_size                                  (normalize the accumulated passes)
        g += decay_i * w    (L2)   or   g += decay_i * sign(w)    (L1)
        g = the rule's update value (below), kept in the param's diff
    w -= g for every learnable param

SGD:       h = lr_i * g + momentum * h;  update h
Nesterov:  h' = lr_i * g + momentum * h;  update (1 + momentum) * h' - momentum * h

All arithmetic is float32 in Caffe's order of operations; history blobs start at zero and are
what a .solverstate stores (history[i] for learnable param i; rules with two histories store
the second set after the first).

On the CPU the per-param steps after clipping (normalize, regularize, the rule, w -= update)
run fused: one compiled pass per param over its data, diff and histories, in ranges side by
side (`pycaffelite.kernels.solver_update`, the same float operations in the same order, so the
same bits; each rule names its kernel and arguments in `fused_arguments`). The array-module
methods below run on the device, and on the CPU with `fused` off (the tests compare the two).
"""
import functools
import logging
import math

import numpy as np

from .. import device, parallel
from ..blob import Blob
from ..training_log import fmt
from . import lr_policy
from .base import Solver
from .solverstate import SolverStateData

log = logging.getLogger("pycaffelite")
f32 = np.float32
# Values below which the fused update runs in one thread (a hand-off costs tens of
# microseconds).
_FUSED_THREADING_THRESHOLD = 1 << 16


class SGDSolver(Solver):
    """Plain SGD with momentum; the base of the other update rules."""

    type = "SGD"
    fused = True
    fused_kernel = "sgd"

    def _pre_solve(self):
        params = self.net.learnable_params
        self.history = [Blob(p.shape) for _ in range(self.num_history_sets) for p in params]
        self._update = [Blob(p.shape) for p in params]
        self._temp = [Blob(p.shape) for p in params]

    # -- one update ------------------------------------------------------------------------------
    def apply_update(self):
        p = self.param
        rate, step = lr_policy.learning_rate(p, self.iter, self.current_step)
        if p.lr_policy == "multistep" and step != self.current_step:
            log.info("MultiStep Status: Iteration %d, step = %d", self.iter, step)
        self.current_step = step
        if p.display and self.iter % p.display == 0:
            log.info("Iteration %d, lr = %s", self.iter, fmt(rate))
        self.clip_gradients()
        if self.fused and device.array_module() is np:
            self._fused_update(rate)
            return
        for param_id in range(len(self.net.learnable_params)):
            self.normalize(param_id)
            self.regularize(param_id)
            self.compute_update_value(param_id, rate)
        for blob in self.net.learnable_params:
            data = blob.write_data()
            data -= blob.read_diff()

    def _fused_update(self, rate):
        """normalize, regularize, compute_update_value and w -= update for every param as one
        compiled pass each, the params' values split into one range per thread."""
        from ..kernels import solver_update  # noqa: PLC0415 - compiled at first use

        kernel = getattr(solver_update, self.fused_kernel)
        p = self.param
        common = (f32(f32(1) / f32(p.iter_size)), p.iter_size != 1)
        l1 = p.regularization_type != "L2"
        jobs = []
        for param_id, blob in enumerate(self.net.learnable_params):
            decay = f32(f32(p.weight_decay) * f32(self.net.params_weight_decay[param_id]))
            jobs.append((blob.write_data().reshape(-1), blob.write_diff().reshape(-1),
                         common + (decay, l1) + self.fused_arguments(param_id, rate)))
        total = sum(w.size for w, _, _ in jobs)
        parts = parallel.num_threads() if total >= _FUSED_THREADING_THRESHOLD else 1

        def run(part):
            for w, g, arguments in jobs:
                kernel(w, g, w.size * part // parts, w.size * (part + 1) // parts, *arguments)
        parallel.run_parallel([functools.partial(run, part) for part in range(parts)])

    def fused_arguments(self, param_id, rate):
        """The rule's arguments of its `solver_update` kernel after the common ones."""
        return (self.local_rate(param_id, rate), self._history(param_id),
                f32(self.param.momentum))

    def _history(self, index):
        return self.history[index].write_data().reshape(-1)

    def clip_gradients(self):
        clip = f32(self.param.clip_gradients)
        if clip < 0:
            return
        xp = device.array_module()
        sumsq = f32(0)
        for blob in self.net.learnable_params:
            diff = blob.read_diff()
            sumsq = f32(sumsq + f32(float(xp.vdot(diff, diff))))
        norm = f32(math.sqrt(float(sumsq)))
        if norm > clip:
            scale = f32(clip / norm)
            log.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s",
                     fmt(norm), fmt(clip), fmt(scale))
            for blob in self.net.learnable_params:
                diff = blob.write_diff()
                diff *= scale

    def normalize(self, param_id):
        if self.param.iter_size == 1:
            return
        diff = self.net.learnable_params[param_id].write_diff()
        diff *= f32(f32(1) / f32(self.param.iter_size))

    def regularize(self, param_id):
        local_decay = f32(f32(self.param.weight_decay) * f32(self.net.params_weight_decay[param_id]))
        if not local_decay:
            return
        xp = device.array_module()
        blob = self.net.learnable_params[param_id]
        temp = self._temp[param_id].write_data()
        if self.param.regularization_type == "L2":
            xp.multiply(blob.read_data(), local_decay, out=temp)
        else:
            xp.sign(blob.read_data(), out=temp)
            temp *= local_decay
        diff = blob.write_diff()
        diff += temp

    def local_rate(self, param_id, rate):
        return f32(rate * f32(self.net.params_lr[param_id]))

    def compute_update_value(self, param_id, rate):
        xp = device.array_module()
        grad = self.net.learnable_params[param_id].write_diff()
        history = self.history[param_id].write_data()
        scaled = self._update[param_id].write_data()
        xp.multiply(grad, self.local_rate(param_id, rate), out=scaled)
        history *= f32(self.param.momentum)
        history += scaled
        grad[...] = history

    # -- state -----------------------------------------------------------------------------------
    def solver_state(self, model_filename):
        return SolverStateData(self.iter, self.current_step, model_filename,
                               [np.array(h.cpu_data(), copy=True) for h in self.history])

    def check_solver_state(self, state, state_file):
        params = len(self.net.learnable_params)
        if len(state.history) != len(self.history):
            raise self.error(
                f"{state_file} holds {len(state.history)} history blobs, but this {self.type} "
                f"solver keeps {len(self.history)} for net \"{self.net.name}\" ({params} learnable "
                f"params x {self.num_history_sets}); the state was written by another solver type "
                f"or for another net; resume with the solver and net that wrote it")
        for index, (stored, blob) in enumerate(zip(state.history, self.history)):
            if tuple(stored.shape) != blob.shape:
                raise self.error(
                    f"{state_file}: history blob {index} has shape {tuple(stored.shape)}, but "
                    f"learnable param {index % max(params, 1)} of net \"{self.net.name}\" has shape "
                    f"{blob.shape}; the state was written for another net")

    def restore_history(self, state):
        log.info("SGDSolver: restoring history")
        for blob, stored in zip(self.history, state.history):
            blob.data[...] = stored


class NesterovSolver(SGDSolver):
    """Nesterov's accelerated gradient in Caffe's formulation (the update looks ahead)."""

    type = "Nesterov"
    fused_kernel = "nesterov"

    def fused_arguments(self, param_id, rate):
        momentum = f32(self.param.momentum)
        return (self.local_rate(param_id, rate), self._history(param_id), momentum,
                f32(f32(1) + momentum))

    def compute_update_value(self, param_id, rate):
        xp = device.array_module()
        momentum = f32(self.param.momentum)
        grad = self.net.learnable_params[param_id].write_diff()
        history = self.history[param_id].write_data()
        previous = self._update[param_id].write_data()
        scaled = self._temp[param_id].write_data()
        previous[...] = history
        xp.multiply(grad, self.local_rate(param_id, rate), out=scaled)
        history *= momentum
        history += scaled
        xp.multiply(history, f32(f32(1) + momentum), out=scaled)
        previous *= -momentum
        previous += scaled
        grad[...] = previous
