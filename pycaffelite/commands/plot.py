"""`pcl plot LOG [LOG...] OUT.png [--chart C]...`: training curves as a picture (Caffe's
tools/extra/plot_training_log.py).

    pcl plot train.log curves.png                      the overview: train loss, test accuracy,
                                                       test loss and learning rate vs. iterations
    pcl plot train.log acc.png --chart 0               Caffe's chart 0: test accuracy vs. iters
    pcl plot a.log b.log loss.png --chart train-loss-seconds

Charts are named by Caffe's numbers 0-7 or by their words (see pycaffelite.plot); several
--chart options draw several charts side by side. The picture format follows OUT's name.
Needs matplotlib.
"""
import click

from .. import plot
from ..errors import PclError

_CHART_HELP = "; ".join(f"{c.number} {c.name}" for c in plot.CHARTS)


@click.command("plot")
@click.argument("paths", nargs=-1, metavar="LOG... OUT")
@click.option("--chart", "charts", multiple=True,
              help=f"A chart by number or name (repeat for several): {_CHART_HELP}. "
                   f"Default: an overview of the four charts against iterations.")
def command(paths, charts):
    """Draw training curves from Caffe or pcl training logs into a picture."""
    if len(paths) < 2:
        raise PclError("pcl plot needs at least one log and the picture to write: "
                       "pcl plot train.log curves.png")
    *logs, out = paths
    chosen = [plot.chart_named(text) for text in charts] or None
    drawn = plot.draw_logs(logs, out, chosen)
    click.echo(f"Wrote {out} ({drawn} chart{'s' if drawn > 1 else ''})")
