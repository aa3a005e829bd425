"""Training and testing log lines in Caffe's wording, a glog-style prefix, and a progress bar.

Tools written for Caffe logs (tools/extra/parse_log.py and its extract_seconds.py) find
iterations, losses, learning rates and test outputs with regular expressions on these lines:

    Iteration 100 (12.5 iter/s, 8s/100 iters), loss = 0.30145
        Train net output #0: loss = 0.30145 (* 1 = 0.30145 loss)
    Iteration 100, lr = 0.01
    Iteration 500, Testing net (#0)
        Test net output #0: accuracy = 0.9723

Numbers print as C++ streams print floats (6 significant digits, `%g`). With `GlogFormatter`
every line starts like glog's, `I1122 05:18:19.123456 12345 base.py:212] `, which is what
extract_seconds.py reads the time from.
"""
import datetime
import logging
import math
import os
import sys

import numpy as np

from . import glog

LOGGER_NAME = "pycaffelite"
f32 = np.float32


def fmt(value):
    """A number as C++'s default ostream formatting prints it (6 significant digits)."""
    value = float(value)
    if math.isnan(value):
        return "nan" if math.copysign(1.0, value) > 0 else "-nan"
    return f"{value:g}"


def train_iteration_line(it, per_s, lapse, display, smoothed_loss):
    return (f"Iteration {it} ({fmt(per_s)} iter/s, {fmt(lapse)}s/{display} iters), "
            f"loss = {fmt(smoothed_loss)}")


def _outputs(net):
    """(name, loss weight, blob) for each output blob of `net`, in Caffe's order."""
    for blob_id in net.output_blob_ids:
        yield net.blob_names[blob_id], net._blob_loss_weights[blob_id], net.blob_list[blob_id]


def output_values(net):
    """Every element of every output blob, as float32 scalars, flattened in order."""
    values = []
    for _, _, blob in _outputs(net):
        values.extend(f32(v) for v in np.asarray(blob.cpu_data()).ravel())
    return values


def output_lines(kind, net, values=None):
    """`    Train net output #k: name = v (* w = w*v loss)` lines (kind "Train" or "Test"); the
    values are the net's current outputs unless given (test means)."""
    if values is None:
        values = output_values(net)
    lines = []
    index = 0
    for name, weight, blob in _outputs(net):
        for _ in range(blob.count):
            value = values[index]
            suffix = ""
            if weight:
                suffix = f" (* {fmt(f32(weight))} = {fmt(f32(f32(weight) * value))} loss)"
            lines.append(f"    {kind} net output #{index}: {name} = {fmt(value)}{suffix}")
            index += 1
    return lines


def first_nonfinite_output(net):
    """Describe the first output element that is NaN or infinite, or None."""
    index = 0
    for name, _, blob in _outputs(net):
        for value in np.asarray(blob.cpu_data()).ravel():
            if not math.isfinite(value):
                return f'train net output #{index} "{name}" = {fmt(value)}'
            index += 1
    return None


# -- logging set-up ---------------------------------------------------------------------------

class GlogFormatter(logging.Formatter):
    """`I1122 05:18:19.123456 12345 file.py:123] message`, as glog prefixes Caffe's lines."""

    def format(self, record):
        stamp = datetime.datetime.fromtimestamp(record.created)
        letter = "F" if record.levelno >= logging.CRITICAL else record.levelname[:1]
        prefix = (f"{letter}{stamp:%m%d %H:%M:%S.%f} {record.process} "
                  f"{record.filename}:{record.lineno}] ")
        text = record.getMessage()
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return prefix + text


class _ProgressAwareHandler(logging.StreamHandler):
    """Writes log lines above an active progress bar instead of through it. Made without a
    stream, it writes to whatever sys.stderr is at the time (not the one of its creation,
    which a caller that swapped sys.stderr for a while may have closed since)."""

    tqdm = None  # the tqdm class while a bar is shown

    def __init__(self, stream=None):
        super().__init__(stream)
        self._follows_stderr = stream is None

    def emit(self, record):
        if self._follows_stderr:
            self.stream = sys.stderr
        if self.tqdm is None:
            super().emit(record)
            return
        try:
            self.tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


_handler = None  # the terminal (stream) handler
_file_handlers = {}  # destination -> handler: glog files per severity, --log files


