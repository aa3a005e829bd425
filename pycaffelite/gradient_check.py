"""Finite-difference gradient checking of a layer's backward pass (Caffe's GradientChecker).

For an objective E of the layer's tops, the analytic gradient from `backward` is compared with the
central difference (E(x + h) - E(x - h)) / 2h for every element x of every checked blob (bottoms
and, unless one bottom is singled out, the param blobs). A pair passes when
|analytic - numeric| <= threshold * max(|analytic|, |numeric|, 1). Elements within `kink_range`
of `kink` (e.g. ReLU's 0) are skipped, since the derivative jumps there.

Objectives: with `top_id < 0`, E = 1/2 * sum of squares over all tops (so dE/dtop = top); otherwise
E = 2 * top[top_id].flat[top_data_id] (one element at a time). The random seed is reset before
every forward so stochastic layers (Dropout) are repeatable.
"""
import numpy as np

from . import device


class GradientCheckError(AssertionError):
    pass


class GradientChecker:
    def __init__(self, stepsize=1e-2, threshold=1e-3, seed=1701, kink=0.0, kink_range=-1.0):
        self.stepsize = stepsize
        self.threshold = threshold
        self.seed = seed
        self.kink = kink
        self.kink_range = kink_range

    # -- objective ---------------------------------------------------------------------------
    @staticmethod
    def objective_and_top_diff(top, top_id, top_data_id):
        if top_id < 0:
            loss = 0.0
            for blob in top:
                data = blob.cpu_data()
                loss += float(np.sum(data.astype(np.float64) ** 2))
                blob.mutable_cpu_diff()[...] = data
            return loss / 2.0
        weight = 2.0
        for blob in top:
            blob.mutable_cpu_diff()[...] = 0
        target = top[top_id]
        target.mutable_cpu_diff().reshape(-1)[top_data_id] = weight
        return weight * float(target.cpu_data().reshape(-1)[top_data_id])

    def _forward_objective(self, layer, bottom, top, top_id, top_data_id):
        device.set_random_seed(self.seed)
        layer.forward_loss(bottom, top)
        return self.objective_and_top_diff(top, top_id, top_data_id)

    # -- checks ------------------------------------------------------------------------------
    def check_gradient_single(self, layer, bottom, top, check_bottom=-1, top_id=-1, top_data_id=-1,
                              element_wise=False):
        """Check one objective. The param blobs are always checked; `check_bottom` -1 adds every
        bottom, k >= 0 adds bottom k only, and below -1 no bottom."""
        if element_wise:
            assert not layer.blobs, "element-wise checks are for layers without params"
            assert top_id >= 0 and top_data_id >= 0
        checked = list(layer.blobs)
        if check_bottom == -1:
            checked += list(bottom)
        elif check_bottom >= 0:
            checked.append(bottom[check_bottom])
        propagate_down = [check_bottom in (-1, i) for i in range(len(bottom))]
        for blob in layer.blobs:
            blob.mutable_cpu_diff()[...] = 0
        self._forward_objective(layer, bottom, top, top_id, top_data_id)
        layer.backward(top, propagate_down, bottom)
        computed = [blob.cpu_diff().copy() for blob in checked]

        for blob_index, blob in enumerate(checked):
            data = blob.mutable_cpu_data().reshape(-1)
            analytic = computed[blob_index].reshape(-1)
            for feat in range(data.size):
                numeric = 0.0
                if not element_wise or feat == top_data_id:
                    original = data[feat]
                    data[feat] = original + self.stepsize
                    positive = self._forward_objective(layer, bottom, top, top_id, top_data_id)
                    data[feat] = original - self.stepsize
                    negative = self._forward_objective(layer, bottom, top, top_id, top_data_id)
                    data[feat] = original
                    numeric = (positive - negative) / self.stepsize / 2.0
                feature = abs(float(data[feat]))
                if self.kink - self.kink_range <= feature <= self.kink + self.kink_range:
                    continue
                scale = max(abs(float(analytic[feat])), abs(numeric), 1.0)
                if abs(float(analytic[feat]) - numeric) > self.threshold * scale:
                    raise GradientCheckError(
                        f"{layer.type} layer: gradient mismatch in checked blob {blob_index} "
                        f"element {feat} (top {top_id}, element {top_data_id}): analytic "
                        f"{float(analytic[feat]):.6g} vs numeric {numeric:.6g}")

    def check_gradient(self, layer, bottom, top, check_bottom=-1):
        """Check with the sum-of-squares objective over all tops (one pass)."""
        layer.initialize(bottom, top)
        self.check_gradient_single(layer, bottom, top, check_bottom, -1, -1)

    def check_gradient_exhaustive(self, layer, bottom, top, check_bottom=-1):
        """Check the gradient of every top element separately."""
        layer.initialize(bottom, top)
        for top_id, blob in enumerate(top):
            for top_data_id in range(blob.count):
                self.check_gradient_single(layer, bottom, top, check_bottom, top_id, top_data_id)

    def check_gradient_eltwise(self, layer, bottom, top):
        """For element-wise layers: top[i] depends only on bottom[i], so check only that pair."""
        layer.initialize(bottom, top)
        for top_id, blob in enumerate(top):
            for top_data_id in range(blob.count):
                self.check_gradient_single(layer, bottom, top, -1, top_id, top_data_id,
                                           element_wise=True)
