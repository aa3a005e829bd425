"""Pooling's two CPU paths, the compiled loops and the array-module passes, on the same input."""
import numpy as np
import pytest

from pycaffelite.layers.pooling import Pooler
from test_pooling import run


@pytest.mark.parametrize("params", [
    "pool: MAX kernel_size: 3 stride: 2",
    "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 1",
    "pool: AVE kernel_size: 3 stride: 2 pad: 1",
    "pool: AVE kernel_h: 2 kernel_w: 4 stride_h: 3 stride_w: 2",
])
def test_compiled_and_array_module_paths_agree(monkeypatch, params):
    """float32, overlapping and padded windows, ceil-mode windows past the image, repeated
    values (ties): outputs, masks and MAX gradients of the two paths are identical; AVE
    gradients sum the shares in another order (the compiled path in Caffe's)."""
    x = np.random.default_rng(3).integers(-3, 4, size=(2, 3, 9, 11)).astype(np.float32)
    num_top = 2 if "MAX" in params else 1
    results = []
    for compiled in (True, False):
        monkeypatch.setattr(Pooler, "compiled", compiled)
        layer, bottom, tops = run(params, x, num_top=num_top, dtype=np.float32)
        tops[0].diff[...] = np.random.default_rng(4).normal(size=tops[0].shape)
        layer.backward(tops, [True], [bottom])
        results.append([t.data.copy() for t in tops] + [bottom.diff.copy()])
    *outputs, diff = zip(*results)
    for compiled_array, module_array in outputs:
        np.testing.assert_array_equal(compiled_array, module_array)
    np.testing.assert_allclose(*diff, rtol=1e-6, atol=1e-7)
