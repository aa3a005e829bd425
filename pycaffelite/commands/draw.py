"""`pcl draw`: a picture of a net (Caffe's python/draw_net.py).

The net is read and upgraded as `pcl train` reads it, so legacy V0/V1 nets draw too. The output's
extension picks the format: .dot/.gv/.raw are DOT text and need nothing more; images (.png, .svg,
.pdf, ...) need Graphviz's `dot` program.
"""
import click

from .. import draw
from ..io import protoio
from . import log_line


@click.command("draw")
@click.argument("net", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--rankdir", type=click.Choice(draw.RANKDIRS, case_sensitive=False), default="LR",
              show_default=True, help="Layout direction: LR/RL horizontal, TB/BT vertical.")
@click.option("--phase", type=click.Choice(["TRAIN", "TEST", "ALL"], case_sensitive=False),
              default="ALL", show_default=True,
              help="Draw the layers of this phase only (ALL: every layer).")
@click.option("--display_lrm", "--display-lrm", is_flag=True,
              help="Show the learning rate multipliers of Convolution, Deconvolution and "
                   "InnerProduct layers.")
def command(net, output, rankdir, phase, display_lrm):
    """Draw the net NET (prototxt) into OUTPUT (.png, .svg, .pdf or .dot)."""
    draw.output_format(output)
    net_param = protoio.read_net_param(net)
    log_line(f"Drawing net to {output}")
    draw.draw_net_to_file(net_param, output, rankdir.upper(), phase, display_lrm)
