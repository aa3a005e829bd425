"""Training-step benchmark: pycaffelite vs PyTorch (CPU) on the same nets, in one run.

For each net (LeNet batch 64, CIFAR10-quick batch 100, CaffeNet batch 16, GoogLeNet batch 16,
ResNet-50 batch 8, MobileNet-v1 batch 16, from models/*_time prototxts) and each framework, one full training iteration is timed: clear the gradients,
forward, backward, SGD update with momentum 0.9 and weight decay 5e-4 (pcl: `SGDSolver.step(1)`;
PyTorch: `torch.optim.SGD`). After a few warm-up
iterations the median of several iterations is reported, with the ratio pcl / PyTorch and each
run's peak RSS. Then the convolution layers of pcl's nets are timed one by one (as `pcl time`
does) and their achieved GFLOP/s is set against this machine's float32 GEMM rates on large square
matrices: numpy's matmul (its BLAS sgemm, which pcl's plain products run) and pcl's own compiled
kernel (which its image products run), whichever is faster being "this machine's sgemm rate".

Each (framework, net) pair runs in its own child process of this script (`--worker`), so that
peak RSS belongs to that pair alone and one framework's thread pools and caches do not disturb
the other. The PyTorch net is built from the same prototxt (`torch_net`). Both use 2 threads
(`--threads`): pcl's threads (its BLAS held to one thread inside them) and PyTorch's intra-op pool.
PyTorch is not a dependency of pycaffelite: install it for the benchmark only
(`pip install torch`); without it the PyTorch columns stay empty.

Usage: python bench/bench_train.py [--nets lenet,cifar10_quick,caffenet,googlenet,resnet50,
       mobilenet_v1] [--iterations N]
       [--warmup N] [--threads N] [--cpu-time] [--profile]

Never used for assertions: timings depend on the machine and its load.
"""
import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

NETS = {  # name: (prototxt, classes, warm-up iterations, timed iterations)
    "lenet": ("models/lenet/lenet_time.prototxt", 10, 5, 30),
    "cifar10_quick": ("models/cifar10_quick/cifar10_quick_time.prototxt", 10, 3, 15),
    "caffenet": ("models/caffenet/caffenet_time.prototxt", 1000, 2, 7),
    "googlenet": ("models/googlenet/googlenet_time.prototxt", 1000, 2, 7),
    "resnet50": ("models/resnet50/resnet50_time.prototxt", 1000, 2, 7),
    "mobilenet_v1": ("models/mobilenet_v1/mobilenet_v1_time.prototxt", 1000, 2, 7),
}
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 0.0005
THREADS = 2  # BLAS threads for pcl (numpy's OpenBLAS) and intra-op threads for PyTorch


# -- helpers shared by both frameworks ------------------------------------------------------------
def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def time_steps(step, warmup, iterations, clock):
    """Milliseconds of each of `iterations` calls of `step` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iterations):
        start = clock()
        step()
        times.append((clock() - start) * 1e3)
    return times


def clock_for(cpu_time):
    """The process's CPU time (all its threads) or the wall clock."""
    return time.process_time if cpu_time else time.perf_counter


