"""The fused CPU update (one compiled pass per param) against the array-module update, to the
bit, for the six rules with either regularization, iter_size and per-param multipliers."""
import numpy as np
import pytest
from google.protobuf import text_format

from pycaffelite import device
from pycaffelite.proto import caffe_pb2
from pycaffelite.solvers import SOLVER_CLASSES
from pycaffelite.solvers.sgd import SGDSolver

NET = """
name: "fused"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 8 dim: 250 } shape { dim: 8 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        inner_product_param { num_output: 300 weight_filler { type: "gaussian" std: 0.1 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param { lr_mult: 0.5 decay_mult: 3 } param { lr_mult: 1 decay_mult: 0.5 }
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""

RULES = {  # type: extra solver fields
    "SGD": "momentum: 0.9",
    "Nesterov": "momentum: 0.95",
    "AdaGrad": "delta: 1e-6",
    "RMSProp": "rms_decay: 0.98 delta: 1e-6",
    "AdaDelta": "momentum: 0.95 delta: 1e-6",
    "Adam": "momentum: 0.9 momentum2: 0.999 delta: 1e-8",
}


def trajectory(kind, fields, fused, steps=4):
    """Weights, diffs and histories after each of `steps` iterations."""
    device.set_random_seed(3)
    param = caffe_pb2.SolverParameter()
    text_format.Parse(f'type: "{kind}" base_lr: 0.05 lr_policy: "step" gamma: 0.5 stepsize: 2 '
                      f"max_iter: 100 display: 0 {RULES[kind]} {fields}", param)
    text_format.Parse(NET, param.net_param)
    solver = SOLVER_CLASSES[kind](param)
    solver.fused = fused
    rng = np.random.default_rng(0)
    solver.net.blobs["data"].data[...] = rng.standard_normal((8, 250))
    solver.net.blobs["label"].data[...] = rng.integers(0, 10, 8)
    states = []
    for _ in range(steps):
        solver.step(1)
        states.append([b.data.copy() for b in solver.net.learnable_params]
                      + [b.diff.copy() for b in solver.net.learnable_params]
                      + [h.data.copy() for h in solver.history])
    return states


@pytest.mark.parametrize("kind", RULES)
@pytest.mark.parametrize("fields", [
    "weight_decay: 0.01",
    'weight_decay: 0.02 regularization_type: "L1" iter_size: 2',
    "iter_size: 3",
])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_update_is_bit_identical(kind, fields, threads, use_threads):
    use_threads(threads)
    fused = trajectory(kind, fields, True)
    plain = trajectory(kind, fields, False)
    for step, (ours, theirs) in enumerate(zip(fused, plain)):
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert a.dtype == np.float32
            assert a.tobytes() == b.tobytes(), f"{kind} step {step} array {index}"


def test_the_cpu_runs_the_fused_update(monkeypatch):
    calls = []
    monkeypatch.setattr(SGDSolver, "_fused_update", lambda self, rate: calls.append(rate))
    trajectory("SGD", "", True, steps=1)
    assert len(calls) == 1
