"""The GoogLeNet, ResNet-50 and MobileNet-v1 nets under models/: the committed files are what
tools/make_reference_nets.py writes, and they have the published nets' architecture: the same
layers (names and types), top shapes and param shapes as the public prototxts in
../shared/zoo (skipped where that folder is absent)."""
import os
import sys

import numpy as np
import pytest

import pycaffelite as pcl
from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(os.path.dirname(ROOT), "shared", "zoo")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_reference_nets  # noqa: E402

# model folder: (public deploy net, public train_val net or None, params of the deploy net)
PUBLIC = {
    "googlenet": ("bvlc_googlenet/deploy.prototxt", "bvlc_googlenet/train_val.prototxt", 6998552),
    "resnet50": ("resnet50/ResNet-50-deploy.prototxt", None, 25610269),
    "mobilenet_v1": ("mobilenet_v1/mobilenet_deploy.prototxt", None, 4253891),
}


def test_committed_files_are_what_the_script_writes():
    assert make_reference_nets.main(["--check"]) == 0


def _layers(net):
    """name -> (type, top shapes without the batch axis, param shapes), Input layers left out
    (legacy input fields make one named "input")."""
    return {name: (layer.type, [net.blobs[net.blob_names[i]].shape[1:] for i in top_ids],
                   [blob.shape for blob in layer.blobs])
            for name, layer, top_ids in zip(net.layer_names, net.layers, net.top_ids)
            if layer.type != "Input"}


def _param_count(net):
    return sum(int(np.prod(blob.shape, dtype=np.int64)) for layer in net.layers for blob in layer.blobs)


def _with_inputs(path, batch):
    """A train_val net with its Data layers replaced by Inputs of `batch` 224x224 images."""
    net_param = protoio.read_net_param(path)
    kept = []
    for layer in net_param.layer:
        if layer.type == "Data":
            if layer.include and layer.include[0].phase == caffe_pb2.TEST:
                continue
            layer = caffe_pb2.LayerParameter(name=layer.name, type="Input", top=layer.top)
            layer.input_param.shape.add(dim=[batch, 3, 224, 224])
            layer.input_param.shape.add(dim=[batch])
        kept.append(layer)
    del net_param.layer[:]
    net_param.layer.extend(kept)
    return net_param


@pytest.mark.skipif(not os.path.isdir(ZOO), reason="../shared/zoo (public Caffe nets) is absent")
@pytest.mark.parametrize("model", sorted(PUBLIC))
def test_deploy_net_has_the_public_architecture(model):
    public_deploy, public_train, params = PUBLIC[model]
    ours = pcl.Net(os.path.join(ROOT, "models", model, "deploy.prototxt"), pcl.TEST)
    theirs = pcl.Net(os.path.join(ZOO, public_deploy), pcl.TEST)
    assert _layers(ours) == _layers(theirs)
    assert _param_count(ours) == _param_count(theirs) == params
    assert ours.blobs["data"].shape == (1, 3, 224, 224)


@pytest.mark.skipif(not os.path.isdir(ZOO), reason="../shared/zoo (public Caffe nets) is absent")
def test_googlenet_training_net_has_the_public_architecture():
    """Auxiliary classifiers and losses too: our timing net (the train_val layers on Inputs)
    against BVLC's train_val with Inputs for its Data layers, in the TRAIN phase."""
    ours = pcl.Net(os.path.join(ROOT, "models", "googlenet", "googlenet_time.prototxt"), pcl.TRAIN)
    public = _with_inputs(os.path.join(ZOO, PUBLIC["googlenet"][1]), ours.blobs["data"].shape[0])
    theirs = pcl.Net(public, pcl.TRAIN, source="bvlc_googlenet train_val")
    assert _layers(ours) == _layers(theirs)
    for name in ("loss1/loss", "loss2/loss", "loss3/loss3"):
        assert ours.layer_dict[name].loss_weights == theirs.layer_dict[name].loss_weights


@pytest.mark.parametrize("model", sorted(PUBLIC))
def test_three_files_share_their_layers(model):
    """train_val (TEST phase) = the time net + accuracy layers; deploy = the same layers without
    the losses, ending in "prob"."""
    folder = os.path.join(ROOT, "models", model)
    batch = make_reference_nets.MODELS[model][2]
    train_val = protoio.read_net_param(os.path.join(folder, "train_val.prototxt"))
    timing = protoio.read_net_param(os.path.join(folder, f"{model}_time.prototxt"))
    deploy = protoio.read_net_param(os.path.join(folder, "deploy.prototxt"))
    assert [layer.name for layer in train_val.layer[2:] if layer.type != "Accuracy"] == \
        [layer.name for layer in timing.layer[1:]]
    assert list(timing.layer[0].input_param.shape[0].dim) == [batch, 3, 224, 224]
    assert all(layer.data_param.batch_size == batch for layer in train_val.layer[:2])
    deploy_names = [layer.name for layer in deploy.layer[1:]]
    assert deploy_names[-1] == "prob"
    assert set(deploy_names[:-1]) <= {layer.name for layer in timing.layer}
