"""Caffe's learning-rate policies, reproduced to the float32 bit.

With `base_lr`, `gamma`, `power`, `stepsize`, `stepvalue`, `max_iter` from the SolverParameter and
`it` the iteration about to be updated:

    fixed      base_lr
    step       base_lr * gamma ^ floor(it / stepsize)
    exp        base_lr * gamma ^ it
    inv        base_lr * (1 + gamma * it) ^ (-power)
    multistep  base_lr * gamma ^ k, k = how many stepvalues have been reached (advanced by at most
               one per call, when it >= stepvalue[k])
    poly       base_lr * (1 - it / max_iter) ^ power
    sigmoid    base_lr / (1 + exp(-gamma * (it - stepsize)))

Rounding follows Caffe's C++: the solver fields are float32; `pow(float, int)` (step, exp,
multistep) is evaluated in double and the product rounded to float32 once; inv / poly / sigmoid
are float arithmetic with correctly rounded float pow/exp (computed here in double and rounded
once, which is what a correctly rounded float function returns).
"""
import logging
import math

import numpy as np

from ..errors import PclError

log = logging.getLogger("pycaffelite")

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

f32 = np.float32


def check_policy(param, source="solver"):
    """Reject an unknown policy or settings the policy cannot use, before training starts."""
    policy = param.lr_policy
    if policy not in POLICIES:
        raise PclError(f'{source}: unknown lr_policy "{policy}"; use one of {", ".join(POLICIES)}')
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise PclError(f'{source}: lr_policy "{policy}" needs stepsize > 0 (found {param.stepsize}); '
                       f"set stepsize")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise PclError(f'{source}: lr_policy "{policy}" needs gamma >= 0 (found {param.gamma:g}); '
                       f"set gamma")
    steps = list(param.stepvalue)
    if policy == "multistep" and any(later <= earlier for earlier, later in zip(steps, steps[1:])):
        log.warning("%s: the stepvalue list %s does not increase; lr_policy \"multistep\" "
                    "reaches the values in the order given (a smaller one after a larger one "
                    "takes effect right after it), so list them in increasing order", source, steps)
    if policy == "poly" and param.max_iter <= 0:
        raise PclError(f'{source}: lr_policy "poly" needs max_iter > 0 (found {param.max_iter}); '
                       f"set max_iter")


def learning_rate(param, it, current_step):
    """Return (rate as np.float32, new current_step) for iteration `it`.

    `current_step` is the solver's step counter: step sets it to it // stepsize, multistep advances
    it by at most one, the other policies leave it alone (as Caffe's GetLearningRate does).
    """
    policy = param.lr_policy
    base_lr = f32(param.base_lr)
    gamma = f32(param.gamma)
    if policy == "fixed":
        return base_lr, current_step
    if policy == "step":
        current_step = it // param.stepsize
        return _times_int_power(base_lr, gamma, current_step), current_step
    if policy == "exp":
        return _times_int_power(base_lr, gamma, it), current_step
    if policy == "multistep":
        if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
            current_step += 1
        return _times_int_power(base_lr, gamma, current_step), current_step
    if policy == "inv":
        base = f32(1) + f32(gamma * f32(it))
        return f32(base_lr * _powf(base, -f32(param.power))), current_step
    if policy == "poly":
        base = f32(1) - f32(f32(it) / f32(param.max_iter))
        return f32(base_lr * _powf(base, f32(param.power))), current_step
    if policy == "sigmoid":
        exponent = f32(-gamma * f32(f32(it) - f32(param.stepsize)))
        factor = f32(f32(1) / f32(f32(1) + _expf(exponent)))
        return f32(base_lr * factor), current_step
    raise PclError(f'unknown lr_policy "{policy}"; use one of {", ".join(POLICIES)}')


def _times_int_power(base_lr, gamma, n):
    """float32(base_lr * pow(double(gamma), n)): C++ pow(float, int) promotes to double (and
    overflows to infinity, as here)."""
    try:
        power = math.pow(float(gamma), n)
    except OverflowError:
        power = math.inf
    return f32(float(base_lr) * power)


def _powf(base, exponent):
    try:
        return f32(math.pow(float(base), float(exponent)))
    except (OverflowError, ValueError):
        return f32(np.power(np.float64(base), np.float64(exponent)))


def _expf(x):
    try:
        return f32(math.exp(float(x)))
    except OverflowError:
        return f32(np.inf)
