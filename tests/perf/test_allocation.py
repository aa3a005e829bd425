"""No steady-state allocation churn: once a net has run a few training steps, a further step
(forward, backward, in-place SGD update) allocates no new large arrays.

tracemalloc sees numpy's array buffers, so the peak of traced memory during a call, above what
was held when the call began, is the largest set of temporaries alive at once. Buffers belong in
reshape (done once per shape), not in forward or backward. Two kinds of temporaries are told
apart:

* numpy's own ufunc buffers (for casts, e.g. bool -> int32) hold at most 8192 elements per
  operand, whatever the array sizes: tolerated up to BOUNDED_LIMIT per call;
* an array-sized temporary (a copy of a blob, a weight-sized product) grows with what it
  copies: it is caught either by its size (over BOUNDED_LIMIT) or by growing with the batch
  (more than GROWTH_LIMIT between batch 16 and batch 64 of the same net).

Each layer and pass is its own test case, so a failure names the layer. Nothing here measures
time. The peaks are measured with one CPU thread: with two, whether the threads' bounded ufunc
buffers happen to be alive at the same moment varies from call to call. Memory held across
steps is checked with both.
"""
import tracemalloc

import numpy as np
import pytest

from pycaffelite import parallel
from pycaffelite.net import Net

# Caffe's MNIST LeNet layers, fed by Input layers; BATCH is filled in.
LENET = """
name: "SmallLeNet"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: BATCH dim: 1 dim: 28 dim: 28 } shape { dim: BATCH } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""
SMALL_BATCH, LARGE_BATCH = 16, 64
# numpy's ufunc buffers: 8192 elements x up to 3 operands x 8 bytes = 192 KB at most.
BOUNDED_LIMIT = 256 * 1024
# Between batch 16 and 64 the smallest blob of the net (ip1's 500 values per image) grows by
# 94 KB, so a copy of any blob grows by more than this.
GROWTH_LIMIT = 32 * 1024
WARMUP_STEPS = 3
LR, MOMENTUM = 0.01, 0.9

PASSES = [("conv1", "forward"), ("pool1", "forward"), ("conv2", "forward"), ("pool2", "forward"),
          ("ip1", "forward"), ("relu1", "forward"), ("ip2", "forward"), ("loss", "forward"),
          ("loss", "backward"), ("ip2", "backward"), ("relu1", "backward"), ("ip1", "backward"),
          ("pool2", "backward"), ("conv2", "backward"), ("pool1", "backward"), ("conv1", "backward")]


def build_net(tmp_path, batch):
    path = tmp_path / f"lenet_{batch}.prototxt"
    path.write_text(LENET.replace("BATCH", str(batch)))
    net = Net(str(path), "TRAIN")
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["label"].data[...] = rng.integers(0, 10, size=net.blobs["label"].shape)
    return net


class InPlaceSGD:
    """SGD with momentum on net.learnable_params, every operation in place on preallocated arrays."""

    def __init__(self, net):
        self.params = net.learnable_params
        self.history = [np.zeros(p.shape, dtype=p.data.dtype) for p in self.params]
        self.scratch = [np.empty(p.shape, dtype=p.data.dtype) for p in self.params]

    def update(self):
        for blob, history, scratch in zip(self.params, self.history, self.scratch):
            history *= MOMENTUM
            np.multiply(blob.diff, LR, out=scratch)
            history += scratch
            data = blob.data
            data -= history


def train_step(net, solver):
    net.clear_param_diffs()
    net.forward_backward()
    solver.update()


def growth(action):
    """(peak above the starting level, memory still held afterwards) of traced memory, in bytes."""
    start = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    action()
    current, peak = tracemalloc.get_traced_memory()
    return peak - start, current - start


def warmed_up(tmp_path, batch):
    net = build_net(tmp_path, batch)
    solver = InPlaceSGD(net)
    for _ in range(WARMUP_STEPS):
        train_step(net, solver)
    return net, solver


def layer_call(net, name, which):
    i = net.layer_names.index(name)
    layer, bottom, top = net.layers[i], net.bottom_vecs[i], net.top_vecs[i]
    if which == "forward":
        return lambda: layer.forward_loss(bottom, top)
    need = net.bottom_need_backward[i]
    return lambda: layer.backward(top, need, bottom)


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.fixture(scope="module")
def one_thread():
    before = parallel.num_threads()
    parallel.set_num_threads(1)
    yield
    parallel.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """Warmed-up (net, solver) pairs at both batch sizes, made before tracing starts."""
    folder = tmp_path_factory.mktemp("allocation")
    return {batch: warmed_up(folder, batch) for batch in (SMALL_BATCH, LARGE_BATCH)}


@pytest.fixture(scope="module")
def nets(trained):
    return {batch: net for batch, (net, _) in trained.items()}


@pytest.mark.parametrize("name, which", PASSES)
def test_layer_pass_makes_no_array_sized_temporaries(nets, traced, name, which):
    small = growth(layer_call(nets[SMALL_BATCH], name, which))[0]
    large = growth(layer_call(nets[LARGE_BATCH], name, which))[0]
    assert small < BOUNDED_LIMIT and large < BOUNDED_LIMIT, (
        f"{name} {which} allocates {small / 1024:.0f} KB (batch {SMALL_BATCH}) / "
        f"{large / 1024:.0f} KB (batch {LARGE_BATCH}) of temporaries per call")
    assert large - small < GROWTH_LIMIT, (
        f"{name} {which}: temporaries grow with the batch, {small / 1024:.0f} KB at batch "
        f"{SMALL_BATCH} -> {large / 1024:.0f} KB at batch {LARGE_BATCH}: a blob-sized copy per call")


def test_whole_training_step_makes_no_array_sized_temporaries(trained, traced):
    peaks = {}
    for batch, (net, solver) in trained.items():
        peaks[batch] = max(growth(lambda: train_step(net, solver))[0] for _ in range(2))
    assert peaks[SMALL_BATCH] < BOUNDED_LIMIT and peaks[LARGE_BATCH] < BOUNDED_LIMIT, peaks
    assert peaks[LARGE_BATCH] - peaks[SMALL_BATCH] < GROWTH_LIMIT, peaks


@pytest.mark.parametrize("threads", [1, 2])
def test_memory_held_does_not_grow_across_steps(tmp_path, threads, monkeypatch):
    """Nothing accumulates from step to step, also with the work of a layer in two threads
    (each keeping buffers of its own)."""
    monkeypatch.setattr(parallel, "_num_threads", threads)
    net, solver = warmed_up(tmp_path, SMALL_BATCH)
    tracemalloc.start()
    try:
        held = [growth(lambda: train_step(net, solver))[1] for _ in range(5)]
    finally:
        tracemalloc.stop()
    assert sum(held) < 16 * 1024, f"memory held grows by {held} bytes per step"


def test_in_place_sgd_itself_allocates_nothing(tmp_path, traced):
    net = build_net(tmp_path, SMALL_BATCH)
    solver = InPlaceSGD(net)
    solver.update()
    peak, held = growth(solver.update)
    assert peak < 1024 and held < 1024
