"""Data-layer benchmark: how fast the Data layer delivers batches, against how fast a net eats them.

Two cases, each from an LMDB made in a temporary folder:
  lenet     the bundled MNIST training digits (raw 1x28x28 records), batch 64, scale 1/256
  caffenet  256x256 JPEG-encoded records (the bundled photos, resized), batch 256, crop 227,
            mirror, mean file: CaffeNet's training input; also the same images as raw records

For each, the Data layer's steady-state delivery (forward calls back to back, the prefetch thread
decoding ahead) is printed in batches/s and images/s, next to a synchronous load of one batch on
the calling thread (no prefetch overlap) and the net's own consumption: one training iteration
(forward + backward) of the model's *_time prototxt, scaled to the same batch. Delivery faster
than consumption means the data layer keeps the net busy.

Usage: python bench/bench_data.py [--batches N] [--skip-net]
Prints results only; never used for assertions (timings depend on the machine and its load).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from google.protobuf import text_format  # noqa: E402

from pycaffelite.blob import Blob  # noqa: E402
from pycaffelite.commands import compute_image_mean, convert_imageset  # noqa: E402
from pycaffelite.io import mnist, protoio  # noqa: E402
from pycaffelite.io.lmdb_io import RecordReader  # noqa: E402
from pycaffelite.io.transformer import DataTransformer  # noqa: E402
from pycaffelite.layers import create_layer  # noqa: E402
from pycaffelite.layers.data import _DatumSource  # noqa: E402
from pycaffelite.proto import caffe_pb2  # noqa: E402

IMAGES = os.path.join(ROOT, "tests", "data", "files", "images")


def data_layer(source, batch_size, transform=""):
    param = text_format.Parse(
        f'name: "data" type: "Data" top: "data" top: "label" transform_param {{ {transform} }} '
        f'data_param {{ source: "{source}" batch_size: {batch_size} backend: LMDB }}',
        caffe_pb2.LayerParameter())
    layer = create_layer(param, phase=caffe_pb2.TRAIN)
    top = [Blob(), Blob()]
    layer.initialize([], top)
    return layer, top


def delivery(source, batch_size, transform, batches):
    """(batches/s through prefetch, seconds for one synchronous batch load)."""
    layer, top = data_layer(source, batch_size, transform)
    for _ in range(2):
        layer.forward([], top)
    start = time.perf_counter()
    for _ in range(batches):
        layer.forward([], top)
    rate = batches / (time.perf_counter() - start)
    # One batch loaded on this thread by a loader like the layer's own (no prefetch overlap).
    loader = _DatumSource(RecordReader(source), DataTransformer(layer.param.transform_param),
                         batch_size, with_label=True)
    buffers = [np.empty(top[0].shape, np.float32), np.empty(top[1].shape, np.float32)]
    loader.load(buffers)
    start = time.perf_counter()
    loader.load(buffers)
    loader.close()
    return rate, time.perf_counter() - start


def net_iteration_seconds(prototxt, iterations=3):
    """Seconds of one forward + backward of a *_time net (Input layers), and its batch size."""
    from pycaffelite.net import Net  # noqa: PLC0415

    net = Net(prototxt, phase=caffe_pb2.TRAIN)
    batch = net.blobs["data"].shape[0]
    net.forward_backward()
    start = time.perf_counter()
    for _ in range(iterations):
        net.forward_backward()
    return (time.perf_counter() - start) / iterations, batch


def report(name, batch_size, rate, sync_seconds, net):
    print(f"{name}: batch {batch_size}")
    print(f"  Data layer (prefetch):   {rate:8.1f} batches/s  {rate * batch_size:9.0f} images/s")
    print(f"  one batch, no prefetch:  {1 / sync_seconds:8.1f} batches/s  "
          f"{batch_size / sync_seconds:9.0f} images/s")
    if net is not None:
        seconds, net_batch = net
        images_per_s = net_batch / seconds
        print(f"  net training iteration:  {images_per_s / batch_size:8.3g} batches/s  "
              f"{images_per_s:9.3g} images/s  (measured at batch {net_batch})")
        print(f"  delivery / consumption:  {rate * batch_size / images_per_s:8.0f}x")


def make_photo_dbs(folder, count):
    """LMDBs of `count` 256x256 records cycling through the bundled photos: JPEG and raw."""
    photos = sorted(f"{d}/{f}" for d in os.listdir(IMAGES) if os.path.isdir(os.path.join(IMAGES, d))
                    for f in os.listdir(os.path.join(IMAGES, d)))
    entries = [(photos[i % len(photos)], i % 4) for i in range(count)]
    quiet = dict(echo=lambda _: None)
    jpeg = convert_imageset.RecordMaker(IMAGES + "/", True, 256, 256, "jpg", True)
    raw = convert_imageset.RecordMaker(IMAGES + "/", True, 256, 256, "", False)
    convert_imageset.convert(IMAGES + "/", entries, os.path.join(folder, "jpeg"), jpeg, **quiet)
    convert_imageset.convert(IMAGES + "/", entries, os.path.join(folder, "raw"), raw, **quiet)
    mean = compute_image_mean.compute_mean(os.path.join(folder, "raw"), echo=lambda _: None)
    protoio.write_binary_proto(os.path.join(folder, "mean.binaryproto"),
                               compute_image_mean.mean_blob_proto(mean))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="timed CaffeNet batches (LeNet: 10x)")
    parser.add_argument("--skip-net", action="store_true", help="do not time the nets")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as folder:
        mnist_db = os.path.join(folder, "mnist")
        mnist.convert_mnist(os.path.join(ROOT, "data/mnist/train-images-idx3-ubyte.gz"),
                            os.path.join(ROOT, "data/mnist/train-labels-idx1-ubyte.gz"), mnist_db)
        rate, sync = delivery(mnist_db, 64, "scale: 0.00390625", args.batches * 10)
        net = None if args.skip_net else net_iteration_seconds(
            os.path.join(ROOT, "models/lenet/lenet_time.prototxt"))
        report("LeNet (MNIST raw 1x28x28)", 64, rate, sync, net)

        make_photo_dbs(folder, 512)
        mean = os.path.join(folder, "mean.binaryproto")
        transform = f'crop_size: 227 mirror: true mean_file: "{mean}"'
        net = None if args.skip_net else net_iteration_seconds(
            os.path.join(ROOT, "models/caffenet/caffenet_time.prototxt"), iterations=1)
        for kind in ("jpeg", "raw"):
            rate, sync = delivery(os.path.join(folder, kind), 256, transform, args.batches)
            report(f"CaffeNet input ({kind} 256x256 -> 3x227x227 crops)", 256, rate, sync, net)


if __name__ == "__main__":
    main()
