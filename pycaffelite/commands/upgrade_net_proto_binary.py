"""`pcl upgrade_net_proto_binary`: a legacy binary net (an old V0/V1 .caffemodel with its
weights) rewritten in the current format, byte for byte as Caffe's
tools/upgrade_net_proto_binary writes it (see pycaffelite.upgrade_tools)."""
import click

from .. import upgrade_tools


@click.command("upgrade_net_proto_binary")
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("destination", metavar="OUT", type=click.Path(dir_okay=False))
def command(source, destination):
    """Upgrade the binary net IN (.caffemodel) to the current format and write it to OUT."""
    upgrade_tools.run(upgrade_tools.NET_BINARY, source, destination)
