"""Per-layer timing of a Net's forward and backward passes (what `pcl time` reports).

The procedure is Caffe's `caffe time`: one untimed forward and backward pass through the Net (so
buffers are allocated and caches warm), then `iterations` rounds in which every layer's forward
runs in order and every layer's backward runs in reverse order, each timed on its own. Like Caffe,
the timed backward calls every layer (with the Net's `bottom_need_backward` flags), not only the
layers that need backward, so param gradients are included wherever a layer computes them.

In GPU mode the device is synchronised before every clock reading, so a layer's time covers the
device work it queued and not only the Python call.
"""
import dataclasses
import time

from . import device


@dataclasses.dataclass
class LayerTime:
    """Average milliseconds of one layer's forward and backward over the timed iterations."""

    name: str
    type: str
    forward_ms: float
    backward_ms: float

    @property
    def total_ms(self):
        return self.forward_ms + self.backward_ms


@dataclasses.dataclass
class TimingResult:
    """What one timing run measured; `*_ms` averages are per iteration, `total_ms` is the whole run."""

    iterations: int
    initial_loss: float
    layers: list
    forward_ms: float
    backward_ms: float
    forward_backward_ms: float
    total_ms: float
    iteration_ms: list

    def as_dict(self):
        return {
            "iterations": self.iterations,
            "initial_loss": self.initial_loss,
            "layers": [dict(dataclasses.asdict(layer), total_ms=layer.total_ms) for layer in self.layers],
            "average_forward_ms": self.forward_ms,
            "average_backward_ms": self.backward_ms,
            "average_forward_backward_ms": self.forward_backward_ms,
            "total_ms": self.total_ms,
            "iteration_ms": list(self.iteration_ms),
        }


def _synced_clock(clock):
    def now():
        device.synchronize()
        return clock()

    return now


def time_net(net, iterations, log=None, clock=time.perf_counter):
    """Time `net` as Caffe's `caffe time` does; `log(message)` receives Caffe's progress lines.

    Returns a TimingResult. `clock` returns seconds (tests pass a fake one).
    """
    log = log or (lambda message: None)
    now = _synced_clock(clock)
    log("Performing Forward")
    initial_loss = net.forward_from_to()
    log(f"Initial loss: {format_number(initial_loss)}")
    log("Performing Backward")
    net.backward_from_to()

    layers, bottoms, tops = net.layers, net.bottom_vecs, net.top_vecs
    need = net.bottom_need_backward
    count = len(layers)
    forward_s, backward_s = [0.0] * count, [0.0] * count
    forward_total = backward_total = 0.0
    iteration_ms = []
    log("*** Benchmark begins ***")
    log(f"Testing for {iterations} iterations.")
    run_start = now()
    for iteration in range(iterations):
        iteration_start = now()
        for i in range(count):
            start = now()
            layers[i].forward_loss(bottoms[i], tops[i])
            forward_s[i] += now() - start
        forward_end = now()
        forward_total += forward_end - iteration_start
        for i in range(count - 1, -1, -1):
            start = now()
            layers[i].backward(tops[i], need[i], bottoms[i])
            backward_s[i] += now() - start
        iteration_end = now()
        backward_total += iteration_end - forward_end
        iteration_ms.append((iteration_end - iteration_start) * 1e3)
        log(f"Iteration: {iteration + 1} forward-backward time: {format_number(iteration_ms[-1])} ms.")
    total_ms = (now() - run_start) * 1e3

    per_iteration = 1e3 / iterations
    result = TimingResult(
        iterations=iterations,
        initial_loss=float(initial_loss),
        layers=[LayerTime(name, layer.type, f * per_iteration, b * per_iteration)
                for name, layer, f, b in zip(net.layer_names, layers, forward_s, backward_s)],
        forward_ms=forward_total * per_iteration,
        backward_ms=backward_total * per_iteration,
        forward_backward_ms=total_ms / iterations,
        total_ms=total_ms,
        iteration_ms=iteration_ms,
    )
    for line in summary_lines(result):
        log(line)
    return result


def format_number(value):
    """A number as C++ streams print a double by default (6 significant digits, like %g)."""
    return f"{value:.6g}"


def summary_lines(result):
    """Caffe's closing lines of `caffe time`, word for word."""
    lines = ["Average time per layer: "]
    for layer in result.layers:
        lines.append(f"{layer.name:>10}\tforward: {format_number(layer.forward_ms)} ms.")
        lines.append(f"{layer.name:>10}\tbackward: {format_number(layer.backward_ms)} ms.")
    lines += [
        f"Average Forward pass: {format_number(result.forward_ms)} ms.",
        f"Average Backward pass: {format_number(result.backward_ms)} ms.",
        f"Average Forward-Backward: {format_number(result.forward_backward_ms)} ms.",
        f"Total Time: {format_number(result.total_ms)} ms.",
        "*** Benchmark ends ***",
    ]
    return lines


def table(result):
    """A plain-text table of the per-layer averages and each layer's share of their sum."""
    name_width = max([len("layer")] + [len(layer.name) for layer in result.layers])
    type_width = max([len("type")] + [len(layer.type) for layer in result.layers])
    layer_sum = sum(layer.total_ms for layer in result.layers)
    share_base = layer_sum or 1.0
    header = (f"{'layer':<{name_width}}  {'type':<{type_width}}  {'forward ms':>11}  "
              f"{'backward ms':>11}  {'total ms':>10}  {'share':>6}")
    rows = [header, "-" * len(header)]
    for layer in result.layers:
        rows.append(f"{layer.name:<{name_width}}  {layer.type:<{type_width}}  "
                    f"{layer.forward_ms:>11.3f}  {layer.backward_ms:>11.3f}  "
                    f"{layer.total_ms:>10.3f}  {100 * layer.total_ms / share_base:>5.1f}%")
    rows.append("-" * len(header))
    rows.append(f"{'sum of layers':<{name_width + type_width + 2}}  "
                f"{sum(l.forward_ms for l in result.layers):>11.3f}  "
                f"{sum(l.backward_ms for l in result.layers):>11.3f}  {layer_sum:>10.3f}")
    rows.append(f"{'pass (with overhead)':<{name_width + type_width + 2}}  {result.forward_ms:>11.3f}  "
                f"{result.backward_ms:>11.3f}  {result.forward_backward_ms:>10.3f}")
    return "\n".join(rows)


class Timer:
    """pycaffe's `caffe.Timer`: `start()`, `stop()`, and `ms`, the milliseconds between the last
    start and stop (or until now while it runs). In GPU mode the device is synchronised at each
    reading, so queued device work is counted."""

    def __init__(self):
        self._started = None
        self._elapsed = 0.0

    def start(self):
        device.synchronize()
        self._started = time.perf_counter()

    def stop(self):
        if self._started is not None:
            device.synchronize()
            self._elapsed = time.perf_counter() - self._started
            self._started = None

    @property
    def running(self):
        return self._started is not None

    @property
    def ms(self):
        if self._started is not None:
            self.stop()
        return self._elapsed * 1000.0

    @property
    def seconds(self):
        return self.ms / 1000.0
