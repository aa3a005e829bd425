"""A tiny net and solver that `pcl train` runs in a fraction of a second (DummyData, a
convolution, an inner product; a test net with accuracy), for the tests of the log, curve and
plot commands; and a fixture that puts pcl's logger back as it was after a test."""
import logging
import os

import pytest

from pycaffelite import training_log
from pycaffelite.cli import main

NET = """name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 1 dim: 6 dim: 6 } shape { dim: 8 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""

SOLVER = """net: "net.prototxt"
test_iter: 2
test_interval: {test_interval}
display: {display}
max_iter: {max_iter}
base_lr: 0.1
lr_policy: "step"
stepsize: 4
gamma: 0.5
snapshot_after_train: false
random_seed: 1
"""


def write_tiny_solver(folder, max_iter=10, display=2, test_interval=5):
    """net.prototxt and solver.prototxt in `folder`: lr 0.1 halved every 4 iterations."""
    with open(os.path.join(folder, "net.prototxt"), "w", encoding="utf-8") as handle:
        handle.write(NET)
    with open(os.path.join(folder, "solver.prototxt"), "w", encoding="utf-8") as handle:
        handle.write(SOLVER.format(max_iter=max_iter, display=display, test_interval=test_interval))
    return os.path.join(folder, "solver.prototxt")


def run_pcl(*args):
    """`pcl ARGS` in this process; returns the exit status."""
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code
    return 0


def train_tiny(folder, *extra, **solver_fields):
    """Run `pcl train` on the tiny solver from inside `folder`; returns the exit status."""
    write_tiny_solver(folder, **solver_fields)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return run_pcl("train", "--solver", "solver.prototxt", *extra)
    finally:
        os.chdir(cwd)


@pytest.fixture
def pcl_logger_restored():
    """pcl's logger (handlers, level) and its log files as they were before the test."""
    logger = logging.getLogger(training_log.LOGGER_NAME)
    handlers, level, stream_handler = list(logger.handlers), logger.level, training_log._handler  # noqa: SLF001
    yield logger
    training_log.close_log_files()
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    for handler in handlers:
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logger.setLevel(level)
    training_log._handler = stream_handler  # noqa: SLF001
