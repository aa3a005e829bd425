"""Training curves from Caffe and pcl logs, as Caffe's tools/extra/parse_log.py reads them.

`LogParser` takes a log line by line (a whole file, or the live lines of a run) and builds:

- the train and test tables of parse_log.py: a row per iteration with output lines, columns
  NumIters, Seconds, LearningRate, then each output name in the order of its first appearance;
  NumIters is the last "Iteration N" seen, Seconds the time since the first line containing
  "Solving", LearningRate the last "lr = X" seen (so a train row carries the rate printed at the
  previous display; the first row takes the second row's rate). The first row joins its table
  when an output line of another iteration arrives, later rows as soon as they have as many
  columns as the first: so an unfinished last row is left out, and so is the only row of a
  table that never gets a second;
- two series parse_log.py does not keep, for the charts of Caffe's plot_training_log.py: the
  displayed (smoothed) training loss of "Iteration N (...), loss = X" lines and the learning rate
  of "Iteration N, lr = X" lines, each with its iteration and seconds.

Times come from the glog prefix (`I0210 13:39:22.381027 ...`); the year, which the prefix lacks,
is the year the log file was created (its ctime), moved on when the month goes back, as
extract_seconds.py does. The prefix glog 0.7 writes by default, with the year
(`I20260210 13:39:22.381027`), is read too (parse_log.py fails on it). Lines without a readable
prefix are skipped after the first iteration, as parse_log.py skips them (where parse_log.py
crashes on an empty line or an output value such as "-nan", such lines are skipped as well).

`write_csv` writes a table as parse_log.py's csv.DictWriter does: Excel dialect (CRLF line ends),
the first row's columns, floats as Python prints them.
"""
import csv
import datetime
import io
import math
import os
import re

from .errors import PclError
from .io.atomic import atomic_output

_ITERATION = re.compile(r"Iteration (\d+)")
_NUMBER = r"([.\deE+-]+)"
_OUTPUT = {kind: re.compile(rf"{kind} net output #(\d+): (\S+) = {_NUMBER}") for kind in ("Train", "Test")}
_LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")
_DISPLAY_LOSS = re.compile(rf"Iteration (\d+)\b.*, loss = {_NUMBER}")
_RATE_LINE = re.compile(r"Iteration (\d+), lr = ")


def line_time(line, year):
    """The time in a glog prefix (`I0210 13:39:22.381027` or `I20260210 13:39:22.381027`), read
    as extract_seconds.py reads it; ValueError (or IndexError) when the line has no such prefix."""
    fields = line.split()
    date, clock = fields[0], fields[1]
    if len(date) == 9:  # glog 0.7's prefix carries the year
        year, date = int(date[1:5]), date[4:]
    dot = clock.rfind(".")
    hour, minute, second = (int(part) for part in clock[:dot].split(":"))
    return datetime.datetime(year, int(date[1:3]), int(date[3:]), hour, minute, second,
                             int(clock[dot + 1:]))


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


