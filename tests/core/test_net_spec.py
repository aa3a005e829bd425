import pytest

import pycaffelite as pcl
from pycaffelite.net_spec import NetSpec, layers as L, params as P, to_proto
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


def test_layer_after_in_place_layer_reads_the_real_blob():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3]))
    n.fc1 = L.InnerProduct(n.data, num_output=4)
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.fc2 = L.InnerProduct(n.relu1, num_output=2)
    proto = n.to_proto()
    by_name = {layer.name: layer for layer in proto.layer}
    assert list(by_name["relu1"].bottom) == list(by_name["relu1"].top) == ["fc1"]
    assert list(by_name["fc2"].bottom) == ["fc1"]
    net = pcl.Net(proto, pcl.TEST)
    net.blobs["data"].data[...] = 1.0
    assert net.forward()["fc2"].shape == (2, 2)


def test_a_bottom_that_is_not_a_top_is_a_type_error():
    data = L.DummyData(ntop=2)
    with pytest.raises(TypeError, match=r"^Silence input 0 is not a Top \(type is <class 'tuple'>\)$"):
        L.Silence(data, ntop=0)
    L.Silence(*data, ntop=0)


def test_netspec_refuses_a_tuple_of_tops():
    n = NetSpec()
    with pytest.raises(pcl.PclError, match='NetSpec attribute "data" is a tuple.*unpack'):
        n.data = L.DummyData(ntop=2)


def test_anonymous_tops_are_named_by_type_and_count():
    data, label = L.DummyData(shape=[dict(dim=[2, 3]), dict(dim=[2])], ntop=2)
    ip1 = L.InnerProduct(data, num_output=3)
    relu = L.ReLU(ip1, in_place=True)
    loss = L.SoftmaxWithLoss(L.InnerProduct(relu, num_output=3), label)
    proto = loss.to_proto()
    assert [(l.name, list(l.bottom), list(l.top)) for l in proto.layer] == [
        ("DummyData1", [], ["DummyData1", "DummyData2"]),
        ("InnerProduct1", ["DummyData1"], ["InnerProduct1"]),
        ("ReLU1", ["InnerProduct1"], ["InnerProduct1"]),
        ("InnerProduct2", ["InnerProduct1"], ["InnerProduct2"]),
        ("SoftmaxWithLoss1", ["InnerProduct2", "DummyData2"], ["SoftmaxWithLoss1"])]
    assert caffe_pb2.NetParameter.FromString(to_proto(loss).SerializeToString()) == proto
    assert pcl.Net(proto, pcl.TRAIN).forward_from_to() > 0


def test_to_proto_of_several_tops_shares_their_inputs():
    data = L.Input(shape=dict(dim=[1, 4]))
    a, b = L.ReLU(data), L.Sigmoid(data)
    assert [l.type for l in to_proto(a, b).layer] == ["Input", "ReLU", "Sigmoid"]


def test_top_less_layers_take_their_attribute_name():
    n = NetSpec()
    n.data, n.data2 = L.DummyData(shape=dict(dim=3), ntop=2)
    n.silence_data = L.Silence(n.data, ntop=0)
    n.silence_data2 = L.Silence(n.data2, ntop=0)
    proto = n.to_proto()
    assert [l.name for l in proto.layer] == ["data", "silence_data", "silence_data2"]
    assert len(pcl.Net(proto, pcl.TEST).forward()) == 0


def test_deconvolution_arguments_go_to_convolution_param():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.up = L.Deconvolution(n.data, num_output=1, kernel_size=4, stride=2)
    layer = n.to_proto().layer[1]
    assert layer.convolution_param.num_output == 1
    assert list(layer.convolution_param.stride) == [2]


def test_a_value_of_the_wrong_type_is_clear():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4]))
    n.ip = L.InnerProduct(n.data, num_output="ten")
    with pytest.raises(pcl.PclError, match='InnerProduct layer "ip": cannot set '
                                           'InnerProductParameter.num_output'):
        n.to_proto()


def test_deep_nets_do_not_reach_the_recursion_limit():
    top = L.Input(shape=dict(dim=[1]))
    for _ in range(1500):
        top = L.ReLU(top)
    assert len(top.to_proto().layer) == 1501
