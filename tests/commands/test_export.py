"""`pcl export NET WEIGHTS OUT.onnx`: the written model runs in onnxruntime with the trained
weights, the options work, and mistakes end in one `pcl: error:` line."""
import os

import numpy as np
import pytest

from onnx_check import ort
import pycaffelite as pcl
from pycaffelite.commands.export import parse_input_shape
from pycaffelite.errors import PclError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LENET = os.path.join(ROOT, "models", "lenet", "lenet_deploy.prototxt")




@pytest.fixture
def trained(tmp_path):
    """LeNet's deploy net with weights from the training net's fillers, saved as a caffemodel."""
    source = pcl.Net(os.path.join(ROOT, "models", "lenet", "lenet_time.prototxt"), pcl.TEST)
    path = tmp_path / "lenet.caffemodel"
    source.save(str(path))
    return str(path)


def test_exported_model_computes_what_the_net_computes(run_pcl, tmp_path, trained):
    out = tmp_path / "lenet.onnx"
    code, stdout, err = run_pcl("export", LENET, trained, str(out), "--input-shape", "data:2,1,28,28",
                                "--opset", "13", "--output", "ip1")
    assert code == 0, err
    assert stdout.startswith(f"Wrote {out}: ONNX opset 13,")
    assert "inputs data (2x1x28x28); outputs prob (2x10), ip1 (2x500)" in stdout
    net = pcl.Net(LENET, pcl.TEST, weights=trained)
    net.blobs["data"].reshape(2, 1, 28, 28)
    net.reshape()
    images = np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    expected = net.forward(data=images, blobs=["ip1"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    prob, ip1 = session.run(["prob", "ip1"], {"data": images})
    np.testing.assert_allclose(prob, expected["prob"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ip1, expected["ip1"], rtol=1e-4, atol=1e-4 * np.abs(ip1).max())


@pytest.mark.parametrize("args, message", [
    (["--input-shape", "data=1,1,28,28"], "--input-shape expects NAME:d0,d1,..."),
    (["--input-shape", "image:1,1,28,28"], '"image" is not an input of the net'),
    (["--opset", "7"], "ONNX opset 7 is not supported"),
    (["--output", "fc9"], "no blob named 'fc9'"),
])
def test_mistakes_are_one_line(run_pcl, tmp_path, trained, args, message):
    out = tmp_path / "lenet.onnx"
    code, stdout, err = run_pcl("export", LENET, trained, str(out), *args)
    assert code == 1
    assert err.startswith("pcl: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_weights_and_refused_nets(run_pcl, tmp_path, trained):
    code, _, err = run_pcl("export", LENET, str(tmp_path / "none.caffemodel"), str(tmp_path / "a.onnx"))
    assert code == 1 and "none.caffemodel" in err
    timing = os.path.join(ROOT, "models", "lenet", "lenet_time.prototxt")
    code, _, err = run_pcl("export", timing, trained, str(tmp_path / "a.onnx"))
    assert code == 1 and '"loss" (SoftmaxWithLoss)' in err and err.count("\n") == 1


def test_parse_input_shape():
    assert parse_input_shape("data:1,3,224,224") == ("data", (1, 3, 224, 224))
    assert parse_input_shape("conv1/in: 2, 3") == ("conv1/in", (2, 3))
    with pytest.raises(PclError):
        parse_input_shape("data:1,x")
