"""The `caffe` package: pycaffe's module layout and module-level functions over pycaffelite, the
solver surface, and a real pycaffe earlier on PYTHONPATH winning over ours."""
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
import caffe.proto.caffe_pb2
import pycaffelite as pcl
from pycaffelite import device
from pycaffelite.proto import caffe_pb2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODULE_NAMES = ["Net", "SGDSolver", "NesterovSolver", "AdaGradSolver", "RMSPropSolver",
                "AdaDeltaSolver", "AdamSolver", "NCCL", "Timer", "init_log", "log", "set_mode_cpu",
                "set_mode_gpu", "set_device", "Layer", "get_solver", "layer_type_list",
                "set_random_seed", "solver_count", "set_solver_count", "solver_rank",
                "set_solver_rank", "set_multiprocess", "has_nccl", "__version__", "TRAIN", "TEST",
                "NetSpec", "layers", "params", "proto"]


def test_pycaffes_names_are_pycaffelites_objects():
    for name in MODULE_NAMES:
        assert hasattr(caffe, name), name
    assert caffe.Net is pcl.Net and caffe.Layer is pcl.Layer and caffe.SGDSolver is pcl.SGDSolver
    assert caffe.proto.caffe_pb2.NetParameter is caffe_pb2.NetParameter
    assert (caffe.TRAIN, caffe.TEST) == (caffe_pb2.TRAIN, caffe_pb2.TEST)
    assert caffe.__version__ == "1.0.0"
    from caffe.pycaffe import Net, SGDSolver  # noqa: PLC0415
    assert (Net, SGDSolver) == (pcl.Net, pcl.SGDSolver)


def test_layer_type_list_holds_every_registered_type():
    types = caffe.layer_type_list()
    assert types == sorted(types)
    for name in ("Data", "Convolution", "InnerProduct", "Python", "Input", "SoftmaxWithLoss"):
        assert name in types


def test_nccl_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "cupy.cuda", None)
    assert caffe.has_nccl() is False
    with pytest.raises(pcl.PclError, match=r"pip install 'pycaffelite\[gpu\]'"):
        caffe.NCCL.new_uid()
    with pytest.raises(pcl.PclError, match="needs cupy with NCCL"):
        caffe.NCCL(None, b"")


def test_solver_count_and_rank():
    try:
        assert (caffe.solver_count(), caffe.solver_rank()) == (1, 0)
        caffe.set_solver_count(4)
        caffe.set_solver_rank(3)
        assert (caffe.solver_count(), caffe.solver_rank()) == (4, 3)
        with pytest.raises(pcl.PclError, match=r"solver rank must be in \[0, 3\]"):
            caffe.set_solver_rank(4)
        with pytest.raises(pcl.PclError, match="at least 1"):
            caffe.set_solver_count(0)
        caffe.set_multiprocess(True)
        assert device.multiprocess()
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)
        caffe.set_multiprocess(False)


def test_timer_measures_milliseconds():
    timer = caffe.Timer()
    timer.start()
    time.sleep(0.02)
    timer.stop()
    assert 15 < timer.ms < 1000
    stopped = timer.ms
    time.sleep(0.01)
    assert timer.ms == stopped


def test_init_log_and_log(capfd):
    logger = logging.getLogger("pycaffelite")
    level, handlers = logger.level, list(logger.handlers)
    try:
        caffe.init_log(0)
        caffe.log("a line from a script")
        caffe.init_log(1)
        caffe.log("an info line that level 1 hides")
        with pytest.raises(ValueError, match="0 \\(INFO\\) to 3"):
            caffe.init_log(4)
    finally:
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)
        logger.setLevel(level)
    err = capfd.readouterr().err
    assert "] a line from a script" in err and err.startswith("I")
    assert "level 1 hides" not in err


def test_the_solver_surface(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text("""
    layer { name: "x" type: "DummyData" top: "x" top: "y" dummy_data_param {
            shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 } data_filler { type: "constant" value: 1 }
            data_filler { type: "constant" value: 2 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "p" inner_product_param { num_output: 1 } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }
    """)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" test_iter: 1 test_interval: 5 base_lr: 0.1 lr_policy: "step" gamma: 0.5 '
        'stepsize: 3 max_iter: 6 snapshot_prefix: "s"')
    solver = caffe.get_solver("solver.prototxt")
    assert isinstance(solver, caffe.SGDSolver) and solver.param.max_iter == 6
    assert len(solver.test_nets) == 1 and solver.iter == 0 and solver.lr == pytest.approx(0.1)
    calls = []
    solver.add_callback(lambda: calls.append("start"), lambda: calls.append("ready"))
    solver.step(4)
    assert solver.iter == 4 and calls == ["start", "ready"] * 4
    assert solver.lr == pytest.approx(0.05)
    model, state = solver.snapshot()
    assert (model, state) == ("s_iter_4.caffemodel", "s_iter_4.solverstate")
    solver.solve()
    assert solver.iter == 6
    other = caffe.SGDSolver("solver.prototxt")
    other.restore(state)
    assert other.iter == 4
    net = caffe.Net("net.prototxt", caffe.TEST)
    solver.share_weights(net)
    solver.net.params["ip"][0].data[...] = 3
    np.testing.assert_array_equal(net.params["ip"][0].data, 3)
    net.params["ip"][0].diff[...] = 1
    solver.net.params["ip"][0].diff[...] = 1
    before = solver.net.params["ip"][0].data.copy()
    solver.apply_update()
    assert (solver.net.params["ip"][0].data < before).all()


def test_a_real_pycaffe_earlier_on_pythonpath_wins(tmp_path):
    fake = tmp_path / "caffe"
    fake.mkdir()
    (fake / "__init__.py").write_text("WHICH = 'the real pycaffe'\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    result = subprocess.run([sys.executable, "-c", "import caffe; print(caffe.WHICH)"], env=env,
                            capture_output=True, text=True, cwd=tmp_path.parent, timeout=60)
    assert result.stdout.strip() == "the real pycaffe", result.stderr


def test_caffe_net_reads_text_merged_by_scripts(tmp_path):
    param = caffe.proto.caffe_pb2.NetParameter()
    text_format.Merge('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }', param)
    path = tmp_path / "n.prototxt"
    path.write_text(str(param))
    assert caffe.Net(str(path), caffe.TEST).inputs == ["x"]
