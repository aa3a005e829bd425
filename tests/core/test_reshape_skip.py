"""forward_loss reshapes only after a layout change (device.layout), and blob views are kept.

What must hold is Caffe's behaviour, where every Forward reshapes first: a bottom that changed
shape or memory, a top reshaped from outside, a mode or thread-count change all lead to a
reshape before the next forward; nothing else needs one.
"""
import numpy as np

from pycaffelite import device, parallel
from pycaffelite.blob import Blob
from pycaffelite.layers import create_layer
from pycaffelite.net import Net
from pycaffelite.proto import caffe_pb2


def counting_relu():
    layer = create_layer(caffe_pb2.LayerParameter(name="relu", type="ReLU"))
    calls = []
    reshape = layer.reshape

    def counted(bottom, top):
        calls.append(bottom[0].shape)
        reshape(bottom, top)

    layer.reshape = counted
    return layer, calls


def test_forward_loss_reshapes_only_after_a_change():
    bottom, top = Blob((2, 3)), Blob(())
    layer, calls = counting_relu()
    layer.initialize([bottom], [top])
    layer.forward_loss([bottom], [top])
    layer.forward_loss([bottom], [top])
    assert calls == [(2, 3)]  # set-up only
    bottom.reshape(4, 3)
    bottom.data[...] = -1
    layer.forward_loss([bottom], [top])
    assert calls[-1] == (4, 3) and top.shape == (4, 3)
    np.testing.assert_array_equal(top.data, 0)
    top.reshape(1)  # a top reshaped from outside is shaped again, as Caffe's Forward does
    layer.forward_loss([bottom], [top])
    assert top.shape == (4, 3)


def test_settings_that_buffers_depend_on_lead_to_a_reshape(use_threads):
    bottom, top = Blob((2, 3)), Blob(())
    layer, calls = counting_relu()
    layer.initialize([bottom], [top])
    use_threads(parallel.num_threads() + 1)
    layer.forward_loss([bottom], [top])
    assert len(calls) == 2
    layout = device.layout()
    device.set_mode_cpu()  # no change: no new layout
    assert device.layout() == layout


def test_reshape_every_pass_layers_always_reshape():
    bottom, top = Blob((2, 3)), Blob(())
    layer, calls = counting_relu()
    layer.reshape_every_pass = True
    layer.initialize([bottom], [top])
    layer.forward_loss([bottom], [top])
    layer.forward_loss([bottom], [top])
    assert len(calls) == 3


def test_accessor_views_are_kept_until_the_shape_or_memory_changes():
    blob = Blob((2, 3))
    assert blob.read_data() is blob.write_data()
    assert blob.read_diff() is blob.write_diff()
    first = blob.read_data()
    blob.reshape(2, 3)
    assert blob.read_data() is first
    blob.reshape(3, 2)
    assert blob.read_data().shape == (3, 2)
    other = Blob((3, 2))
    other.data[...] = 7
    blob.share_data(other)
    np.testing.assert_array_equal(blob.read_data(), 7)
    blob.data_mem.set_cpu_data(np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(blob.read_data().ravel(), np.arange(6))


def test_a_net_follows_an_input_reshaped_between_passes(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 } } }'
                    'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
                    '  inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }'
                    'layer { name: "prob" type: "Softmax" bottom: "y" top: "p" }')
    net = Net(str(path), "TEST")
    net.forward()
    net.blobs["x"].reshape(5, 4)
    net.blobs["x"].data[...] = 1
    net.forward()
    assert net.blobs["p"].shape == (5, 3)
    np.testing.assert_allclose(net.blobs["p"].data.sum(axis=1), 1, rtol=1e-6)
