"""Python layers (`type: "Python"`): created from python_param, trained by solvers, saved in
snapshots, run by `pcl train`, and explained clearly when the user's module or code fails."""
import os
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
import pycaffelite as pcl
from pycaffelite.errors import USER_CODE_ATTRIBUTE
from pycaffelite.proto import caffe_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture(autouse=True)
def _test_layers_importable(monkeypatch):
    monkeypatch.syspath_prepend(HERE)


def regression_net(loss_layer):
    return f"""
    name: "regression"
    layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 8 dim: 3 }} }} }}
    layer {{ name: "y" type: "Input" top: "y" input_param {{ shape {{ dim: 8 dim: 2 }} }} }}
    layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "p"
            inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
    {loss_layer}
    """


BUILT_IN_LOSS = 'layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }'
PYTHON_LOSS = ('layer { name: "loss" type: "Python" bottom: "p" bottom: "y" top: "loss" loss_weight: 1 '
               'python_param { module: "pylayers" layer: "EuclideanLoss" } }')


def solver_param(net_text, **fields):
    param = caffe_pb2.SolverParameter(base_lr=0.05, momentum=0.9, lr_policy="fixed", max_iter=30,
                                      random_seed=5, snapshot_after_train=False, **fields)
    param.net_param.CopyFrom(text_format.Parse(net_text, caffe_pb2.NetParameter()))
    return param


def trained_losses(solver, iterations):
    """Fit y = x A on fixed random data; the smoothed loss after each iteration."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3))
    solver.net.blobs["x"].data[...] = x
    solver.net.blobs["y"].data[...] = x @ rng.normal(size=(3, 2))
    values = []
    for _ in range(iterations):
        solver.step(1)
        values.append(solver.smoothed_loss)
    return values


def test_a_python_euclidean_loss_trains_like_the_built_in_one():
    built_in = pcl.SGDSolver(solver_param(regression_net(BUILT_IN_LOSS)))
    expected = trained_losses(built_in, 20)
    python = pcl.SGDSolver(solver_param(regression_net(PYTHON_LOSS)))
    assert python.net.layers[-1].type == "Python"
    found = trained_losses(python, 20)
    np.testing.assert_allclose(found, expected, rtol=1e-5)
    assert found[-1] < found[0] / 2
    np.testing.assert_allclose(python.net.params["ip"][0].data, built_in.net.params["ip"][0].data,
                               rtol=1e-5)


def net_from(text, phase=caffe.TRAIN):
    return caffe.Net(text_format.Parse(text, caffe_pb2.NetParameter()), phase)


SCALED = """
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "triple" type: "Python" bottom: "x" top: "t"
        python_param { module: "pylayers" layer: "Multiply" param_str: "3" } }
layer { name: "scale" type: "Python" bottom: "t" top: "s"
        python_param { module: "pylayers" layer: "LearnedScale" } }
