"""`pcl train`: train or fine-tune a net from a solver (Caffe's `caffe train`).

    pcl train --solver solver.prototxt [--snapshot X.solverstate | --weights a.caffemodel,b.caffemodel]
              [--gpu 0 | 0,1 | all] [--stage s1,s2] [--level N]
              [--sigint_effect stop|snapshot|none] [--sighup_effect stop|snapshot|none] [--no-progress]
              [--log FILE] [--plot curves.png]

Caffe's single-dash spellings (`-solver x`) work too. Log lines on stderr use Caffe's wording (so
tools/extra/parse_log.py reads them); on a terminal a progress bar shows rate and ETA. glog's
environment (GLOG_minloglevel, GLOG_log_dir, GLOG_logtostderr, GLOG_alsologtostderr) applies as
in Caffe; --log FILE also writes the lines to FILE. --plot draws the training curves while
training (see pycaffelite.plot.LivePlot).

Differences from `caffe train`, on purpose: several GPU ids train on the first one only (no
multi-GPU sync; a warning says so); a solver asking for GPU mode through solver_mode (not --gpu)
on a machine without a usable GPU trains on the CPU with a warning instead of failing.
"""
import logging
import signal

import click
from google.protobuf import text_format

from .. import device
from .. import plot
from .. import training_log as tlog
from ..errors import PclError
from ..proto import caffe_pb2
from ..solvers import read_solver_file, solver_class
from ..solvers.base import ACTIONS, NONE

log = logging.getLogger("pycaffelite")


def parse_stages(text):
    """Caffe's --stage: a comma-separated list of stage names."""
    return [stage for stage in (text or "").split(",") if stage]


def parse_gpus(text):
    """Caffe's --gpu: one id, a comma-separated list, or "all" (every visible device)."""
    if not text:
        return []
    if text == "all":
        try:
            import cupy  # noqa: PLC0415 - optional dependency

            count = cupy.cuda.runtime.getDeviceCount()
        except Exception:  # noqa: BLE001 - cupy missing or no CUDA driver
            count = 0
        if not count:
            raise PclError("--gpu all: no GPU found (or cupy is not installed); leave out --gpu "
                           "to run on the CPU")
        return list(range(count))
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise PclError(f'--gpu expects a device id such as 0, a list such as 0,1, or "all"; '
                       f'found "{text}"') from None
    if any(i < 0 for i in ids):
        raise PclError(f"--gpu expects non-negative device ids; found {text}")
    return ids


def use_devices(gpus):
    """Set CPU or GPU mode as Caffe's tools do; several GPUs: the first is used."""
    if not gpus:
        log.info("Use CPU.")
        device.set_mode_cpu()
        return
    log.info("Using GPUs %s", ", ".join(str(g) for g in gpus))
    if len(gpus) > 1:
        log.warning("pycaffelite trains on one device: using GPU %d only (the effective batch "
                    "size is not multiplied by %d)", gpus[0], len(gpus))
    device.set_device(gpus[0])
    device.set_mode_gpu()


class SignalActions:
    """SIGINT / SIGHUP handlers that record the signal; the solver asks between iterations
    (Caffe's SignalHandler). Each signal is reported once."""

    def __init__(self, sigint_effect, sighup_effect):
        self.effects = {signal.SIGINT: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self.pending = []
        self.previous = {}

    def __enter__(self):
        for signum in self.effects:
            self.previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _record(self, signum, frame):
        self.pending.append(signum)

    def __call__(self):
        while self.pending:
            effect = self.effects[self.pending.pop(0)]
            if effect != NONE:
                return effect
        return NONE


def _solver_gpus(param, gpu):
    """--gpu wins; otherwise a solver_mode set to GPU asks for device_id (0 by default). An unset
    solver_mode means the CPU, as in `caffe train`, although the field's default reads GPU."""
    if gpu:
        return parse_gpus(gpu)
    if not param.HasField("solver_mode") or param.solver_mode != caffe_pb2.SolverParameter.GPU:
        return []
    try:
        device.set_device(param.device_id)
    except PclError as exc:
        log.warning("solver_mode is GPU but no GPU can be used (%s); training on the CPU", exc)
        return []
    return [param.device_id]


_EFFECT = click.Choice(list(ACTIONS))


@click.command("train")
@click.option("--solver", help="The solver definition (prototxt).")
@click.option("--snapshot", help="A .solverstate (or .solverstate.h5) to resume training from.")
@click.option("--weights", help="Pretrained weights to fine-tune from: .caffemodel files, "
                                "comma-separated (layers are matched by name).")
@click.option("--gpu", help='GPU device id(s), comma-separated, or "all"; default: the CPU.')
@click.option("--stage", help="Net stages for the train net, comma-separated.")
@click.option("--level", type=int, default=0, show_default=True, help="Net level for the train net.")
@click.option("--sigint_effect", "--sigint-effect", type=_EFFECT, default="stop", show_default=True,
              help="What Ctrl-C (SIGINT) does.")
@click.option("--sighup_effect", "--sighup-effect", type=_EFFECT, default="snapshot",
              show_default=True, help="What SIGHUP does.")
@click.option("--no-progress", "no_progress", is_flag=True, help="No progress bar, even on a terminal.")
@click.option("--log", "log_file", metavar="FILE", help="Also write the log lines to FILE.")
@click.option("--plot", "plot_file", metavar="PICTURE",
              help="Keep a picture of the training curves (.png, .svg, .pdf) up to date while "
                   "training: redrawn after displays and tests.")
def command(solver, snapshot, weights, gpu, stage, level, sigint_effect, sighup_effect, no_progress,
            log_file, plot_file):
    """Train or fine-tune a model."""
    tlog.configure_logging(log_file=log_file)
    if not solver:
        raise PclError("need a solver definition to train: pass --solver solver.prototxt")
    if snapshot and weights:
        raise PclError("give a snapshot to resume training (--snapshot) or weights to fine-tune "
                       "(--weights), but not both")
    param = read_solver_file(solver)
    param.train_state.level = level
    param.train_state.stage.extend(parse_stages(stage))
    use_devices(_solver_gpus(param, gpu))
    if snapshot:
        param.ClearField("weights")
    elif weights:
        param.ClearField("weights")
        param.weights.append(weights)
    live = plot.LivePlot(plot_file) if plot_file else None
    log.info("Initializing solver from parameters: \n%s", text_format.MessageToString(param))
    trainer = solver_class(param.type, solver)(param, source=solver)
    if live is not None:
        logging.getLogger(tlog.LOGGER_NAME).addHandler(live)
        trainer.add_callback(on_end=live.refresh)
    with SignalActions(sigint_effect, sighup_effect) as actions:
        trainer.set_action_function(actions)
        if snapshot:
            log.info("Resuming from %s", snapshot)
            trainer.restore(snapshot)
        log.info("Starting Optimization")
        bar = tlog.ProgressBar(trainer) if tlog.progress_wanted(not no_progress) else None
        try:
            trainer.solve()
        finally:
            if bar is not None:
                bar.close()
            if live is not None:
                live.finish()
    log.info("Optimization Done.")
