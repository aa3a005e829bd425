"""Averaging a net's gradients across ranks in buckets, while the backward pass goes on.

The backward pass runs the layers from the last to the first, and a learnable param's gradient
is complete once the lowest layer using it (weights may be shared) has run. Walking the layers in
that order, params are packed into buckets of at least `bucket_bytes`; a bucket's all-reduce
starts (non-blocking) right after the layer that completes its last param, and the layers below
compute while it travels. Before the update every bucket is waited for and its sum, scaled by
1 / size (Caffe's average over solvers), is copied back into the diffs. Each rank thus applies
the same update from the same gradient: the mean over ranks of each rank's own gradient (itself
accumulated over iter_size passes and normalised by the solver, as in Caffe).

With iter_size > 1 only the last backward pass of an iteration reduces (the sum is linear, so
reducing the accumulated diffs once equals Caffe, which reduces after every pass). Without the
after_backward hook (a solver's `layer_wise_reduce: false`) every bucket starts after the
backward pass, as Caffe then reduces everything at once.

The copies into and out of the bucket buffers run on the array module of the buffers (numpy,
or cupy for NCCL), so the same code serves both routes.
"""
import time

import numpy as np

# 256 KiB: CIFAR10-quick's 0.56 MB of params make 3 buckets, LeNet's 1.6 MB 2 (its ip1 alone is
# 1.5 MB). A bucket closes at a layer's end, so there are never more all-reduces than layers with
# params (Caffe reduces once per such layer); smaller buckets only add latency.
BUCKET_BYTES = 256 << 10


class Bucket:
    """Learnable params reduced together, through one flat buffer."""

    def __init__(self, params, xp, dtype):
        self.params = params
        self.offsets = np.cumsum([0] + [blob.count for blob in params])
        self.buffer = xp.empty(int(self.offsets[-1]), dtype=dtype)
        self.pending = None

    def pack(self):
        for blob, lo, hi in zip(self.params, self.offsets, self.offsets[1:]):
            self.buffer[lo:hi] = blob.read_diff().reshape(-1)

    def unpack(self, scale, xp):
        for blob, lo, hi in zip(self.params, self.offsets, self.offsets[1:]):
            diff = blob.write_diff()
            xp.multiply(self.buffer[lo:hi].reshape(diff.shape), scale, out=diff)


class GradientReducer:
    """Averages `net`'s learnable param diffs across `comm`'s ranks once per iteration.

    Wire it to a solver: `start_iteration` and `finish` as its on_start / on_gradients_ready
    callbacks, and `layer_done` as the net's after_backward hook (to overlap).
    """

    def __init__(self, net, comm, iter_size=1, bucket_bytes=BUCKET_BYTES):
        self.net = net
        self.comm = comm
        self.iter_size = iter_size
        self.scale = net.dtype.type(1.0 / comm.size)
        self.buckets, self.starts_after = self._make_buckets(bucket_bytes)
        self._passes = 0
        self._active = False
        self._started = []

    def _completing_layer(self):
        """For each learnable param, the lowest layer whose backward adds to its diff."""
        lowest = [len(self.net.layers)] * len(self.net.learnable_params)
        for (layer_id, _), learnable_id in zip(self.net.param_layer_indices,
                                               self.net.learnable_param_ids):
            lowest[learnable_id] = min(lowest[learnable_id], layer_id)
        return lowest

    def _make_buckets(self, bucket_bytes):
        completing = self._completing_layer()
        last = min(completing, default=0)  # after it the backward pass changes no param diff
        xp, dtype = self.comm.xp, self.net.dtype
        buckets, starts_after, current, size = [], {}, [], 0
        for layer_id in range(len(self.net.layers) - 1, last - 1, -1):
            for param_id, blob in enumerate(self.net.learnable_params):
                if completing[param_id] == layer_id:
                    current.append(blob)
                    size += blob.count * dtype.itemsize
            if current and (size >= bucket_bytes or layer_id == last):
                buckets.append(Bucket(current, xp, dtype))
                starts_after.setdefault(layer_id, []).append(buckets[-1])
                current, size = [], 0
        return buckets, starts_after

    # -- the solver's and the net's hooks --------------------------------------------------------
    def start_iteration(self):
        self._passes = 0
        self._active = True
        self._started = []

    def layer_done(self, layer_id):
        """After each layer's backward: start the buckets it completed (on an iteration's last
        pass), and let the reductions already travelling make progress."""
        if not self._active:
            return
        if layer_id == len(self.net.layers) - 1:
            self._passes += 1
        if self._passes != self.iter_size:
            return
        for bucket in self.starts_after.get(layer_id, ()):
            self._start(bucket)
        for bucket in self._started:
            bucket.pending.test()

    def _start(self, bucket):
        bucket.pack()
        bucket.pending = self.comm.start_allreduce(bucket.buffer)
        self._started.append(bucket)

    def finish(self):
        """Before the update: complete every bucket and put the averaged gradients in place."""
        for bucket in self.buckets:
            if bucket.pending is None:
                self._start(bucket)
        for bucket in self.buckets:
            bucket.pending.wait()
            bucket.pending = None
            bucket.unpack(self.scale, self.comm.xp)
        self._active = False

    def time_allreduce(self, repeats):
        """Seconds one iteration's all-reduces take alone (every bucket started, then waited
        for, nothing else running); the mean over `repeats`. A collective: every rank calls it.
        The buffers' contents are clobbered."""
        begin = time.perf_counter()
        for _ in range(repeats):
            pending = [self.comm.start_allreduce(bucket.buffer) for bucket in self.buckets]
            for item in pending:
                item.wait()
        return (time.perf_counter() - begin) / max(repeats, 1)