def input_arrays(shapes, classes, seed=0):
    """Gaussian images and uniform integer labels for the net's two Input blobs."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shapes[0], dtype=np.float32)
    label = rng.integers(0, classes, size=shapes[1]).astype(np.float32)
    return data, label


def sgemm_gflops(sizes=(1024, 2048), repeats=5, clock=time.perf_counter, library="numpy"):
    """The best float32 matrix product rate on square matrices, in GFLOP/s: numpy's matmul (its
    BLAS, which pcl's plain products run), or pcl's compiled kernel (`library="pcl"`, which its
    image products run: timed as 1 x 1 image products, the same multiplication, with b's columns
    cut into one image per thread as a convolution's batch is)."""
    best = 0.0
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        product = _square_product(library, a, b)
        product()
        seconds = min(_timed(product, clock) for _ in range(repeats))
        best = max(best, 2.0 * n ** 3 / seconds / 1e9)
    return best


def _square_product(library, a, b):
    """A callable computing a @ b with `library` into a buffer made here."""
    n = b.shape[0]
    if library != "pcl":
        out = np.empty((n, n), np.float32)
        return lambda: np.matmul(a, b, out=out)
    from pycaffelite import gemm, parallel  # noqa: PLC0415 - only in the child that measures it

    parts = parallel.num_threads()  # one image (C = n, 1 x n / parts) per thread
    images = np.ascontiguousarray(b.reshape(n, parts, n // parts).transpose(1, 0, 2))
    images = images.reshape(parts, n, 1, n // parts)
    out = np.empty((parts, n, n // parts), np.float32)
    return lambda: gemm.image_matmul(a, images, (1, 1, 1, 1, 1, 1), out)


def _timed(function, clock):
    start = clock()
    function()
    return clock() - start


def blas_info():
    try:
        import threadpoolctl  # noqa: PLC0415 - optional, for the report only
    except ImportError:
        return "threadpoolctl not installed (pip install threadpoolctl to see the BLAS kernel)"
    parts = [f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
             f"threads={i.get('num_threads')}" for i in threadpoolctl.threadpool_info()
             if i.get("user_api") == "blas"]
    return "; ".join(parts) or "no BLAS found by threadpoolctl"


# -- pycaffelite ------------------------------------------------------------------------------------
def pcl_worker(net_name, warmup, iterations, profile, cpu_time):
    from pycaffelite import device, timing  # noqa: PLC0415
    from pycaffelite.proto import caffe_pb2  # noqa: PLC0415
    from pycaffelite.solvers import SGDSolver  # noqa: PLC0415

    model, classes, _, _ = NETS[net_name]
    device.set_random_seed(1)
    baseline = current_rss_mb()
    solver = SGDSolver(caffe_pb2.SolverParameter(
        net=os.path.join(ROOT, model), type="SGD", base_lr=LR, momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY, lr_policy="fixed", max_iter=10 ** 9, display=0,
        solver_mode=caffe_pb2.SolverParameter.CPU))
    net = solver.net
    data_name, label_name = net.inputs[:2]
    data, label = input_arrays((net.blobs[data_name].shape, net.blobs[label_name].shape), classes)
    net.blobs[data_name].data[...] = data
    net.blobs[label_name].data[...] = label

    times = time_steps(lambda: solver.step(1), warmup, iterations, clock_for(cpu_time))
    result = timing.time_net(net, max(3, iterations // 3), clock=clock_for(cpu_time))
    layers = [dict(name=l.name, type=l.type, forward_ms=l.forward_ms, backward_ms=l.backward_ms)
              for l in result.layers]
    convs = conv_flops(net)
    for layer in layers:
        layer.update(convs.get(layer["name"], {}))
    return {"times_ms": times, "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
            "batch": data.shape[0], "layers": layers, "blas": blas_info()}


def conv_flops(net):
    """Forward and backward FLOPs of each Convolution layer: 2 multiply-adds' worth per weight use;
    the backward computes the weight gradient and, where the bottom needs it, the data gradient."""
    flops = {}
    for name, layer, bottoms, tops, need in zip(net.layer_names, net.layers, net.bottom_vecs,
                                                net.top_vecs, net.bottom_need_backward):
        if layer.type != "Convolution":
            continue
        weight = layer.blobs[0]
        per_output = weight.count // weight.shape[0]  # (Ci / group) * prod(kernel)
        forward = sum(2.0 * top.count * per_output for top in tops)
        backward = forward * (1 + (1 if any(need) else 0))
        flops[name] = {"forward_flop": forward, "backward_flop": backward,
                       "bottom": list(bottoms[0].shape), "top": list(tops[0].shape),
                       "kernel": list(weight.shape), "group": layer.param.convolution_param.group}
    return flops


# -- PyTorch ----------------------------------------------------------------------------------------
def torch_net(model_path):
    """A torch.nn.Module computing the same training loss as the prototxt's TRAIN net.

    Covers the layer types of the benchmark nets: Input, Convolution (groups, no bias), Pooling
    (MAX/AVE, Caffe's ceil rounding, global), ReLU, LRN (across channels), BatchNorm (batch
    statistics, no affine part), Scale (per channel, with bias), Eltwise (SUM), Concat,
    InnerProduct, Dropout, SoftmaxWithLoss (loss weights summed into one loss).
    """
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    from pycaffelite import net_build  # noqa: PLC0415
    from pycaffelite.io import protoio  # noqa: PLC0415
    from pycaffelite.proto import caffe_pb2  # noqa: PLC0415

    class ChannelAffine(nn.Module):  # Caffe's Scale layer with bias_term, per channel
        def __init__(self, channels, bias):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

        def forward(self, x):
            y = x * self.weight.view(1, -1, 1, 1)
            return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y

    class Sum(nn.Module):
        def forward(self, *xs):
            return functools.reduce(torch.add, xs)

    class Cat(nn.Module):
        def forward(self, *xs):
            return torch.cat(xs, dim=1)

    class Loss(nn.Module):  # SoftmaxWithLoss on (N, classes) or (N, classes, 1, 1) scores
        def __init__(self):
            super().__init__()
            self.loss = nn.CrossEntropyLoss()

        def forward(self, scores, label):
            return self.loss(scores.flatten(1), label)

    param = net_build.filter_by_state(protoio.read_net_param(model_path),
                                      caffe_pb2.NetState(phase=caffe_pb2.TRAIN), model_path)
    shapes = {}
    steps = []  # (module or None, layer type, bottoms, tops, loss weight)
    modules = nn.ModuleDict()
    for layer in param.layer:
        kind = layer.type
        if kind == "Input":
            for top, shape in zip(layer.top, layer.input_param.shape):
                shapes[top] = tuple(shape.dim)
            steps.append((None, kind, [], list(layer.top), 0))
            continue
        in_shape = shapes[layer.bottom[0]]
        if kind == "Convolution":
            p = layer.convolution_param
            module = nn.Conv2d(in_shape[1], p.num_output, p.kernel_size[0],
                               stride=p.stride[0] if p.stride else 1, padding=p.pad[0] if p.pad else 0,
                               groups=p.group, bias=p.bias_term)
        elif kind == "Pooling":
            p = layer.pooling_param
            pool = nn.MaxPool2d if p.pool == caffe_pb2.PoolingParameter.MAX else nn.AvgPool2d
            if p.global_pooling:
                module = pool(in_shape[2:])
            else:
                module = pool(p.kernel_size, stride=p.stride, padding=p.pad, ceil_mode=True)
        elif kind == "ReLU":
            module = nn.ReLU(inplace=True)
        elif kind == "LRN":
            p = layer.lrn_param
            module = nn.LocalResponseNorm(p.local_size, alpha=p.alpha, beta=p.beta, k=p.k)
        elif kind == "BatchNorm":
            module = nn.BatchNorm2d(in_shape[1], eps=layer.batch_norm_param.eps, affine=False,
                                    momentum=1 - layer.batch_norm_param.moving_average_fraction)
        elif kind == "Scale":
            module = ChannelAffine(in_shape[1], layer.scale_param.bias_term)
        elif kind == "Eltwise":
            if layer.eltwise_param.operation != caffe_pb2.EltwiseParameter.SUM or \
                    layer.eltwise_param.coeff:
                raise ValueError("torch_net: only Eltwise SUM without coefficients is covered")
            module = Sum()
        elif kind == "Concat":
            module = Cat()
        elif kind == "InnerProduct":
            module = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(in_shape[1:])),
                                                           layer.inner_product_param.num_output))
        elif kind == "Dropout":
            # Not in place: torch's in-place ReLU keeps its output for backward.
            module = nn.Dropout(layer.dropout_param.dropout_ratio)
        elif kind == "SoftmaxWithLoss":
            module = Loss()
        else:
            raise ValueError(f"torch_net: layer type {kind} is not covered")
        modules[layer.name] = module
        with torch.no_grad():
            probe = [torch.zeros(shapes[b]) for b in layer.bottom]
            if kind == "SoftmaxWithLoss":
                probe[1] = probe[1].long()
            out = module(*probe)
        shapes[layer.top[0]] = tuple(out.shape)
        weight = layer.loss_weight[0] if layer.loss_weight else float(kind == "SoftmaxWithLoss")
        steps.append((layer.name, kind, list(layer.bottom), list(layer.top), weight))

    class CaffeStyleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = modules
            self.input_shapes = {s[3][i]: shapes[s[3][i]] for s in steps if s[1] == "Input"
                                 for i in range(len(s[3]))}

            self.steps = [step[:4] for step in steps if step[1] != "Input"]
            self.losses = [(step[3][0], step[4]) for step in steps if step[4]]

        def forward(self, all_blobs=False, **inputs):
            blobs = dict(inputs)
            for name, kind, bottoms, tops in self.steps:
                args = [blobs[b] for b in bottoms]
                if kind == "SoftmaxWithLoss":
                    args[1] = args[1].long()
                blobs[tops[0]] = self.layers[name](*args)
            if all_blobs:
                return blobs
            return functools.reduce(torch.add, [blobs[top] * weight if weight != 1 else blobs[top]
                                                for top, weight in self.losses])

    return CaffeStyleNet()


def torch_worker(net_name, warmup, iterations, profile, cpu_time):
    import torch  # noqa: PLC0415

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", THREADS)))
    torch.manual_seed(1)
    model, classes, _, _ = NETS[net_name]
    baseline = current_rss_mb()
    net = torch_net(os.path.join(ROOT, model))
    net.train()
    names = list(net.input_shapes)
    data, label = input_arrays([net.input_shapes[n] for n in names[:2]], classes)
    inputs = {names[0]: torch.from_numpy(data), names[1]: torch.from_numpy(label)}
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step():
        optimizer.zero_grad(set_to_none=False)
        net(**inputs).backward()
        optimizer.step()

    times = time_steps(step, warmup, iterations, clock_for(cpu_time))
    layers = torch_layer_times(net, inputs, clock_for(cpu_time)) if profile else None
    return {"times_ms": times, "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
            "batch": data.shape[0], "torch": torch.__version__, "threads": torch.get_num_threads(),
            "layers": layers}


def torch_layer_times(net, inputs, clock, repeats=5):
    """Each module's forward and backward on its own (median ms), on the activations of one
    forward pass, like `pcl time` per layer. Net inputs get no gradient, as in the Caffe nets."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    with torch.no_grad():
        blobs = net(all_blobs=True, **inputs)
    times = []
    for name, kind, bottoms, tops in net.steps:
        module = net.layers[name]
        if isinstance(module, nn.ReLU):
            module = nn.ReLU()  # in place on a leaf that needs a gradient is not allowed
        forward, backward = [], []
        for _ in range(repeats):
            args = [blobs[b].detach().clone().requires_grad_(b not in inputs) for b in bottoms]
            if kind == "SoftmaxWithLoss":
                args[1] = blobs[bottoms[1]].long()
            start = clock()
            out = module(*args)
            middle = clock()
            out.backward(None if out.dim() == 0 else torch.ones_like(out))
            forward.append((middle - start) * 1e3)
            backward.append((clock() - middle) * 1e3)
        times.append({"name": name, "forward_ms": statistics.median(forward),
                      "backward_ms": statistics.median(backward)})
    return times


# -- the parent: run the workers and print tables ------------------------------------------------------
def run_worker(framework, net_name, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--nets", net_name,
               "--warmup", str(args.warmup if args.warmup is not None else NETS[net_name][2]),
               "--iterations", str(args.iterations if args.iterations is not None else NETS[net_name][3])]
    if args.profile:
        command.append("--profile")
    if args.cpu_time:
        command.append("--cpu-time")
    # numpy's OpenBLAS reads its thread count when it loads, so the child gets it by environment.
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


def gemm_in_child(threads, cpu_time, library):
    """sgemm GFLOP/s (numpy's or pcl's) measured in a child process with the runs' thread count
    and clock."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    code = f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); " \
           f"import bench_train; print(bench_train.sgemm_gflops(" \
           f"clock=bench_train.clock_for({cpu_time}), library={library!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def torch_available():
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, check=False)
    return probe.returncode == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations per net")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first")
    parser.add_argument("--profile", action="store_true",
                        help="also print every layer's forward/backward time in both frameworks")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="BLAS / PyTorch threads per run (1 is steadier on a loaded machine)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time instead of the wall clock (with "
                             "--threads 1, the figure a busy machine disturbs least)")
    parser.add_argument("--worker", choices=("pcl", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    nets = [n for n in args.nets.split(",") if n]
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        parser.error(f"unknown net(s) {unknown}; choose from {list(NETS)}")

    if args.worker:
        work = pcl_worker if args.worker == "pcl" else torch_worker
        print(json.dumps(work(nets[0], args.warmup, args.iterations, args.profile, args.cpu_time)))
        return

    have_torch = torch_available()
    print(f"numpy {np.__version__}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}; cpus={os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.2f} (other work on the machine skews every figure)")
    gemm = {library: gemm_in_child(args.threads, args.cpu_time, library) for library in ("numpy", "pcl")}
    print(f"float32 matrix product on squares (sgemm): numpy {gemm['numpy']:.1f} GFLOP/s, "
          f"pcl {gemm['pcl']:.1f} GFLOP/s")
    results = {}
    for name in nets:
        pcl = run_worker("pcl", name, args)
        torch_result = run_worker("torch", name, args) if have_torch else {"error": "torch not installed"}
        results[name] = (pcl, torch_result)
    if have_torch:
        first = next((t for _, t in results.values() if "torch" in t), None)
        if first:
            print(f"PyTorch {first['torch']}, {first['threads']} threads")
    blas = next((p["blas"] for p, _ in results.values() if "blas" in p), "unknown")
    print(f"BLAS in the pcl runs: {blas}; load average at the end {os.getloadavg()[0]:.2f}")
    print()
    print(step_table(results, args.cpu_time))
    print()
    print(conv_table(results, gemm))
    if args.profile:
        for name, (pcl, torch_result) in results.items():
            print()
            print(profile_table(name, pcl, torch_result))


def _median(result):
    return statistics.median(result["times_ms"]) if "times_ms" in result else None


def _fmt(value, spec):
    return format(value, spec) if value is not None else "-"


def step_table(results, cpu_time):
    header = (f"{'net':<14} {'batch':>5} {'pcl ms':>9} {'torch ms':>9} {'pcl/torch':>9} "
              f"{'pcl min':>8} {'torch min':>9} {'pcl RSS MB':>10} {'torch RSS MB':>12}")
    rows = ["One training iteration (forward, backward, SGD momentum update), median after warm-up"
            f" ({'CPU time' if cpu_time else 'wall clock'})",
            header, "-" * len(header)]
    for name, (pcl, torch_result) in results.items():
        p, t = _median(pcl), _median(torch_result)
        batch = pcl.get("batch", torch_result.get("batch", "?"))
        rows.append(
            f"{name:<14} {batch:>5} {_fmt(p, '9.2f')} {_fmt(t, '9.2f')} "
            f"{_fmt(p / t if p and t else None, '9.2f')} "
            f"{_fmt(min(pcl['times_ms']) if p else None, '8.2f')} "
            f"{_fmt(min(torch_result['times_ms']) if t else None, '9.2f')} "
            f"{_fmt(pcl.get('peak_rss_mb'), '10.0f')} {_fmt(torch_result.get('peak_rss_mb'), '12.0f')}")
        for framework, result in (("pcl", pcl), ("torch", torch_result)):
            if "error" in result:
                rows.append(f"  {framework} failed: {result['error']}")
    return "\n".join(rows)


CONV_DETAIL = ("lenet", "cifar10_quick", "caffenet")  # nets whose convolutions get a row each


def conv_table(results, gemm):
    """Each convolution's GFLOP/s, and forward + backward as a share of the numpy and pcl sgemm
    rates in `gemm` and of the better of the two; one row of all convolutions together for the
    nets not in CONV_DETAIL."""
    best = max(gemm.values())
    header = (f"{'net':<14} {'layer':<13} {'bottom -> top':<30} {'g':>4} {'fwd ms':>8} {'GFLOP/s':>8} "
              f"{'bwd ms':>8} {'GFLOP/s':>8} {'% numpy':>8} {'% pcl':>6} {'% best':>7}")
    rows = ["pcl convolution layers (timed as `pcl time` does) vs the sgemm rates: numpy "
            f"{gemm['numpy']:.1f}, pcl {gemm['pcl']:.1f} GFLOP/s",
            header, "-" * len(header)]

    def row(name, label, shapes, group, fwd_flop, fwd_ms, bwd_flop, bwd_ms):
        fwd = fwd_flop / fwd_ms / 1e6 if fwd_ms else 0.0
        bwd = bwd_flop / bwd_ms / 1e6 if bwd_ms else 0.0
        both = (fwd_flop + bwd_flop) / (fwd_ms + bwd_ms) / 1e6
        return (f"{name:<14} {label:<13} {shapes:<30} {group:>4} {fwd_ms:>8.2f} {fwd:>8.1f} "
                f"{bwd_ms:>8.2f} {bwd:>8.1f} {100 * both / gemm['numpy']:>7.0f}% "
                f"{100 * both / gemm['pcl']:>5.0f}% {100 * both / best:>6.0f}%")

    for name, (pcl, _) in results.items():
        convs = [layer for layer in pcl.get("layers", []) if "forward_flop" in layer]
        if name not in CONV_DETAIL and convs:
            rows.append(row(name, f"all {len(convs)}", "", "", *(
                sum(layer[key] for layer in convs)
                for key in ("forward_flop", "forward_ms", "backward_flop", "backward_ms"))))
            continue
        for layer in convs:
            shapes = f"{'x'.join(map(str, layer['bottom']))} -> {'x'.join(map(str, layer['top']))}"
            rows.append(row(name, layer["name"], shapes, layer["group"], layer["forward_flop"],
                            layer["forward_ms"], layer["backward_flop"], layer["backward_ms"]))
    return "\n".join(rows)


def profile_table(name, pcl, torch_result):
    """pcl's per-layer times (as `pcl time`) beside PyTorch's same layer timed on its own."""
    torch_layers = {layer["name"]: layer for layer in torch_result.get("layers") or []}
    header = (f"  {'layer':<8} {'type':<16} {'pcl fwd':>8} {'torch fwd':>9} {'pcl bwd':>8} "
              f"{'torch bwd':>9} {'pcl/torch':>9}")
    rows = [f"{name}: per layer, ms", header]
    for layer in pcl.get("layers", []):
        theirs = torch_layers.get(layer["name"])
        ours = layer["forward_ms"] + layer["backward_ms"]
        peer = theirs["forward_ms"] + theirs["backward_ms"] if theirs else None
        rows.append(f"  {layer['name']:<8} {layer['type']:<16} {layer['forward_ms']:8.2f} "
                    f"{_fmt(theirs and theirs['forward_ms'], '9.2f')} {layer['backward_ms']:8.2f} "
                    f"{_fmt(theirs and theirs['backward_ms'], '9.2f')} "
                    f"{_fmt(ours / peer if peer else None, '9.2f')}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
