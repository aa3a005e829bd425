"""Every net under models/ and every public net in ../shared/zoo builds, in every phase and stage
it names, and runs forward and backward.

Data layers whose files are absent (the zoo ships network definitions only) are replaced by
Input layers of the shapes they would produce, with small batches; Input layers of image nets
run at batch 1 or 2. The zoo part is skipped when ../shared/zoo is not there.
"""
import glob
import itertools
import os

import numpy as np
import pytest

import pycaffelite as pcl
from pycaffelite import net_build
from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(os.path.dirname(REPO), "shared", "zoo")

DATA_LAYERS = {"Data", "ImageData", "WindowData", "HDF5Data", "Python"}
BATCH = 2

# Item shapes (without the batch axis) of data tops that no crop_size describes, by net file.
ITEM_SHAPES = {
    "lenet_train_test.prototxt": {"data": (1, 28, 28)},
    "mnist_autoencoder.prototxt": {"data": (1, 28, 28)},
    "mnist_siamese_train_test.prototxt": {"pair_data": (2, 28, 28)},
    "cifar10_full_train_test.prototxt": {"data": (3, 32, 32)},
    "cifar10_full_sigmoid_train_test_bn.prototxt": {"data": (3, 32, 32)},
    "cifar10_quick_train_test.prototxt": {"data": (3, 32, 32)},
    "nonlinear_train_val.prototxt": {"data": (4,)},
    "lrcn_train_test.prototxt": {"data": (1, 12, 12)},
    "val.prototxt": {"data": (3, 64, 64), "label": (1, 64, 64)},  # FCN's VOC layers
}
# Sequence data (HDF5 T x N streams): whole-blob shapes.
SEQUENCE_SHAPES = {"cont_sentence": (20, BATCH), "input_sentence": (20, BATCH),
                   "target_sentence": (20, BATCH)}
# Fully convolutional nets whose own input size is far larger than the nets need.
INPUT_SHAPES = {"fcn8s/deploy.prototxt": (1, 3, 64, 64),
                "caffenet_full_conv/bvlc_caffenet_full_conv.prototxt": (1, 3, 227, 227)}


def net_files():
    files = sorted(glob.glob(os.path.join(REPO, "models", "*", "*.prototxt")))
    files = [f for f in files if "solver" not in os.path.basename(f)]
    zoo = sorted(glob.glob(os.path.join(ZOO, "*", "*.prototxt")))
    return [pytest.param(f, id=os.path.relpath(f, REPO)) for f in files] + \
           [pytest.param(f, id="zoo/" + os.path.relpath(f, ZOO),
                         marks=pytest.mark.skipif(not os.path.isdir(ZOO), reason="no ../shared/zoo"))
            for f in zoo]


def source_exists(layer):
    for field in ("data_param", "image_data_param", "window_data_param", "hdf5_data_param"):
        if layer.HasField(field):
            source = getattr(layer, field).source
            return os.path.exists(source) or os.path.exists(source + ".recipe")
    return False  # a Python data layer: its module (e.g. FCN's voc_layers) is not ours


def stand_in_shape(layer, top_index, net_file):
    top = layer.top[top_index]
    shapes = ITEM_SHAPES.get(os.path.basename(net_file), {})
    if top in shapes:
        return (BATCH,) + shapes[top]
    if top in SEQUENCE_SHAPES:
        return SEQUENCE_SHAPES[top]
    if top_index > 0 and top in ("label", "sim"):
        return (BATCH,)
    crop = layer.transform_param.crop_size
    if crop:
        return (BATCH, 3, crop, crop)
    raise AssertionError(f"{net_file}: no stand-in shape for top {top!r} of {layer.name!r}")