"""


def test_param_str_and_learnable_blobs():
    net = net_from(SCALED)
    assert net.layer_dict["triple"].param_str == "3"
    assert list(net.params) == ["scale"] and net.params["scale"][0].shape == (1,)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.params["scale"][0].data[...] = 2
    out = net.forward(x=x)
    np.testing.assert_array_equal(out["s"], 6 * x)
    net.blobs["s"].diff[...] = 1
    net.backward()
    np.testing.assert_array_equal(net.blobs["x"].diff, np.full((2, 3), 6))
    assert net.params["scale"][0].diff[0] == pytest.approx((3 * x).sum())


def test_learnable_blobs_are_updated_and_survive_a_snapshot(tmp_path):
    text = SCALED.replace('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }',
                          'layer { name: "d" type: "DummyData" top: "x" top: "target" dummy_data_param { '
                          'shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } data_filler { type: "constant" value: 1 } '
                          'data_filler { type: "constant" value: 6 } } }')
    text += 'layer { name: "loss" type: "EuclideanLoss" bottom: "s" bottom: "target" top: "loss" }'
    solver = pcl.SGDSolver(solver_param(text, snapshot_prefix=str(tmp_path / "py")))
    solver.step(60)
    learned = float(solver.net.params["scale"][0].data[0])
    assert learned == pytest.approx(2.0, abs=0.05)  # 3 * w * 1 = 6
    model, state = solver.snapshot()
    fresh = pcl.SGDSolver(solver_param(text, snapshot_prefix=str(tmp_path / "py")))
    assert fresh.net.params["scale"][0].data[0] == 1
    fresh.restore(state)
    assert fresh.net.params["scale"][0].data[0] == learned
    reloaded = net_from(SCALED)
    reloaded.copy_from(model)
    assert reloaded.params["scale"][0].data[0] == learned


def test_phase_is_given_to_the_layer():
    text = 'layer { name: "p" type: "Python" top: "phase" python_param { module: "pylayers" layer: "Phase" } }'
    for phase in (caffe.TRAIN, caffe.TEST):
        assert net_from(text, phase).forward()["phase"] == phase


@pytest.mark.parametrize("python_param,match", [
    ('module: "no_such_module" layer: "X"',
     r'layer "bad" \(Python\): cannot import module "no_such_module": it is not on the Python path'),
    ('module: "pylayers" layer: "NoSuchLayer"',
     r'module "pylayers" \(.*pylayers.py\) has no class "NoSuchLayer"; its layer classes: '
     r"EuclideanLoss, FailsInForward, LearnedScale, Multiply, Phase"),
    ('module: "pylayers" layer: "np"', r"pylayers.np is not a layer class"),
    ('layer: "X"', r"python_param needs both module and layer"),
])
def test_module_and_class_mistakes_are_clear(python_param, match):
    text = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
            f'layer {{ name: "bad" type: "Python" bottom: "x" top: "y" python_param {{ {python_param} }} }}')
    with pytest.raises(pcl.PclError, match=match):
        net_from(text)


def test_an_exception_in_user_code_keeps_its_type_and_says_where():
    text = ('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
            'layer { name: "bad" type: "Python" bottom: "x" top: "y" '
            'python_param { module: "pylayers" layer: "FailsInForward" } }')
    net = net_from(text)
    with pytest.raises(RuntimeError, match="the user's forward gave up") as caught:
        net.forward()
    where = getattr(caught.value, USER_CODE_ATTRIBUTE)
    assert where.startswith('layer "bad" (Python pylayers.FailsInForward): forward failed: '
                            "RuntimeError: the user's forward gave up (")
    assert "pylayers.py:" in where and 'raise RuntimeError("the user' in where


# `pcl` as its console script runs it: the current folder is not on sys.path by itself.
PCL = [sys.executable, "-c", "import sys; sys.path.remove(''); from pycaffelite.cli import main; main()"]

USER_MODULE = '''
import numpy as np
import caffe


class Double(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        if self.param_str == "fail":
            raise ValueError("bad input for Double")
        top[0].data[...] = 2 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 2 * top[0].diff
'''


def run_pcl_train(folder, param_str):
    net = regression_net(BUILT_IN_LOSS).replace(
        'bottom: "p" bottom: "y"', 'bottom: "p2" bottom: "y"').replace(
        "    layer { name: \"loss\"",
        f'    layer {{ name: "double" type: "Python" bottom: "p" top: "p2" '
        f'python_param {{ module: "user_layers" layer: "Double" param_str: "{param_str}" }} }}\n'
        "    layer { name: \"loss\"")
    (folder / "net.prototxt").write_text(net)
    (folder / "solver.prototxt").write_text('net: "net.prototxt" base_lr: 0.01 lr_policy: "fixed" '
                                            'max_iter: 5 display: 1 snapshot_prefix: "snap"')
    (folder / "user_layers.py").write_text(USER_MODULE)
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(PCL + ["train", "--solver", "solver.prototxt"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)


def test_pcl_train_imports_python_layers_from_the_current_folder(tmp_path):
    result = run_pcl_train(tmp_path, "")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Iteration 5, loss = " in result.stderr
    assert (tmp_path / "snap_iter_5.caffemodel").exists()


def test_pcl_train_reports_the_users_error_in_one_message(tmp_path):
    result = run_pcl_train(tmp_path, "fail")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('pcl: error: layer "double" (Python user_layers.Double): forward failed: '
                           "ValueError: bad input for Double (")
    assert "user_layers.py:12" in last
