"""Write the GoogLeNet, ResNet-50 and MobileNet-v1 reference nets under models/ with NetSpec.

Each model gets three files, made from one description of its layers:

  train_val.prototxt   Data layers reading ImageNet LMDBs (TRAIN: random crops, mirrored;
                       TEST: centre crops), the layers with their fillers and learning-rate
                       multipliers, the loss(es), and top-1/top-5 accuracy in the TEST phase
  deploy.prototxt      an Input of one 3x224x224 image, the layers without fillers, and a
                       Softmax "prob" at the end (load trained weights by layer name)
  <model>_time.prototxt
                       the train_val layers on Input layers of the training batch (images and
                       labels), for `pcl time` and the benchmarks: runs without any data

Layer and blob names follow the published Caffe versions of these nets (BVLC's bvlc_googlenet,
Kaiming He's ResNet-50, shicai's MobileNet), so their trained caffemodels load by name.

    python tools/make_reference_nets.py            # (re)write the files
    python tools/make_reference_nets.py --check    # exit 1 if a committed file differs
"""
import argparse
import os
import sys

from google.protobuf import text_format

from pycaffelite.net_spec import NetSpec, layers as L, params as P
from pycaffelite.proto import caffe_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 224
# Where train_val.prototxt reads ImageNet (relative to the folder pcl runs in), as models/caffenet.
TRAIN_LMDB = "data/ilsvrc12/ilsvrc12_train_lmdb"
VAL_LMDB = "data/ilsvrc12/ilsvrc12_val_lmdb"

MAX, AVE = P.Pooling.MAX, P.Pooling.AVE
WEIGHT_AND_BIAS = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
WEIGHT_ONLY = [dict(lr_mult=1, decay_mult=1)]


class Builder:
    """Adds layers to a NetSpec; `train` adds fillers and learning-rate multipliers (the deploy
    net has neither)."""

    def __init__(self, train):
        self.n = NetSpec()
        self.train = train

    def __setitem__(self, name, top):
        self.n[name] = top

    def __getitem__(self, name):
        return self.n[name]

    def conv(self, name, bottom, num_output, kernel, stride=1, pad=0, group=1, bias=True,
             weight_filler="xavier", bias_value=0.0):
        extra = {}
        if self.train:
            extra["param"] = WEIGHT_AND_BIAS if bias else WEIGHT_ONLY
            extra["weight_filler"] = dict(type=weight_filler)
            if bias:
                extra["bias_filler"] = dict(type="constant", value=bias_value)
        if stride != 1:
            extra["stride"] = stride
        if pad:
            extra["pad"] = pad
        if group != 1:
            extra["group"] = group
        if not bias:
            extra["bias_term"] = False
        self.n[name] = L.Convolution(bottom, num_output=num_output, kernel_size=kernel, **extra)
        return self.n[name]

    def fc(self, name, bottom, num_output, weight_filler="xavier", bias_value=0.0):
        extra = {}
        if self.train:
            extra = dict(param=WEIGHT_AND_BIAS, weight_filler=dict(type=weight_filler),
                         bias_filler=dict(type="constant", value=bias_value))
        self.n[name] = L.InnerProduct(bottom, num_output=num_output, **extra)
        return self.n[name]

    def relu(self, name, bottom):
        """An in-place ReLU; returns the rectified top."""
        self.n[name] = L.ReLU(bottom, in_place=True)
        return self.n[name]

    def pool(self, name, bottom, method, kernel=None, stride=1, pad=0, global_pooling=False):
        extra = dict(global_pooling=True) if global_pooling else dict(kernel_size=kernel, stride=stride)
        if pad:
            extra["pad"] = pad
        self.n[name] = L.Pooling(bottom, pool=method, **extra)
        return self.n[name]

    def batch_norm_scale(self, bn_name, scale_name, bottom, eps=None):
        """BatchNorm and a Scale with bias, both in place (the statistics' ParamSpecs are left
        to the layer, which gives them lr_mult 0)."""
        bn = dict(eps=eps) if eps is not None else {}
        self.n[bn_name] = L.BatchNorm(bottom, in_place=True, **bn)
        self.n[scale_name] = L.Scale(self.n[bn_name], in_place=True, bias_term=True)
        return self.n[scale_name]

    def dropout(self, name, bottom, ratio):
        self.n[name] = L.Dropout(bottom, in_place=True, dropout_ratio=ratio)
        return self.n[name]

    def classifier_end(self, logits, losses, label, accuracy_names):
        """Softmax "prob" (deploy), or the losses (name, logits, weight) and TEST accuracies."""
        if not self.train:
            self.n.prob = L.Softmax(logits)
            return
        for loss_name, loss_logits, weight in losses:
            extra = dict(loss_weight=weight) if weight != 1 else {}
            self.n[loss_name] = L.SoftmaxWithLoss(loss_logits, label, **extra)
        for (top1, top5), (_, loss_logits, _) in zip(accuracy_names, losses):
            if top1 is None:
                continue
            self.n[top1] = L.Accuracy(loss_logits, label, include=dict(phase=caffe_pb2.TEST))
            self.n[top5] = L.Accuracy(loss_logits, label, include=dict(phase=caffe_pb2.TEST),
                                      top_k=5)


