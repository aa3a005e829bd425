"""Drawing a NetParameter as a graph (pycaffe's `caffe.draw`).

Layers are boxes (coloured by type, in-place neuron layers green), blobs are grey octagons, and
edges run bottom blob -> layer -> top blob; a top edge is labelled with the layer's output size
(batch size of a Data layer, num_output of a Convolution, Deconvolution or InnerProduct).
The graph is built with pydot. DOT text (`dot`, `gv`, `raw`) needs nothing else; images (png,
svg, pdf, ...) are rendered by Graphviz's `dot` program, called directly so that its complaints
reach the user as one message.
"""
import os
import shutil
import subprocess

import pydot

from .errors import PclError
from .io.atomic import write_bytes_atomically
from .io.upgrade import upgrade_net_param
from .proto import caffe_pb2

LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": "#6495ED", "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": "#90EE90", "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}

_LAYER_COLORS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
                 "InnerProduct": "#CC33FF"}
_LEARNING_LAYERS = ("Convolution", "Deconvolution", "InnerProduct")
RANKDIRS = ("LR", "RL", "TB", "BT")

# Formats written as DOT source, without Graphviz; and the output formats Graphviz documents.
TEXT_FORMATS = ("dot", "gv", "raw")
GRAPHVIZ_FORMATS = frozenset("""bmp canon cmap cmapx cmapx_np dot_json eps exr fig gd gd2 gif
    icns ico imap imap_np ismap jp2 jpe jpeg jpg json json0 mp pct pdf pic pict plain plain-ext
    png pov ps ps2 psd sgi svg svgz tga tif tiff tk vdx vml vmlz vrml wbmp webp xdot xdot1.2
    xdot1.4 xdot_json""".split())

GRAPHVIZ_MISSING = ("drawing images needs Graphviz's `dot` program, which is not on the PATH; "
                    "install Graphviz (apt install graphviz, brew install graphviz or conda "
                    "install graphviz), or write a .dot file, which needs no Graphviz")


def _quoted(text):
    """A DOT quoted string (pydot would split an unquoted "a:b" into a node and a port)."""
    return '"' + text.replace('"', '\\"') + '"'


def _record_text(text):
    """Text safe inside a record-shaped node, where | { } < > separate fields."""
    for char in "|{}<>":
        text = text.replace(char, "\\" + char)
    return text


def get_layer_lr_mult(layer):
    """(weights, bias) learning rate multipliers of a Convolution, Deconvolution or InnerProduct
    layer (1.0 where no param spec says otherwise)."""
    if layer.type not in _LEARNING_LAYERS:
        raise ValueError(f"{layer.type} layers have no learning rate multipliers")
    if len(layer.param) > 2:
        raise ValueError(f'layer "{layer.name}" has {len(layer.param)} param specs; '
                         f"expected at most 2 (weights, bias)")
    mults = [spec.lr_mult for spec in layer.param] + [1.0, 1.0]
    return mults[0], mults[1]


def get_edge_label(layer):
    """The label of the edges to the layer's tops: its output size where one is set."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return '""'


def _spatial_description(layer):
    """(kernel size, stride, pad) of a Convolution, Deconvolution or Pooling layer (first axis)."""
    if layer.type == "Pooling":
        p = layer.pooling_param
        return p.kernel_size, p.stride, p.pad
    p = layer.convolution_param
    return ((p.kernel_size[0] if p.kernel_size else 1), (p.stride[0] if p.stride else 1),
            (p.pad[0] if p.pad else 0))


def get_layer_label(layer, rankdir, display_lrm=False):
    """The quoted label of a layer's node: name, (type), kernel/stride/pad of spatial layers and,
    with `display_lrm`, the learning rate multipliers of learning layers. Lines are separated by
    spaces in a vertical layout (TB, BT) and by line breaks in a horizontal one."""
    separator = " " if rankdir in ("TB", "BT") else r"\n"
    if layer.type == "Pooling":
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(layer.pooling_param.pool)
        parts = [layer.name, f"(Pooling {method})"]
    else:
        parts = [layer.name, f"({layer.type})"]
    if layer.type in ("Convolution", "Deconvolution", "Pooling"):
        kernel, stride, pad = _spatial_description(layer)
        parts += [f"kernel size: {kernel}", f"stride: {stride}", f"pad: {pad}"]
    if display_lrm and layer.type in _LEARNING_LAYERS:
        weights, bias = get_layer_lr_mult(layer)
        if weights or bias:
            parts.append(f"lr mult: {weights:.1f}, {bias:.1f}")
    return _quoted(_record_text(separator.join(parts)))


def choose_color_by_layertype(layertype):
    """The fill colour of a layer's node."""
    return _LAYER_COLORS.get(layertype, LAYER_STYLE_DEFAULT["fillcolor"])


