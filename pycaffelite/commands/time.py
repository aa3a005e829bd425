"""`pcl time`: per-layer forward/backward timing of a net (Caffe's `caffe time`).

Prints Caffe's log lines ("Average time per layer:", "<layer>\tforward: X ms.", "Average Forward
pass: X ms.", ...) followed by a table, or, with --json, one JSON object and nothing else.
Like `caffe time`, the net is run without feeding it: Input blobs keep whatever they hold (zeros),
and a net with data layers needs its data. To time a net whose data is not at hand, time its
deploy variant (Input layers instead of data layers).
"""
import json
import os

import click

from .. import device, net_build, timing
from ..errors import PclError
from ..io import protoio
from ..net import Net
from ..proto import caffe_pb2

# The data layer types, with the parameter naming the file or folder each reads its data from.
# Only these read it: a stray image_data_param on an Input layer (VGG16's public deploy file has
# one) is ignored, as Caffe ignores it.
_DATA_SOURCE_FIELDS = {"Data": "data_param", "ImageData": "image_data_param",
                       "HDF5Data": "hdf5_data_param", "WindowData": "window_data_param"}
_DATA_LAYER_TYPES = set(_DATA_SOURCE_FIELDS) | {"MemoryData"}


def _stages(values):
    """Caffe's -stage takes a comma-separated list; --stage may also be repeated."""
    return [stage for value in values for stage in value.split(",") if stage]


def _gpu_ids(text):
    if text == "all":
        return [0]
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise PclError(f'--gpu expects device ids such as 0 or 0,1 (or "all"), found "{text}"') from None
    if any(i < 0 for i in ids):
        raise PclError(f"--gpu expects non-negative device ids, found {text}")
    return ids


def _input_variants(model):
    """Other nets in the model's folder that take Input layers instead of data layers."""
    folder = os.path.dirname(os.path.abspath(model))
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.endswith(".prototxt") or os.path.samefile(path, model):
            continue
        try:
            types = {layer.type for layer in protoio.read_net_param(path).layer}
        except PclError:
            continue  # a solver or an unreadable file
        if "Input" in types and not types & _DATA_LAYER_TYPES:
            found.append(os.path.join(os.path.dirname(model), name))
    return found


def _available(path):
    """Whether a data path exists or will be made on first read from its `<path>.recipe`."""
    return os.path.exists(path) or os.path.isfile(f"{os.path.normpath(path)}.recipe")


def check_data_sources(model, state):
    """A PclError naming the first data source (or mean file) of the net that does not exist."""
    net_param = net_build.filter_by_state(protoio.read_net_param(model), state, model)
    for layer in net_param.layer:
        if layer.type not in _DATA_LAYER_TYPES:
            continue
        paths = []
        field = _DATA_SOURCE_FIELDS.get(layer.type)
        if field and getattr(layer, field).source:
            paths.append(("source", getattr(layer, field).source))
        if layer.transform_param.mean_file:
            paths.append(("mean_file", layer.transform_param.mean_file))
        for what, path in paths:
            if not _available(path):
                variants = _input_variants(model)
                example = f" ({', '.join(variants)})" if variants else ""
                raise PclError(
                    f'{model}: layer "{layer.name}" ({layer.type}) reads its data from {what} '
                    f'"{path}", which does not exist (paths are relative to the folder pcl runs '
                    f"in); create that data first, or time a variant of the net whose Input layers "
                    f"need no data{example}")


@click.command("time")
@click.option("--model", help="The net to time (prototxt).")
@click.option("--iterations", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed forward-backward iterations (after one untimed warm-up pass).")
@click.option("--phase", type=click.Choice(["TRAIN", "TEST"], case_sensitive=False), default="TRAIN",
              show_default=True, help="Net phase: which layers' include/exclude rules apply.")
@click.option("--stage", multiple=True, help="Net stages, comma-separated (or repeat the option).")
@click.option("--level", type=int, default=0, show_default=True, help="Net level.")
@click.option("--gpu", default=None, help="Time on this GPU (the first one if several are given).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the log and table.")
def command(model, iterations, phase, stage, level, gpu, as_json):
    """Benchmark the execution time of a net, layer by layer."""
    if not model:
        raise PclError("need a model definition to time: pass --model net.prototxt")
    log = (lambda message: None) if as_json else click.echo
    phase = phase.upper()
    stages = _stages(stage)
    state = caffe_pb2.NetState(phase=caffe_pb2.Phase.Value(phase), level=level, stage=stages)
    check_data_sources(model, state)

    previous_mode = device.mode()
    try:
        if gpu is not None:
            ids = _gpu_ids(gpu)
            for unused in reversed(ids[1:]):
                log(f"Not using GPU #{unused} for single-GPU function")
            log(f"Use GPU with device ID {ids[0]}")
            device.set_device(ids[0])
            device.set_mode_gpu()
        else:
            log("Use CPU.")
        net = Net(model, phase, level=level, stages=stages)
        result = timing.time_net(net, iterations, log=log)
    finally:
        if previous_mode == device.CPU:
            device.set_mode_cpu()

    if as_json:
        report = {"model": model, "net": net.name, "phase": phase, "stages": stages, "level": level,
                  "mode": "GPU" if gpu is not None else "CPU"}
        report.update(result.as_dict())
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("")
        click.echo(timing.table(result))
