"""`pcl export`: a net and its trained weights as an ONNX model.

    pcl export deploy.prototxt weights.caffemodel model.onnx --input-shape data:1,3,224,224

The net is built in the TEST phase with the weights loaded by layer name, then written by
pycaffelite.onnx_export (see there for what is exported and how). Needs the onnx package.
"""
import re

import click

from ..errors import PclError
from ..net import TEST, Net
from ..onnx_export import DEFAULT_OPSET, MIN_OPSET, export_onnx

_INPUT_SHAPE = re.compile(r"^([^:]+):([0-9]+(?:,[0-9]+)*)$")


def parse_input_shape(text):
    """"data:1,3,224,224" -> ("data", (1, 3, 224, 224))."""
    match = _INPUT_SHAPE.match(text.replace(" ", ""))
    if not match:
        raise PclError(f'--input-shape expects NAME:d0,d1,... such as data:1,3,224,224, found "{text}"')
    return match.group(1), tuple(int(d) for d in match.group(2).split(","))


def _shape_text(info):
    return "x".join(str(d.dim_value) for d in info.type.tensor_type.shape.dim) or "scalar"


@click.command("export")
@click.argument("net_file", metavar="NET")
@click.argument("weights", metavar="WEIGHTS")
@click.argument("out", metavar="OUT.onnx")
@click.option("--opset", type=int, default=None,
              help=f"ONNX opset to write: {MIN_OPSET} up to the installed onnx package's newest "
                   f"[default: {DEFAULT_OPSET}].")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:d0,d1,...",
              help="Export with this input blob shape instead of the net's (repeat for several "
                   "inputs), e.g. data:1,3,224,224 for batch 1.")
@click.option("--output", "outputs", multiple=True, metavar="BLOB",
              help="Also make this blob a graph output, e.g. fc7 for features (repeat for several).")
def command(net_file, weights, out, opset, input_shapes, outputs):
    """Export a net (TEST phase) and its weights (.caffemodel or .h5) to an ONNX model."""
    shapes = dict(parse_input_shape(text) for text in input_shapes)
    net = Net(net_file, TEST, weights=weights)
    model = export_onnx(net, out, opset=opset, input_shapes=shapes, outputs=outputs)
    inputs = ", ".join(f"{i.name} ({_shape_text(i)})" for i in model.graph.input)
    results = ", ".join(f"{o.name} ({_shape_text(o)})" for o in model.graph.output)
    click.echo(f"Wrote {out}: ONNX opset {model.opset_import[0].version}, "
               f"{len(model.graph.node)} nodes; inputs {inputs}; outputs {results}")
