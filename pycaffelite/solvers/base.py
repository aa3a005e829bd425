"""Solver: the training loop shared by every update rule, as in Caffe's Solver.

A solver owns one train net and zero or more test nets (built from the SolverParameter with
Caffe's precedence and NetState merging; test nets share the train net's param memory by layer
name). `step(n)` runs n iterations, each one:

    clear param diffs; test every `test_interval` iterations (and at 0 if test_initialization);
    iter_size x forward+backward (diffs accumulate); loss = sum / iter_size;
    smoothed loss over the last `average_loss` iterations; display; apply_update(); iter += 1;
    snapshot every `snapshot` iterations or when an action (a signal) asks; stop when asked.

`solve()` runs to `max_iter`, writes the after-train snapshot (unless one was just written),
then one more forward pass to display the final loss and a last test, as Caffe does. An
iteration whose loss is not finite stops training before its update with a snapshot and a
`NonFiniteLossError` (Caffe would go on training on NaN).

Subclasses (the update rules) implement `apply_update`, `solver_state`, `check_solver_state`
and `restore_history`. Log lines use Caffe's wording (see training_log), so Caffe log parsers
work on them.
"""
import logging
import math
import os
import time

import numpy as np

from .. import device
from ..distributed.group import SolverGroup
from ..errors import PclError
from ..io import atomic, protoio
from ..net import Net
from ..proto import caffe_pb2
from .. import training_log as tlog
from . import lr_policy, resume, solverstate

log = logging.getLogger("pycaffelite")

f32 = np.float32

# Requests an action function (e.g. a signal handler) can make between iterations.
NONE, STOP, SNAPSHOT = "none", "stop", "snapshot"
ACTIONS = (NONE, STOP, SNAPSHOT)


class NonFiniteLossError(PclError):
    """Training stopped because an iteration's loss was NaN or infinite."""


def read_solver_file(path):
    """Read a solver prototxt as Caffe does: upgrade deprecated fields, and derive the snapshot
    prefix from the solver file name when it is missing (`<dir>/<name>` without the extension) or
    names an existing folder (`<folder>/<solver file stem>`)."""
    path = os.fspath(path)
    param = protoio.read_solver_param(path)
    stem = os.path.splitext(path)[0]
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = stem
        log.info("snapshot_prefix was not specified and is set to %s", param.snapshot_prefix)
    elif os.path.isdir(param.snapshot_prefix):
        param.snapshot_prefix = os.path.join(param.snapshot_prefix, os.path.basename(stem))
        log.info("snapshot_prefix was a directory and is replaced to %s", param.snapshot_prefix)
    return param


