"""Recurrent layers: the fused time loop (pycaffelite's LSTM/RNN) against Caffe's design, an
unrolled inner Net of T copies of the step's layers, both run by pycaffelite in the same process.

For each size, one forward + backward of the layer (float32, CPU) is timed; the median of several
runs after warm-up (the two ways in turns, so that a change in the machine's load falls on both)
is printed for each way and their ratio. Both ways compute the same numbers
(tests/layers/test_recurrent.py checks it); only the time differs. The unrolled net is built by
tests/layers/unrolled_recurrent.py.

Usage: python bench/bench_recurrent.py [--kinds LSTM,RNN] [--repeats N] [--sizes small,medium,coco]
       [--cpu-time]

--cpu-time measures the process's CPU time (all threads) instead of wall time: the work done,
less disturbed when other processes share the cores.

Never used for assertions: timings depend on the machine and its load.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pycaffelite.blob import Blob  # noqa: E402
from tests.layer_testing import layer_param, make_layer  # noqa: E402
from tests.layers.unrolled_recurrent import UnrolledRecurrent  # noqa: E402

SIZES = {  # name: (T steps, N streams, D inputs, H hidden)
    "small": (10, 16, 32, 32),
    "medium": (20, 32, 128, 256),
    "coco": (20, 100, 1000, 1000),  # the shape of Caffe's coco_caption LSTM language model
}


def make_bottoms(steps, streams, inputs, rng):
    x = Blob((steps, streams, inputs))
    x.data[...] = rng.uniform(-1, 1, x.shape)
    cont = Blob((steps, streams))
    cont.data[...] = rng.random(cont.shape) > 0.1
    cont.data[0] = 0
    return [x, cont]


def median_times(steps, warmup, repeats, clock):
    """The median time of each callable in `steps`, run in turns (so that a change in the machine's
    load falls on all of them alike)."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, record in zip(steps, times):
            start = clock()
            step()
            record.append(clock() - start)
    return [statistics.median(record) for record in times]


def bench(kind, size, warmup, repeats, clock):
    steps, streams, inputs, hidden = SIZES[size]
    text = (f'name: "r" type: "{kind}" recurrent_param {{ num_output: {hidden} '
            f'weight_filler {{ type: "uniform" min: -0.08 max: 0.08 }} }}')
    rng = np.random.default_rng(0)
    bottoms = make_bottoms(steps, streams, inputs, rng)
    fused, fused_top = make_layer(text, dtype=np.float32), [Blob(())]
    fused.initialize(bottoms, fused_top)
    fused_top[0].diff[...] = rng.normal(size=fused_top[0].shape)
    propagate = [True, False]

    def fused_step():
        fused.forward_loss(bottoms, fused_top)
        fused.backward(fused_top, propagate, bottoms)

    unrolled, unrolled_top = UnrolledRecurrent(layer_param(text)), [Blob(())]
    unrolled.setup(bottoms, unrolled_top)
    for mine, theirs in zip(unrolled.params, fused.blobs):
        mine.data[...] = theirs.data
    unrolled_top[0].diff[...] = fused_top[0].diff

    def unrolled_step():
        unrolled.forward(bottoms, unrolled_top)
        unrolled.backward()

    return median_times([fused_step, unrolled_step], warmup, repeats, clock)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="LSTM,RNN")
    parser.add_argument("--sizes", default="small,medium,coco")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"load average {os.getloadavg()[0]:.2f}; {'CPU' if args.cpu_time else 'wall'} time")
    print(f"{'layer':6} {'size':7} {'T x N x D -> H':22} {'fused ms':>9} {'unrolled ms':>12} "
          f"{'unrolled/fused':>15}")
    for kind in args.kinds.split(","):
        for size in args.sizes.split(","):
            repeats = args.repeats if size != "coco" else max(3, args.repeats // 2)
            fused, unrolled = bench(kind, size, args.warmup, repeats, clock)
            shape = "{} x {} x {} -> {}".format(*SIZES[size])
            print(f"{kind:6} {size:7} {shape:22} {fused * 1e3:9.2f} {unrolled * 1e3:12.2f} "
                  f"{unrolled / fused:15.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
