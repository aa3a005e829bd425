"""Helpers for the tests that hold pycaffelite's solvers against BVLC Caffe's recorded runs
(tests/data/caffe_ref/solvers, see its README.md)."""
import json
import os
import shutil

import numpy as np

REF_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "data", "caffe_ref", "solvers")
CASES = sorted(name for name in os.listdir(REF_DIR) if os.path.isdir(os.path.join(REF_DIR, name)))
FRESH_CASES = [case for case in CASES if case != "resume"]


def copy_case(case, destination):
    """Copy a case folder (inputs and Caffe's outputs) to `destination`; return its path."""
    target = os.path.join(os.fspath(destination), case)
    shutil.copytree(os.path.join(REF_DIR, case), target)
    for root, _, files in os.walk(target):
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return target


def meta(case):
    with open(os.path.join(REF_DIR, case, "meta.json"), encoding="utf-8") as handle:
        return json.load(handle)


def load(case, what):
    """trajectory.npz or steps.npz of a case, as a dict of arrays."""
    with np.load(os.path.join(REF_DIR, case, f"{what}.npz")) as data:
        return {key: data[key] for key in data.files}


def learnable_names(case):
    """'<layer>/<i>' of each learnable param, in Caffe's learnable-param (and history) order."""
    return [p["name"] for p in meta(case)["learnable_params"]]


def param_blob(net, name):
    layer, index = name.rsplit("/", 1)
    return net.params[layer][int(index)]


def set_params(net, arrays, prefix, names):
    for name in names:
        param_blob(net, name).data[...] = arrays[f"{prefix}/{name}"]


def max_rel_deviation(actual, expected):
    """max |a - e| / max(max |e|, 1e-30): deviation relative to the array's scale."""
    return float(np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), 1e-30))