def _phase_value(phase):
    """None (every layer) from None or "ALL"; else the Phase number."""
    if phase is None or (isinstance(phase, str) and phase.upper() == "ALL"):
        return None
    if isinstance(phase, str):
        if phase.upper() in caffe_pb2.Phase.keys():
            return caffe_pb2.Phase.Value(phase.upper())
    elif phase in caffe_pb2.Phase.values():
        return int(phase)
    raise PclError(f"unknown phase {phase!r}; draw TRAIN, TEST or ALL (None)")


def _in_phase(layer, phase):
    """Whether the layer's include/exclude rules admit `phase` (None: every layer). Only the
    rules' phase counts: layers of every stage and level are drawn."""
    if phase is None:
        return True
    if layer.include and layer.exclude:
        raise PclError(f'layer "{layer.name}" has both include and exclude rules; give only '
                       f"one kind")
    if layer.include:
        return any(not rule.HasField("phase") or rule.phase == phase for rule in layer.include)
    return not any(rule.HasField("phase") and rule.phase == phase for rule in layer.exclude)


def _rankdir(rankdir):
    if str(rankdir).upper() not in RANKDIRS:
        raise PclError(f"unknown rankdir {rankdir!r}; use one of {', '.join(RANKDIRS)}")
    return str(rankdir).upper()


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    """A pydot graph of the NetParameter's layers (those admitted by `phase`, every layer when
    None). Layers with the same name and type, as a net's TRAIN and TEST data layers often are,
    share one node; so does each blob. V0/V1 nets are upgraded first."""
    rankdir = _rankdir(rankdir)
    phase = _phase_value(phase)
    if len(caffe_net.layers):
        caffe_net = upgrade_net_param(caffe_net, caffe_net.name or "<net>")
    graph = pydot.Dot(caffe_net.name or "Net", graph_type="digraph", rankdir=rankdir)
    nodes, edges = {}, []

    def blob_node(blob):
        node_id = _quoted(f"{blob}_blob")
        nodes.setdefault(node_id, pydot.Node(node_id, label=_quoted(blob), **BLOB_STYLE))
        return node_id

    for layer in caffe_net.layer:
        if not _in_phase(layer, phase):
            continue
        layer_id = _quoted(f"{layer.name}_{layer.type}")
        in_place = len(layer.bottom) == len(layer.top) == 1 and layer.bottom[0] == layer.top[0]
        style = dict(NEURON_LAYER_STYLE if in_place else LAYER_STYLE_DEFAULT)
        if not in_place:
            style["fillcolor"] = choose_color_by_layertype(layer.type)
        label = get_layer_label(layer, rankdir, display_lrm)
        nodes[layer_id] = pydot.Node(layer_id, label=label, **style)
        edges += [pydot.Edge(blob_node(bottom), layer_id) for bottom in layer.bottom]
        top_label = {"label": get_edge_label(layer)} if label_edges else {}
        edges += [pydot.Edge(layer_id, blob_node(top), **top_label) for top in layer.top]
    for node in nodes.values():
        graph.add_node(node)
    for edge in edges:
        graph.add_edge(edge)
    return graph


def _check_format(ext, target):
    """The format named by extension `ext`, once known to be writable here."""
    fmt = ext.lower()
    if fmt in TEXT_FORMATS:
        return fmt
    if fmt not in GRAPHVIZ_FORMATS:
        raise PclError(f'{target}: unknown drawing format "{ext}"; use png, svg or pdf (drawn '
                       f"by Graphviz) or dot (DOT text)")
    if shutil.which("dot") is None:
        raise PclError(f"{target}: {GRAPHVIZ_MISSING}")
    return fmt


def output_format(filename):
    """The format of a drawing named `filename` (its extension), checked to be writable here."""
    filename = os.fspath(filename)
    ext = os.path.splitext(filename)[1][1:]
    if not ext:
        raise PclError(f"{filename}: no extension to tell the format; name it .png, .svg, .pdf "
                       f"or .dot")
    return _check_format(ext, filename)


def render(graph, ext, target="the drawing"):
    """The graph in format `ext` (a file extension without the dot) as bytes; `target` names the
    output in error messages."""
    fmt = _check_format(ext, target)
    if fmt in TEXT_FORMATS:
        return graph.to_string().encode("utf-8")
    source = graph.to_string().encode("utf-8")
    result = subprocess.run([shutil.which("dot"), f"-T{fmt}"], input=source, capture_output=True,
                            check=False)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[0] if lines else f"exit status {result.returncode}"
        raise PclError(f"{target}: Graphviz could not draw {fmt} ({reason}); try svg or dot")
    return result.stdout


def draw_net(caffe_net, rankdir, ext="png", phase=None, display_lrm=False):
    """The drawing of `caffe_net` (a NetParameter) in format `ext`, as bytes."""
    return render(get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm), ext)


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None, display_lrm=False):
    """Draw `caffe_net` into `filename`, in the format its extension names (.dot, .gv and .raw
    are DOT text)."""
    fmt = output_format(filename)
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    write_bytes_atomically(filename, render(graph, fmt, target=os.fspath(filename)),
                           what="drawing")
