"""`pcl upgrade_solver_proto_text`: a solver prototxt naming its type with the deprecated enum
(`solver_type: ADAM`) rewritten with the type string (`type: "Adam"`), byte for byte as Caffe's
tools/upgrade_solver_proto_text writes it (see pycaffelite.upgrade_tools). As in Caffe, nothing
else changes: inline nets stay as they are."""
import click

from .. import upgrade_tools


@click.command("upgrade_solver_proto_text")
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("destination", metavar="OUT", type=click.Path(dir_okay=False))
def command(source, destination):
    """Upgrade the solver IN (text prototxt) to the current format and write it to OUT."""
    upgrade_tools.run(upgrade_tools.SOLVER_TEXT, source, destination)
