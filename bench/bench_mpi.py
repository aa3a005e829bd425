"""Data-parallel training benchmark: training images per second of 2 MPI ranks with 1 thread each
against 1 process with 2 threads (and 1 with 1 thread), on LeNet and CIFAR10-quick; and for the
ranks, the time their gradient all-reduce takes per iteration and how much of it the backward
pass hides.

Each configuration runs in child processes of this script (`--worker`): `python bench_mpi.py
--worker` for one process, `mpiexec -n 2 python bench_mpi.py --worker` for the ranks. A worker
trains the net of models/*/*_time.prototxt (Input layers holding random images and labels; SGD
with momentum 0.9 and weight decay 5e-4), a few warm-up iterations and then `--iterations`
timed ones, each alone (the ranks start every timed iteration together); the median iteration
is reported. Every rank computes a whole batch, so 2 ranks train on twice the images per
iteration.

All-reduce figures (ranks only), medians over iterations. The timed iterations alternate between
overlapping the all-reduce with the backward pass (pcl's default) and reducing every bucket after
it (as Caffe does with `layer_wise_reduce: false`), so the machine's other load weighs on both
alike. Before the update the ranks first meet (so a rank slowed down by other processes does not
count as communication), then finish the reduction:
  alone    one iteration's all-reduces with nothing else running (every bucket started, then
           waited for)
  after    the time the reduction still takes once both ranks have ended the backward pass,
           overlapped and late
  hidden   1 - after (overlapped) / after (late): the share of the all-reduce the backward pass
           hides

Usage: python bench/bench_mpi.py [--nets lenet,cifar10_quick] [--iterations N] [--warmup N]
Needs the mpi extra (mpi4py and an mpiexec); without it only the single-process rows print.
Never used for assertions: timings depend on the machine and its load.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

NETS = {  # name: (prototxt, classes)
    "lenet": ("models/lenet/lenet_time.prototxt", 10),
    "cifar10_quick": ("models/cifar10_quick/cifar10_quick_time.prototxt", 10),
}
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 0.0005


def worker(net_name, warmup, iterations):
    """Train and time one configuration in this process (one rank under mpiexec); rank 0 prints
    the figures as one JSON line."""
    from pycaffelite import device, distributed  # noqa: PLC0415
    from pycaffelite.proto import caffe_pb2  # noqa: PLC0415
    from pycaffelite.solvers import SGDSolver  # noqa: PLC0415

    model, classes = NETS[net_name]
    comm = distributed.init()
    solver = SGDSolver(caffe_pb2.SolverParameter(
        net=os.path.join(ROOT, model), type="SGD", base_lr=LR, momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY, lr_policy="fixed", max_iter=10 ** 9, display=0,
        random_seed=1, solver_mode=caffe_pb2.SolverParameter.CPU))
    net = solver.net
    data_name, label_name = net.inputs[:2]
    rng = np.random.default_rng(device.solver_rank())
    net.blobs[data_name].data[...] = rng.normal(size=net.blobs[data_name].shape)
    net.blobs[label_name].data[...] = rng.integers(0, classes, size=net.blobs[label_name].shape)
    wiring = Wiring(solver, comm) if comm is not None else None
    together = comm.gather if comm is not None else (lambda value: [value])
    solver.step(warmup)
    overlapped, after = [], {True: [], False: []}
    for index in range(2 * iterations if wiring else iterations):
        overlap = index % 2 == 0
        if wiring:
            wiring.overlap = overlap
        together(0.0)
        start = time.perf_counter()
        solver.step(1)
        if overlap:
            overlapped.append(time.perf_counter() - start)
        if wiring:
            after[overlap].append(wiring.after)
    seconds = float(np.median(overlapped))
    batch = net.blobs[data_name].shape[0]
    result = {"net": net_name, "ranks": distributed.size(), "batch": batch,
              "iteration_ms": 1e3 * seconds, "images_per_s": distributed.size() * batch / seconds}
    if wiring is not None:
        reducer = wiring.reducer
        alone = [reducer.time_allreduce(1) for _ in range(max(10, iterations))]
        result.update(overlapped_ms=1e3 * float(np.median(after[True])),
                      late_ms=1e3 * float(np.median(after[False])),
                      alone_ms=1e3 * float(np.median(alone)), buckets=len(reducer.buckets),
                      megabytes=sum(b.buffer.nbytes for b in reducer.buckets) / 2 ** 20)
    if distributed.rank() == 0:
        print(json.dumps(result), flush=True)


class Wiring:
    """DataParallel's wiring of a solver, with a switch: `overlap` says whether the next
    iteration starts buckets during the backward pass; `after` is the last iteration's time
    finishing the reduction once the ranks have met after the backward pass."""

    def __init__(self, solver, comm):
        from pycaffelite.distributed import broadcast_weights  # noqa: PLC0415
        from pycaffelite.distributed.buckets import GradientReducer  # noqa: PLC0415
        from pycaffelite.distributed.group import CommunicatorGroup  # noqa: PLC0415

        self.comm = comm
        self.reducer = GradientReducer(solver.net, comm, solver.param.iter_size)
        self.overlap, self.after = True, 0.0
        solver.add_callback(on_start=self.reducer.start_iteration, on_gradients_ready=self.finish)
        solver.net.after_backward(self.layer_done)
        solver.group = CommunicatorGroup(comm)
        broadcast_weights(solver.net, comm)

    def layer_done(self, layer_id):
        if self.overlap:
            self.reducer.layer_done(layer_id)

    def finish(self):
        self.comm.gather(0.0)
        start = time.perf_counter()
        self.reducer.finish()
        self.after = time.perf_counter() - start


def run(net_name, threads, ranks, warmup, iterations):
    """One configuration in child processes; its figures, or None if it failed."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               GLOG_minloglevel="2")
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--nets", net_name,
               "--warmup", str(warmup), "--iterations", str(iterations)]
    if ranks > 1:
        command = [mpiexec(), "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  {net_name}, {ranks} x {threads} threads failed:\n{done.stderr[-2000:]}")
        return None
    return json.loads(lines[-1])


def mpiexec():
    """The mpiexec beside this Python (mpi4py's MPI), else the one on PATH, else None."""
    try:
        import mpi4py  # noqa: F401, PLC0415 - only whether it is installed
    except ImportError:
        return None
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    nets = args.nets.split(",")
    if args.worker:
        worker(nets[0], args.warmup, args.iterations)
        return
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    header = (f"{'net':14} {'processes x threads':>20} {'images/iter':>11} {'ms/iter':>8} "
              f"{'images/s':>9} {'allreduce alone':>16} {'after, overlapped':>18} "
              f"{'after, late':>12} {'hidden':>7}")
    print(header)
    for net_name in nets:
        for threads, ranks in [(1, 1), (2, 1)] + ([(1, 2)] if mpiexec() else []):
            result = run(net_name, threads, ranks, args.warmup, args.iterations)
            if result is None:
                continue
            row = (f"{net_name:14} {f'{ranks} x {threads}':>20} {result['batch'] * ranks:>11} "
                   f"{result['iteration_ms']:8.1f} {result['images_per_s']:9.0f}")
            if "alone_ms" in result:
                hidden = 1 - result["overlapped_ms"] / result["late_ms"]
                row += (f" {result['alone_ms']:13.2f} ms {result['overlapped_ms']:15.2f} ms "
                        f"{result['late_ms']:9.2f} ms "
                        f"{100 * hidden:6.0f}%  ({result['buckets']} buckets, "
                        f"{result['megabytes']:.2f} MB)")
            print(row, flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
