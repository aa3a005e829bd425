"""Training curves as pictures: the eight charts of Caffe's tools/extra/plot_training_log.py,
drawn with matplotlib from logs read by pycaffelite.log_parse, and a live view for `pcl train`.

Caffe numbers its charts by field, then x axis:

    0 test accuracy vs. iters     1 test accuracy vs. seconds
    2 test loss vs. iters         3 test loss vs. seconds
    4 train learning rate vs. iters   5 train learning rate vs. seconds
    6 train loss vs. iters        7 train loss vs. seconds

A chart is named by its number or its words (`test-accuracy-iters`, "Test accuracy vs. Iters",
`train-lr-seconds`...). As in Caffe's script the train loss is the displayed (smoothed) loss of
the "Iteration N (...), loss = X" lines and the learning rate that of the "lr = X" lines. The
test charts draw each test output whose name says what it is: accuracy for names containing
"acc" or top-k ("top-1", "top5"), loss for other names containing "loss" (Caffe's shell parser
took outputs #0 and #1 whatever they were). Several logs share a chart, each line labelled with
the log's name (without ".log"), as in Caffe's script.

Without a chart choice the picture is an overview of the four charts against iterations, each
drawn when the log has its lines. Pictures are written to a temporary name and renamed, so a
viewer never reads half a file; the format follows the name (.png, .svg, .pdf, ...).
"""
import dataclasses
import datetime
import itertools
import logging
import math
import os
import re
import time

from . import training_log
from .errors import PclError
from .io.atomic import atomic_output
from .log_parse import LogParser, parse_file

log = logging.getLogger("pycaffelite")


@dataclasses.dataclass(frozen=True)
class Chart:
    number: int
    table: str  # "Train" or "Test"
    quantity: str  # "accuracy", "loss" or "learning rate"
    x_axis: str  # "Iters" or "Seconds"

    @property
    def title(self):
        return f"{self.table} {self.quantity} vs. {self.x_axis}"

    @property
    def name(self):
        return _words(self.title)


def _words(text):
    """A chart description in canonical words: `test-accuracy-iters`, `train-lr-seconds`."""
    text = re.sub(r"learning[\s_-]*rate", "lr", text.lower())
    words = [word for word in re.findall(r"[a-z]+", text) if word != "vs"]
    return "-".join({"iterations": "iters", "iteration": "iters", "iter": "iters",
                     "second": "seconds", "secs": "seconds"}.get(w, w) for w in words)


CHARTS = tuple(Chart(number, table, quantity, x_axis) for number, ((table, quantity), x_axis) in
               enumerate(itertools.product(
                   (("Test", "accuracy"), ("Test", "loss"), ("Train", "learning rate"),
                    ("Train", "loss")), ("Iters", "Seconds"))))
OVERVIEW = (CHARTS[6], CHARTS[0], CHARTS[2], CHARTS[4])


def chart_named(text):
    """The Chart a --chart value names (a number 0-7 or words); PclError otherwise."""
    text = str(text).strip()
    if text.isdigit() and int(text) < len(CHARTS):
        return CHARTS[int(text)]
    for chart in CHARTS:
        if _words(text) == chart.name:
            return chart
    choices = ", ".join(f"{c.number} {c.name}" for c in CHARTS)
    raise PclError(f'unknown chart "{text}"; choose one of: {choices}')


def is_accuracy(name):
    name = name.lower()
    return "acc" in name or re.search(r"top[-_]?\d", name) is not None


def is_loss(name):
    return "loss" in name.lower() and not is_accuracy(name)


def chart_lines(chart, parser, pending=False):
    """[(output name, xs, ys)] that `chart` draws from one log's parser."""
    x = 0 if chart.x_axis == "Iters" else 1
    if chart.table == "Train":
        points = parser.learning_rate if chart.quantity == "learning rate" else parser.display_loss
        name = "lr" if chart.quantity == "learning rate" else "loss"
        return [(name, [p[x] for p in points], [p[2] for p in points])] if points else []
    rows = parser.table("Test", pending=pending)
    wanted = is_accuracy if chart.quantity == "accuracy" else is_loss
    names = [name for name in dict.fromkeys(k for row in rows for k in row)
             if name not in ("NumIters", "Seconds", "LearningRate") and wanted(name)]
    key = "NumIters" if x == 0 else "Seconds"
    return [(name, [row[key] for row in rows if name in row], [row[name] for row in rows if name in row])
            for name in names]


def log_label(path):
    """A log's name in a legend: its file name without a ".log" ending (Caffe's label)."""
    name = os.path.basename(os.fspath(path))
    return name[:-4] if name.endswith(".log") else name


def _figure_format(path):
    """The picture format `path`'s ending names; PclError when matplotlib cannot write it."""
    _figure_class()
    from matplotlib.backend_bases import FigureCanvasBase  # noqa: PLC0415 - matplotlib is optional

    extension = os.path.splitext(os.fspath(path))[1][1:].lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if extension not in supported:
        raise PclError(f"{path}: cannot tell the picture format from the name; end it in .png, "
                       f".svg or .pdf (or one of {', '.join(sorted(supported))})")
    return extension


