"""`pcl upgrade_net_proto_text`: a legacy net prototxt (V0 or V1 layers, net-level inputs, old
data-transform fields or BatchNorm params) rewritten in the current format, byte for byte as
Caffe's tools/upgrade_net_proto_text writes it (see pycaffelite.upgrade_tools)."""
import click

from .. import upgrade_tools


@click.command("upgrade_net_proto_text")
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("destination", metavar="OUT", type=click.Path(dir_okay=False))
def command(source, destination):
    """Upgrade the net IN (text prototxt) to the current format and write it to OUT."""
    upgrade_tools.run(upgrade_tools.NET_TEXT, source, destination)
