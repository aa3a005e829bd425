"""`pcl train` and `pcl test` end to end, in subprocesses: Caffe's flags (single-dash too),
resume from Caffe's snapshots, fine-tuning, signals, HDF5 snapshots, errors, progress bar, and
logs that Caffe's tools/extra/parse_log.py reads."""
import datetime
import fcntl
import importlib.util
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest

from pycaffelite.io import protoio
from pycaffelite.proto import caffe_pb2

import solver_ref_cases as ref

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
PCL = [sys.executable, "-c", "from pycaffelite.cli import main; main()"]
TEST_LAYERS = """
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
        include { phase: TEST } }
"""


def env():
    variables = dict(os.environ)
    variables["PYTHONPATH"] = REPO + os.pathsep + variables.get("PYTHONPATH", "")
    variables.pop("TERM", None)
    return variables


def pcl(*args, cwd, check=True):
    result = subprocess.run(PCL + list(args), cwd=cwd, env=env(), capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def messages(stderr):
    """Log messages without their glog prefix."""
    return [line.split("] ", 1)[1] for line in stderr.splitlines() if re.match(r"[IWEF]\d{4} ", line)]


@pytest.fixture
def case(tmp_path):
    def make(name, keep_caffe_snapshots=True):
        path = ref.copy_case(name, tmp_path)
        if not keep_caffe_snapshots:
            for file_name in os.listdir(path):
                if "_iter_" in file_name:
                    os.remove(os.path.join(path, file_name))
        return path

    return make


def write_solver(folder, name="solver.prototxt", **fields):
    param = protoio.read_solver_param(os.path.join(folder, "solver.prototxt"))
    for field, value in fields.items():
        if isinstance(value, list):
            param.ClearField(field)
            getattr(param, field).extend(value)
        else:
            setattr(param, field, value)
    protoio.write_text_proto(os.path.join(folder, name), param)
    return name


def caffemodel_params(path):
    net = protoio.read_binary_proto(path, caffe_pb2.NetParameter())
    return {f"{layer.name}/{i}": np.array(blob.data, np.float32).reshape(tuple(blob.shape.dim))
            for layer in net.layer for i, blob in enumerate(layer.blobs)}


# -- training, resume, snapshots -----------------------------------------------------------------

def test_train_with_caffes_single_dash_flags(case):
    folder = case("sgd_step", keep_caffe_snapshots=False)
    result = pcl("train", "-solver", "solver.prototxt", cwd=folder)
    log = messages(result.stderr)
    assert "Use CPU." in log and "Starting Optimization" in log and log[-1] == "Optimization Done."
    assert "Snapshotting to binary proto file sgd_step_iter_20.caffemodel" in log
    for name in ("sgd_step_iter_10.caffemodel", "sgd_step_iter_10.solverstate",
                 "sgd_step_iter_20.caffemodel", "sgd_step_iter_20.solverstate"):
        assert os.path.exists(os.path.join(folder, name))
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_resume_from_caffes_snapshot_reaches_caffes_params(case):
    folder = case("resume")
    result = pcl("train", "--solver", "solver.prototxt", "--snapshot", "sgd_step_iter_10.solverstate",
                 cwd=folder)
    log = messages(result.stderr)
    assert "Resuming from sgd_step_iter_10.solverstate" in log
    assert "SGDSolver: restoring history" in log
    assert not any(m.startswith("Iteration 9 ") for m in log)
    trajectory = ref.load("resume", "trajectory")
    params = caffemodel_params(os.path.join(folder, "resume_iter_20.caffemodel"))
    for name in ref.learnable_names("resume"):
        assert ref.max_rel_deviation(params[name], trajectory[f"iter20/{name}"]) < 1e-5


def test_resume_our_own_snapshot_equals_the_straight_run(case, tmp_path):
    straight = case("sgd_step", keep_caffe_snapshots=False)
    pcl("train", "--solver", "solver.prototxt", cwd=straight)
    other = os.path.join(tmp_path, "second")
    os.makedirs(other)
    for name in ("solver.prototxt", "net.prototxt", "sgd_step_iter_10.caffemodel", "sgd_step_iter_10.solverstate"):
        os.link(os.path.join(straight, name), os.path.join(other, name))
    os.symlink(os.path.join(straight, "data"), os.path.join(other, "data"))
    write_solver(other, snapshot_prefix="resumed")
    pcl("train", "--solver", "solver.prototxt", "--snapshot", "sgd_step_iter_10.solverstate", cwd=other)
    with open(os.path.join(straight, "sgd_step_iter_20.caffemodel"), "rb") as a, \
            open(os.path.join(other, "resumed_iter_20.caffemodel"), "rb") as b:
        assert a.read() == b.read()


def test_hdf5_snapshots_and_resume_from_caffes_hdf5_state(case):
    folder = case("hdf5_snapshot")
    write_solver(folder, snapshot_prefix="ours")
    result = pcl("train", "--solver", "solver.prototxt", "--snapshot", "hdf5_snapshot_iter_10.solverstate.h5",
                 cwd=folder)
    log = messages(result.stderr)
    assert "Snapshotting to HDF5 file ours_iter_20.caffemodel.h5" in log
    assert "Snapshotting solver state to HDF5 file ours_iter_20.solverstate.h5" in log
    import h5py  # noqa: PLC0415

    trajectory = ref.load("hdf5_snapshot", "trajectory")
    with h5py.File(os.path.join(folder, "ours_iter_20.caffemodel.h5"), "r") as f:
        for name in ref.learnable_names("hdf5_snapshot"):
            layer, index = name.split("/")
            actual = np.asarray(f["data"][layer][index])
            assert ref.max_rel_deviation(actual, trajectory[f"iter20/{name}"]) < 1e-5


def test_fine_tune_from_weights_keeps_fillers_of_renamed_layers(case):
    folder = case("sgd_step")
    with open(os.path.join(folder, "net.prototxt"), encoding="utf-8") as handle:
        text = handle.read()
    with open(os.path.join(folder, "net_new_head.prototxt"), "w", encoding="utf-8") as handle:
        handle.write(text.replace('name: "ip2"', 'name: "ip2_new"'))
    write_solver(folder, "finetune.prototxt", net="net_new_head.prototxt", max_iter=1, base_lr=0.0,
                 snapshot=0, snapshot_prefix="ft")
    weights = "sgd_step_iter_10.caffemodel,sgd_step_iter_20.caffemodel"
    result = pcl("train", "--solver", "finetune.prototxt", "--weights", weights, cwd=folder)
    log = messages(result.stderr)
    assert "Finetuning from sgd_step_iter_10.caffemodel" in log
    assert "Finetuning from sgd_step_iter_20.caffemodel" in log
    assert "Ignoring source layer ip2" in log
    params = caffemodel_params(os.path.join(folder, "ft_iter_1.caffemodel"))
    trajectory = ref.load("sgd_step", "trajectory")
    np.testing.assert_array_equal(params["conv1/0"], trajectory["iter20/conv1/0"])
    np.testing.assert_array_equal(params["ip1/0"], trajectory["iter20/ip1/0"])
    assert not np.array_equal(params["ip2_new/0"], trajectory["iter20/ip2/0"])
    assert np.all(np.abs(params["ip2_new/1"]) <= 0.1)  # its uniform [-0.1, 0.1] filler


def test_fine_tune_shape_mismatch_is_one_message(case):
    folder = case("sgd_step")
    with open(os.path.join(folder, "net.prototxt"), encoding="utf-8") as handle:
        text = handle.read()
    with open(os.path.join(folder, "net.prototxt"), "w", encoding="utf-8") as handle:
        handle.write(text.replace("num_output: 8", "num_output: 6"))
    result = pcl("train", "--solver", "solver.prototxt", "--weights", "sgd_step_iter_20.caffemodel",
                 cwd=folder, check=False)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert re.search(r'layer "ip1".*\(8, 64\).*\(6, 64\).*rename the layer', error), error
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--snapshot", "sgd_step_iter_10.solverstate", "--weights", "sgd_step_iter_10.caffemodel"],
     "but not both"),
    (["--snapshot", "sgd_step_iter_10.caffemodel"], r"weights file \(\.caffemodel\), not a solver state"),
    (["--gpu", "x"], "--gpu expects a device id"),
    (["--sigint_effect", "explode"], "Invalid value for '--sigint_effect'"),
])
def test_flag_mistakes(case, args, message):
    folder = case("sgd_step")
    result = pcl("train", "--solver", "solver.prototxt", *args, cwd=folder, check=False)
    assert result.returncode != 0
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content, message", [
    ('net: "net.prototxt"\nbase_lr 0.01\n', r"bad\.prototxt:2:"),
    ('net: "net.prototxt"\ntype: "Adamx"\nbase_lr: 0.01\nlr_policy: "fixed"\n', 'unknown solver type "Adamx"'),
    ('net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "cosine"\n', 'unknown lr_policy "cosine"'),
    ('base_lr: 0.01\nlr_policy: "fixed"\n', "exactly one of net"),
])
def test_bad_solver_file_is_one_message(case, content, message):
    folder = case("sgd_step")
    with open(os.path.join(folder, "bad.prototxt"), "w", encoding="utf-8") as handle:
        handle.write(content)
    result = pcl("train", "--solver", "bad.prototxt", cwd=folder, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("pcl: error:")]
    assert len(errors) == 1 and re.search(message, errors[0]), result.stderr
    assert "Traceback" not in result.stderr


