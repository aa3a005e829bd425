"""`pcl parse_log LOG OUTDIR`: the CSV files of Caffe's tools/extra/parse_log.py, byte for byte,
from a hand-written Caffe log, from a real Caffe log (glog 0.7's prefix with the year), and from
the log of a real `pcl train` run; the year rollover, and the user's mistakes."""
import os
import re

import pytest

from pycaffelite import log_parse

from tiny_training import pcl_logger_restored, run_pcl, train_tiny  # noqa: F401 - fixture

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

# A LeNet-like run as Caffe logs it: tests at 0, 200 and 300 (the final one), displays every 100.
CAFFE_LOG = """\
I0210 13:39:20.000000 25210 caffe.cpp:217] Using GPUs 0
I0210 13:39:21.500000 25210 solver.cpp:280] Solving LeNet
I0210 13:39:21.500010 25210 solver.cpp:281] Learning Rate Policy: inv
I0210 13:39:21.600000 25210 solver.cpp:338] Iteration 0, Testing net (#0)
I0210 13:39:22.250000 25210 solver.cpp:406]     Test net output #0: accuracy = 0.0856
I0210 13:39:22.250001 25210 solver.cpp:406]     Test net output #1: loss = 2.33912 (* 1 = 2.33912 loss)
I0210 13:39:22.260000 25210 solver.cpp:228] Iteration 0, loss = 2.32834
I0210 13:39:22.260100 25210 solver.cpp:244]     Train net output #0: loss = 2.32834 (* 1 = 2.32834 loss)
I0210 13:39:22.260200 25210 sgd_solver.cpp:106] Iteration 0, lr = 0.01
I0210 13:39:23.000000 25210 solver.cpp:228] Iteration 100, loss = 0.215
I0210 13:39:23.000001 25210 solver.cpp:244]     Train net output #0: loss = 0.215 (* 1 = 0.215 loss)
I0210 13:39:23.000002 25210 sgd_solver.cpp:106] Iteration 100, lr = 0.00992565
W0210 13:39:23.100000 25210 data_layer.cpp:73] Restarting data prefetching from start.
I0210 13:39:23.500000 25210 solver.cpp:338] Iteration 200, Testing net (#0)
I0210 13:39:23.900000 25210 solver.cpp:406]     Test net output #0: accuracy = 0.9511
I0210 13:39:23.900001 25210 solver.cpp:406]     Test net output #1: loss = 0.15432 (* 1 = 0.15432 loss)
I0210 13:39:23.910000 25210 solver.cpp:228] Iteration 200, loss = 1.2e-05
I0210 13:39:23.910001 25210 solver.cpp:244]     Train net output #0: loss = 1.2e-05 (* 1 = 1.2e-05 loss)
I0210 13:39:23.910002 25210 sgd_solver.cpp:106] Iteration 200, lr = 0.00985258
I0210 13:39:24.000000 25210 solver.cpp:454] Snapshotting to binary proto file lenet_iter_300.caffemodel
I0210 13:39:24.100000 25210 solver.cpp:317] Iteration 300, loss = 0.1
I0210 13:39:24.100001 25210 solver.cpp:337] Iteration 300, Testing net (#0)
I0210 13:39:24.500000 25210 solver.cpp:404]     Test net output #0: accuracy = 0.97
I0210 13:39:24.500001 25210 solver.cpp:404]     Test net output #1: loss = 0.09 (* 1 = 0.09 loss)
I0210 13:39:24.500100 25210 solver.cpp:322] Optimization Done.
"""

# What Caffe's parse_log.py writes for CAFFE_LOG (checked by running it): a row's LearningRate is
# the last one printed before it, the first row takes the second row's.
CAFFE_TRAIN_CSV = ("NumIters,Seconds,LearningRate,loss\r\n"
                   "0.0,0.7601,0.01,2.32834\r\n"
                   "100.0,1.500001,0.01,0.215\r\n"
                   "200.0,2.410001,0.00992565,1.2e-05\r\n")
CAFFE_TEST_CSV = ("NumIters,Seconds,LearningRate,accuracy,loss\r\n"
                  "0.0,0.75,0.00992565,0.0856,2.33912\r\n"
                  "200.0,2.4,0.00992565,0.9511,0.15432\r\n"
                  "300.0,3.0,0.00985258,0.97,0.09\r\n")


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8")


def test_caffe_log_gives_parse_logs_csv_text(tmp_path, capsys):
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE_LOG)
    assert run_pcl("parse_log", str(log), str(tmp_path / "out")) == 0
    assert read_bytes(tmp_path / "out" / "caffe.log.train") == CAFFE_TRAIN_CSV
    assert read_bytes(tmp_path / "out" / "caffe.log.test") == CAFFE_TEST_CSV
    out = capsys.readouterr().out.splitlines()
    assert out == [f"Wrote {tmp_path / 'out' / 'caffe.log.train'} (3 rows)",
                   f"Wrote {tmp_path / 'out' / 'caffe.log.test'} (3 rows)"]