# -- GoogLeNet ------------------------------------------------------------------------------------
# Inception modules: 1x1, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool projection.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet(b, data, label):
    """GoogLeNet (Szegedy et al. 2014) as BVLC's bvlc_googlenet: nine inception modules, LRN
    after the stem's pool1 and conv2, two auxiliary classifiers (loss weight 0.3) in training."""
    def conv(name, bottom, num, kernel, **kw):
        return b.conv(name, bottom, num, kernel, bias_value=0.2, **kw)

    x = conv("conv1/7x7_s2", data, 64, 7, stride=2, pad=3)
    x = b.relu("conv1/relu_7x7", x)
    x = b.pool("pool1/3x3_s2", x, MAX, 3, stride=2)
    b["pool1/norm1"] = L.LRN(x, local_size=5, alpha=1e-4, beta=0.75)
    x = conv("conv2/3x3_reduce", b["pool1/norm1"], 64, 1)
    x = b.relu("conv2/relu_3x3_reduce", x)
    x = conv("conv2/3x3", x, 192, 3, pad=1)
    x = b.relu("conv2/relu_3x3", x)
    b["conv2/norm2"] = L.LRN(x, local_size=5, alpha=1e-4, beta=0.75)
    x = b.pool("pool2/3x3_s2", b["conv2/norm2"], MAX, 3, stride=2)

    def inception(tag, bottom):
        n1, r3, n3, r5, n5, proj = INCEPTION[tag]
        p = f"inception_{tag}/"
        one = b.relu(p + "relu_1x1", conv(p + "1x1", bottom, n1, 1))
        three = b.relu(p + "relu_3x3_reduce", conv(p + "3x3_reduce", bottom, r3, 1))
        three = b.relu(p + "relu_3x3", conv(p + "3x3", three, n3, 3, pad=1))
        five = b.relu(p + "relu_5x5_reduce", conv(p + "5x5_reduce", bottom, r5, 1))
        five = b.relu(p + "relu_5x5", conv(p + "5x5", five, n5, 5, pad=2))
        pooled = b.pool(p + "pool", bottom, MAX, 3, stride=1, pad=1)
        pooled = b.relu(p + "relu_pool_proj", conv(p + "pool_proj", pooled, proj, 1))
        b[p + "output"] = L.Concat(one, three, five, pooled)
        return b[p + "output"]

    def auxiliary(tag, bottom):
        p = f"{tag}/"
        x = b.pool(p + "ave_pool", bottom, AVE, 5, stride=3)
        x = b.relu(p + "relu_conv", conv(p + "conv", x, 128, 1))
        x = b.relu(p + "relu_fc", b.fc(p + "fc", x, 1024, bias_value=0.2))
        x = b.dropout(p + "drop_fc", x, 0.7)
        return b.fc(p + "classifier", x, 1000)

    x = inception("3b", inception("3a", x))
    x = b.pool("pool3/3x3_s2", x, MAX, 3, stride=2)
    x = inception("4a", x)
    aux1 = auxiliary("loss1", x) if b.train else None
    x = inception("4d", inception("4c", inception("4b", x)))
    aux2 = auxiliary("loss2", x) if b.train else None
    x = inception("4e", x)
    x = b.pool("pool4/3x3_s2", x, MAX, 3, stride=2)
    x = inception("5b", inception("5a", x))
    x = b.pool("pool5/7x7_s1", x, AVE, 7, stride=1)
    x = b.dropout("pool5/drop_7x7_s1", x, 0.4)
    logits = b.fc("loss3/classifier", x, 1000)
    b.classifier_end(logits, [("loss1/loss", aux1, 0.3), ("loss2/loss", aux2, 0.3),
                              ("loss3/loss3", logits, 1)], label,
                     [("loss1/top-1", "loss1/top-5"), ("loss2/top-1", "loss2/top-5"),
                      ("loss3/top-1", "loss3/top-5")])