def configure_logging(stream=None, level=None, log_file=None, environ=None):
    """Send the "pycaffelite" logger's lines, with glog's prefix, where glog's environment says
    (see pycaffelite.glog): to `stream` (stderr) at GLOG_minloglevel and above, to glog's files
    in GLOG_log_dir, and to `log_file` if given. `level` (a Python level) overrides
    GLOG_minloglevel. Calling it again replaces the stream handler and keeps the files already
    open for the same destinations, so a run writes one file each. Returns the stream handler."""
    global _handler
    settings = glog.GlogSettings.from_environ(environ)
    min_level = settings.min_level if level is None else level
    logger = logging.getLogger(LOGGER_NAME)
    # INFO records always reach the handlers, each filtering by its own level, so an observer
    # such as the live training plot sees them whatever the terminal shows.
    logger.setLevel(min(min_level, logging.INFO))
    _open_files(logger, settings, log_file, min_level)
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = _ProgressAwareHandler(stream)
    _handler.setFormatter(GlogFormatter())
    quiet_terminal = settings.writes_glog_files and not settings.alsologtostderr
    _handler.setLevel(max(min_level, logging.ERROR) if quiet_terminal else min_level)
    logger.addHandler(_handler)
    return _handler


def _open_files(logger, settings, log_file, min_level):
    """Attach a handler per wanted log file (reusing open ones), detach and close the others."""
    wanted = {}
    if settings.writes_glog_files:
        glog.check_log_dir(settings.log_dir)
        folder = os.path.abspath(settings.log_dir)
        for severity, severity_level in zip(glog.SEVERITIES, glog.LEVELS):
            wanted[("glog", folder, severity)] = (
                lambda s=severity: glog.GlogFileHandler(folder, s), max(severity_level, min_level))
    if log_file:
        wanted[("file", os.path.abspath(log_file))] = (
            lambda: glog.PlainFileHandler(log_file), min_level)
    for key in [key for key in _file_handlers if key not in wanted]:
        _close(logger, _file_handlers.pop(key))
    for key, (make, handler_level) in wanted.items():
        handler = _file_handlers.get(key)
        if handler is None:
            handler = make()
            handler.setFormatter(GlogFormatter())
            _file_handlers[key] = handler
            logger.addHandler(handler)
        handler.setLevel(handler_level)


def _close(logger, handler):
    logger.removeHandler(handler)
    handler.close()


def write_to_log_files(level, message):
    """One line in the log files only (the terminal has shown it already): `pcl`'s closing
    error, so that a log file says why its run ended."""
    caller = sys._getframe(1)  # noqa: SLF001 - the caller's file and line, for the prefix
    record = logging.LogRecord(LOGGER_NAME, level, caller.f_code.co_filename, caller.f_lineno,
                               message, None, None)
    for handler in _file_handlers.values():
        if level >= handler.level:
            handler.handle(record)


def close_log_files():
    """Detach and close every log file (the end of a `pcl` command)."""
    logger = logging.getLogger(LOGGER_NAME)
    while _file_handlers:
        _close(logger, _file_handlers.popitem()[1])


# glog's severities by number (GLOG_minloglevel, pycaffe's init_log levels).
GLOG_LEVELS = glog.LEVELS


def init_log(level=0, stderr=True):
    """pycaffe's `caffe.init_log([level[, stderr]])`: print pycaffelite's log lines of glog
    severity `level` (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL) and above on stderr with glog's
    prefix; `stderr=False` keeps them off the terminal (they still reach other handlers)."""
    if not 0 <= int(level) < len(GLOG_LEVELS):
        raise ValueError(f"log level must be 0 (INFO) to 3 (FATAL), got {level}")
    handler = configure_logging(level=GLOG_LEVELS[int(level)])
    if not stderr:
        logging.getLogger(LOGGER_NAME).removeHandler(handler)


def log(message):
    """pycaffe's `caffe.log(message)`: one INFO line in pycaffelite's log."""
    logging.getLogger(LOGGER_NAME).info("%s", message)


def progress_wanted(enabled, stream=None):
    """A bar only when asked for and the stream is a terminal."""
    stream = stream if stream is not None else sys.stderr
    return enabled and hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"


class ProgressBar:
    """A tqdm bar over a solver's iterations (rate, ETA, smoothed loss), fed by its callbacks."""

    def __init__(self, solver, stream=None):
        from tqdm import tqdm  # noqa: PLC0415 - only needed on a terminal

        self.solver = solver
        self.bar = tqdm(total=solver.param.max_iter, initial=solver.iter, unit="iter",
                        file=stream if stream is not None else sys.stderr, dynamic_ncols=True,
                        leave=False)
        solver.add_callback(on_end=self._advance)
        if _handler is not None:
            _handler.tqdm = tqdm

    def _advance(self):
        self.bar.update(self.solver.iter - self.bar.n)
        self.bar.set_postfix(loss=fmt(self.solver.smoothed_loss), refresh=False)

    def close(self):
        self.bar.close()
        if _handler is not None:
            _handler.tqdm = None
