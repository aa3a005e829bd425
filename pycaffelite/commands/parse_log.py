"""`pcl parse_log LOG OUTDIR`: training and test curves as CSV files (Caffe's
tools/extra/parse_log.py).

    pcl parse_log train.log out/ [--delimiter ,]

Writes `out/train.log.train` and `out/train.log.test` with Caffe's columns (NumIters, Seconds,
LearningRate, then each output) and values, from a log of `pcl train` or `caffe train` (see
pycaffelite.log_parse for how the lines are read). OUTDIR is made if missing; a table without
rows is not written, and a line says so.
"""
import click

from .. import log_parse
from ..errors import PclError


@click.command("parse_log")
@click.argument("log", type=click.Path(dir_okay=False))
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--delimiter", default=",", show_default=True, help="Column delimiter of the CSV files.")
def command(log, outdir, delimiter):
    """Parse a Caffe or pcl training log into LOG.train and LOG.test CSV files in OUTDIR."""
    if len(delimiter) != 1:
        raise PclError(f'--delimiter must be one character, found "{delimiter}"')
    parser = log_parse.parse_file(log)
    for path, rows in log_parse.save_tables(log, outdir, parser, delimiter):
        if rows:
            click.echo(f"Wrote {path} ({rows} rows)")
        else:
            click.echo(f"Not writing {path}: the log has no complete rows of those outputs")
