"""pcl beside real BVLC Caffe: `caffe time` and `pcl time` on the same prototxt files, batch 1.

For each deploy net of `bench_infer.NETS` (written with batch 1 into a temporary folder, so both
read the very same file) this runs

    caffe time -model net.prototxt -iterations N -phase TEST
    pcl time --model net.prototxt --iterations N --phase TEST --json

each in its own process, parses Caffe's "Average Forward pass" / "Average Backward pass" lines
and its per-layer averages, and prints one table: forward ms of pcl, PyTorch (built from the same
file by `bench_infer`, where torch is installed and covers the net) and Caffe, then the backward
ms that `caffe time` and `pcl time` also measure. `--layers` adds each net's per-layer forward
times side by side, to see which layers lag.

Caffe is found as `caffe` on PATH (or `--caffe PATH`); without it the script says so and ends.
It is not built or installed by this project: build BVLC Caffe's CPU-only tools yourself. Both
use 2 threads (OPENBLAS_NUM_THREADS for Caffe's OpenBLAS, pcl's own count). Never used for
assertions: timings depend on the machine and its load.

Usage: python bench/bench_caffe.py [--nets lenet,googlenet,...] [--iterations 20] [--layers]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_infer  # noqa: E402

_AVERAGE = re.compile(r"Average (Forward|Backward) pass: ([0-9.eE+-]+) ms")
_LAYER = re.compile(r"\]\s+(\S+)\s+(forward|backward): ([0-9.eE+-]+) ms")


def parse_caffe_time(log):
    """{"forward_ms", "backward_ms", "layers": {name: {"forward": ms, "backward": ms}}} from
    the log `caffe time` writes to stderr."""
    result = {"layers": {}}
    for line in log.splitlines():
        average = _AVERAGE.search(line)
        if average:
            result[f"{average.group(1).lower()}_ms"] = float(average.group(2))
            continue
        layer = _LAYER.search(line)
        if layer:
            result["layers"].setdefault(layer.group(1), {})[layer.group(2)] = float(layer.group(3))
    if "forward_ms" not in result:
        raise RuntimeError("caffe time printed no 'Average Forward pass' line:\n" + log[-2000:])
    return result


def caffe_time(binary, model, iterations, threads):
    env = dict(os.environ, GLOG_logtostderr="1", OPENBLAS_NUM_THREADS=str(threads))
    done = subprocess.run([binary, "time", "-model", model, "-iterations", str(iterations),
                           "-phase", "TEST"], capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"caffe time failed on {model}:\n{done.stderr[-2000:]}")
    return parse_caffe_time(done.stderr)


def pcl_time(model, iterations, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), PYTHONPATH=bench_infer.ROOT)
    done = subprocess.run([sys.executable, "-m", "pycaffelite.cli", "time", "--model", model,
                           "--iterations", str(iterations), "--phase", "TEST", "--json"],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"pcl time failed on {model}:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return {"forward_ms": report["average_forward_ms"], "backward_ms": report["average_backward_ms"],
            "layers": {layer["name"]: {"forward": layer["forward_ms"], "backward": layer["backward_ms"]}
                       for layer in report["layers"]}}


def _cell(value, spec=".2f"):
    return "-" if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(bench_infer.NETS))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=bench_infer.THREADS)
    parser.add_argument("--caffe", default=shutil.which("caffe"), help="the caffe binary")
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch column out")
    parser.add_argument("--layers", action="store_true", help="per-layer forward times too")
    args = parser.parse_args(argv)
    if not args.caffe:
        print("bench_caffe: no `caffe` binary on PATH (or --caffe): skipped. Build BVLC Caffe's "
              "CPU-only tools and put them on PATH to compare.")
        return 0
    print(bench_infer.machine_line())
    rows, details = [], []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.nets.split(","):
            model = bench_infer.batch1_file(name, folder)
            if model is None:
                print(f"{name}: its prototxt is not here (../shared/zoo absent?): skipped")
                continue
            caffe = caffe_time(args.caffe, model, args.iterations, args.threads)
            pcl = pcl_time(model, args.iterations, args.threads)
            torch_ms = None
            if not args.no_torch:
                torch_ms = bench_infer.median_or_none(
                    bench_infer.run_worker("torch", model, 10, args.iterations, args.threads))
            rows.append((name, pcl, torch_ms, caffe))
            details.append((name, pcl, caffe))
            print(f"  {name}: pcl {pcl['forward_ms']:.2f} ms, Caffe {caffe['forward_ms']:.2f} ms "
                  f"forward", flush=True)
    print()
    print("| net (batch 1) | pcl fwd ms | PyTorch fwd ms | Caffe fwd ms | pcl / Caffe fwd "
          "| pcl bwd ms | Caffe bwd ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, pcl, torch_ms, caffe in rows:
        print(f"| {bench_infer.LABELS.get(name, name)} | {pcl['forward_ms']:.2f} | {_cell(torch_ms)} "
              f"| {caffe['forward_ms']:.2f} | {pcl['forward_ms'] / caffe['forward_ms']:.2f} "
              f"| {pcl['backward_ms']:.2f} | {caffe['backward_ms']:.2f} |")
    if args.layers:
        for name, pcl, caffe in details:
            print(f"\n{name}: forward ms per layer (pcl / Caffe)")
            for layer, times in pcl["layers"].items():
                theirs = caffe["layers"].get(layer, {}).get("forward")
                print(f"  {layer:>28}  {times['forward']:9.3f}  {_cell(theirs, '9.3f')}")
    print(bench_infer.load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
