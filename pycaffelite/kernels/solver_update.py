"""The six solvers' updates of one learnable param, fused into one compiled pass over its
values (numba): normalisation, weight decay, the rule and w -= update, for the elements
[first, stop) of the flat arrays w (data), g (diff, left holding the update, as Caffe leaves
it) and the histories. Ranges run side by side in pcl's threads (the GIL released).

Each value goes through exactly the float operations, in the order and the precision, of the
array-module code in `pycaffelite.solvers.sgd` and `adaptive` (itself Caffe's order): every
product, sum, quotient and square root rounded to the arrays' type, no fused multiply-adds
(no fastmath), so the results are the same to the bit. The constants come in already rounded
as that code rounds them. The numpy code takes a temporary array and a pass over memory per
operation (ten or more passes per param per step); this takes one. CaffeNet's 61 M params, SGD
with momentum and weight decay, 2 threads, nothing pinned, load 3.6, medians of 6 interleaved
calls: 126 ms wall / 104 ms CPU the numpy way, 40 ms / 33 ms fused. (Each array is sliced to
its range first: indexing from a possibly negative start kept the loops from vectorizing, and
the first version ran no faster than numpy.)

g' = the normalised and decayed gradient:
    g' = g * scale (if normalize), then + decay * w (L2) or + decay * sign(w) (L1) if decay
"""
import numpy as np
from numba import njit

from . import CACHE

_COMPILE = dict(nogil=True, cache=CACHE, error_model="numpy")


@njit(inline="always", **_COMPILE)
def _sign(x, one):
    """numpy's sign in x's type: -1, 1, +0 for either zero, NaN for NaN."""
    if x > 0:
        return one
    if x < 0:
        return -one
    if x == 0:
        return one - one
    return x


@njit(inline="always", **_COMPILE)
def _gradient(w, g, i, scale, normalize, decay, l1):
    value = g[i]
    if normalize:
        value = value * scale
    if decay != 0:
        if l1:
            value = value + _sign(w[i], w.dtype.type(1)) * decay
        else:
            value = value + w[i] * decay
    return value


@njit(**_COMPILE)
def sgd(w, g, first, stop, scale, normalize, decay, l1, rate, history, momentum):
    """h = rate g' + momentum h; update h."""
    w, g, history = w[first:stop], g[first:stop], history[first:stop]
    for i in range(w.size):
        scaled = _gradient(w, g, i, scale, normalize, decay, l1) * rate
        h = history[i] * momentum + scaled
        history[i] = h
        g[i] = h
        w[i] = w[i] - h


@njit(**_COMPILE)
def nesterov(w, g, first, stop, scale, normalize, decay, l1, rate, history, momentum,
             one_plus_momentum):
    """h' = rate g' + momentum h; update (1 + momentum) h' - momentum h."""
    w, g, history = w[first:stop], g[first:stop], history[first:stop]
    for i in range(w.size):
        scaled = _gradient(w, g, i, scale, normalize, decay, l1) * rate
        previous = history[i]
        h = history[i] * momentum + scaled
        history[i] = h
        update = previous * -momentum + h * one_plus_momentum
        g[i] = update
        w[i] = w[i] - update


@njit(**_COMPILE)
def adagrad(w, g, first, stop, scale, normalize, decay, l1, rate, history, delta):
    """h += g'^2; update rate g' / (sqrt(h) + delta)."""
    w, g, history = w[first:stop], g[first:stop], history[first:stop]
    for i in range(w.size):
        value = _gradient(w, g, i, scale, normalize, decay, l1)
        h = history[i] + value * value
        history[i] = h
        update = value / (np.sqrt(h) + delta) * rate
        g[i] = update
        w[i] = w[i] - update


@njit(**_COMPILE)
def rmsprop(w, g, first, stop, scale, normalize, decay, l1, rate, history, keep, one_minus_keep,
            delta):
    """h = (1 - keep) g'^2 + keep h; update rate g' / (sqrt(h) + delta)."""
    w, g, history = w[first:stop], g[first:stop], history[first:stop]
    for i in range(w.size):
        value = _gradient(w, g, i, scale, normalize, decay, l1)
        h = history[i] * keep + value * value * one_minus_keep
        history[i] = h
        update = value / (np.sqrt(h) + delta) * rate
        g[i] = update
        w[i] = w[i] - update


@njit(**_COMPILE)
def adadelta(w, g, first, stop, scale, normalize, decay, l1, rate, history, steps, keep,
             one_minus_keep, delta):
    """h = (1 - keep) g'^2 + keep h; dx = g' sqrt((s + delta) / (h + delta));
    s = (1 - keep) dx^2 + keep s; update rate dx."""
    w, g, history, steps = w[first:stop], g[first:stop], history[first:stop], steps[first:stop]
    for i in range(w.size):
        value = _gradient(w, g, i, scale, normalize, decay, l1)
        h = history[i] * keep + value * value * one_minus_keep
        history[i] = h
        step = value * np.sqrt((steps[i] + delta) / (h + delta))
        steps[i] = steps[i] * keep + step * step * one_minus_keep
        update = step * rate
        g[i] = update
        w[i] = w[i] - update


@njit(**_COMPILE)
def adam(w, g, first, stop, scale, normalize, decay, l1, rate, m, v, beta1, one_minus_beta1,
         beta2, one_minus_beta2, delta):
    """m = (1 - beta1) g' + beta1 m; v = (1 - beta2) g'^2 + beta2 v;
    update rate m / (sqrt(v) + delta), rate holding the bias correction."""
    w, g, m, v = w[first:stop], g[first:stop], m[first:stop], v[first:stop]
    for i in range(w.size):
        value = _gradient(w, g, i, scale, normalize, decay, l1)
        mean = m[i] * beta1 + value * one_minus_beta1
        m[i] = mean
        var = v[i] * beta2 + value * value * one_minus_beta2
        v[i] = var
        update = mean / (np.sqrt(var) + delta) * rate
        g[i] = update
        w[i] = w[i] - update