def test_delimiter_and_a_missing_test_table(tmp_path, capsys):
    log = tmp_path / "train_only.log"
    log.write_text("".join(line + "\n" for line in CAFFE_LOG.splitlines() if "Test net" not in line))
    assert run_pcl("parse_log", str(log), str(tmp_path), "--delimiter", "\t") == 0
    assert read_bytes(tmp_path / "train_only.log.train") == CAFFE_TRAIN_CSV.replace(",", "\t")
    assert not os.path.exists(tmp_path / "train_only.log.test")
    assert "Not writing" in capsys.readouterr().out


def test_seconds_run_on_into_a_new_year(tmp_path):
    log = tmp_path / "new_year.log"
    log.write_text("I1231 23:59:59.000000 1 solver.cpp:280] Solving LeNet\n"
                   "I1231 23:59:59.500000 1 solver.cpp:228] Iteration 0, loss = 2\n"
                   "I1231 23:59:59.500000 1 solver.cpp:244]     Train net output #0: loss = 2\n"
                   "I0101 00:00:01.000000 1 solver.cpp:228] Iteration 10, loss = 1\n"
                   "I0101 00:00:01.000000 1 solver.cpp:244]     Train net output #0: loss = 1\n")
    rows = log_parse.parse_file(log).train_rows()
    assert [row["Seconds"] for row in rows] == [0.5, 2.0]


def test_real_caffe_log_with_glog_07_prefix(tmp_path):
    """Caffe's own log of a 20-iteration run (prefix `I20261122 05:04:50.996935`; Caffe's script
    cannot read it: it takes "20" for the month)."""
    path = os.path.join(DATA, "caffe_ref", "solvers", "sgd_step", "caffe_train.log")
    rows = log_parse.parse_file(path).train_rows()
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    losses = [float(v) for v in re.findall(r"Train net output #0: loss = ([\d.e+-]+)", text)]
    rates = [float(v) for v in re.findall(r"Iteration \d+, lr = ([\d.e+-]+)", text)]
    assert [row["NumIters"] for row in rows] == [float(i) for i in range(20)]
    assert [row["loss"] for row in rows] == losses[:20]
    assert [row["LearningRate"] for row in rows] == [rates[0]] + rates[:19]
    assert rows[0]["Seconds"] == 0.000224  # its output line comes 224 us after the Solving line
    assert all(a["Seconds"] <= b["Seconds"] for a, b in zip(rows, rows[1:]))


@pytest.mark.usefixtures("pcl_logger_restored")
def test_log_of_a_pcl_train_run(tmp_path, capsys):
    assert train_tiny(str(tmp_path), "--log", "train.log", max_iter=10) == 0
    capsys.readouterr()
    log = tmp_path / "train.log"
    text = log.read_text()
    assert run_pcl("parse_log", str(log), str(tmp_path)) == 0
    train = read_bytes(tmp_path / "train.log.train").split("\r\n")
    test = read_bytes(tmp_path / "train.log.test").split("\r\n")
    assert train[0] == "NumIters,Seconds,LearningRate,loss" and train[-1] == ""
    assert test[0] == "NumIters,Seconds,LearningRate,accuracy,loss" and test[-1] == ""
    train_rows = [row.split(",") for row in train[1:-1]]
    test_rows = [row.split(",") for row in test[1:-1]]
    # displays every 2 iterations; lr 0.1 halved every 4: a row holds the previous display's rate
    assert [row[0] for row in train_rows] == ["0.0", "2.0", "4.0", "6.0", "8.0"]
    assert [row[2] for row in train_rows] == ["0.1", "0.1", "0.1", "0.05", "0.05"]
    assert [row[3] for row in train_rows] == re.findall(r"Train net output #0: loss = ([\d.e+-]+) ", text)
    assert [row[0] for row in test_rows] == ["0.0", "5.0", "10.0"]
    assert [row[2] for row in test_rows] == ["0.05", "0.05", "0.025"]
    assert [row[3] for row in test_rows] == [
        str(float(v)) for v in re.findall(r"Test net output #0: accuracy = ([\d.e+-]+)", text)]
    assert [row[4] for row in test_rows] == re.findall(r"Test net output #1: loss = ([\d.e+-]+) ", text)
    seconds = [float(row[1]) for row in train_rows + test_rows]
    assert all(s >= 0 for s in seconds)


def test_mistakes_are_clear_errors(tmp_path, capsys):
    assert run_pcl("parse_log", str(tmp_path / "missing.log"), str(tmp_path)) == 1
    assert "missing.log: cannot read the log" in capsys.readouterr().err
    log = tmp_path / "notes.txt"
    log.write_text("just some text\n")
    assert run_pcl("parse_log", str(log), str(tmp_path)) == 1
    assert 'no line containing "Solving"' in capsys.readouterr().err
    log.write_text("Solving LeNet without a prefix\n")
    assert run_pcl("parse_log", str(log), str(tmp_path)) == 1
    assert "has no glog prefix" in capsys.readouterr().err
    assert run_pcl("parse_log", str(log), str(tmp_path), "--delimiter", ";;") == 1
    assert "--delimiter must be one character" in capsys.readouterr().err
