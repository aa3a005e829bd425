"""The logic shared by the MPI and NCCL routes (buckets, agreements, broadcast), run through the
NCCL communicator on a stand-in cupy/NCCL whose ranks are threads: no MPI, no GPU needed."""
import threading

import numpy as np
import pytest

import standin
from pycaffelite import Net, device, parallel
from pycaffelite.distributed.buckets import GradientReducer
from pycaffelite.distributed.data_parallel import broadcast_weights
from pycaffelite.distributed.group import CommunicatorGroup
from pycaffelite.distributed.nccl_comm import NcclCommunicator
from pycaffelite.proto import caffe_pb2
from pycaffelite.solvers import SGDSolver
from google.protobuf import text_format

BATCH = 4
NET = """name: "memory"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: %d channels: 1 height: 5 width: 5 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "conv" top: "ip1"
  param { name: "shared" } inner_product_param { num_output: 36 bias_term: false
    weight_filler { type: "xavier" } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { name: "shared" } inner_product_param { num_output: 36 bias_term: false } }
layer { name: "ip3" type: "InnerProduct" bottom: "ip2" top: "ip3"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip3" bottom: "label" top: "loss" }
""" % BATCH


def solver(iter_size, layer_wise_reduce=True):
    param = caffe_pb2.SolverParameter()
    text_format.Parse(f'base_lr: 0.05 momentum: 0.9 weight_decay: 0.01 lr_policy: "fixed" '
                      f"max_iter: 100 iter_size: {iter_size} random_seed: 3 "
                      f"layer_wise_reduce: {str(layer_wise_reduce).lower()}", param)
    text_format.Parse(NET, param.net_param)
    return SGDSolver(param)


def feed(solver_, data, labels):
    solver_.net.layer_dict["data"].set_input_arrays(data, labels)


def standin_comm(uid, rank, size=2):
    """Rank `rank` of a group of stand-in GPUs (threads) joined by `uid`."""
    return NcclCommunicator(size, uid, rank, cupy=standin.cupy, nccl=standin.nccl)


def wire(solver_, comm):
    """What DataParallel (and pycaffe's NCCL) do, for a solver made before its rank was known."""
    reducer = GradientReducer(solver_.net, comm, solver_.param.iter_size, bucket_bytes=256)
    solver_.add_callback(on_start=reducer.start_iteration, on_gradients_ready=reducer.finish)
    if solver_.param.layer_wise_reduce:
        solver_.net.after_backward(reducer.layer_done)
    solver_.group = CommunicatorGroup(comm)
    broadcast_weights(solver_.net, comm)
    return reducer


def params(solver_):
    return [np.array(blob.cpu_data()) for blob in solver_.net.learnable_params]


@pytest.fixture
def standin_gpus():
    """GPU mode on the stand-in cupy; each solver's layers in its own thread."""
    before = parallel.num_threads()
    parallel.set_num_threads(1)
    device.install_device(standin.StandInGpu())
    device.set_mode_gpu()
    yield
    parallel.set_num_threads(before)


@pytest.mark.parametrize("layer_wise_reduce, iter_size", [(True, 1), (False, 1), (True, 2)])
def test_two_standin_gpus_equal_one_solver_with_twice_the_iter_size(standin_gpus,
                                                                    layer_wise_reduce, iter_size):
    iterations = 4
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2 * iter_size * BATCH * iterations, 1, 5, 5)).astype(np.float32)
    labels = (np.arange(len(data)) % 3).astype(np.float32)
    alone = solver(iter_size=2 * iter_size)
    feed(alone, data, labels)
    # of the batches the solver alone takes in an iteration, rank r takes the r-th half
    pairs = np.arange(len(data)).reshape(iterations, 2, iter_size * BATCH)
    ranks = [solver(iter_size, layer_wise_reduce=layer_wise_reduce) for _ in range(2)]
    for rank, ranked in enumerate(ranks):
        rows = pairs[:, rank].reshape(-1)
        feed(ranked, data[rows], labels[rows])
    for blob in ranks[1].net.learnable_params:  # rank 0's weights must reach rank 1
        blob.write_data()[...] = 7
    uid = f"test-{layer_wise_reduce}-{iter_size}"
    comms = [standin_comm(uid, rank) for rank in range(2)]
    reducers, errors = [None, None], []

    def train(rank):
        try:
            reducers[rank] = wire(ranks[rank], comms[rank])  # a collective: in the ranks' threads
            ranks[rank].step(iterations)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    alone.step(iterations)
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    for mine, theirs, reference in zip(params(ranks[0]), params(ranks[1]), params(alone)):
        np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-6)
    assert len(reducers[0].buckets) > 1
    calls = comms[0].comm.calls
    assert calls[:len(alone.net.learnable_params)] == [
        ("bcast", blob.count, "float32") for blob in alone.net.learnable_params]
    # per iteration: the buckets (float32), the loss check and the action agreement (float64)
    per_iteration = [call[2] for call in calls[len(alone.net.learnable_params):]]
    assert per_iteration.count("float64") == 2 * iterations


def test_buckets_start_after_the_layer_completing_their_params():
    net = Net(_net(), caffe_pb2.TRAIN)
    comm = standin_comm("layout", 0, size=1)
    reducer = GradientReducer(net, comm, bucket_bytes=36 * 36 * 4)
    learnable = {id(blob): name for name, blobs in net.params.items() for blob in blobs}
    layout = {net.layer_names[layer]: [[learnable[id(blob)] for blob in bucket.params]
                                       for bucket in buckets]
              for layer, buckets in reducer.starts_after.items()}
    # ip3's params complete after ip3; the shared weights only after ip1, their lowest user
    assert layout == {"ip1": [["ip3", "ip3", "ip1"]], "conv": [["conv", "conv"]]}


def _net():
    param = caffe_pb2.NetParameter()
    text_format.Parse(NET, param)
    return param
