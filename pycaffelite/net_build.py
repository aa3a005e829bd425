"""Turning a NetParameter into the layer list a Net builds: state filtering and Split insertion.

Both are NetParameter -> NetParameter rewrites, done before any layer exists:

* `filter_by_state` keeps the layers whose include/exclude rules admit the NetState (phase,
  level, stages), as Caffe's FilterNet does.
* `insert_splits` gives every blob that is consumed more than once (a loss weight counts as a
  consumer) its own Split layer, right after the producer, so that each consumer writes its own
  diff and the Split sums them. Names follow Caffe: layer `<blob>_<producer>_<top>_split`, tops
  `<blob>_<producer>_<top>_split_<k>`.
"""
from .errors import PclError
from .proto import caffe_pb2


def state_meets_rule(state, rule):
    """Whether a NetState satisfies one NetStateRule (every condition the rule sets must hold)."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(stage not in stages for stage in rule.stage):
        return False
    return not any(stage in stages for stage in rule.not_stage)


def filter_by_state(net_param, state, source):
    """A copy of `net_param` keeping the layers whose rules admit `state`."""
    filtered = caffe_pb2.NetParameter()
    filtered.CopyFrom(net_param)
    del filtered.layer[:]
    for layer in net_param.layer:
        if len(layer.include) and len(layer.exclude):
            raise PclError(f'{source}: layer "{layer.name}" has both include and exclude rules; '
                           f"give only one kind")
        included = len(layer.include) == 0
        if any(state_meets_rule(state, rule) for rule in layer.exclude):
            included = False
        if any(state_meets_rule(state, rule) for rule in layer.include):
            included = True
        if included:
            filtered.layer.add().CopyFrom(layer)
    return filtered


def split_layer_name(producer, blob, top_index):
    return f"{blob}_{producer}_{top_index}_split"


def split_blob_name(producer, blob, top_index, k):
    return f"{blob}_{producer}_{top_index}_split_{k}"


def _count_consumers(net_param, source):
    """For every (layer, top) the number of consumers, and for every (layer, bottom) its producer."""
    last_producer = {}
    producer_of_bottom = {}
    consumers = {}
    for i, layer in enumerate(net_param.layer):
        for j, blob in enumerate(layer.bottom):
            if blob not in last_producer:
                raise PclError(f'{source}: layer "{layer.name}": bottom "{blob}" is not produced by '
                               f"any earlier layer; check the name, or add a layer (or Input) that "
                               f"produces it")
            producer = last_producer[blob]
            producer_of_bottom[(i, j)] = producer
            consumers[producer] = consumers.get(producer, 0) + 1
        for j, blob in enumerate(layer.top):
            last_producer[blob] = (i, j)
        for j in range(min(len(layer.loss_weight), len(layer.top))):
            producer = last_producer[layer.top[j]]
            if layer.loss_weight[j]:
                consumers[producer] = consumers.get(producer, 0) + 1
    return producer_of_bottom, consumers


def insert_splits(net_param, source):
    """A copy of `net_param` with Split layers for blobs that have more than one consumer."""
    producer_of_bottom, consumers = _count_consumers(net_param, source)
    next_split = {}
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    for i, original in enumerate(net_param.layer):
        layer = caffe_pb2.LayerParameter()
        layer.CopyFrom(original)
        for j, blob in enumerate(original.bottom):
            producer = producer_of_bottom[(i, j)]
            if consumers.get(producer, 0) > 1:
                k = next_split.get(producer, 0)
                next_split[producer] = k + 1
                layer.bottom[j] = split_blob_name(net_param.layer[producer[0]].name, blob, producer[1], k)
        splits = []
        for j, blob in enumerate(original.top):
            count = consumers.get((i, j), 0)
            if count <= 1:
                continue
            loss_weight = original.loss_weight[j] if j < len(original.loss_weight) else 0.0
            split = caffe_pb2.LayerParameter(name=split_layer_name(original.name, blob, j), type="Split")
            split.bottom.append(blob)
            for k in range(count):
                split.top.append(split_blob_name(original.name, blob, j, k))
                if loss_weight:
                    split.loss_weight.append(loss_weight if k == 0 else 0.0)
            if loss_weight:
                del layer.loss_weight[:]
                next_split[(i, j)] = next_split.get((i, j), 0) + 1
            splits.append(split)
        out.layer.append(layer)
        out.layer.extend(splits)
    return out
