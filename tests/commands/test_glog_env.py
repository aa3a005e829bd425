"""glog's environment in pcl's logging: GLOG_minloglevel, GLOG_log_dir (glog's file names,
header and symlinks), GLOG_logtostderr, GLOG_alsologtostderr, and `pcl train --log FILE`."""
import io
import logging
import os
import re
import socket

import pytest

from pycaffelite import glog, training_log
from pycaffelite.errors import PclError

from tiny_training import pcl_logger_restored, train_tiny  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("pcl_logger_restored")

PREFIX = r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [\w.]+:\d+\] "


def configured(environ, **kwargs):
    """configure_logging with `environ`; returns (logger, the stream it writes to)."""
    stream = io.StringIO()
    training_log.configure_logging(stream=stream, environ=environ, **kwargs)
    return logging.getLogger(training_log.LOGGER_NAME), stream


def log_each_severity(logger):
    logger.info("an info line")
    logger.warning("a warning line")
    logger.error("an error line")
    logger.critical("a fatal line")


def letters(text):
    return [line[0] for line in text.splitlines()]


@pytest.mark.parametrize("value, expected", [("0", "IWEF"), ("1", "WEF"), ("2", "EF"), ("3", "F"),
                                             ("4", ""), ("-1", "IWEF")])
def test_minloglevel_drops_lines_below_the_severity(value, expected):
    logger, stream = configured({"GLOG_minloglevel": value})
    log_each_severity(logger)
    assert "".join(letters(stream.getvalue())) == expected
    assert all(re.match(PREFIX, line) for line in stream.getvalue().splitlines())


def test_minloglevel_that_is_not_a_number_is_a_clear_error():
    with pytest.raises(PclError, match=r"GLOG_minloglevel='info': expected a glog severity number"):
        configured({"GLOG_minloglevel": "info"})


def test_booleans_read_as_glog_reads_them():
    assert glog.GlogSettings.from_environ({"GLOG_logtostderr": "yes"}).logtostderr
    assert glog.GlogSettings.from_environ({"GLOG_logtostderr": ""}).logtostderr
    assert not glog.GlogSettings.from_environ({"GLOG_logtostderr": "0"}).logtostderr
    assert not glog.GlogSettings.from_environ({"GLOG_alsologtostderr": "false"}).alsologtostderr
    assert glog.GlogSettings.from_environ({}).alsologtostderr  # Caffe's tools set it


def glog_files(folder):
    return sorted(name for name in os.listdir(folder) if not os.path.islink(os.path.join(folder, name)))


def test_log_dir_writes_glog_named_files_per_severity_with_header_and_symlinks(tmp_path, monkeypatch):
    monkeypatch.setenv("USER", "tester")
    logger, stream = configured({"GLOG_log_dir": str(tmp_path)})
    logger.info("an info line")
    assert len(glog_files(tmp_path)) == 1  # the WARNING file waits for its first line
    logger.warning("a warning line")
    training_log.close_log_files()

    info, warning = (f"pcl.{socket.gethostname()}.tester.log.{severity}" for severity in ("INFO", "WARNING"))
    names = glog_files(tmp_path)
    assert [name.rsplit(".", 2)[0] for name in names] == [info, warning]
    for name in names:
        assert re.fullmatch(r".*\.\d{8}-\d{6}\." + str(os.getpid()), name)
        assert os.readlink(tmp_path / f"pcl.{name.split('.log.')[1].split('.')[0]}") == name
    info_text = (tmp_path / "pcl.INFO").read_text()
    header = info_text.splitlines()[:3]
    assert re.fullmatch(r"Log file created at: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d", header[0])
    assert header[1] == f"Running on machine: {socket.gethostname()}"
    assert header[2] == "Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg"
    assert [line[len(line.split("] ")[0]) + 2:] for line in info_text.splitlines()[3:]] == [
        "an info line", "a warning line"]
    assert (tmp_path / "pcl.WARNING").read_text().splitlines()[3:][0].endswith("] a warning line")
    assert letters(stream.getvalue()) == ["I", "W"]  # the terminal still shows everything


def test_logtostderr_writes_no_files_and_alsologtostderr_0_quiets_the_terminal(tmp_path):
    logger, _ = configured({"GLOG_log_dir": str(tmp_path), "GLOG_logtostderr": "1"})
    log_each_severity(logger)
    assert os.listdir(tmp_path) == []

    logger, stream = configured({"GLOG_log_dir": str(tmp_path), "GLOG_alsologtostderr": "0"})
    log_each_severity(logger)
    training_log.close_log_files()
    assert letters(stream.getvalue()) == ["E", "F"]
    assert letters((tmp_path / "pcl.INFO").read_text())[3:] == list("IWEF")


def test_a_missing_log_dir_is_a_clear_error(tmp_path):
    with pytest.raises(PclError, match=r"GLOG_log_dir=.*missing: no such folder; create it or unset"):
        configured({"GLOG_log_dir": str(tmp_path / "missing")})


def test_reconfiguring_keeps_one_file_per_run(tmp_path):
    logger, _ = configured({"GLOG_log_dir": str(tmp_path)})
    logger.info("first")
    configured({"GLOG_log_dir": str(tmp_path)})
    logger.info("second")
    training_log.close_log_files()
    assert len(glog_files(tmp_path)) == 1
    assert [line.split("] ")[1] for line in (tmp_path / "pcl.INFO").read_text().splitlines()[3:]] == [
        "first", "second"]


# -- end to end: pcl train ---------------------------------------------------------------------------

def test_train_with_minloglevel_1_prints_no_info_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLOG_minloglevel", "1")
    assert train_tiny(str(tmp_path), max_iter=2) == 0
    assert capsys.readouterr().err == ""


def test_train_log_file_holds_the_terminal_lines_and_the_closing_error(tmp_path, monkeypatch, capsys):
    assert train_tiny(str(tmp_path), "--log", "run.log", max_iter=4) == 0
    err = capsys.readouterr().err
    text = (tmp_path / "run.log").read_text()
    assert text == err and "] Optimization Done." in text
    assert re.search("^" + PREFIX + r"Use CPU\.$", text, re.MULTILINE)

    monkeypatch.chdir(tmp_path)
    from tiny_training import run_pcl  # noqa: PLC0415

    assert run_pcl("train", "--solver", "missing.prototxt", "--log", "failed.log") == 1
    lines = (tmp_path / "failed.log").read_text().splitlines()
    assert re.fullmatch(PREFIX + r"pcl: error: .*missing\.prototxt.*", lines[-1])
    assert lines[-1].startswith("E")


def test_train_with_log_dir_writes_the_run_log_there(tmp_path, monkeypatch, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("GLOG_log_dir", str(logs))
    assert train_tiny(str(tmp_path), max_iter=2) == 0
    err = capsys.readouterr().err
    info = (logs / "pcl.INFO").read_text()
    assert info.splitlines()[3:] == err.splitlines()
    assert "] Solving tiny" in info


def test_unwritable_log_file_is_a_clear_error(tmp_path, capsys):
    assert train_tiny(str(tmp_path), "--log", str(tmp_path / "no" / "such" / "run.log"), max_iter=2) == 1
    assert re.search(r"pcl: error: .*run\.log: cannot write the log file", capsys.readouterr().err)
