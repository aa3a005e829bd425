"""`pcl train`: train or fine-tune a net from a solver (Caffe's `caffe train`).

    pcl train --solver solver.prototxt [--snapshot X.solverstate | --weights a.caffemodel,b.caffemodel]
              [--gpu 0 | 0,1 | all] [--stage s1,s2] [--level N]
              [--sigint_effect stop|snapshot|none] [--sighup_effect stop|snapshot|none] [--no-progress]
              [--log FILE] [--plot curves.png]

Several solvers train side by side, averaging their gradients (see pycaffelite.distributed):
`mpiexec -n N pcl train ...` runs N CPU processes joined by MPI (on one machine or, with a
hostfile, several), `--gpu 0,1` (or `all`) one process per GPU joined by NCCL, and mpiexec with
--gpu one GPU per rank. Only rank 0 logs, tests and snapshots.

Caffe's single-dash spellings (`-solver x`) work too. Log lines on stderr use Caffe's wording (so
tools/extra/parse_log.py reads them); on a terminal a progress bar shows rate and ETA. glog's
environment (GLOG_minloglevel, GLOG_log_dir, GLOG_logtostderr, GLOG_alsologtostderr) applies as
in Caffe; --log FILE also writes the lines to FILE. --plot draws the training curves while
training (see pycaffelite.plot.LivePlot).

Differences from `caffe train`, on purpose: a solver asking for GPU mode through solver_mode (not
--gpu) on a machine without a usable GPU trains on the CPU with a warning instead of failing;
several GPUs train in one process per GPU (Caffe: one thread per GPU).
"""
import logging
import signal

import click
from google.protobuf import text_format

from .. import device
from .. import plot
from ..distributed import DataParallel, launch, nccl_comm
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
    """Set CPU or GPU mode (one GPU) as Caffe's tools do."""
    if not gpus:
        log.info("Use CPU.")
        device.set_mode_cpu()
        return
    log.info("Using GPUs %s", ", ".join(str(g) for g in gpus))
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


def _command_line(solver, snapshot, weights, gpu, stage, level, sigint_effect, sighup_effect,
                  no_progress, log_file, plot_file):
    """The `pcl train` arguments that repeat these options, for the worker processes."""
    args = ["train", "--solver", solver, "--gpu", gpu, "--level", str(level),
            "--sigint_effect", sigint_effect, "--sighup_effect", sighup_effect]
    for flag, value in (("--snapshot", snapshot), ("--weights", weights), ("--stage", stage),
                        ("--log", log_file), ("--plot", plot_file)):
        if value:
            args += [flag, value]
    return args + (["--no-progress"] if no_progress else [])


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
    job = launch.current_job()
    launch.configure_logging(job, log_file)
    if not solver:
        raise PclError("need a solver definition to train: pass --solver solver.prototxt")
    if snapshot and weights:
        raise PclError("give a snapshot to resume training (--snapshot) or weights to fine-tune "
                       "(--weights), but not both")
    if job is None:
        param, gpus = _read(solver, gpu, stage, level)
        if len(gpus) > 1:
            connector = launch.NcclConnector(gpus)  # or one error saying what to install
            log.info("Training on GPUs %s, one process each", ", ".join(map(str, gpus)))
            tlog.close_log_files()  # rank 0 writes them from now on
            launch.spawn(len(gpus), _command_line(solver, snapshot, weights, gpu, stage, level,
                                                  sigint_effect, sighup_effect, no_progress,
                                                  log_file, plot_file), connector)
            return
        use_devices(gpus)
        trainer = _make_solver(solver, param, snapshot, weights)
        _train(trainer, sigint_effect, sighup_effect, no_progress, plot_file)
        return
    with launch.failing_alone(job):
        with launch.setting_up(job):  # failures every rank meets are reported once
            param, gpus = _read(solver, gpu, stage, level)
            if gpus:
                nccl_comm.nccl_module()
        comm = job.connect(gpus)
        launch.join(job, comm)
        with launch.setting_up(job):
            trainer = _make_solver(solver, param, snapshot, weights)
        DataParallel(trainer, comm)
        _train(trainer, sigint_effect, sighup_effect, no_progress or not job.is_root,
               plot_file if job.is_root else None)


def _read(solver, gpu, stage, level):
    """The solver's parameters with the train net's stages and level, and the GPUs to use."""
    param = read_solver_file(solver)
    param.train_state.level = level
    param.train_state.stage.extend(parse_stages(stage))
    return param, _solver_gpus(param, gpu)


def _make_solver(solver, param, snapshot, weights):
    """The solver, fine-tuning from `weights` or resumed from `snapshot` (every rank reads the
    snapshot: like the net and the data, it must be on every machine)."""
    if snapshot:
        param.ClearField("weights")
    elif weights:
        param.ClearField("weights")
        param.weights.append(weights)
    log.info("Initializing solver from parameters: \n%s", text_format.MessageToString(param))
    trainer = solver_class(param.type, solver)(param, source=solver)
    if snapshot:
        log.info("Resuming from %s", snapshot)
        trainer.restore(snapshot)
    return trainer


def _train(trainer, sigint_effect, sighup_effect, no_progress, plot_file):
    live = plot.LivePlot(plot_file) if plot_file else None
    if live is not None:
        logging.getLogger(tlog.LOGGER_NAME).addHandler(live)
        trainer.add_callback(on_end=live.refresh)
    with SignalActions(sigint_effect, sighup_effect) as actions:
        trainer.set_action_function(actions)
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
