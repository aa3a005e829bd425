"""The Solver loop: test nets, smoothing, callbacks, actions, non-finite loss, settings checks,
weights, snapshot prefix rules, log wording, and CPU vs (stand-in) GPU."""
import logging
import os
import re

import numpy as np
import pytest
from google.protobuf import text_format

import pycaffelite as pcl
from pycaffelite import device
from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2
from pycaffelite.solvers import NonFiniteLossError, SOLVER_CLASSES

import solver_ref_cases as ref

ACCURACY_LAYER = """
layer {
  name: "accuracy"
  type: "Accuracy"
  bottom: "ip2"
  bottom: "label"
  top: "accuracy"
  include { phase: TEST }
}
"""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder holding the reference net (plus a TEST-only Accuracy layer) and its data."""
    case = ref.copy_case("sgd_step", tmp_path)
    monkeypatch.chdir(case)
    for name in os.listdir("."):
        if name.startswith("sgd_step_iter_"):
            os.remove(name)
    with open("net.prototxt", encoding="utf-8") as handle:
        text = handle.read()
    with open("net_acc.prototxt", "w", encoding="utf-8") as handle:
        handle.write(text + ACCURACY_LAYER)
    return case


def solver_param(**fields):
    """The sgd_step solver with fields replaced (repeated fields given as lists)."""
    param = protoio.read_solver_param("solver.prototxt")
    for name, value in fields.items():
        if isinstance(value, list):
            param.ClearField(name)
            getattr(param, name).extend(value)
        elif isinstance(value, str) and name.endswith("_param"):
            text_format.Parse(value, getattr(param, name))
        elif value is None:
            param.ClearField(name)
        else:
            setattr(param, name, value)
    return param


def lines(caplog):
    return [record.getMessage() for record in caplog.records]


# -- test nets ---------------------------------------------------------------------------------

def test_test_nets_share_weights_and_report_means(work, caplog):
    caplog.set_level(logging.INFO, logger="pycaffelite")
    solver = pcl.get_solver(solver_param(net="net_acc.prototxt", test_iter=[5], test_interval=4,
                                         max_iter=8, snapshot=0, snapshot_after_train=False))
    assert len(solver.test_nets) == 1
    test_net = solver.test_nets[0]
    assert "accuracy" in test_net.blobs and "accuracy" not in solver.net.blobs
    solver.net.params["ip2"][0].data[0, 0] = 123.0
    assert test_net.params["ip2"][0].data[0, 0] == 123.0
    solver.solve()
    log = lines(caplog)
    assert [m for m in log if "Testing net" in m] == [
        "Iteration 0, Testing net (#0)", "Iteration 4, Testing net (#0)", "Iteration 8, Testing net (#0)"]
    # The means of the last test equal a manual pass over the same 5 batches (one epoch).
    outputs = {"accuracy": [], "loss": []}
    for _ in range(5):
        test_net.forward_from_to()
        for name in outputs:
            outputs[name].append(float(test_net.blobs[name].data))
    accuracy, loss = solver.mean_scores[0]
    assert accuracy == pytest.approx(np.mean(outputs["accuracy"]), rel=1e-6)
    assert loss == pytest.approx(np.mean(outputs["loss"]), rel=1e-6)
    last = [m for m in log if "Test net output" in m][-2:]
    assert re.fullmatch(r"    Test net output #0: accuracy = [\d.]+", last[0])
    assert re.fullmatch(r"    Test net output #1: loss = ([\d.]+) \(\* 1 = \1 loss\)", last[1])


def test_test_initialization_off_and_test_compute_loss(work, caplog):
    caplog.set_level(logging.INFO, logger="pycaffelite")
    solver = pcl.get_solver(solver_param(net="net_acc.prototxt", test_iter=[2], test_interval=3,
                                         test_initialization=False, test_compute_loss=True,
                                         max_iter=4, snapshot=0, snapshot_after_train=False))
    solver.solve()
    log = lines(caplog)
    assert [m for m in log if "Testing net" in m] == ["Iteration 3, Testing net (#0)"]
    assert any(re.fullmatch(r"Test loss: [\d.]+", m) for m in log)


def test_explicit_test_nets_and_test_states(work):
    net_text = open("net_acc.prototxt", encoding="utf-8").read()
    param = solver_param(net=None, train_net="net.prototxt", test_net=["net_acc.prototxt"],
                         test_iter=[1, 1], test_interval=1, max_iter=1)
    text_format.Parse(net_text, param.test_net_param.add())
    param.test_state.add(stage=["a"])
    param.test_state.add(stage=["b"])
    solver = pcl.get_solver(param)
    assert len(solver.test_nets) == 2
    assert [list(net.state.stage) for net in solver.test_nets] == [["a"], ["b"]]
    assert all(net.phase == caffe_pb2.TEST for net in solver.test_nets)


@pytest.mark.parametrize("fields, message", [
    (dict(net=None), "exactly one of net, net_param, train_net, train_net_param; found no"),
    (dict(train_net="net.prototxt"), r"found 2 \(net, train_net\)"),
    (dict(net=None, train_net="net.prototxt", test_net=["net.prototxt"]), "test_iter must be given once"),
    (dict(test_iter=[3], test_interval=0), "set test_interval > 0"),
    (dict(test_iter=[3], test_interval=5, test_state=[]), None),
    (dict(type="Adamax"), 'unknown solver type "Adamax"; use one of AdaDelta, AdaGrad, Adam, '
                          "Nesterov, RMSProp, SGD"),
    (dict(lr_policy="cosine"), 'unknown lr_policy "cosine"; use one of fixed, step, exp, inv, '
                               "multistep, poly, sigmoid"),
    (dict(stepsize=0), 'lr_policy "step" needs stepsize > 0'),
    (dict(type="AdaGrad"), "momentum cannot be used with AdaGrad"),
    (dict(type="RMSProp", momentum=0, rms_decay=1.0), r"rms_decay must lie in \[0, 1\)"),
    (dict(regularization_type="L3"), 'unknown regularization_type "L3"'),
    (dict(average_loss=0), "average_loss must be at least 1"),
    (dict(iter_size=0), "iter_size must be at least 1"),
    (dict(net="missing.prototxt"), 'net file "missing.prototxt" not found'),
    (dict(snapshot_prefix="no/such/folder/x"), "cannot write to snapshot prefix 'no/such/folder/x'"),
    (dict(snapshot_prefix=None), "snapshot is set but snapshot_prefix is not"),
])
def test_bad_settings_give_one_clear_error(work, fields, message):
    if message is None:
        pcl.get_solver(solver_param(**fields))
        return
    with pytest.raises(PclError, match=message):
        pcl.get_solver(solver_param(**fields))


def test_deprecated_solver_type_enum(work):
    with open("old.prototxt", "w", encoding="utf-8") as handle:
        handle.write('net: "net.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 1 '
                     "solver_type: NESTEROV momentum: 0.9")
    solver = pcl.get_solver("old.prototxt")
    assert type(solver) is pcl.NesterovSolver and solver.param.type == "Nesterov"
    assert set(SOLVER_CLASSES) == {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"}


def test_per_type_classes_accept_a_path(work):
    solver = pcl.AdamSolver("solver.prototxt")
    assert isinstance(solver, pcl.AdamSolver) and len(solver.history) == 12
    assert solver.source == "solver.prototxt"


# -- snapshot prefix as Caffe resolves it ------------------------------------------------------

def test_snapshot_prefix_defaults_to_the_solver_file(work, caplog):
    caplog.set_level(logging.INFO, logger="pycaffelite")
    os.makedirs("cfg")
    os.makedirs("snaps")
    param = solver_param(snapshot_prefix=None)
    protoio.write_text_proto("cfg/my_solver.prototxt", param)
    assert pcl.get_solver("cfg/my_solver.prototxt").param.snapshot_prefix == os.path.join("cfg", "my_solver")
    assert "snapshot_prefix was not specified and is set to cfg/my_solver" in lines(caplog)
    param.snapshot_prefix = "snaps"
    protoio.write_text_proto("cfg/my_solver.prototxt", param)
    solver = pcl.get_solver("cfg/my_solver.prototxt")
    assert solver.param.snapshot_prefix == os.path.join("snaps", "my_solver")
    solver.step(10)
    assert os.path.exists("snaps/my_solver_iter_10.caffemodel")


# -- loop mechanics --------------------------------------------------------------------------

def test_average_loss_smooths_over_the_last_iterations(work):
    solver = pcl.get_solver(solver_param(average_loss=3))
    raw = []
    solver.add_callback(on_gradients_ready=lambda: raw.append(np.float32(solver.net.blobs["loss"].data)))
    solver.step(7)
    assert solver.smoothed_loss == pytest.approx(np.mean(raw[-3:]), rel=1e-6)
    solver.step(2)  # a new step() starts a new window, as in Caffe
    assert solver.smoothed_loss == pytest.approx(np.mean(raw[-2:]), rel=1e-6)


def test_callbacks_run_around_each_iteration(work):
    solver = pcl.get_solver(solver_param())
    seen = []
    solver.add_callback(lambda: seen.append(("start", solver.iter)),
                        lambda: seen.append(("ready", solver.iter)),
                        on_end=lambda: seen.append(("end", solver.iter)))
    solver.step(2)
    assert seen == [("start", 0), ("ready", 0), ("end", 1), ("start", 1), ("ready", 1), ("end", 2)]


def test_stop_action_ends_with_the_after_train_snapshot(work, caplog):
    caplog.set_level(logging.INFO, logger="pycaffelite")
    solver = pcl.get_solver(solver_param())
    solver.set_action_function(lambda: "stop" if solver.iter == 3 else "none")
    solver.solve()
    assert solver.iter == 3 and solver.requested_early_exit
    assert os.path.exists("sgd_step_iter_3.caffemodel") and os.path.exists("sgd_step_iter_3.solverstate")
    assert "Optimization stopped early." in lines(caplog)
    assert "Optimization Done." not in lines(caplog)


def test_snapshot_action_snapshots_and_continues(work):
    solver = pcl.get_solver(solver_param())
    solver.set_action_function(lambda: "snapshot" if solver.iter == 4 else "none")
    solver.solve()
    assert solver.iter == 20
    assert sorted(n for n in os.listdir(".") if n.endswith(".solverstate")) == [
        "sgd_step_iter_10.solverstate", "sgd_step_iter_20.solverstate", "sgd_step_iter_4.solverstate"]


def test_stop_during_testing_interrupts_the_test(work, caplog):
    caplog.set_level(logging.INFO, logger="pycaffelite")
    solver = pcl.get_solver(solver_param(net="net_acc.prototxt", test_iter=[3], test_interval=5))
    requests = iter(["none"] * 8 + ["stop"] + ["none"] * 100)  # 3 test batches at 0, 5 iterations
    solver.set_action_function(lambda: next(requests))
    solver.solve()
    assert "Test interrupted." in lines(caplog)
    assert solver.iter == 5
    assert os.path.exists("sgd_step_iter_5.caffemodel")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_stops_with_a_snapshot(work):
    solver = pcl.get_solver(solver_param())
    solver.step(2)
    solver.net.params["ip2"][1].data[0] = np.inf
    with pytest.raises(NonFiniteLossError, match=r'iteration 2: the loss is -?nan \(train net output '
                                                 r'#0 "loss" = -?nan\); training stopped before '
                                                 r"updating with it.*sgd_step_iter_2.caffemodel and "
                                                 r"sgd_step_iter_2.solverstate; the weights already "
                                                 r'hold non-finite values \(layer "ip2" param 1\).*base_lr'):
        solver.step(5)
    assert solver.iter == 2
    assert os.path.exists("sgd_step_iter_2.solverstate")
    solver.stop_on_nonfinite_loss = False
    solver.step(1)
    assert solver.iter == 3


def test_weights_field_fine_tunes_train_and_test_nets(work):
    weights = os.path.join(ref.REF_DIR, "sgd_step", "sgd_step_iter_20.caffemodel")
    solver = pcl.get_solver(solver_param(net="net_acc.prototxt", test_iter=[1], test_interval=5,
                                         weights=[weights]))
    expected = ref.load("sgd_step", "trajectory")["iter20/ip1/0"]
    np.testing.assert_array_equal(solver.net.params["ip1"][0].data, expected)
    np.testing.assert_array_equal(solver.test_nets[0].params["ip1"][0].data, expected)


def test_fine_tune_shape_mismatch_names_the_layer(work):
    with open("net.prototxt", encoding="utf-8") as handle:
        text = handle.read().replace("num_output: 4\n    weight_filler { type: \"xavier\" }\n    "
                                     "bias_filler { type: \"uniform\"", "num_output: 5\n    "
                                     "weight_filler { type: \"xavier\" }\n    bias_filler { type: \"uniform\"")
    with open("net5.prototxt", "w", encoding="utf-8") as handle:
        handle.write(text)
    weights = os.path.join(ref.REF_DIR, "sgd_step", "sgd_step_iter_20.caffemodel")
    with pytest.raises(PclError, match=r'layer "ip2".*\(4, 8\).*\(5, 8\).*rename the layer'):
        pcl.get_solver(solver_param(net="net5.prototxt", weights=[weights]))


def test_snapshot_diff_stores_gradients(work):
    solver = pcl.get_solver(solver_param(snapshot_diff=True))
    solver.step(10)
    model = protoio.read_binary_proto("sgd_step_iter_10.caffemodel", caffe_pb2.NetParameter())
    assert all(len(blob.diff) == len(blob.data) > 0 for layer in model.layer for blob in layer.blobs)


# -- log wording -------------------------------------------------------------------------------

def test_log_lines_match_caffes_log(work, caplog):
    """lr lines are exact; loss lines agree with Caffe's log to its 6 printed digits (allowing
    one unit in the last digit where float32 rounding straddles a digit)."""
    caplog.set_level(logging.INFO, logger="pycaffelite")
    solver = pcl.get_solver("solver.prototxt")
    ref.set_params(solver.net, ref.load("sgd_step", "trajectory"), "init", ref.learnable_names("sgd_step"))
    solver.solve()
    with open("caffe_train.log", encoding="utf-8") as handle:
        caffe = [line.split("] ", 1)[1].rstrip("\n") for line in handle if "] " in line]
    ours = lines(caplog)
    pattern = re.compile(r"Iteration \d+, lr = |Snapshotting|Solving|Learning Rate")
    assert [m for m in ours if pattern.match(m)] == [m for m in caffe if pattern.match(m)]
    number = re.compile(r"loss = ([\d.e+-]+)")
    ours_losses = [float(number.search(m).group(1)) for m in ours if "loss = " in m]
    caffe_losses = [float(number.search(m).group(1)) for m in caffe if "loss = " in m]
    np.testing.assert_allclose(ours_losses, caffe_losses, rtol=1e-5)
    assert [m.split(" (")[0] for m in ours if m.startswith("Iteration") and "iter/s" in m] == [
        m.split(" (")[0] for m in caffe if m.startswith("Iteration") and "iter/s" in m]


def test_gradient_clipping_logs_where_caffe_clipped(work, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="pycaffelite")
    case = ref.copy_case("sgd_fixed_clip", tmp_path / "clip")
    os.chdir(case)
    solver = pcl.get_solver("solver.prototxt")
    ref.set_params(solver.net, ref.load("sgd_fixed_clip", "trajectory"), "init",
                   ref.learnable_names("sgd_fixed_clip"))
    solver.step(20)
    clipped, current = [], None
    for message in lines(caplog):
        match = re.match(r"Iteration (\d+), lr", message)
        if match:
            current = int(match.group(1))
        if message.startswith("Gradient clipping: scaling down gradients (L2 norm "):
            clipped.append(current)
    assert clipped == [0, 1, 2, 3, 4, 7, 8, 13, 15, 16, 17, 18]
    trajectory = ref.load("sgd_fixed_clip", "trajectory")
    scales = [float(m.rsplit(" ", 1)[1]) for m in lines(caplog) if m.startswith("Gradient clipping")]
    np.testing.assert_allclose(scales, trajectory["clip_scale_log"][clipped], rtol=1e-5)


# -- devices -----------------------------------------------------------------------------------

def test_cpu_and_gpu_stand_in_train_alike(work, any_mode):
    solver = pcl.get_solver(solver_param(type="Adam", clip_gradients=1.0, iter_size=2,
                                         regularization_type="L1"))
    ref.set_params(solver.net, ref.load("sgd_step", "trajectory"), "init", ref.learnable_names("sgd_step"))
    solver.step(6)
    result = np.concatenate([blob.cpu_data().ravel() for blob in solver.net.learnable_params])
    device.set_mode_cpu()
    reference = _cpu_reference(solver_param(type="Adam", clip_gradients=1.0, iter_size=2,
                                            regularization_type="L1"))
    np.testing.assert_array_equal(result, reference)


def _cpu_reference(param):
    solver = pcl.get_solver(param)
    ref.set_params(solver.net, ref.load("sgd_step", "trajectory"), "init", ref.learnable_names("sgd_step"))
    solver.step(6)
    return np.concatenate([blob.cpu_data().ravel() for blob in solver.net.learnable_params])
