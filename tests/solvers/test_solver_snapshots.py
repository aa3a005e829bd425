"""Snapshots and resume: Caffe's files load here, ours have Caffe's layout, a resumed run equals
the uninterrupted one bit for bit, and wrong files are explained."""
import os

import h5py
import numpy as np
import pytest

import pycaffelite as pcl
from pycaffelite.errors import PclError
from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2
from pycaffelite.solvers import solverstate

import solver_ref_cases as ref


def fresh_solver(case, solver_file="solver.prototxt"):
    solver = pcl.get_solver(solver_file)
    ref.set_params(solver.net, ref.load(case, "trajectory"), "init", ref.learnable_names(case))
    return solver


def params_of(net):
    return {f"{layer}/{i}": np.array(blob.data) for layer, blobs in net.params.items()
            for i, blob in enumerate(blobs)}


@pytest.mark.parametrize("case", ref.FRESH_CASES)
def test_caffe_snapshots_load_exactly(case, case_dir):
    case_dir(case)
    trajectory, names = ref.load(case, "trajectory"), ref.learnable_names(case)
    suffix = ".h5" if case == "hdf5_snapshot" else ""
    solver = pcl.get_solver("solver.prototxt")
    solver.net.copy_from(f"{case}_iter_20.caffemodel{suffix}")
    for name in names:
        np.testing.assert_array_equal(ref.param_blob(solver.net, name).data, trajectory[f"iter20/{name}"])
    solver.restore(f"{case}_iter_10.solverstate{suffix}")
    assert solver.iter == 10
    assert solver.current_step == ref.meta(case)["solverstate_iter10"]["current_step"]
    for name in names:
        np.testing.assert_array_equal(ref.param_blob(solver.net, name).data, trajectory[f"iter10/{name}"])
    for i, blob in enumerate(solver.history):
        np.testing.assert_array_equal(blob.data, trajectory[f"history10/{i}"])


def _without_values(net_param):
    stripped = caffe_pb2.NetParameter()
    stripped.CopyFrom(net_param)
    for layer in stripped.layer:
        for blob in layer.blobs:
            blob.ClearField("data")
    return stripped


@pytest.mark.parametrize("case", ["sgd_step", "adam"])
def test_binary_snapshots_have_caffes_layout(case, case_dir, tmp_path):
    case_dir(case)
    os.makedirs("ours")
    solver = fresh_solver(case)
    solver.param.snapshot_prefix = os.path.join("ours", case)
    solver.step(10)
    ours = protoio.read_binary_proto(f"ours/{case}_iter_10.caffemodel", caffe_pb2.NetParameter())
    caffes = protoio.read_binary_proto(f"{case}_iter_10.caffemodel", caffe_pb2.NetParameter())
    assert _without_values(ours) == _without_values(caffes)
    assert os.path.getsize(f"ours/{case}_iter_10.caffemodel") == os.path.getsize(f"{case}_iter_10.caffemodel")
    state = protoio.read_binary_proto(f"ours/{case}_iter_10.solverstate", caffe_pb2.SolverState())
    caffe_state = protoio.read_binary_proto(f"{case}_iter_10.solverstate", caffe_pb2.SolverState())
    assert (state.iter, state.current_step) == (caffe_state.iter, caffe_state.current_step)
    assert state.HasField("current_step")
    assert state.learned_net == f"ours/{case}_iter_10.caffemodel"
    assert [tuple(b.shape.dim) for b in state.history] == [tuple(b.shape.dim) for b in caffe_state.history]
    # A state rewritten from Caffe's own values reproduces Caffe's bytes.
    rewritten = tmp_path / "rewritten.solverstate"
    solverstate.write_solverstate(rewritten, solverstate.read_solverstate(f"{case}_iter_10.solverstate"))
    with open(rewritten, "rb") as a, open(f"{case}_iter_10.solverstate", "rb") as b:
        assert a.read() == b.read()


def _hdf5_layout(path):
    layout = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            kind = obj.id.get_type()
            extra = (kind.get_size(), kind.get_strpad()) if obj.dtype.kind == "S" else ()
            layout[name] = (str(obj.dtype) if obj.dtype.kind != "S" else "S", obj.shape) + extra
        else:
            layout[name] = "group"

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return layout


def test_hdf5_snapshots_have_caffes_layout(case_dir):
    case = "hdf5_snapshot"
    case_dir(case)
    os.makedirs("ours")
    solver = fresh_solver(case)
    solver.param.snapshot_prefix = "ours/" + case
    solver.step(10)
    assert _hdf5_layout(f"ours/{case}_iter_10.caffemodel.h5") == _hdf5_layout(f"{case}_iter_10.caffemodel.h5")
    ours = _hdf5_layout(f"ours/{case}_iter_10.solverstate.h5")
    caffes = _hdf5_layout(f"{case}_iter_10.solverstate.h5")
    # learned_net differs only by the "ours/" in its path (a NUL-terminated string of len + 1).
    assert ours.pop("learned_net") == ("S", (), len("ours/") + caffes.pop("learned_net")[2], 0)
    # pycaffelite's run state (see test_exact_resume) is one group Caffe does not read.
    assert ours.pop("pycaffelite") == "group" and ours.pop("pycaffelite/run_state")[0] == "uint8"
    assert ours == caffes
    with h5py.File(f"ours/{case}_iter_10.solverstate.h5", "r") as f:
        assert f["learned_net"][()] == f"ours/{case}_iter_10.caffemodel.h5".encode()


