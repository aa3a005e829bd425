"""`pcl summary NET`: a table of the net's layers: output shapes, params, multiply-adds forward
and backward, activation memory, receptive field, and totals (see pycaffelite.summary).

    pcl summary models/caffenet/deploy.prototxt
    pcl summary models/lenet/lenet_train_test.prototxt --phase TEST --json
    pcl summary train_val.prototxt --input-shape data=32,3,227,227 --batch 1

Data layers whose files are not here are summarised as Input layers of the shapes their
parameters (or a deploy.prototxt beside the net, or --input-shape) give; notes say so.
"""
import json

import click

from .. import summary as net_summary


def _stages(values):
    return [stage for value in values for stage in value.split(",") if stage]


@click.command("summary")
@click.argument("net", type=click.Path(dir_okay=False))
@click.option("--phase", type=click.Choice(["TRAIN", "TEST"], case_sensitive=False), default="TRAIN",
              show_default=True, help="Net phase: which layers' include/exclude rules apply.")
@click.option("--stage", multiple=True, help="Net stages, comma-separated (or repeat the option).")
@click.option("--level", type=int, default=0, show_default=True, help="Net level.")
@click.option("--weights", help="Trained weights to load (.caffemodel or .h5, comma-separated): "
                                "checks that they fit and says which layers they cover.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="BLOB=N,C,H,W",
              help="The shape of an input or data-layer top (repeat for several).")
@click.option("--batch", type=click.IntRange(min=1),
              help="Give every input (and data layer) this size along axis 0.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def command(net, phase, stage, level, weights, input_shapes, batch, as_json):
    """Summarise a net: shapes, params, multiply-adds, memory, receptive field."""
    shapes = net_summary.parse_input_shapes(input_shapes)
    built, notes = net_summary.build_net(net, phase, level, _stages(stage), shapes, batch)
    if weights:
        notes.append(net_summary.load_weights(built, weights))
    result = net_summary.summarize(built, notes)
    if as_json:
        report = {"model": net, "phase": phase.upper(), "stages": _stages(stage), "level": level}
        report.update(result.as_dict())
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(net_summary.table(result))