def _figure_class():
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib is optional
    except ImportError:
        raise PclError("drawing charts needs matplotlib, which is not installed; install it with "
                       "pip install matplotlib") from None
    return Figure


def draw(path, logs, charts=None, pending=False):
    """Draw `charts` (default: the overview) for `logs`, [(label, LogParser)], into the picture
    `path`. A chart asked for by name must have lines; overview charts without lines are left
    out. Returns the number of charts drawn (0: nothing written)."""
    overview = charts is None
    charts = OVERVIEW if overview else tuple(charts)
    fmt = _figure_format(path)
    panels = []
    for chart in charts:
        lines = [(label, name, xs, ys) for label, parser in logs
                 for name, xs, ys in chart_lines(chart, parser, pending)]
        if lines:
            panels.append((chart, lines))
        elif not overview:
            raise PclError(f"{', '.join(parser.source for _, parser in logs)}: nothing to draw "
                           f'for the chart "{chart.title}"; {_missing(chart)}')
    if not panels:
        return 0
    figure = _layout(_figure_class(), panels, several_logs=len(logs) > 1)
    with atomic_output(path, "chart") as temp:
        figure.savefig(temp, format=fmt)
    return len(panels)


def _missing(chart):
    if chart.table == "Test":
        return (f"it needs test output lines whose names mean {chart.quantity} "
                f'("Test net output #k: {"accuracy" if chart.quantity == "accuracy" else "loss"} = ...")')
    if chart.quantity == "loss":
        return 'it needs "Iteration N (...), loss = X" lines (solver display > 0)'
    return 'it needs "Iteration N, lr = X" lines (solver display > 0)'


def _layout(figure_class, panels, several_logs):
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    figure = figure_class(figsize=(6.4 * columns, 4.2 * rows), dpi=100)
    for index, (chart, lines) in enumerate(panels, start=1):
        axes = figure.add_subplot(rows, columns, index)
        for label, name, xs, ys in lines:
            text = f"{label}: {name}" if several_logs else name
            # A learning rate holds until the next one is printed.
            style = "steps-post" if chart.quantity == "learning rate" else "default"
            axes.plot(xs, ys, label=text, linewidth=0.9, marker="." if len(xs) <= 50 else None,
                      drawstyle=style)
        axes.set_title(chart.title)
        axes.set_xlabel(chart.x_axis)
        axes.set_ylabel(f"{chart.table} {chart.quantity}")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right" if chart.quantity == "accuracy" else "upper right")
    # Fixed margins in inches (matplotlib's automatic layout costs as much as the drawing).
    width, height = figure.get_size_inches()
    figure.subplots_adjust(left=0.95 / width, right=1 - 0.25 / width, bottom=0.6 / height,
                           top=1 - 0.4 / height, wspace=0.3, hspace=0.45)
    return figure


def draw_logs(paths, out, charts=None):
    """`pcl plot`: draw the charts of the logs at `paths` into `out`."""
    logs = [(log_label(p), parse_file(p)) for p in paths]
    drawn = draw(out, logs, charts)
    if not drawn:
        raise PclError(f"{', '.join(paths)}: nothing to draw: no display, lr or test output "
                       f"lines after the Solving line")
    return drawn


class LivePlot(logging.Handler):
    """`pcl train --plot`: reads the run's log lines as they are logged (no re-reading of the
    log) and redraws the overview after each iteration that added a display or test line, as a
    solver callback (`refresh`). Drawing is held back so it takes at most `overhead` of the run's
    time; `finish` draws what is left. A failure to draw is logged once and ends the live view,
    not the training."""

    overhead = 0.1

    def __init__(self, path, label="train"):
        super().__init__(logging.INFO)
        _figure_format(path)  # a bad name or a missing matplotlib fails before training starts
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise PclError(f"{self.path}: the folder {folder} does not exist; create it or choose "
                           f"another place for the chart")
        self.label = label
        self.parser = LogParser(datetime.date.today().year)
        self.setFormatter(training_log.GlogFormatter())
        self.changed = False
        self.enabled = True
        self.last_end = -math.inf
        self.last_cost = 0.0

    def emit(self, record):
        try:
            for line in self.format(record).splitlines():
                self.changed |= self.parser.feed(line)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def refresh(self):
        """Redraw if something new was logged and drawing is not too frequent."""
        if self.changed and time.perf_counter() - self.last_end >= self.last_cost / self.overhead:
            self.redraw()

    def redraw(self):
        if not self.enabled:
            return
        started = time.perf_counter()
        try:
            with self.lock:  # no line from another thread changes the tables while they are read
                draw(self.path, [(self.label, self.parser)], pending=True)
        except PclError as error:
            log.warning("the live chart is off from here on: %s", error)
            self.enabled = False
        self.changed = False
        self.last_end = time.perf_counter()
        self.last_cost = self.last_end - started

    def finish(self):
        """Draw the last lines and stop listening."""
        logging.getLogger(training_log.LOGGER_NAME).removeHandler(self)
        if self.changed:
            self.redraw()
        self.close()