class LogParser:
    """Reads log lines one at a time (`feed`); `train_rows()` / `test_rows()` are parse_log.py's
    tables so far; `display_loss` and `learning_rate` are lists of (iteration, seconds, value).
    `source` names the log in messages."""

    def __init__(self, year, source="the log"):
        self.year = year
        self.source = source
        self.start = None
        self.last_time = None
        self.iteration = -1.0
        self.rate = math.nan
        self._tables = {"Train": [], "Test": []}
        self._open_rows = {"Train": None, "Test": None}
        self.display_loss = []
        self.learning_rate = []

    def feed(self, line):
        """Take one line (trailing newline or not). Returns True when it added to a table or a
        series."""
        line = line.strip()
        if self.start is None:
            if "Solving" in line:
                self.start = line_time(line, self.year)
                self.last_time = self.start
            return False
        match = _ITERATION.search(line)
        if match:
            self.iteration = float(match.group(1))
        if self.iteration == -1:
            return False
        seconds = self._seconds(line)
        if seconds is None:
            return False
        match = _LEARNING_RATE.search(line)
        if match:
            self.rate = float(match.group(1))
        added = self._series(line, seconds)
        for kind in self._tables:
            added |= self._table_line(kind, line, seconds)
        return added

    def _seconds(self, line):
        try:
            stamp = line_time(line, self.year)
        except (ValueError, IndexError):
            return None
        if stamp.month < self.last_time.month:  # the log went on into a new year
            self.year += 1
            stamp = line_time(line, self.year)
        self.last_time = stamp
        return (stamp - self.start).total_seconds()

    def _series(self, line, seconds):
        match = _DISPLAY_LOSS.search(line)
        if match and _number(match.group(2)) is not None:
            self.display_loss.append((int(match.group(1)), seconds, _number(match.group(2))))
            return True
        match = _RATE_LINE.search(line)
        if match:
            self.learning_rate.append((int(match.group(1)), seconds, self.rate))
            return True
        return False

    def _table_line(self, kind, line, seconds):
        table, row = self._tables[kind], self._open_rows[kind]
        match = _OUTPUT[kind].search(line)
        value = _number(match.group(3)) if match else None
        if value is not None:
            if row is None or row["NumIters"] != self.iteration:
                if row is not None:
                    table.append(row)
                row = {"NumIters": self.iteration, "Seconds": seconds, "LearningRate": self.rate}
            row[match.group(2)] = value
        if row is not None and table and len(row) == len(table[0]):
            table.append(row)
            row = None
        self._open_rows[kind] = row
        return value is not None

    def table(self, kind, pending=False):
        """parse_log.py's "Train" or "Test" table so far; with `pending`, also the row still being
        filled (the latest outputs, for a live chart)."""
        rows = self._tables[kind]
        if pending and self._open_rows[kind] is not None:
            rows = rows + [self._open_rows[kind]]
        return _with_first_rate_fixed(rows)

    def train_rows(self):
        return self.table("Train")

    def test_rows(self):
        return self.table("Test")


def _with_first_rate_fixed(rows):
    """The rows, the first one taking the second one's LearningRate (the rate is printed only
    after the first display and test), as parse_log.py does."""
    rows = [dict(row) for row in rows]
    if len(rows) > 1:
        rows[0]["LearningRate"] = rows[1]["LearningRate"]
    return rows


def parse_file(path):
    """A LogParser fed with the whole log at `path`."""
    path = os.fspath(path)
    try:
        year = datetime.datetime.fromtimestamp(os.path.getctime(path)).year
        with open(path, encoding="utf-8", errors="replace") as handle:
            parser = LogParser(year, path)
            for line in handle:
                parser.feed(line)
    except OSError as error:
        raise PclError(f"{path}: cannot read the log ({error.strerror or error}); check the "
                       f"path") from None
    except (ValueError, IndexError):
        raise PclError(f"{path}: the line containing \"Solving\" has no glog prefix with a time "
                       f"(such as I0210 13:39:22.381027); parse a log written by Caffe or pcl "
                       f"train") from None
    if parser.start is None:
        raise PclError(f'{path}: no line containing "Solving" (where training starts and seconds '
                       f"are counted from); is this a log of caffe train or pcl train?")
    return parser


def csv_text(rows, delimiter=",", where="the table"):
    """A table as parse_log.py writes it (csv.DictWriter, Excel dialect, the first row's columns)."""
    columns = list(rows[0])
    for row in rows:
        extra = [name for name in row if name not in columns]
        if extra:
            raise PclError(f"{where}: the output {extra[0]!r} at iteration {int(row['NumIters'])} "
                           f"is not among the first row's columns ({', '.join(columns)}); a table "
                           f"has one set of columns, so split the log where its outputs change")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, dialect="excel", delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path, rows, delimiter=","):
    """Write `rows` to `path` (atomically) as parse_log.py does."""
    text = csv_text(rows, delimiter, where=path)
    with atomic_output(path, "CSV file") as temp:
        with open(temp, "x", encoding="utf-8", newline="") as handle:
            handle.write(text)


def save_tables(log_path, out_dir, parser, delimiter=","):
    """Write `<out_dir>/<log name>.train` and `.test`; a table with no rows is not written.
    Returns [(path, row count or 0 when not written)]."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    name = os.path.basename(os.fspath(log_path))
    for suffix, rows in (("train", parser.train_rows()), ("test", parser.test_rows())):
        path = os.path.join(out_dir, f"{name}.{suffix}")
        if rows:
            write_csv(path, rows, delimiter)
        written.append((path, len(rows)))
    return written
