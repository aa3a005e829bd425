"""Helpers for the ONNX export tests: build a net, give it random weights and statistics, export
it, and run pcl and onnxruntime on the same random inputs.

Every blob of the net is compared (its last version, exported as an extra graph output), not
only the net's outputs. Agreement means max |onnx - pcl| <= 1e-4 * max |pcl| over each blob, with
NaN and infinities in the same places.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the optional onnx package "
                                          "(pip install '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="checking ONNX exports needs onnxruntime "
                                                "(pip install '.[onnx]')")

import pycaffelite as pcl  # noqa: E402
from pycaffelite.filler import fill  # noqa: E402
from pycaffelite.io import protoio  # noqa: E402
from pycaffelite.onnx_export import export_onnx  # noqa: E402
from pycaffelite.proto import caffe_pb2  # noqa: E402

RELATIVE_TOLERANCE = 1e-4


def net_from_text(text, phase=pcl.TEST):
    return pcl.Net(protoio.parse_text_proto(text, caffe_pb2.NetParameter(), "<test net>"), phase,
                   source="<test net>")


def randomize_statistics(net, rng):
    """BatchNorm blobs: random means, positive variances, a positive scale factor b2."""
    for layer in net.layers:
        if layer.type == "BatchNorm":
            factor = rng.uniform(0.5, 2.0)
            mean, var, scale = (blob.mutable_cpu_data() for blob in layer.blobs)
            mean[...] = rng.normal(0, 0.5, mean.shape) * factor
            var[...] = rng.uniform(0.5, 2.0, var.shape) * factor
            scale[...] = factor


def fill_from(net, filler_source):
    """Fill `net`'s params with the fillers that the net file `filler_source` gives the layers
    of the same names (a deploy net has none of its own)."""
    sources = {layer.name: layer for layer in protoio.read_net_param(filler_source).layer}
    for name, layer in zip(net.layer_names, net.layers):
        source = sources.get(name)
        if source is None or not layer.blobs:
            continue
        if layer.type in ("Convolution", "Deconvolution"):
            fillers = [source.convolution_param.weight_filler, source.convolution_param.bias_filler]
        elif layer.type == "InnerProduct":
            fillers = [source.inner_product_param.weight_filler, source.inner_product_param.bias_filler]
        elif layer.type == "Scale":
            fillers = [source.scale_param.filler if source.scale_param.HasField("filler")
                       else caffe_pb2.FillerParameter(type="constant", value=1),
                       source.scale_param.bias_filler]
        else:
            continue
        for blob, filler in zip(layer.blobs, fillers):
            fill(blob, filler)


def export_and_run(net, path, feeds=None, seed=0, opset=None, input_shapes=None):
    """Export `net`, run both; returns {blob name: (pcl array, onnxruntime array)}."""
    rng = np.random.default_rng(seed)
    # Every blob as an output too (its last version), to compare more than the net's outputs.
    model = export_onnx(net, path, opset=opset, input_shapes=input_shapes,
                        outputs=[name for name in net.blob_names if name not in net.inputs])
    if input_shapes:
        for name, shape in input_shapes.items():
            net.blobs[name].reshape(shape)
        net.reshape()
    feeds = dict(feeds or {})
    for name in net.inputs:
        if name not in feeds:
            feeds[name] = rng.normal(0, 1, net.blobs[name].shape).astype(np.float32)
    # Graph outputs name their blob in the doc string (their value may be named otherwise);
    # the state inputs of recurrent layers start at zero, as a fresh net's carried state.
    blob_of = {info.name: info.doc_string.split('"')[1] for info in model.graph.output
               if info.doc_string.startswith('blob "')}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = [name for name in blob_of]
    inputs = {info.name: feeds[info.name] if info.name in feeds
              else np.zeros(info.shape, np.float32) for info in session.get_inputs()}
    results = session.run(wanted, inputs)
    net.forward(**{name: feeds[name] for name in net.inputs})
    return {blob_of[name]: (net.blobs[blob_of[name]].data.copy(), result)
            for name, result in zip(wanted, results)}


def relative_error(reference, result):
    """max |result - reference| / max |reference| over the finite values, after checking that
    NaN and infinities sit in the same places."""
    assert reference.shape == result.shape
    np.testing.assert_array_equal(np.isnan(reference), np.isnan(result))
    np.testing.assert_array_equal(np.where(np.isinf(reference), reference, 0),
                                  np.where(np.isinf(result), result, 0))
    finite = np.isfinite(reference)
    if not finite.any():
        return 0.0
    scale = np.abs(reference[finite]).max()
    difference = np.abs(result[finite] - reference[finite]).max()
    return float(difference / scale) if scale else float(difference)


def assert_matches(pairs, expected_blobs=()):
    """Every compared blob within the tolerance; `expected_blobs` must be among them. Returns
    the largest relative error."""
    missing = set(expected_blobs) - set(pairs)
    assert not missing, f"not in the exported graph: {sorted(missing)}"
    worst = 0.0
    for name, (reference, result) in pairs.items():
        error = relative_error(reference, result)
        assert error <= RELATIVE_TOLERANCE, f"{name}: relative error {error:.3g}"
        worst = max(worst, error)
    return worst