# -- ResNet-50 ------------------------------------------------------------------------------------
# (stage, number of blocks, bottleneck width, first block's stride)
RESNET50_STAGES = ((2, 3, 64, 1), (3, 4, 128, 2), (4, 6, 256, 2), (5, 3, 512, 2))


def resnet50(b, data, label):
    """ResNet-50 (He et al. 2015) as the authors' Caffe release: bottleneck blocks whose first
    1x1 convolution carries the stride, projection shortcuts (branch1) in each stage's first
    block, BatchNorm + Scale after every convolution, convolutions without bias but conv1."""
    def conv_bn(name, suffix, bottom, num, kernel, stride=1, pad=0, bias=False):
        x = b.conv(name, bottom, num, kernel, stride=stride, pad=pad, bias=bias, weight_filler="msra")
        return b.batch_norm_scale(f"bn{suffix}", f"scale{suffix}", x)

    x = conv_bn("conv1", "_conv1", data, 64, 7, stride=2, pad=3, bias=True)
    x = b.relu("conv1_relu", x)
    x = b.pool("pool1", x, MAX, 3, stride=2)
    for stage, blocks, width, first_stride in RESNET50_STAGES:
        for index in range(blocks):
            block = f"{stage}{chr(ord('a') + index)}"
            stride = first_stride if index == 0 else 1
            if index == 0:
                shortcut = conv_bn(f"res{block}_branch1", f"{block}_branch1", x, 4 * width, 1,
                                   stride=stride)
            else:
                shortcut = x
            y = conv_bn(f"res{block}_branch2a", f"{block}_branch2a", x, width, 1, stride=stride)
            y = b.relu(f"res{block}_branch2a_relu", y)
            y = conv_bn(f"res{block}_branch2b", f"{block}_branch2b", y, width, 3, pad=1)
            y = b.relu(f"res{block}_branch2b_relu", y)
            y = conv_bn(f"res{block}_branch2c", f"{block}_branch2c", y, 4 * width, 1)
            b[f"res{block}"] = L.Eltwise(shortcut, y)
            x = b.relu(f"res{block}_relu", b[f"res{block}"])
    x = b.pool("pool5", x, AVE, 7, stride=1)
    logits = b.fc("fc1000", x, 1000)
    b.classifier_end(logits, [("loss", logits, 1)], label, [("accuracy", "accuracy_top5")])


# -- MobileNet-v1 ---------------------------------------------------------------------------------
# (name, output channels, stride of the depthwise convolution)
MOBILENET_BLOCKS = (("2_1", 64, 1), ("2_2", 128, 2), ("3_1", 128, 1), ("3_2", 256, 2),
                    ("4_1", 256, 1), ("4_2", 512, 2), ("5_1", 512, 1), ("5_2", 512, 1),
                    ("5_3", 512, 1), ("5_4", 512, 1), ("5_5", 512, 1), ("5_6", 1024, 2),
                    ("6", 1024, 1))


def mobilenet_v1(b, data, label):
    """MobileNet-v1 (Howard et al. 2017, width 1.0) as shicai's Caffe version: a 3x3 stride-2
    convolution, then 13 pairs of a 3x3 depthwise convolution (group == channels) and a 1x1
    pointwise one, each followed by BatchNorm (eps 1e-5) + Scale + ReLU; global average
    pooling and a 1x1 convolution to the 1000 classes."""
    def conv_bn_relu(name, relu_name, bottom, num, kernel, stride=1, pad=0, group=1):
        x = b.conv(name, bottom, num, kernel, stride=stride, pad=pad, group=group, bias=False,
                   weight_filler="msra")
        x = b.batch_norm_scale(f"{name}/bn", f"{name}/scale", x, eps=1e-5)
        return b.relu(relu_name, x)

    x = conv_bn_relu("conv1", "relu1", data, 32, 3, stride=2, pad=1)
    channels = 32
    for tag, out, stride in MOBILENET_BLOCKS:
        x = conv_bn_relu(f"conv{tag}/dw", f"relu{tag}/dw", x, channels, 3, stride=stride, pad=1,
                         group=channels)
        x = conv_bn_relu(f"conv{tag}/sep", f"relu{tag}/sep", x, out, 1)
        channels = out
    x = b.pool("pool6", x, AVE, global_pooling=True)
    logits = b.conv("fc7", x, 1000, 1, weight_filler="msra")
    b.classifier_end(logits, [("loss", logits, 1)], label, [("accuracy", "accuracy_top5")])


