"""Matrix products on the shapes pcl's layers use: pcl's compiled kernel (which its image products
run; here on a 1 x 1 "image" that is the matrix b) against numpy's matmul (its BLAS, which pcl's
plain products run, `pycaffelite.gemm.matmul`) and scipy's sgemm (`scipy.linalg.blas`, which
can add into its output), in one run, interleaved (each round runs every library once per
shape).

Three ways of running, as the layers do:
  --mode 1      one thread each (pcl and the BLAS), timed by the thread's CPU time;
  --mode 2      two threads: pcl splits a product over its threads, the BLAS threads it itself;
  --mode tasks  pcl's thread runs (`parallel.run_parallel`), each thread computing a product
                of its own with serial products inside (the BLAS held to one thread), as a
                convolution's chunks do.
With --mode 2, run one library per process (--libraries pcl, then --libraries numpy, ...):
the BLAS's idle threads spin after a product and take the second core from whatever runs next.

Prints GFLOP/s per shape and library. Needs scipy and threadpoolctl (benchmark only). Unset
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the command to see the BLAS as an ordinary machine runs
it: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_gemm.py --mode tasks`.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHAPES = [  # label, M, K, N of c (M, N) = a (M, K) b (K, N)
    ("CaffeNet conv2 fwd, one image, group", 128, 1200, 729),
    ("CaffeNet conv3 fwd, one image", 384, 2304, 169),
    ("CaffeNet conv4 fwd, one image, group", 192, 1728, 169),
    ("CaffeNet conv3 weight gradient", 384, 169, 2304),
    ("CaffeNet conv3 data gradient", 2304, 384, 169),
    ("GoogLeNet conv2/3x3 fwd, one image", 192, 576, 3136),
    ("GoogLeNet 4a/1x1 fwd, one image", 192, 480, 196),
    ("ResNet-50 res2 1x1, one image", 64, 256, 3136),
    ("ResNet-50 res4 1x1, one image", 256, 1024, 196),
    ("ResNet-50 res5 1x1, one image", 512, 2048, 49),
    ("ResNet-50 res5 3x3, 8 images", 512, 4608, 392),
    ("MobileNet conv2_1/sep, one image", 64, 32, 12544),
    ("MobileNet conv6/sep, 16 images", 1024, 1024, 784),
    ("CaffeNet fc6 x W^T (batch 16)", 16, 9216, 4096),
    ("CaffeNet fc7 x W^T (batch 16)", 16, 4096, 4096),
    ("CaffeNet fc6 weight gradient dy^T x", 4096, 16, 9216),
    ("LSTM gates (20 streams, 256 hidden)", 20, 256, 1024),
    ("square 1024", 1024, 1024, 1024),
]


def operands(label, m, k, n, rng):
    """a and b as the layer holds them: InnerProduct's weights transposed, its weight gradient's
    top diff transposed."""
    a = rng.standard_normal((k, m), np.float32).T if "dy^T" in label \
        else rng.standard_normal((m, k), np.float32)
    b = rng.standard_normal((n, k), np.float32).T if "W^T" in label \
        else rng.standard_normal((k, n), np.float32)
    return a, b


def libraries():
    from scipy.linalg import blas  # noqa: PLC0415 - benchmark only

    from pycaffelite import gemm  # noqa: PLC0415

    def scipy_sgemm(a, b, c):
        # c (row-major) = a b is c^T (column-major) = b^T a^T: no copies, transposes as flags
        bt, at = b.T, a.T
        blas.sgemm(1.0, bt if bt.flags.f_contiguous else b, at if at.flags.f_contiguous else a,
                   0.0, c.T, not bt.flags.f_contiguous, not at.flags.f_contiguous, True)

    def pcl_kernel(a, b, c):
        # b (K, N), any strides, as a batch of one K-channel image of 1 x N pixels
        image = np.lib.stride_tricks.as_strided(b, (1, b.shape[0], 1, b.shape[1]),
                                                (0, b.strides[0], 0, b.strides[1]))
        gemm.image_matmul(a, image, (1, 1, 1, 1, 1, 1), c[None])

    return {"pcl": pcl_kernel,
            "numpy": lambda a, b, c: np.matmul(a, b, out=c),
            "scipy": scipy_sgemm}


def best_seconds(product, a, b, c, repeats, clock, mode):
    from pycaffelite import parallel  # noqa: PLC0415

    if mode == "tasks":
        other = np.empty_like(c)

        def run():
            parallel.run_parallel([lambda: product(a, b, c), lambda: product(a, b, other)])
    else:
        def run():
            product(a, b, c)
    run()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        run()
        best = min(best, clock() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("1", "2", "tasks"), default="tasks")
    parser.add_argument("--libraries", default="pcl,numpy,scipy")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_info, threadpool_limits  # noqa: PLC0415

    from pycaffelite import parallel  # noqa: PLC0415

    chosen = {name: f for name, f in libraries().items() if name in args.libraries.split(",")}
    parallel.set_num_threads(1 if args.mode == "1" else 2)
    threadpool_limits(2 if args.mode == "2" else 1)  # (after the imports: both BLAS libraries)
    clock = time.thread_time if args.mode == "1" else time.perf_counter
    kernels = "; ".join(f"{i['internal_api']} {i['version']} {i['architecture']} "
                        f"threads={i['num_threads']}" for i in threadpool_info())
    print(f"mode {args.mode}; {kernels}; load average {os.getloadavg()[0]:.2f}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}")
    print(f"{'GFLOP/s':<40} {'M':>5} {'K':>5} {'N':>6} " + " ".join(f"{n:>7}" for n in chosen))
    rng = np.random.default_rng(0)
    for label, m, k, n in SHAPES:
        a, b = operands(label, m, k, n, rng)
        c = np.empty((m, n), np.float32)
        flop = 2.0 * m * k * n * (2 if args.mode == "tasks" else 1)
        repeats = max(3, min(30, int(3e9 / flop)))
        best = dict.fromkeys(chosen, float("inf"))
        for _ in range(args.rounds):
            for name, product in chosen.items():
                best[name] = min(best[name], best_seconds(product, a, b, c, repeats, clock,
                                                          args.mode))
        print(f"{label:<40} {m:>5} {k:>5} {n:>6} "
              + " ".join(f"{flop / best[name] / 1e9:>7.1f}" for name in chosen))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
