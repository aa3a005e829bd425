"""glog's environment and log files, for pcl's logging (see training_log.configure_logging).

Caffe logs through glog, whose behaviour its users set with environment variables; pcl reads
the same ones:

    GLOG_minloglevel=N       lines below severity N are dropped everywhere (0 INFO, 1 WARNING,
                             2 ERROR, 3 FATAL)
    GLOG_log_dir=FOLDER      also write log files into FOLDER, named as glog names them
    GLOG_logtostderr=1       stderr only: no log files even with GLOG_log_dir
    GLOG_alsologtostderr=0   with log files, the terminal shows only ERROR and FATAL lines (glog's
                             default; Caffe's tools force it to 1, which is pcl's default too)

Booleans are read as glog reads them: true when the value is empty or starts with t, T, y, Y
or 1. One difference on purpose: without GLOG_log_dir Caffe writes its log files into /tmp;
pcl writes files only when asked (GLOG_log_dir, or `pcl train --log FILE`).

A glog file per severity holds the lines of that severity and above. It is created at its first
line as `pcl.<host>.<user>.log.<SEVERITY>.<yyyymmdd>-<hhmmss>.<pid>` (glog's program name is
pcl; the local time of that line; the user from $USER, else "invalid-user"), starts with glog's
three header lines, and the symlink `pcl.<SEVERITY>` beside it is pointed at it. Files are
appended line by line and flushed, so `tail -f` follows a run (they are logs, not outputs
written once).
"""
import dataclasses
import logging
import os
import re
import time

from .errors import PclError

PROGRAM = "pcl"

# glog's severities by number, with the Python levels pcl logs them at.
SEVERITIES = ("INFO", "WARNING", "ERROR", "FATAL")
LEVELS = (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
NOTHING = logging.CRITICAL + 1  # a level no line reaches (GLOG_minloglevel above 3)

_TRUE_STARTS = ("", "t", "T", "y", "Y", "1")


def python_level(severity):
    """The Python logging level below which glog severity number `severity` drops lines."""
    if severity <= 0:
        return LEVELS[0]
    return LEVELS[severity] if severity < len(LEVELS) else NOTHING


def _read_bool(environ, name, default):
    value = environ.get(name)
    return default if value is None else value[:1] in _TRUE_STARTS


def _read_int(environ, name, default):
    value = environ.get(name)
    if value is None:
        return default
    match = re.match(r"\s*([-+]?\d+)", value)
    if not match:
        raise PclError(f"environment variable {name}={value!r}: expected a glog severity number "
                       f"(0 INFO, 1 WARNING, 2 ERROR, 3 FATAL); set a number or unset it")
    return int(match.group(1))


@dataclasses.dataclass(frozen=True)
class GlogSettings:
    """The glog variables pcl honours, with Caffe's defaults."""

    minloglevel: int = 0
    log_dir: str = ""
    logtostderr: bool = False
    alsologtostderr: bool = True

    @classmethod
    def from_environ(cls, environ=None):
        environ = os.environ if environ is None else environ
        return cls(minloglevel=_read_int(environ, "GLOG_minloglevel", 0),
                   log_dir=environ.get("GLOG_log_dir", ""),
                   logtostderr=_read_bool(environ, "GLOG_logtostderr", False),
                   alsologtostderr=_read_bool(environ, "GLOG_alsologtostderr", True))

    @property
    def min_level(self):
        return python_level(self.minloglevel)

    @property
    def writes_glog_files(self):
        return bool(self.log_dir) and not self.logtostderr


def check_log_dir(folder):
    """A PclError unless `folder` (GLOG_log_dir) is a writable folder."""
    if not os.path.isdir(folder):
        raise PclError(f"GLOG_log_dir={folder}: no such folder; create it or unset GLOG_log_dir")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PclError(f"GLOG_log_dir={folder}: the folder is not writable; choose another one "
                       f"or unset GLOG_log_dir")


def user_name():
    return os.environ.get("USER") or "invalid-user"


def host_name():
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")


def log_file_name(severity, created):
    """glog's name for the `severity` file of this process, whose first such line came at
    `created`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(created))
    return f"{PROGRAM}.{host_name()}.{user_name()}.log.{severity}.{stamp}.{os.getpid()}"


def file_header(created):
    """The three lines glog starts every log file with."""
    return (f"Log file created at: {time.strftime('%Y/%m/%d %H:%M:%S', time.localtime(created))}\n"
            f"Running on machine: {host_name()}\n"
            f"Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg\n")


class GlogFileHandler(logging.Handler):
    """The log file of one glog severity in `folder`, made at its first line."""

    def __init__(self, folder, severity):
        super().__init__(level=LEVELS[SEVERITIES.index(severity)])
        self.folder = folder
        self.severity = severity
        self.path = None
        self.stream = None

    def emit(self, record):
        try:
            if self.stream is None:
                self._open(record.created)
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def _open(self, created):
        name = log_file_name(self.severity, created)
        self.path = os.path.join(self.folder, name)
        self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self.stream.write(file_header(created))
        link = os.path.join(self.folder, f"{PROGRAM}.{self.severity}")
        try:
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(name, link)  # relative, as glog makes it
        except OSError:
            pass  # glog ignores a link it cannot make too

    def close(self):
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
        finally:
            self.release()
        super().close()


class PlainFileHandler(logging.FileHandler):
    """`pcl train --log FILE`: the log lines written to FILE (emptied first), flushed per line."""

    def __init__(self, path):
        try:
            super().__init__(path, mode="w", encoding="utf-8")
        except OSError as error:
            raise PclError(f"{path}: cannot write the log file ({error.strerror or error}); check "
                           f"that the folder exists and is writable") from None
        self.path = path