def test_gpu_without_cupy_is_explained(case):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("cupy is installed")
    folder = case("sgd_step")
    result = pcl("train", "-solver", "solver.prototxt", "-gpu", "0", cwd=folder, check=False)
    assert result.returncode != 0 and "cupy is not installed" in result.stderr
    # solver_mode GPU without --gpu trains on the CPU with a warning
    write_solver(folder, "gpu_solver.prototxt", solver_mode=caffe_pb2.SolverParameter.GPU, max_iter=1)
    result = pcl("train", "--solver", "gpu_solver.prototxt", cwd=folder)
    assert any("solver_mode is GPU but no GPU can be used" in m for m in messages(result.stderr))


# -- signals ---------------------------------------------------------------------------------

class Training:
    """A long `pcl train` run whose log is read line by line."""

    def __init__(self, folder, *flags):
        write_solver(folder, "long.prototxt", max_iter=1000000, snapshot=0, display=1,
                     snapshot_prefix="long")
        self.folder = folder
        self.process = subprocess.Popen(PCL + ["train", "--solver", "long.prototxt", *flags], cwd=folder,
                                        env=env(), stderr=subprocess.PIPE, text=True)
        self.lines = []

    def wait_for(self, pattern, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        self.process.kill()
        raise AssertionError(f"never saw {pattern!r}; last lines: {self.lines[-5:]}")

    def finish(self):
        _, rest = self.process.communicate(timeout=120)
        self.lines.extend(rest.splitlines(keepends=True))
        return self.process.returncode, messages("".join(self.lines))

    def snapshots(self):
        return sorted(int(m.group(1)) for m in (re.match(r"long_iter_(\d+)\.solverstate$", n)
                                                 for n in os.listdir(self.folder)) if m)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def training(case):
    runs = []

    def start(*flags):
        run = Training(case("sgd_step", keep_caffe_snapshots=False), *flags)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


def test_sigint_stop_ends_with_the_after_train_snapshot(training):
    run = training()  # Caffe's default: --sigint_effect stop
    run.wait_for(r"Iteration 5, lr")
    run.process.send_signal(signal.SIGINT)
    code, log = run.finish()
    assert code == 0
    assert "Optimization stopped early." in log
    assert len(run.snapshots()) == 1
    stopped_at = run.snapshots()[0]
    assert 5 < stopped_at < 1000000
    assert f"Snapshotting to binary proto file long_iter_{stopped_at}.caffemodel" in log


def test_sigint_snapshot_then_sighup_stop(training):
    run = training("-sigint_effect", "snapshot", "-sighup_effect", "stop")
    run.wait_for(r"Iteration 5, lr")
    run.process.send_signal(signal.SIGINT)
    first = int(run.wait_for(r"Snapshotting solver state to binary proto file long_iter_(\d+)").group(1))
    run.wait_for(rf"Iteration {first + 5}, lr")
    run.process.send_signal(signal.SIGHUP)
    code, log = run.finish()
    assert code == 0 and "Optimization stopped early." in log
    snapshots = run.snapshots()
    assert snapshots[0] == first and len(snapshots) == 2 and snapshots[1] > first + 5


def test_sigint_none_is_ignored(training):
    run = training("--sigint_effect", "none", "--sighup_effect", "stop")
    run.wait_for(r"Iteration 5, lr")
    run.process.send_signal(signal.SIGINT)
    run.wait_for(r"Iteration 30, lr")
    assert run.process.poll() is None
    run.process.send_signal(signal.SIGHUP)
    code, log = run.finish()
    assert code == 0
    assert len(run.snapshots()) == 1 and run.snapshots()[0] > 30


# -- logs that Caffe's parse_log.py reads --------------------------------------------------------

# The four patterns of BVLC Caffe's tools/extra/parse_log.py.
REGEX_ITERATION = re.compile(r"Iteration (\d+)")
REGEX_TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
REGEX_TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
REGEX_LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def glog_time(line, year):
    """The time of a glog line, read the way extract_seconds.py reads it."""
    fields = line.strip().split()
    stamp = fields[1]
    hours, minutes, seconds = (int(x) for x in stamp[:stamp.rfind(".")].split(":"))
    return datetime.datetime(year, int(fields[0][1:3]), int(fields[0][3:5]), hours, minutes, seconds,
                             int(stamp[stamp.rfind(".") + 1:]))


def parse_caffe_log(text):
    """Rows as parse_log.py builds them: a row per iteration with an output line, holding the
    outputs, the latest lr and the seconds since the 'Solving' line."""
    year = datetime.date.today().year
    lines = text.splitlines()
    start = glog_time(next(line for line in lines if "Solving" in line), year)
    iteration, rate = -1, float("nan")
    rows = {"train": [], "test": []}
    for line in lines:
        match = REGEX_ITERATION.search(line)
        if match:
            iteration = int(match.group(1))
        if iteration == -1:
            continue
        seconds = (glog_time(line, year) - start).total_seconds()
        match = REGEX_LEARNING_RATE.search(line)
        if match:
            rate = float(match.group(1))
        for kind, regex in (("train", REGEX_TRAIN_OUTPUT), ("test", REGEX_TEST_OUTPUT)):
            match = regex.search(line)
            if match:
                table = rows[kind]
                if not table or table[-1]["NumIters"] != iteration:
                    table.append({"NumIters": iteration, "Seconds": seconds, "LearningRate": rate})
                table[-1][match.group(2)] = float(match.group(3))
    return rows


def test_parse_log_patterns_read_a_pcl_train_log(case):
    folder = case("sgd_step", keep_caffe_snapshots=False)
    with open(os.path.join(folder, "net.prototxt"), encoding="utf-8") as handle:
        text = handle.read()
    with open(os.path.join(folder, "net.prototxt"), "w", encoding="utf-8") as handle:
        handle.write(text + TEST_LAYERS)
    write_solver(folder, test_iter=[5], test_interval=10, display=5, max_iter=20)
    result = pcl("train", "--solver", "solver.prototxt", cwd=folder)
    rows = parse_caffe_log(result.stderr)
    log = messages(result.stderr)

    train = rows["train"]
    assert [row["NumIters"] for row in train] == [0, 5, 10, 15]
    losses = [float(m.rsplit("= ", 1)[1]) for m in log if re.match(r"Iteration \d+ \(.*\), loss = ", m)]
    assert [row["loss"] for row in train] == losses
    rates = [float(m.rsplit("= ", 1)[1]) for m in log if re.match(r"Iteration \d+, lr = ", m)]
    assert rates == [0.05, 0.05, 0.025, 0.0125]  # step: 0.05 * 0.5 ** (it // 6)
    # parse_log attaches the lr seen before the row (the previous display's); it fixes the first row.
    assert [row["LearningRate"] for row in train[1:]] == rates[:-1]

    test = rows["test"]
    assert [row["NumIters"] for row in test] == [0, 10, 20]
    for row in test:
        assert 0 <= row["accuracy"] <= 1 and row["loss"] > 0
    assert all(row["Seconds"] >= 0 for row in train + test)


# -- pcl test --------------------------------------------------------------------------------

def test_pcl_test_prints_batches_and_means(case):
    folder = case("sgd_step")
    with open(os.path.join(folder, "net.prototxt"), encoding="utf-8") as handle:
        text = handle.read()
    with open(os.path.join(folder, "net_acc.prototxt"), "w", encoding="utf-8") as handle:
        handle.write(text + TEST_LAYERS)
    result = pcl("test", "-model", "net_acc.prototxt", "-weights", "sgd_step_iter_20.caffemodel",
                 "-iterations", "5", cwd=folder)
    log = messages(result.stderr)
    assert "Running for 5 iterations." in log
    batches = [m for m in log if m.startswith("Batch ")]
    assert [m.split(",")[0] for m in batches] == [f"Batch {i}" for i in range(5) for _ in range(2)]
    accuracies = [float(m.rsplit("= ", 1)[1]) for m in batches if ", accuracy = " in m]
    losses = [float(m.rsplit("= ", 1)[1]) for m in batches if ", loss = " in m]
    summary = log[log.index(next(m for m in log if m.startswith("Loss: "))):]
    assert float(summary[0].split(": ")[1]) == pytest.approx(np.mean(losses), rel=1e-5)
    assert re.fullmatch(r"accuracy = [\d.]+", summary[1])
    assert float(summary[1].split("= ")[1]) == pytest.approx(np.mean(accuracies), rel=1e-5)
    match = re.fullmatch(r"loss = ([\d.]+) \(\* 1 = \1 loss\)", summary[2])
    assert match and float(match.group(1)) == pytest.approx(np.mean(losses), rel=1e-5)


def test_pcl_test_needs_weights(case):
    folder = case("sgd_step")
    result = pcl("test", "--model", "net.prototxt", cwd=folder, check=False)
    assert result.returncode != 0 and "need model weights to score" in result.stderr


# -- progress bar ------------------------------------------------------------------------------

def _run_on_terminal(args, cwd):
    """Run pcl with stderr on a pseudo-terminal; return what the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows, 120 columns
    variables = env()
    variables["TERM"] = "xterm"
    process = subprocess.Popen(PCL + args, cwd=cwd, env=variables, stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_on_a_terminal_only(case):
    folder = case("sgd_step", keep_caffe_snapshots=False)
    shown = _run_on_terminal(["train", "--solver", "solver.prototxt"], folder)
    assert re.search(r"\d+/20 \[", shown), shown[-2000:]
    assert "Optimization Done." in shown
    hidden = _run_on_terminal(["train", "--solver", "solver.prototxt", "--no-progress"], folder)
    assert not re.search(r"\d+/20 \[", hidden) and "Optimization Done." in hidden
    piped = pcl("train", "--solver", "solver.prototxt", cwd=folder)
    assert not re.search(r"\d+/20 \[", piped.stderr)


def test_stage_and_level_select_train_net_layers(case):
    folder = case("sgd_step", keep_caffe_snapshots=False)
    extra = ('layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" '
             'include { phase: TRAIN stage: "extra" min_level: 2 } }\n')
    with open(os.path.join(folder, "net.prototxt"), "a", encoding="utf-8") as handle:
        handle.write(extra)
    write_solver(folder, max_iter=1, snapshot=0, snapshot_after_train=False)
    plain = messages(pcl("train", "--solver", "solver.prototxt", cwd=folder).stderr)
    staged = messages(pcl("train", "-solver", "solver.prototxt", "-stage", "other,extra", "-level", "2",
                          cwd=folder).stderr)
    low = messages(pcl("train", "--solver", "solver.prototxt", "--stage", "extra", cwd=folder).stderr)
    assert not any("accuracy" in m for m in plain + low)
    assert any(re.fullmatch(r"    Train net output #0: accuracy = [\d.]+", m) for m in staged)
