"""What the thread count may change (the README's "What is exact"): only the weight gradients of
Convolution (depthwise ones excepted) and Deconvolution layers, whose per-thread partial sums
are added in a different grouping; every other blob, gradient and solver update is the same to
the bit on 1, 2 or 3 threads."""
import numpy as np
import pytest
from google.protobuf import text_format

from pycaffelite import device
from pycaffelite.proto import caffe_pb2
from pycaffelite.solvers.sgd import SGDSolver

FILLED = 'weight_filler { type: "gaussian" std: 0.1 } bias_filler { type: "constant" value: 0.1 }'

IMAGE_NET = f"""
layer {{ name: "data" type: "Input" top: "data" top: "label"
        input_param {{ shape {{ dim: 6 dim: 3 dim: 12 dim: 12 }} shape {{ dim: 6 }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param {{ num_output: 8 kernel_size: 3 pad: 1 {FILLED} }} }}
layer {{ name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }}
layer {{ name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param {{ bias_term: true }} }}
layer {{ name: "relu" type: "ReLU" bottom: "conv" top: "conv" }}
layer {{ name: "dw" type: "Convolution" bottom: "conv" top: "dw"
        convolution_param {{ num_output: 8 group: 8 kernel_size: 3 pad: 1 {FILLED} }} }}
layer {{ name: "lrn" type: "LRN" bottom: "dw" top: "lrn" lrn_param {{ local_size: 3 }} }}
layer {{ name: "pool" type: "Pooling" bottom: "lrn" top: "pool"
        pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
layer {{ name: "deconv" type: "Deconvolution" bottom: "pool" top: "deconv"
        convolution_param {{ num_output: 4 kernel_size: 2 stride: 2 {FILLED} }} }}
layer {{ name: "avg" type: "Pooling" bottom: "deconv" top: "avg"
        pooling_param {{ pool: AVE kernel_size: 2 stride: 2 }} }}
layer {{ name: "drop" type: "Dropout" bottom: "avg" top: "avg" }}
layer {{ name: "ip" type: "InnerProduct" bottom: "avg" top: "ip"
        inner_product_param {{ num_output: 5 {FILLED} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""

SEQUENCE_NET = f"""
layer {{ name: "data" type: "Input" top: "data" top: "cont" top: "label"
        input_param {{ shape {{ dim: 5 dim: 4 dim: 6 }} shape {{ dim: 5 dim: 4 }}
                      shape {{ dim: 5 dim: 4 }} }} }}
layer {{ name: "lstm" type: "LSTM" bottom: "data" bottom: "cont" top: "lstm"
        recurrent_param {{ num_output: 7 {FILLED} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "lstm" top: "ip"
        inner_product_param {{ num_output: 3 axis: 2 {FILLED} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss"
        softmax_param {{ axis: 2 }} }}
"""

# (layer, param index) whose gradient sums per-thread shares of the batch
THREAD_SUMMED = {("conv", 0), ("deconv", 0)}  # depthwise ("dw") sums in a fixed order


def one_step(net_text, threads, use_threads):
    """Every blob's data and diff, every param's diff and updated value after one SGD step on
    `threads` threads (the same weights, inputs and random streams on every thread count)."""
    use_threads(threads)
    device.set_random_seed(5)
    param = caffe_pb2.SolverParameter()
    text_format.Parse('base_lr: 0.1 momentum: 0.9 weight_decay: 0.001 lr_policy: "fixed" '
                      "max_iter: 10 display: 0", param)
    text_format.Parse(net_text, param.net_param)
    solver = SGDSolver(param)
    net = solver.net
    rng = np.random.default_rng(0)
    for name, blob in net.blobs.items():
        if name == "label":
            blob.data[...] = rng.integers(0, 3, blob.shape)
        elif name == "cont":
            blob.data[...] = np.arange(blob.shape[0])[:, None] > 0
        elif name == "data":
            blob.data[...] = rng.standard_normal(blob.shape)
    solver.step(1)
    blobs = {name: (blob.data.copy(), blob.diff.copy()) for name, blob in net.blobs.items()}
    params = {(name, i): (blob.diff.copy(), blob.data.copy())
              for name, layer_params in net.params.items() for i, blob in enumerate(layer_params)}
    return blobs, params


@pytest.mark.parametrize("net_text", [IMAGE_NET, SEQUENCE_NET], ids=["image", "sequence"])
@pytest.mark.parametrize("threads", [2, 3])
def test_only_convolution_weight_gradients_depend_on_the_thread_count(use_threads, net_text,
                                                                      threads):
    blobs_1, params_1 = one_step(net_text, 1, use_threads)
    blobs_n, params_n = one_step(net_text, threads, use_threads)
    for name, (data, diff) in blobs_1.items():
        np.testing.assert_array_equal(blobs_n[name][0], data, err_msg=f"blob {name} data")
        np.testing.assert_array_equal(blobs_n[name][1], diff, err_msg=f"blob {name} diff")
    for key, (diff, value) in params_1.items():
        if key in THREAD_SUMMED:
            np.testing.assert_allclose(params_n[key][0], diff, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(params_n[key][1], value, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(params_n[key][0], diff, err_msg=f"{key} diff")
            np.testing.assert_array_equal(params_n[key][1], value, err_msg=f"{key} updated")