class Solver:
    """Base of the update rules. `Solver(param)` takes a SolverParameter or a solver prototxt
    path; `source` names the solver in error messages when a SolverParameter is given."""

    type = None  # Caffe's type string, set by each subclass
    num_history_sets = 1  # history blobs per learnable param (AdaDelta and Adam keep 2)

    def __init__(self, param, source=None):
        if isinstance(param, caffe_pb2.SolverParameter):
            self.source = source or "solver"
            self.param = caffe_pb2.SolverParameter()
            self.param.CopyFrom(param)
        else:
            self.source = os.fspath(param)
            self.param = read_solver_file(self.source)
        self.iter = 0
        self.current_step = 0
        self.group = SolverGroup()  # replaced when training data-parallel (pycaffelite.distributed)
        self.requested_early_exit = False
        self.stop_on_nonfinite_loss = True
        self._callbacks = []
        self._action_function = None
        self._losses = []
        self._smoothed_loss = f32(0)
        self._window_start = 0
        self._resumed_window = None
        self._check_param()
        self._check_snapshot_write_permissions()
        if self.param.random_seed >= 0:  # each solver of a group draws its own (Caffe adds the rank)
            device.set_random_seed(self.param.random_seed + device.solver_rank())
        self.net = self._init_train_net()
        self.test_nets = self._init_test_nets()
        for weights in self.param.weights:
            self.copy_weights(weights)
        self.mean_scores = [[] for _ in self.test_nets]
        self._pre_solve()
        log.info("Solver scaffolding done.")

    # -- set-up ------------------------------------------------------------------------------
    def error(self, message):
        return PclError(f"{self.source}: {message}")

    def _check_param(self):
        p = self.param
        if p.average_loss < 1:
            raise self.error(f"average_loss must be at least 1 (found {p.average_loss})")
        if p.iter_size < 1:
            raise self.error(f"iter_size must be at least 1 (found {p.iter_size})")
        if p.display < 0 or p.snapshot < 0 or p.test_interval < 0:
            raise self.error("display, snapshot and test_interval must not be negative")
        if p.regularization_type not in ("L1", "L2"):
            raise self.error(f'unknown regularization_type "{p.regularization_type}"; use "L2" '
                             f'(weight decay) or "L1"')
        lr_policy.check_policy(p, self.source)
        self.check_rule_param()
        if p.base_lr <= 0:
            log.warning("%s: base_lr is %s, so training %s; give a positive base_lr (e.g. 0.01) "
                        "unless that is meant", self.source, tlog.fmt(f32(p.base_lr)),
                        "leaves the weights as they are" if p.base_lr == 0
                        else "moves the weights up the gradient, increasing the loss")

    def check_rule_param(self):
        """Settings a particular update rule refuses (overridden by the rules that have some)."""

    def _check_snapshot_write_permissions(self):
        p = self.param
        if not p.snapshot or not self.group.is_root:  # only the root solver writes snapshots
            return
        if not p.HasField("snapshot_prefix"):
            raise self.error("snapshot is set but snapshot_prefix is not; set snapshot_prefix "
                             "(snapshots are written to <snapshot_prefix>_iter_<N>.caffemodel)")
        # A killed run's temporary snapshot files in this folder are removed here (see io/atomic).
        probe = atomic.temporary_path(self.snapshot_filename(".caffemodel"))
        folder = os.path.dirname(probe)
        atomic.remove_stale(folder)
        try:
            with open(probe, "w", encoding="utf-8"):
                pass
            os.remove(probe)
        except OSError as error:
            raise self.error(atomic.cannot("write to", f"snapshot prefix '{p.snapshot_prefix}'",
                                           folder, error)) from None

    def _read_net_file(self, path, field):
        if not os.path.exists(path):
            hint = ""
            beside = os.path.join(os.path.dirname(self.source), path)
            if os.path.isfile(self.source) and os.path.exists(beside):
                hint = (f" (it exists beside the solver file: paths in a solver are relative to "
                        f"the current folder, as in Caffe; run from {os.path.dirname(self.source)})")
            raise self.error(f'{field}: net file "{path}" not found{hint}')
        return protoio.read_net_param(path)

    def _init_train_net(self):
        p = self.param
        fields = ("net", "net_param", "train_net", "train_net_param")
        given = [f for f in fields if p.HasField(f)]
        if len(given) != 1:
            what = "no" if not given else f"{len(given)} ({', '.join(given)})"
            raise self.error(f"a solver names its train net with exactly one of {', '.join(fields)}; "
                             f"found {what}")
        field = given[0]
        if field in ("net_param", "train_net_param"):
            log.info("Creating training net specified in %s.", field)
            net_param = caffe_pb2.NetParameter()
            net_param.CopyFrom(getattr(p, field))
            source = f"{self.source} ({field})"
        else:
            log.info("Creating training net from %s file: %s", field, getattr(p, field))
            net_param = self._read_net_file(getattr(p, field), field)
            source = getattr(p, field)
        state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        net_param.state.CopyFrom(state)
        return Net(net_param, source=source)

    def _init_test_nets(self):
        p = self.param
        generic = "net_param" if p.HasField("net_param") else "net" if p.HasField("net") else None
        num_specific = len(p.test_net_param) + len(p.test_net)
        if generic and len(p.test_iter) < num_specific:
            raise self.error(f"test_iter must be given once per test net: {num_specific} test nets, "
                             f"{len(p.test_iter)} test_iter values")
        if not generic and len(p.test_iter) != num_specific:
            raise self.error(f"test_iter must be given once per test net: {num_specific} test nets "
                             f"(test_net / test_net_param), {len(p.test_iter)} test_iter values")
        count = len(p.test_iter)
        for index, iterations in enumerate(p.test_iter):
            if iterations < 0:
                raise self.error(f"test_iter {iterations} (test net #{index}) must not be "
                                 f"negative; give the number of test batches (test set size / "
                                 f"batch size)")
            if iterations == 0:
                log.warning("%s: test_iter is 0 for test net #%d, so its tests run no batch and "
                            "report no output; give the number of test batches (test set size / "
                            "batch size)", self.source, index)
        if len(p.test_state) and len(p.test_state) != count:
            raise self.error(f"test_state must be left out or given once per test net: {count} "
                             f"test nets, {len(p.test_state)} test_state values")
        if count and p.test_interval <= 0:
            raise self.error(f"{count} test net(s) but test_interval is {p.test_interval}; set "
                             f"test_interval > 0 (or remove test_iter)")
        specs = [("test_net_param", f"{self.source} (test_net_param)", net) for net in p.test_net_param]
        specs += [(f"test_net file: {path}", path, self._read_net_file(path, "test_net"))
                  for path in p.test_net]
        for _ in range(count - num_specific):
            if generic == "net_param":
                specs.append(("net_param", f"{self.source} (net_param)", p.net_param))
            else:
                specs.append((f"net file: {p.net}", p.net, self._read_net_file(p.net, "net")))
        nets = []
        for index, (description, source, spec) in enumerate(specs):
            net_param = caffe_pb2.NetParameter()
            net_param.CopyFrom(spec)
            state = caffe_pb2.NetState(phase=caffe_pb2.TEST)
            state.MergeFrom(net_param.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[index])
            net_param.state.CopyFrom(state)
            log.info("Creating test net (#%d) specified by %s", index, description)
            net = Net(net_param, source=source)
            net.share_trained_layers_with(self.net)
            nets.append(net)
        return nets

    def _pre_solve(self):
        """Allocate the update rule's history (overridden by the rules)."""

    def copy_weights(self, weights):
        """Fine-tune: copy params by layer name from a comma-separated list of weight files into
        the train net and every test net."""
        for path in str(weights).split(","):
            path = path.strip()
            if not path:
                continue
            log.info("Finetuning from %s", path)
            self.net.copy_from(path)
            for test_net in self.test_nets:
                test_net.copy_from(path)

    # -- callbacks and actions -----------------------------------------------------------------
    def add_callback(self, on_start=None, on_gradients_ready=None, on_end=None):
        """Call `on_start()` before each iteration's forward passes, `on_gradients_ready()` before
        its update, `on_end()` after the update (when `iter` has advanced). An object with
        `on_start` and `on_gradients_ready` methods may be given alone (pycaffe's
        `solver.add_callback(nccl)`)."""
        if hasattr(on_start, "on_gradients_ready"):
            on_start, on_gradients_ready = on_start.on_start, on_start.on_gradients_ready
        self._callbacks.append((on_start, on_gradients_ready, on_end))

    def _run_callbacks(self, stage):
        for callback in self._callbacks:
            if callback[stage] is not None:
                callback[stage]()

    def set_action_function(self, function):
        """`function()` returns "none", "stop" or "snapshot"; asked after every iteration and
        before every test batch (pcl train wires SIGINT/SIGHUP to it)."""
        self._action_function = function

    def requested_action(self):
        if self._action_function is None:
            return NONE
        action = self._action_function()
        if action not in ACTIONS:
            raise ValueError(f"action function returned {action!r}; expected one of {ACTIONS}")
        return action

    # -- the loop ------------------------------------------------------------------------------
    def step(self, iters):
        """Run `iters` training iterations."""
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + iters
        self._losses, self._smoothed_loss = self._resumed_window or ([], f32(0))
        self._resumed_window = None
        self._window_start = start_iter
        last_display_time = time.perf_counter()
        last_display_iter = self.iter
        while self.iter < stop_iter:
            self.net.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 and (
                    self.iter > 0 or p.test_initialization):
                if self.group.is_root:  # as in Caffe, only the root solver tests
                    self.test_all()
                if self.group.any(self.requested_early_exit):
                    self.requested_early_exit = True
                    break
            self._run_callbacks(0)
            display = p.display and self.iter % p.display == 0
            loss = f32(0)
            for _ in range(p.iter_size):
                loss = f32(loss + f32(self.net.forward_from_to()))
                self.net.backward_from_to()
            loss = f32(loss / f32(p.iter_size))
            if self.stop_on_nonfinite_loss:
                losses = self.group.losses(loss)
                if not all(math.isfinite(value) for value in losses):
                    self._stop_on_nonfinite(losses)
            self._update_smoothed_loss(loss, start_iter)
            if display:
                now = time.perf_counter()
                lapse = f32(now - last_display_time)
                per_s = f32((self.iter - last_display_iter) / (lapse if lapse else f32(1)))
                log.info(tlog.train_iteration_line(self.iter, per_s, lapse, p.display,
                                                   self._smoothed_loss))
                last_display_time, last_display_iter = now, self.iter
                for line in tlog.output_lines("Train", self.net):
                    log.info(line)
            self._run_callbacks(1)
            self.apply_update()
            self.iter += 1
            request = self.group.action(self.requested_action())
            if ((p.snapshot and self.iter % p.snapshot == 0) or request == SNAPSHOT) and \
                    self.group.is_root:
                self.snapshot()
            self._run_callbacks(2)
            if request == STOP:
                self.requested_early_exit = True
                break

    def solve(self, resume_file=None):
        """Train to max_iter (restoring `resume_file` first if given), as Caffe's Solve."""
        p = self.param
        log.info("Solving %s", self.net.name)
        log.info("Learning Rate Policy: %s", p.lr_policy)
        self.requested_early_exit = False
        if resume_file is not None:
            log.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        start_iter = self.iter
        self.step(p.max_iter - self.iter)
        if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0) and \
                self.group.is_root:
            self.snapshot()
        if self.requested_early_exit:
            log.info("Optimization stopped early.")
            return
        if not self.group.is_root:  # the closing display and test are the root solver's
            return
        if p.display and self.iter % p.display == 0:
            loss = f32(self.net.forward_from_to())
            self._update_smoothed_loss(loss, start_iter)
            log.info("Iteration %d, loss = %s", self.iter, tlog.fmt(self._smoothed_loss))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

    def _update_smoothed_loss(self, loss, start_iter):
        average_loss = self.param.average_loss
        if len(self._losses) < average_loss:
            self._losses.append(loss)
            size = len(self._losses)
            self._smoothed_loss = f32(f32(f32(self._smoothed_loss * f32(size - 1)) + loss) / f32(size))
        else:
            index = (self.iter - start_iter) % average_loss
            self._smoothed_loss = f32(self._smoothed_loss
                                      + f32(f32(loss - self._losses[index]) / f32(average_loss)))
            self._losses[index] = loss

    def loss_window(self):
        """The losses the smoothed loss averages, oldest first, and the smoothed loss."""
        losses = self._losses
        if len(losses) == self.param.average_loss:
            oldest = (self.iter - self._window_start) % len(losses)
            losses = losses[oldest:] + losses[:oldest]
        return [float(loss) for loss in losses], float(self._smoothed_loss)

    def resume_loss_window(self, losses, smoothed_loss):
        """Let the next `step()` continue a `loss_window()` (as kept in a snapshot's run state)."""
        window = [f32(loss) for loss in losses[-self.param.average_loss:]]
        self._resumed_window = (window, f32(smoothed_loss)) if window else None

    @property
    def lr(self):
        """The learning rate of the current iteration (pycaffe's `solver.lr`)."""
        return lr_policy.learning_rate(self.param, self.iter, self.current_step)[0]

    def share_weights(self, net):
        """Make `net` use this solver's train net weights for the layers both name alike
        (pycaffe's `solver.share_weights(net)`)."""
        net.share_trained_layers_with(self.net)

    @property
    def smoothed_loss(self):
        return float(self._smoothed_loss)

    def _stop_on_nonfinite(self, losses):
        """Stop on the iteration's losses (one per solver of the group), one not finite."""
        rank = next(r for r, value in enumerate(losses) if not math.isfinite(value))
        culprit = tlog.first_nonfinite_output(self.net) if rank == self.group.rank else None
        files = self.snapshot() if self.group.is_root else ("the root solver's snapshot",)
        where = f" ({culprit})" if culprit else ""
        if self.group.size > 1:
            where = f" on rank {rank}{where}"
        broken = self._first_nonfinite_param()
        weights = (f"the weights already hold non-finite values ({broken}), so the updates before "
                   f"this one diverged" if broken else "the weights are finite")
        raise NonFiniteLossError(
            f"iteration {self.iter}: the loss is {tlog.fmt(f32(losses[rank]))}{where}; training "
            f"stopped before updating with it and saved the weights that produced it to "
            f"{' and '.join(files)}; {weights}. Lower base_lr or set clip_gradients and resume "
            f"from an earlier snapshot, or check the input data for NaN/inf")

    def _first_nonfinite_param(self):
        xp = device.array_module()
        for layer_name, layer in zip(self.net.layer_names, self.net.layers):
            for index, blob in enumerate(layer.blobs):
                if not bool(xp.isfinite(blob.read_data()).all()):
                    return f'layer "{layer_name}" param {index}'
        return None

    # -- testing -------------------------------------------------------------------------------
    def test_all(self):
        for test_net_id in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            self.test(test_net_id)

    def test(self, test_net_id=0):
        """Run test net `test_net_id` for its test_iter batches; log and keep the mean outputs."""
        p = self.param
        log.info("Iteration %d, Testing net (#%d)", self.iter, test_net_id)
        test_net = self.test_nets[test_net_id]
        test_net.share_trained_layers_with(self.net)
        iterations = p.test_iter[test_net_id]
        scores = None
        loss = f32(0)
        for _ in range(iterations):
            request = self.requested_action()
            while request != NONE:
                if request == SNAPSHOT:
                    self.snapshot()
                elif request == STOP:
                    self.requested_early_exit = True
                request = self.requested_action()
            if self.requested_early_exit:
                break
            iter_loss = f32(test_net.forward_from_to())
            if p.test_compute_loss:
                loss = f32(loss + iter_loss)
            values = tlog.output_values(test_net)
            scores = values if scores is None else [f32(a + b) for a, b in zip(scores, values)]
        if self.requested_early_exit:
            log.info("Test interrupted.")
            return
        if not iterations:  # nothing was tested (test_iter 0, warned about at set-up)
            self.mean_scores[test_net_id] = []
            return
        if p.test_compute_loss:
            log.info("Test loss: %s", tlog.fmt(f32(loss / f32(iterations))))
        means = [f32(s / f32(iterations)) for s in scores or []]
        self.mean_scores[test_net_id] = means
        for line in tlog.output_lines("Test", test_net, means):
            log.info(line)

    # -- snapshots -------------------------------------------------------------------------------
    def snapshot_filename(self, extension):
        return f"{self.param.snapshot_prefix}_iter_{self.iter}{extension}"

    def snapshot(self):
        """Write <prefix>_iter_<iter>.caffemodel and .solverstate (.h5 variants in HDF5 format);
        returns the two file names."""
        hdf5 = self.param.snapshot_format == caffe_pb2.SolverParameter.HDF5
        if hdf5:
            model_filename = self.snapshot_filename(".caffemodel.h5")
            log.info("Snapshotting to HDF5 file %s", model_filename)
        else:
            model_filename = self.snapshot_filename(".caffemodel")
            log.info("Snapshotting to binary proto file %s", model_filename)
        self.net.save(model_filename, write_diff=self.param.snapshot_diff)
        state_filename = self.snapshot_filename(".solverstate.h5" if hdf5 else ".solverstate")
        log.info("Snapshotting solver state to %s file %s", "HDF5" if hdf5 else "binary proto",
                 state_filename)
        state = self.solver_state(model_filename)
        state.run_state = resume.capture(self)
        solverstate.write_solverstate(state_filename, state)
        return model_filename, state_filename

    def solver_state(self, model_filename):
        """The SolverStateData to snapshot (provided by the update rules)."""
        raise NotImplementedError

    def restore(self, state_file):
        """Continue from a .solverstate / .solverstate.h5 (ours or Caffe's): iteration, lr step,
        history, the weights of the snapshot it names, and (ours) the run state: data positions,
        random generators, the smoothed-loss window. Nothing changes if the file is refused."""
        state_file = os.fspath(state_file)
        state = solverstate.read_solverstate(state_file)
        for field in ("iter", "current_step"):
            if getattr(state, field) < 0:
                raise self.error(f"{state_file}: its {field} is {getattr(state, field)}, and "
                                 f"a solver state counts from 0; the file is damaged or was not "
                                 f"written by a solver: resume from another snapshot")
        self.check_solver_state(state, state_file)
        if state.learned_net:
            self.net.copy_from(self._resolve_learned_net(state.learned_net, state_file))
        self.iter = state.iter
        self.current_step = state.current_step
        self.restore_history(state)
        resume.restore(self, state.run_state, state_file)

    def check_solver_state(self, state, state_file):
        """Refuse a state whose history does not fit this solver (provided by the update rules)."""
        raise NotImplementedError

    def restore_history(self, state):
        """Take the history from a checked state (provided by the update rules)."""
        raise NotImplementedError

    @staticmethod
    def _resolve_learned_net(learned_net, state_file):
        """Caffe opens learned_net relative to the current folder; when it is not there, look
        beside the state file (snapshots moved together stay usable)."""
        if os.path.isabs(learned_net) or os.path.exists(learned_net):
            return learned_net
        folder = os.path.dirname(os.path.abspath(state_file))
        for candidate in (os.path.join(folder, learned_net),
                          os.path.join(folder, os.path.basename(learned_net))):
            if os.path.exists(candidate):
                return candidate
        raise PclError(f'{state_file}: the weights it names, "{learned_net}", are neither in the '
                       f"current folder nor beside the solver state; run from the folder the "
                       f"snapshot was written from, or copy the .caffemodel next to the .solverstate")

    # -- the update ------------------------------------------------------------------------------
    def apply_update(self):
        """Compute this iteration's rate and update every learnable param (the update rules)."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(net={self.net.name!r}, iter={self.iter})"
