"""The run state: what a solver state holds beyond Caffe's iteration, weights and history, so that
a resumed run repeats the uninterrupted one bit for bit (see RunState in proto/caffe.proto).

    capture(solver)                         the RunState to snapshot
    restore(solver, run_state, state_file)  put it back (None: a Caffe solver state)

It holds the global generator (`device.rng()`: fillers, Dropout, stochastic pooling, HDF5Data's
shuffles), the smoothed-loss window, and the state of every layer of the train and test nets that
carries one across batches. Such a layer defines `get_run_state()` (a LayerRunState, or None when
it has nothing to keep) and `set_run_state(state)` (a PclError, changing nothing, when the saved
state does not fit it). A saved layer state that does not fit (the data or the net changed) is
skipped with a warning: that layer starts from its beginning, as it would after Caffe's resume.
"""
import logging

from .. import device
from .. import random_state
from ..errors import PclError
from ..proto import caffe_pb2

log = logging.getLogger("pycaffelite")


def _nets(solver):
    return [solver.net, *solver.test_nets]


def capture(solver):
    """The run state of `solver` now (between iterations)."""
    run = caffe_pb2.RunState()
    random_state.to_proto(device.rng().bit_generator.state, run.random)
    for net_index, net in enumerate(_nets(solver)):
        for name, layer in zip(net.layer_names, net.layers):
            get = getattr(layer, "get_run_state", None)
            state = get() if get is not None else None
            if state is not None:
                state.net, state.layer, state.type = net_index, name, layer.type
                run.layer.append(state)
    losses, smoothed = solver.loss_window()
    run.loss.extend(losses)
    run.smoothed_loss = smoothed
    return run


def restore(solver, run, state_file):
    """Continue `solver` from the run state `run` read from `state_file`; None (a solver state
    written by Caffe or without a run state) leaves the data and generators where they are, with a
    notice."""
    if run is None:
        log.warning("%s holds no data positions or random states (Caffe writes none): the data "
                    "layers start from their first records, as in Caffe", state_file)
        return
    generator = random_state.from_proto(run.random)
    nets = _nets(solver)
    for state in run.layer:
        net = nets[state.net] if 0 <= state.net < len(nets) else None
        layer = net.layer_dict.get(state.layer) if net is not None else None
        what = f'layer "{state.layer}" ({state.type}) of the {_net_name(state.net)}'
        if layer is None or layer.type != state.type or not hasattr(layer, "set_run_state"):
            log.warning("%s: %s is saved, but the net has no such layer now; its state is not "
                        "restored", state_file, what)
            continue
        try:
            layer.set_run_state(state)
        except PclError as exc:
            log.warning("%s: %s: %s; it starts from its beginning", state_file, what, exc)
    device.rng().bit_generator.state = generator
    solver.resume_loss_window(list(run.loss), run.smoothed_loss)


def _net_name(index):
    return "train net" if index == 0 else f"test net #{index - 1}"
