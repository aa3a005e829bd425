"""`pcl test`: score a trained model (Caffe's `caffe test`).

    pcl test --model net.prototxt --weights net.caffemodel [--iterations 50] [--gpu 0]
             [--stage s1,s2] [--level N]

Runs the net in the TEST phase for `iterations` batches and logs, in Caffe's wording, every
output of every batch (`Batch i, accuracy = 0.97`), the mean loss (`Loss: L`) and the mean of
each output (`accuracy = 0.9723`, with `(* w = x loss)` for loss outputs).
"""
import logging

import click
import numpy as np

from .. import training_log as tlog
from ..errors import PclError
from ..net import TEST, Net
from .train import parse_gpus, parse_stages, use_devices

log = logging.getLogger("pycaffelite")
f32 = np.float32


@click.command("test")
@click.option("--model", help="The net to score (prototxt).")
@click.option("--weights", help="Trained weights (.caffemodel or .caffemodel.h5), comma-separated.")
@click.option("--iterations", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many batches to score.")
@click.option("--gpu", help="GPU device id (the first one if several are given); default: the CPU.")
@click.option("--stage", help="Net stages, comma-separated.")
@click.option("--level", type=int, default=0, show_default=True, help="Net level.")
def command(model, weights, iterations, gpu, stage, level):
    """Score a model: per-batch outputs and their means."""
    tlog.configure_logging()
    if not model:
        raise PclError("need a model definition to score: pass --model net.prototxt")
    if not weights:
        raise PclError("need model weights to score: pass --weights net.caffemodel")
    gpus = parse_gpus(gpu)
    while len(gpus) > 1:
        log.info("Not using GPU #%d for single-GPU function", gpus.pop())
    use_devices(gpus)
    net = Net(model, TEST, level=level, stages=parse_stages(stage))
    net.copy_from(weights)
    log.info("Running for %d iterations.", iterations)
    loss = f32(0)
    totals = None
    names = [net.blob_names[i] for i in net.output_blob_ids for _ in range(net.blob_list[i].count)]
    for batch in range(iterations):
        loss = f32(loss + f32(net.forward_from_to()))
        values = tlog.output_values(net)
        for name, value in zip(names, values):
            log.info("Batch %d, %s = %s", batch, name, tlog.fmt(value))
        totals = values if totals is None else [f32(a + b) for a, b in zip(totals, values)]
    log.info("Loss: %s", tlog.fmt(f32(loss / f32(iterations))))
    weights_of = [net._blob_loss_weights[i] for i in net.output_blob_ids
                  for _ in range(net.blob_list[i].count)]
    for name, weight, total in zip(names, weights_of, totals or []):
        mean = f32(total / f32(iterations))
        suffix = f" (* {tlog.fmt(weight)} = {tlog.fmt(f32(f32(weight) * mean))} loss)" if weight else ""
        log.info("%s = %s%s", name, tlog.fmt(mean), suffix)
