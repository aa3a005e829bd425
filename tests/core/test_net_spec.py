import pytest

import pycaffelite as pcl
from pycaffelite.net_spec import NetSpec, layers as L, params as P
from pycaffelite.proto import caffe_pb2


def lenet_spec():
    n = NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[2, 1, 12, 12]), dict(dim=[2])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=4, weight_filler=dict(type="xavier"),
                            param=[dict(lr_mult=1), dict(lr_mult=2)])
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    n.ip = L.InnerProduct(L.TanH(n.pool1), num_output=3)
    n.loss = L.SoftmaxWithLoss(n.ip, n.label, loss_weight=0.5)
    return n


def test_to_proto_builds_caffe_layers():
    proto = lenet_spec().to_proto()
    by_name = {layer.name: layer for layer in proto.layer}
    assert [l.type for l in proto.layer] == ["Input", "Convolution", "Pooling", "ReLU", "TanH",
                                             "InnerProduct", "SoftmaxWithLoss"]
    conv = by_name["conv1"]
    assert list(conv.convolution_param.kernel_size) == [5]
    assert conv.convolution_param.weight_filler.type == "xavier"
    assert [p.lr_mult for p in conv.param] == [1, 2]
    assert by_name["pool1"].pooling_param.pool == caffe_pb2.PoolingParameter.MAX
    assert list(by_name["relu1"].bottom) == list(by_name["relu1"].top) == ["pool1"]
    tanh = next(l for l in proto.layer if l.type == "TanH")
    assert list(by_name["ip"].bottom) == list(tanh.top)
    assert list(by_name["loss"].loss_weight) == [0.5]


def test_spec_net_runs():
    net = pcl.Net(lenet_spec().to_proto(), pcl.TRAIN)
    net.blobs["label"].data[...] = [0, 2]
    assert net.forward_from_to() > 0


def test_unknown_argument_is_clear():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1]))
    n.y = L.ReLU(n.x, negative_slop=0.1)
    with pytest.raises(pcl.PclError, match='ReLUParameter has no field "negative_slop"'):
        n.to_proto()
