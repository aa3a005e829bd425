"""MVN: mean-variance normalisation of each item (and channel)."""
from . import register
from .base import Layer


@register("MVN")
class MVNLayer(Layer):
    """Subtract the mean, and divide by the standard deviation, over each group of values.

    Groups: each (n, c) plane (default), or each item n with `across_channels: true`. Per group of
    `dim` values with mean mu and sigma = sqrt(mean((x - mu)^2)):

        top = x - mu                                     normalize_variance: false
        top = (x - mu) / (sigma + eps)                   otherwise (eps is added to sigma, not var)

    Backward, with y = top and dy its diff (means over the group):
        dbottom = dy - mean(dy)                                          normalize_variance: false
        dbottom = (dy - mean(dy) - mean(dy * y) * y) / (sigma + eps)     otherwise
    (the second is the exact gradient when eps = 0; like Caffe it reads the top data, so the top
    must not be changed by a later in-place layer).

    bottom: (N, C, H, W) or fewer axes (at most 4)      top: (N, C, H, W), missing axes as 1.
    """

    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.mvn_param
        self.normalize_variance = p.normalize_variance
        self.across_channels = p.across_channels
        self.eps = p.eps
        if self.eps < 0:
            raise self.error(f"mvn_param.eps must not be negative (it keeps sigma + eps above 0), "
                             f"found {self.eps:g}")
        self.sigma = self.make_blob(())

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes > 4:
            raise self.error(f"works on (N, C, H, W) blobs, but the bottom has {b.num_axes} axes "
                             f"{b.shape}; reshape it to at most 4 axes first")
        top[0].reshape((b.num, b.channels, b.height, b.width))
        groups = b.num if self.across_channels else b.num * b.channels
        self.view = (groups, b.count // groups if groups else 0)
        self.sigma.reshape((groups, 1))

    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data().reshape(self.view)
        y = x - x.mean(axis=1, keepdims=True)
        if self.normalize_variance:
            sigma = self.sigma.write_data()
            xp.sqrt((y * y).mean(axis=1, keepdims=True), out=sigma)
            sigma += self.eps
            y /= sigma
        top[0].write_data()[...] = y.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].read_diff().reshape(self.view)
        dx = dy - dy.mean(axis=1, keepdims=True)
        if self.normalize_variance:
            y = top[0].read_data().reshape(self.view)
            dx -= (dy * y).mean(axis=1, keepdims=True) * y
            dx /= self.sigma.read_data()
        bottom[0].write_diff()[...] = dx.reshape(bottom[0].shape)
