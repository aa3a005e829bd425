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
"""
import logging
import math

import numpy as np

from .. import device
from ..blob import Blob
from ..training_log import fmt
from . import lr_policy
from .base import Solver
from .solverstate import SolverStateData

log = logging.getLogger("pycaffelite")
f32 = np.float32


class SGDSolver(Solver):
    """Plain SGD with momentum; the base of the other update rules."""

    type = "SGD"

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
        for param_id in range(len(self.net.learnable_params)):
            self.normalize(param_id)
            self.regularize(param_id)
            self.compute_update_value(param_id, rate)
        for blob in self.net.learnable_params:
            data = blob.write_data()
            data -= blob.read_diff()

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
