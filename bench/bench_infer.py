"""Batch-1 inference: one forward pass of deploy nets, pcl vs PyTorch CPU (and BVLC Caffe).

The nets: the deploy files of models/ (LeNet, CaffeNet, GoogLeNet, ResNet-50, MobileNet-v1) and,
where ../shared/zoo is present, the public SqueezeNet-1.1, VGG16 and AlexNet deploy files. Each is
written with batch 1 into a temporary folder (legacy inputs as an Input layer), so every framework
reads the same file. pcl runs `Net.forward()` (TEST phase); PyTorch runs the same net built from
that file by bench_train's `torch_net` in eval mode under no_grad (a final Softmax applied with
torch.softmax, which torch_net does not cover). Each (framework, net) pair runs in its own child
process, after a few warm-up passes; the median and minimum of the timed passes are printed, with
the ratio pcl / PyTorch. With a `caffe` binary on PATH, `caffe time -phase TEST` adds Caffe's
average forward pass (see bench_caffe.py, which also shows the backward passes).

PyTorch is not a dependency: `pip install torch==2.13.0` for its column. 2 threads each
(`--threads`). Never used for assertions: timings depend on the machine and its load.

Usage: python bench/bench_infer.py [--nets lenet,googlenet,...] [--iterations 30] [--warmup 10]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(os.path.dirname(ROOT), "shared", "zoo")
sys.path.insert(0, ROOT)

THREADS = 2
# name: the deploy prototxt (models/ under the project, zoo/ under ../shared/zoo)
NETS = {
    "lenet": "models/lenet/lenet_deploy.prototxt",
    "caffenet": "models/caffenet/deploy.prototxt",
    "googlenet": "models/googlenet/deploy.prototxt",
    "resnet50": "models/resnet50/deploy.prototxt",
    "mobilenet_v1": "models/mobilenet_v1/deploy.prototxt",
    "squeezenet_v1.1": "zoo/squeezenet_v1.1/deploy.prototxt",
    "vgg16": "zoo/vgg16/VGG_ILSVRC_16_layers_deploy.prototxt",
    "alexnet": "zoo/bvlc_alexnet/deploy.prototxt",
}
LABELS = {"lenet": "LeNet", "caffenet": "CaffeNet", "googlenet": "GoogLeNet",
          "resnet50": "ResNet-50", "mobilenet_v1": "MobileNet-v1",
          "squeezenet_v1.1": "SqueezeNet-1.1", "vgg16": "VGG16", "alexnet": "AlexNet"}


def source_path(name):
    """The deploy file of net `name`, or None where it is not here (no ../shared/zoo)."""
    relative = NETS[name]
    if relative.startswith("zoo/"):
        path = os.path.join(ZOO, relative[len("zoo/"):])
    else:
        path = os.path.join(ROOT, relative)
    return path if os.path.isfile(path) else None


def batch1_file(name, folder):
    """Net `name` written into `folder` with batch 1 (None if its file is not here)."""
    from google.protobuf import text_format  # noqa: PLC0415

    from pycaffelite.io import protoio  # noqa: PLC0415

    source = source_path(name)
    if source is None:
        return None
    param = protoio.read_net_param(source)  # legacy inputs become an Input layer
    for layer in param.layer:
        if layer.type == "Input":
            for shape in layer.input_param.shape:
                shape.dim[0] = 1
    path = os.path.join(folder, f"{name}_batch1.prototxt")
    with open(path, "w") as out:
        out.write(text_format.MessageToString(param))
    return path


def _timed(run, warmup, iterations):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def pcl_worker(model, warmup, iterations, threads):
    import numpy as np  # noqa: PLC0415

    import pycaffelite as pcl  # noqa: PLC0415
    from pycaffelite import parallel  # noqa: PLC0415

    parallel.set_num_threads(threads)
    net = pcl.Net(model, pcl.TEST)
    rng = np.random.default_rng(0)
    for name in net.inputs:
        net.blobs[name].data[...] = rng.random(net.blobs[name].shape)
    return _timed(net.forward, warmup, iterations)


def torch_worker(model, warmup, iterations, threads):
    import torch  # noqa: PLC0415
    from bench_train import torch_net  # noqa: PLC0415
    from google.protobuf import text_format  # noqa: PLC0415

    from pycaffelite.io import protoio  # noqa: PLC0415

    torch.set_num_threads(threads)
    param = protoio.read_net_param(model)
    softmax = [layer for layer in param.layer if layer.type == "Softmax"]
    for layer in softmax:  # torch_net covers no Softmax: applied below instead
        param.layer.remove(layer)
    stripped = model.replace(".prototxt", "_torch.prototxt")
    with open(stripped, "w") as out:
        out.write(text_format.MessageToString(param))
    net = torch_net(stripped).eval()
    inputs = {name: torch.rand(shape) for name, shape in net.input_shapes.items()}

    def forward():
        with torch.no_grad():
            blobs = net(all_blobs=True, **inputs)
            for layer in softmax:
                blobs[layer.top[0]] = torch.softmax(blobs[layer.bottom[0]], dim=1)

    return _timed(forward, warmup, iterations)


def run_worker(framework, model, warmup, iterations, threads):
    """Times (ms) of `framework` on `model` from a child process; None if it cannot run there
    (no torch, a layer torch_net does not cover)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", framework, model,
                           str(warmup), str(iterations), str(threads)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        if framework == "pcl":
            raise RuntimeError(f"pcl failed on {model}:\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.splitlines()[-1])


def median_or_none(times):
    return None if times is None else statistics.median(times)


def machine_line():
    import platform  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name")), cpu)
    pinned = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return (f"{cpu}, {os.cpu_count()} CPUs, numpy {np.__version__}, Python "
            f"{platform.python_version()}; BLAS pinned by {pinned or 'nothing'}; {load_line()}")


def load_line():
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _cell(value, spec=".2f"):
    return "-" if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--iterations", type=int, default=30)
    # PyTorch's first passes of a net are slow (its kernels are chosen and made for the shapes)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--caffe", default=shutil.which("caffe"), help="the caffe binary")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        framework, model, warmup, iterations, threads = args.worker
        worker = pcl_worker if framework == "pcl" else torch_worker
        print(json.dumps(worker(model, int(warmup), int(iterations), int(threads))))
        return 0

    import tempfile  # noqa: PLC0415

    print(machine_line())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.nets.split(","):
            model = batch1_file(name, folder)
            if model is None:
                print(f"{name}: its prototxt is not here (../shared/zoo absent?): skipped")
                continue
            pcl = run_worker("pcl", model, args.warmup, args.iterations, args.threads)
            torch_times = run_worker("torch", model, args.warmup, args.iterations, args.threads)
            caffe_ms = None
            if args.caffe:
                from bench_caffe import caffe_time  # noqa: PLC0415

                caffe_ms = caffe_time(args.caffe, model, args.iterations, args.threads)["forward_ms"]
            rows.append((name, pcl, torch_times, caffe_ms))
            print(f"  {name}: pcl {statistics.median(pcl):.2f} ms", flush=True)
    print()
    print("| net (batch 1) | pcl ms (median / min) | PyTorch ms (median / min) | pcl / PyTorch "
          "| Caffe ms (average) | pcl / Caffe |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, pcl, torch_times, caffe_ms in rows:
        mine = statistics.median(pcl)
        theirs = median_or_none(torch_times)
        print(f"| {LABELS[name]} | {mine:.2f} / {min(pcl):.2f} "
              f"| {_cell(theirs)} / {_cell(min(torch_times) if torch_times else None)} "
              f"| {_cell(mine / theirs if theirs else None)} | {_cell(caffe_ms)} "
              f"| {_cell(mine / caffe_ms if caffe_ms else None)} |")
    print(load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