def with_stand_ins(net_param, net_file):
    """The net with absent data replaced by Input layers, and image batches made small (every
    Input shape whose first axis is the image batch)."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    key = os.path.relpath(net_file, ZOO)
    for layer in out.layer:
        if layer.type in DATA_LAYERS and not layer.bottom and not source_exists(layer):
            shapes = [stand_in_shape(layer, i, net_file) for i in range(len(layer.top))]
            kept = caffe_pb2.LayerParameter(name=layer.name, type="Input", top=layer.top,
                                            include=layer.include, exclude=layer.exclude)
            kept.input_param.shape.extend(caffe_pb2.BlobShape(dim=s) for s in shapes)
            layer.CopyFrom(kept)
        elif layer.type == "Input":
            shapes = layer.input_param.shape
            images = [s for s in shapes if len(s.dim) == 4]
            if key in INPUT_SHAPES:
                images[0].dim[:] = INPUT_SHAPES[key]
            elif images:
                batch = images[0].dim[0]
                for shape in shapes:
                    if shape.dim and shape.dim[0] == batch:
                        shape.dim[0] = min(batch, BATCH)
    return out


def phases(net_param):
    """The phases a net's rules name; a net naming none (a deploy net) runs in TEST."""
    named = {rule.phase for layer in net_param.layer for rule in list(layer.include) + list(layer.exclude)
             if rule.HasField("phase")}
    return sorted(named) or [pcl.TEST]


def connected(param, phase, stages):
    """Whether the layers a state keeps all find their bottoms (checked on the NetParameter,
    before any weights are made): states that leave a layer without its input are states the
    net's author never meant, e.g. TEST without the stage that picks its test data."""
    state = caffe_pb2.NetState(phase=phase, stage=stages)
    kept = net_build.filter_by_state(param, state, "stand-in")
    produced = set()
    for layer in kept.layer:
        if any(bottom not in produced for bottom in layer.bottom):
            return False
        produced.update(layer.top)
    return bool(kept.layer)


def states_to_run(param):
    """Per phase, the connected stage sets (none, one or two stages, or one include rule's) that
    together cover every stage the phase can use, the smallest first."""
    rules = [rule for layer in param.layer for rule in list(layer.include) + list(layer.exclude)]
    named = sorted({s for rule in rules for s in list(rule.stage) + list(rule.not_stage)})
    candidates = [()] + [(s,) for s in named] + list(itertools.combinations(named, 2))
    candidates += sorted({tuple(sorted(rule.stage)) for rule in rules} - set(candidates))
    states, covered = [], set()
    for phase in phases(param):
        usable = [c for c in candidates if connected(param, phase, c)]
        assert usable, f"no stage set makes a connected net in phase {phase}"
        for stages in usable:
            if stages is usable[0] or set(stages) - covered:
                states.append((phase, stages))
                covered |= set(stages)
    assert covered == set(named), f"stages in no connected state: {set(named) - covered}"
    return states


def fill_inputs(net):
    """Random inputs (valid classes, words and flags where integers are expected) and unit
    BatchNorm statistics (zero ones would blow up a deep net in TEST)."""
    rng = np.random.default_rng(0)
    for name in net.inputs:
        blob = net.blobs[name]
        if name in ("label", "sim") or "sentence" in name:
            blob.data[...] = rng.integers(0, 2, size=blob.shape)
        else:
            blob.data[...] = rng.normal(size=blob.shape)
    for layer in net.layers:
        if layer.type == "BatchNorm":
            layer.blobs[1].data[...] = 1
            layer.blobs[2].data[...] = 1


@pytest.mark.parametrize("net_file", net_files())
def test_the_net_builds_and_runs_in_every_phase_and_stage(net_file, monkeypatch):
    monkeypatch.chdir(REPO)
    param = with_stand_ins(protoio.read_net_param(net_file), net_file)
    # Backward everywhere, as far as Caffe allows it (Accuracy has no backward, so nets that
    # report accuracy run the backward their losses ask for).
    param.force_backward = not any(layer.type == "Accuracy" for layer in param.layer)
    for phase, stages in states_to_run(param):
        net = pcl.Net(param, phase, stages=stages, source=net_file)
        fill_inputs(net)
        loss = net.forward_from_to()
        assert np.isfinite(loss), (phase, stages)
        net.backward_from_to()