# -- the three files ------------------------------------------------------------------------------
MODELS = {
    # folder: (net name, body, training batch, test batch, transform_param beyond crop/mirror)
    "googlenet": ("GoogLeNet", googlenet, 16, 16, dict(mean_value=[104, 117, 123])),
    "resnet50": ("ResNet-50", resnet50, 8, 8, dict(mean_value=[104, 117, 123])),
    "mobilenet_v1": ("MobileNet-v1", mobilenet_v1, 16, 16,
                     dict(mean_value=[103.94, 116.78, 123.68], scale=0.017)),
}


def _data_layer(phase, batch, transform, source):
    n = NetSpec()
    n.data, n.label = L.Data(ntop=2, include=dict(phase=phase),
                             transform_param=dict(mirror=phase == caffe_pb2.TRAIN, crop_size=IMAGE,
                                                  **transform),
                             source=source, batch_size=batch, backend=P.Data.LMDB)
    return n.to_proto().layer[0]


def train_val(name, body, batch, test_batch, transform):
    b = Builder(train=True)
    b.n.data, b.n.label = L.Data(ntop=2, include=dict(phase=caffe_pb2.TRAIN),
                                 transform_param=dict(mirror=True, crop_size=IMAGE, **transform),
                                 source=TRAIN_LMDB, batch_size=batch, backend=P.Data.LMDB)
    body(b, b.n.data, b.n.label)
    net = b.n.to_proto()
    net.layer.insert(1, _data_layer(caffe_pb2.TEST, test_batch, transform, VAL_LMDB))
    net.name = name
    return net


def timing(name, body, batch):
    b = Builder(train=True)
    b.n.data, b.n.label = L.Input(ntop=2, shape=[dict(dim=[batch, 3, IMAGE, IMAGE]), dict(dim=[batch])])
    body(b, b.n.data, b.n.label)
    net = b.n.to_proto()
    kept = [layer for layer in net.layer if layer.type != "Accuracy"]
    del net.layer[:]
    net.layer.extend(kept)
    net.name = name
    return net


def deploy(name, body):
    b = Builder(train=False)
    b.n.data = L.Input(shape=dict(dim=[1, 3, IMAGE, IMAGE]))
    body(b, b.n.data, None)
    net = b.n.to_proto()
    net.name = name
    return net


HEADERS = {
    "train_val": "# {title}: training and validation net (batch {batch}), generated by\n"
                 "# tools/make_reference_nets.py (edit that script, not this file). Reads ImageNet\n"
                 "# (ILSVRC12) LMDBs of 256x256 images, relative to the folder pcl runs in:\n"
                 "#   {train}  random {image}x{image} crops, mirrored\n"
                 "#   {val}    centre crops\n"
                 "# models/{folder}/README.md says how to make them.\n",
    "deploy": "# {title}: deploy net, one {image}x{image} image in, class probabilities \"prob\" out;\n"
              "# generated by tools/make_reference_nets.py. No fillers: load trained weights by\n"
              "# layer name.\n",
    "time": "# {title}: the training layers of train_val.prototxt on Input layers (batch {batch} of\n"
            "# {image}x{image} images and their labels), for `pcl time` and the benchmarks; runs\n"
            "# without data. Generated by tools/make_reference_nets.py.\n",
}


def files():
    """{path relative to the repository: text} for every generated file."""
    out = {}
    for folder, (title, body, batch, test_batch, transform) in MODELS.items():
        values = dict(title=title, batch=batch, image=IMAGE, train=TRAIN_LMDB, val=VAL_LMDB,
                      folder=folder)
        nets = {"train_val.prototxt": ("train_val", train_val(title, body, batch, test_batch, transform)),
                "deploy.prototxt": ("deploy", deploy(title, body)),
                f"{folder}_time.prototxt": ("time", timing(title, body, batch))}
        for filename, (kind, net) in nets.items():
            text = HEADERS[kind].format(**values) + text_format.MessageToString(net)
            out[os.path.join("models", folder, filename)] = text
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare the committed files with what would be written")
    args = parser.parse_args(argv)
    stale = []
    for relative, text in files().items():
        path = os.path.join(ROOT, relative)
        if args.check:
            current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
            if current != text:
                stale.append(relative)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"wrote {relative}")
    if stale:
        print("out of date (run python tools/make_reference_nets.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
