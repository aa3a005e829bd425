"""The adaptive update rules: AdaGrad, RMSProp, AdaDelta, Adam (Caffe's formulations).

g is the gradient after normalization and weight decay, lr_i = rate * lr_mult_i, all float32:

AdaGrad    h += g^2;                                 update lr_i * g / (sqrt(h) + delta)
RMSProp    h = (1 - rms_decay) g^2 + rms_decay h;    update lr_i * g / (sqrt(h) + delta)
AdaDelta   h = (1 - momentum) g^2 + momentum h;
           dx = g * sqrt((h2 + delta) / (h + delta));
           h2 = (1 - momentum) dx^2 + momentum h2;   update lr_i * dx
Adam       m = (1 - momentum) g + momentum m;   v = (1 - momentum2) g^2 + momentum2 v;
           t = iter + 1;  c = sqrt(1 - momentum2^t) / (1 - momentum^t)  (double, rounded once)
           update (lr_i * c) * m / (sqrt(v) + delta)

AdaGrad and RMSProp refuse momentum, as Caffe does. AdaDelta keeps E[g^2] in history[0:N] and
E[dx^2] in history[N:2N]; Adam keeps m and v the same way.
"""
import math

import numpy as np

from .. import device
from .sgd import SGDSolver

f32 = np.float32


class AdaGradSolver(SGDSolver):
    type = "AdaGrad"
    fused_kernel = "adagrad"

    def fused_arguments(self, param_id, rate):
        return self.local_rate(param_id, rate), self._history(param_id), f32(self.param.delta)

    def check_rule_param(self):
        _refuse_momentum(self)

    def compute_update_value(self, param_id, rate):
        xp = device.array_module()
        grad = self.net.learnable_params[param_id].write_diff()
        history = self.history[param_id].write_data()
        update = self._update[param_id].write_data()
        xp.multiply(grad, grad, out=update)
        history += update
        xp.sqrt(history, out=update)
        update += f32(self.param.delta)
        xp.divide(grad, update, out=update)
        xp.multiply(update, self.local_rate(param_id, rate), out=grad)


class RMSPropSolver(SGDSolver):
    type = "RMSProp"
    fused_kernel = "rmsprop"

    def fused_arguments(self, param_id, rate):
        keep = f32(self.param.rms_decay)
        return (self.local_rate(param_id, rate), self._history(param_id), keep,
                f32(f32(1) - keep), f32(self.param.delta))

    def check_rule_param(self):
        _refuse_momentum(self)
        if not 0 <= self.param.rms_decay < 1:
            raise self.error(f"rms_decay must lie in [0, 1) for RMSProp (found "
                             f"{self.param.rms_decay:g}); the default is 0.99")

    def compute_update_value(self, param_id, rate):
        xp = device.array_module()
        decay = f32(self.param.rms_decay)
        grad = self.net.learnable_params[param_id].write_diff()
        history = self.history[param_id].write_data()
        update = self._update[param_id].write_data()
        _moving_average(xp, history, xp.multiply(grad, grad, out=update), decay)
        xp.sqrt(history, out=update)
        update += f32(self.param.delta)
        xp.divide(grad, update, out=update)
        xp.multiply(update, self.local_rate(param_id, rate), out=grad)


class AdaDeltaSolver(SGDSolver):
    type = "AdaDelta"
    num_history_sets = 2
    fused_kernel = "adadelta"

    def fused_arguments(self, param_id, rate):
        keep = f32(self.param.momentum)
        return (self.local_rate(param_id, rate), self._history(param_id),
                self._history(len(self.net.learnable_params) + param_id), keep,
                f32(f32(1) - keep), f32(self.param.delta))

    def compute_update_value(self, param_id, rate):
        xp = device.array_module()
        momentum = f32(self.param.momentum)
        delta = f32(self.param.delta)
        offset = len(self.net.learnable_params)
        grad = self.net.learnable_params[param_id].write_diff()
        grad_history = self.history[param_id].write_data()
        step_history = self.history[offset + param_id].write_data()
        update = self._update[param_id].write_data()
        temp = self._temp[param_id].write_data()
        _moving_average(xp, grad_history, xp.multiply(grad, grad, out=update), momentum)
        xp.add(step_history, delta, out=update)
        xp.add(grad_history, delta, out=temp)
        xp.divide(update, temp, out=update)
        xp.sqrt(update, out=update)
        grad *= update
        _moving_average(xp, step_history, xp.multiply(grad, grad, out=update), momentum)
        grad *= self.local_rate(param_id, rate)


class AdamSolver(SGDSolver):
    type = "Adam"
    num_history_sets = 2
    fused_kernel = "adam"

    def _correction(self):
        """sqrt(1 - beta2^t) / (1 - beta1^t) for t = iter + 1, in double, rounded once."""
        beta1, beta2 = f32(self.param.momentum), f32(self.param.momentum2)
        t = self.iter + 1
        return f32(math.sqrt(1.0 - float(beta2) ** t) / (1.0 - float(beta1) ** t))

    def fused_arguments(self, param_id, rate):
        beta1, beta2 = f32(self.param.momentum), f32(self.param.momentum2)
        return (f32(self.local_rate(param_id, rate) * self._correction()), self._history(param_id),
                self._history(len(self.net.learnable_params) + param_id), beta1,
                f32(f32(1) - beta1), beta2, f32(f32(1) - beta2), f32(self.param.delta))

    def check_rule_param(self):
        """Adam's bias correction divides by 1 - momentum^t and takes the square root of
        1 - momentum2^t: both rates must lie in [0, 1)."""
        for field, default in (("momentum", 0.9), ("momentum2", 0.999)):
            value = getattr(self.param, field)
            if not 0 <= value < 1:
                raise self.error(f"{field} must lie in [0, 1) for Adam (found {value:g}); "
                                 f"the usual value is {default}")

    def compute_update_value(self, param_id, rate):
        xp = device.array_module()
        beta1 = f32(self.param.momentum)
        beta2 = f32(self.param.momentum2)
        offset = len(self.net.learnable_params)
        grad = self.net.learnable_params[param_id].write_diff()
        m = self.history[param_id].write_data()
        v = self.history[offset + param_id].write_data()
        temp = self._temp[param_id].write_data()
        correction = self._correction()
        _moving_average(xp, m, grad, beta1, scratch=self._update[param_id].write_data())
        _moving_average(xp, v, xp.multiply(grad, grad, out=temp), beta2)
        xp.sqrt(v, out=temp)
        temp += f32(self.param.delta)
        xp.divide(m, temp, out=temp)
        xp.multiply(temp, f32(self.local_rate(param_id, rate) * correction), out=grad)


def _moving_average(xp, average, sample, keep, scratch=None):
    """average = (1 - keep) * sample + keep * average, rounding each product as Caffe's axpby.
    `sample` is overwritten unless a `scratch` buffer is given."""
    target = sample if scratch is None else scratch
    xp.multiply(sample, f32(f32(1) - keep), out=target)
    average *= keep
    average += target


def _refuse_momentum(solver):
    if solver.param.momentum != 0:
        raise solver.error(f"momentum cannot be used with {solver.type} (found momentum: "
                           f"{solver.param.momentum:g}); remove momentum from the solver")