def test_resume_from_caffes_hdf5_state(case_dir):
    case = "hdf5_snapshot"
    case_dir(case)
    trajectory = ref.load(case, "trajectory")
    solver = pcl.get_solver("solver.prototxt")
    solver.param.snapshot_prefix = "resumed"
    solver.solve(f"{case}_iter_10.solverstate.h5")
    assert solver.iter == 20
    for name in ref.learnable_names(case):
        deviation = ref.max_rel_deviation(ref.param_blob(solver.net, name).data, trajectory[f"iter20/{name}"])
        assert deviation < 1e-5
    assert os.path.exists("resumed_iter_20.caffemodel.h5")


@pytest.mark.parametrize("case", ["sgd_step", "adam", "sgd_multistep", "hdf5_snapshot", "sgd_itersize"])
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(case, case_dir):
    """10 iterations are whole epochs here, so the data position agrees after a resume (Caffe
    stores no data position either)."""
    case_dir(case)
    suffix = ".h5" if case == "hdf5_snapshot" else ""
    straight = fresh_solver(case)
    straight.param.snapshot_prefix = "straight"
    straight.solve()
    interrupted = fresh_solver(case)
    interrupted.param.snapshot_prefix = "first"
    interrupted.step(10)
    resumed = pcl.get_solver("solver.prototxt")
    resumed.param.snapshot_prefix = "second"
    resumed.solve(f"first_iter_10.solverstate{suffix}")
    assert resumed.iter == straight.iter == 20
    assert resumed.current_step == straight.current_step
    a, b = params_of(straight.net), params_of(resumed.net)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    for h1, h2 in zip(straight.history, resumed.history):
        np.testing.assert_array_equal(h1.data, h2.data)
    assert straight.smoothed_loss == resumed.smoothed_loss


def test_caffemodel_as_solverstate_is_explained(case_dir):
    """Caffe issue #4181: a .caffemodel passed where a .solverstate is expected."""
    case_dir("sgd_step")
    solver = pcl.get_solver("solver.prototxt")
    for weights in ("sgd_step_iter_10.caffemodel",):
        with pytest.raises(PclError, match=r"weights file \(\.caffemodel\), not a solver state.*"
                                           r"sgd_step_iter_10\.solverstate.*--weights"):
            solver.restore(weights)
    os.rename("sgd_step_iter_10.caffemodel", "renamed.bin")
    with pytest.raises(PclError, match="not a solver state"):
        solver.restore("renamed.bin")
    assert solver.iter == 0


def test_hdf5_weights_as_solverstate_is_explained(case_dir):
    case_dir("hdf5_snapshot")
    solver = pcl.get_solver("solver.prototxt")
    os.rename("hdf5_snapshot_iter_10.caffemodel.h5", "weights.h5")
    with pytest.raises(PclError, match="weights file"):
        solver.restore("weights.h5")


def test_history_of_another_solver_type_is_refused(case_dir):
    case_dir("adam")
    solver = pcl.get_solver(_with_type("solver.prototxt", "SGD"))
    before = params_of(solver.net)
    with pytest.raises(PclError, match="12 history blobs.*SGD solver keeps 6"):
        solver.restore("adam_iter_10.solverstate")
    assert solver.iter == 0
    after = params_of(solver.net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def _with_type(solver_file, type_name):
    param = protoio.read_solver_param(solver_file)
    param.type = type_name
    param.ClearField("momentum2")
    return param


def test_missing_state_and_damaged_state(case_dir):
    case_dir("sgd_step")
    solver = pcl.get_solver("solver.prototxt")
    with pytest.raises(PclError, match="no such solver state"):
        solver.restore("nope.solverstate")
    with open("sgd_step_iter_10.solverstate", "rb") as handle:
        data = handle.read()
    with open("cut.solverstate", "wb") as handle:
        handle.write(data[:100])
    with pytest.raises(PclError, match="cut.solverstate"):
        solver.restore("cut.solverstate")


def test_learned_net_found_beside_a_moved_state(case_dir, tmp_path):
    case_dir("sgd_step")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("sgd_step_iter_10.solverstate", "sgd_step_iter_10.caffemodel"):
        os.rename(name, moved / name)
    solver = pcl.get_solver("solver.prototxt")
    solver.restore(str(moved / "sgd_step_iter_10.solverstate"))
    trajectory = ref.load("sgd_step", "trajectory")
    np.testing.assert_array_equal(solver.net.params["ip2"][0].data, trajectory["iter10/ip2/0"])
    os.remove(moved / "sgd_step_iter_10.caffemodel")
    with pytest.raises(PclError, match="neither in the current folder nor beside"):
        solver.restore(str(moved / "sgd_step_iter_10.solverstate"))


def test_snapshot_write_is_atomic(case_dir, monkeypatch):
    """A failure while writing leaves neither a truncated file nor a temporary one behind."""
    case_dir("sgd_step")
    solver = fresh_solver("sgd_step")
    solver.param.snapshot_prefix = "atomic"
    calls = []

    def broken(*args):
        calls.append(args)
        raise OSError("disk full")

    monkeypatch.setattr("pycaffelite.io.protoio.os.replace", broken)
    with pytest.raises(PclError, match="disk full"):
        solver.snapshot()
    assert calls
    assert not [name for name in os.listdir(".") if name.startswith((".atomic", "atomic"))]
