"""`pcl plot` (Caffe's eight chart types of plot_training_log.py, by number or name; the
overview; several logs) and `pcl train --plot` (a picture kept up to date while training). Each
picture is opened and checked for its size and for drawn lines."""
import hashlib
import math
import os

import numpy as np
import pytest

from pycaffelite import plot
from pycaffelite.errors import PclError

from test_parse_log import CAFFE_LOG
from tiny_training import pcl_logger_restored, run_pcl, train_tiny  # noqa: F401 - fixture

matplotlib_image = pytest.importorskip("matplotlib.image")

LINE_COLOUR = np.array([0x1F, 0x77, 0xB4]) / 255  # matplotlib's first line colour


@pytest.fixture
def caffe_log(tmp_path):
    path = tmp_path / "lenet.log"
    path.write_text(CAFFE_LOG)
    return str(path)


def picture(path):
    """(height, width, pixels of the first line colour, share of non-white pixels)."""
    pixels = matplotlib_image.imread(path)[..., :3]
    line = np.all(np.abs(pixels - LINE_COLOUR) < 0.08, axis=-1).sum()
    inked = np.any(pixels < 0.95, axis=-1).mean()
    return pixels.shape[0], pixels.shape[1], int(line), float(inked)


@pytest.mark.parametrize("chart", range(8))
def test_each_of_caffes_chart_types_is_drawn(caffe_log, tmp_path, chart, capsys):
    out = str(tmp_path / f"chart{chart}.png")
    assert run_pcl("plot", caffe_log, out, "--chart", str(chart)) == 0
    assert capsys.readouterr().out == f"Wrote {out} (1 chart)\n"
    height, width, line, inked = picture(out)
    assert (height, width) == (420, 640)
    assert line > 100 and 0.02 < inked < 0.5


def test_overview_and_several_logs(caffe_log, tmp_path):
    out = str(tmp_path / "overview.png")
    assert run_pcl("plot", caffe_log, out) == 0
    assert picture(out)[:2] == (840, 1280)
    other = tmp_path / "other.log"
    other.write_text(CAFFE_LOG.replace("accuracy = 0.9", "accuracy = 0.8"))
    out = str(tmp_path / "two.svg")
    assert run_pcl("plot", caffe_log, str(other), out, "--chart", "test-accuracy-iters",
                   "--chart", "Train loss  vs. Seconds") == 0
    with open(out, encoding="utf-8") as handle:
        svg = handle.read()
    assert svg.startswith("<?xml") and "lenet: accuracy" in svg and "other: accuracy" in svg


def test_charts_by_number_or_words():
    assert [c.name for c in plot.CHARTS] == [
        "test-accuracy-iters", "test-accuracy-seconds", "test-loss-iters", "test-loss-seconds",
        "train-lr-iters", "train-lr-seconds", "train-loss-iters", "train-loss-seconds"]
    assert plot.chart_named("Test accuracy  vs. Iters").number == 0  # Caffe's description
    assert plot.chart_named("train learning rate vs seconds").number == 5
    assert plot.chart_named("train_loss_iterations").number == 6
    assert plot.chart_named("7").number == 7
    for wrong in ("8", "accuracy"):
        with pytest.raises(PclError, match=r'unknown chart .* 0 test-accuracy-iters, 1 '):
            plot.chart_named(wrong)


def test_output_names_that_mean_accuracy_or_loss():
    assert plot.is_accuracy("accuracy") and plot.is_accuracy("loss1/top-1") and plot.is_accuracy("top5")
    assert plot.is_loss("loss3/loss3") and not plot.is_loss("loss1/top-5") and not plot.is_loss("prob")


def test_mistakes_are_clear_errors(caffe_log, tmp_path, capsys):
    assert run_pcl("plot", caffe_log, str(tmp_path / "curves.txt")) == 1
    assert "curves.txt: cannot tell the picture format from the name" in capsys.readouterr().err
    train_only = tmp_path / "train_only.log"
    train_only.write_text("".join(line + "\n" for line in CAFFE_LOG.splitlines() if "Test net" not in line))
    assert run_pcl("plot", str(train_only), str(tmp_path / "a.png"), "--chart", "0") == 1
    assert 'nothing to draw for the chart "Test accuracy vs. Iters"' in capsys.readouterr().err
    assert run_pcl("plot", caffe_log) == 1
    assert "needs at least one log and the picture" in capsys.readouterr().err
    with pytest.raises(PclError, match=r"no/curves.png: the folder .*no does not exist"):
        plot.LivePlot(str(tmp_path / "no" / "curves.png"))
    assert not os.path.exists(tmp_path / "a.png")


@pytest.mark.usefixtures("pcl_logger_restored")
def test_train_plot_redraws_the_picture_while_training(tmp_path, monkeypatch, capsys):
    states = []
    real_redraw = plot.LivePlot.redraw

    def recording_redraw(self):
        real_redraw(self)
        with open(self.path, "rb") as handle:
            states.append((self.parser.display_loss[-1][0], len(self.parser.table("Test", pending=True)),
                           hashlib.sha1(handle.read()).hexdigest()))

    monkeypatch.setattr(plot.LivePlot, "overhead", math.inf)  # draw at every chance
    monkeypatch.setattr(plot.LivePlot, "redraw", recording_redraw)
    monkeypatch.setenv("GLOG_minloglevel", "3")  # a quiet terminal: the chart still sees the lines
    assert train_tiny(str(tmp_path), "--plot", "curves.png", max_iter=4, test_interval=2) == 0
    assert capsys.readouterr().err == ""
    # (last display, tests so far): after iteration 0 and 2 (display and test), then at the end
    assert [state[:2] for state in states] == [(0, 1), (2, 2), (4, 3)]
    assert len({state[2] for state in states}) == 3  # each drawing differs
    assert picture(str(tmp_path / "curves.png"))[:2] == (840, 1280)
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "net.prototxt", "solver.prototxt"]
