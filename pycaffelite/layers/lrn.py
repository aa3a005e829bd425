"""LRN: local response normalisation, across channels or within each channel (Caffe's LRN)."""
from ..proto import caffe_pb2
from . import register
from .base import Layer, Workspace
from .pooling import AVE, Pooler

ACROSS_CHANNELS = caffe_pb2.LRNParameter.ACROSS_CHANNELS
WITHIN_CHANNEL = caffe_pb2.LRNParameter.WITHIN_CHANNEL


@register("LRN")
class LRNLayer(Layer):
    """Local response normalisation with n = local_size (odd), r = (n - 1) / 2.

    ACROSS_CHANNELS:
        s_c = k + alpha / n * sum_{c' = c-r .. c+r} x_{c'}^2      (channels outside 0..C-1 add 0)
        y_c = x_c * s_c^-beta
        dx_c = dy_c * s_c^-beta - 2 alpha beta / n * x_c * sum_{c' = c-r .. c+r} dy_{c'} y_{c'} / s_{c'}
    WITHIN_CHANNEL (k is not used; Caffe builds it from AVE pooling with pad r, whose window is
    always n x n cells of the zero-padded image, so the divisor is always n^2):
        a = AVE-pool_{n x n, pad r, stride 1}(x^2),   b = 1 + alpha * a,   y = x * b^-beta
        dx = dy * b^-beta + 2 x * AVE-pool-backward(-alpha beta * dy * x * b^-beta / b)

    bottom: (N, C, H, W)      top: the same shape (not in place: backward needs both)
    """

    exact_num_bottom = 1
    exact_num_top = 1
    allows_in_place = False

    def setup(self, bottom, top):
        p = self.param.lrn_param
        self.size = p.local_size
        if self.size % 2 != 1:
            raise self.error(f"local_size must be odd, found {self.size}; use e.g. {self.size + 1}")
        self.pre_pad = (self.size - 1) // 2
        self.alpha, self.beta, self.k = p.alpha, p.beta, p.k
        self.region = p.norm_region
        self.work = Workspace()
        self.pooler = None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != 4:
            raise self.error(f"needs a 4-axis (num, channels, height, width) bottom, found shape {shape}")
        top[0].reshape(shape)
        xp = self.xp
        if self.region == WITHIN_CHANNEL:
            if self.pooler is None or (self.pooler.height, self.pooler.width) != shape[2:]:
                self.pooler = Pooler(AVE, shape[2:], (self.size,) * 2, (1, 1), (self.pre_pad,) * 2,
                                     True, self.dtype)
            self.pooler.allocate(xp, shape[:2])
            names = ("square", "base", "powed", "temp")
        else:
            self._channel_padded(xp, shape)
            names = ("scale", "powed", "temp")
        for name in names:
            self._buffer(xp, name, shape)

    def _buffer(self, xp, name, shape):
        return self.work.get(xp, name, shape, self.dtype)

    def _channel_padded(self, xp, shape):
        """(N, C + n - 1, H, W) buffer, zero outside the r..r+C-1 channel band."""
        n, c, h, w = shape
        return self.work.get(xp, "channel_padded", (n, c + self.size - 1, h, w), self.dtype, fill=0)

    def _window_sum(self, padded, out):
        """out[:, c] = sum of padded[:, c .. c + n - 1] (the local_size channels around c)."""
        channels = out.shape[1]
        out[...] = padded[:, 0:channels]
        for offset in range(1, self.size):
            out += padded[:, offset:offset + channels]

    # -- forward -------------------------------------------------------------------------------
    def forward(self, bottom, top):
        xp = self.xp
        x = bottom[0].read_data()
        y = top[0].write_data()
        powed = self._buffer(xp, "powed", x.shape)
        if self.region == WITHIN_CHANNEL:
            square = self._buffer(xp, "square", x.shape)
            base = self._buffer(xp, "base", x.shape)
            xp.multiply(x, x, out=square)
            self.pooler.forward(xp, square, base)
            base *= self.alpha
            base += 1
            xp.power(base, -self.beta, out=powed)
        else:
            padded = self._channel_padded(xp, x.shape)
            scale = self._buffer(xp, "scale", x.shape)
            xp.multiply(x, x, out=padded[:, self.pre_pad:self.pre_pad + x.shape[1]])
            self._window_sum(padded, scale)
            scale *= self.alpha / self.size
            scale += self.k
            xp.power(scale, -self.beta, out=powed)
        xp.multiply(x, powed, out=y)

    # -- backward ------------------------------------------------------------------------------
    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        xp = self.xp
        x = bottom[0].read_data()
        dy = top[0].read_diff()
        dx = bottom[0].write_diff()
        powed = self._buffer(xp, "powed", x.shape)
        temp = self._buffer(xp, "temp", x.shape)
        if self.region == WITHIN_CHANNEL:
            # temp = d loss / d(pooled mean of x^2); its pool-backward lands in `square`.
            square = self._buffer(xp, "square", x.shape)
            xp.multiply(dy, x, out=temp)
            temp *= powed
            temp /= self._buffer(xp, "base", x.shape)
            temp *= -self.alpha * self.beta
            self.pooler.backward(xp, temp, square)
            square *= x
            square *= 2
            xp.multiply(dy, powed, out=dx)
            dx += square
        else:
            padded = self._channel_padded(xp, x.shape)
            ratio = padded[:, self.pre_pad:self.pre_pad + x.shape[1]]
            xp.multiply(dy, top[0].read_data(), out=ratio)
            ratio /= self._buffer(xp, "scale", x.shape)
            self._window_sum(padded, temp)
            temp *= x
            temp *= 2 * self.alpha * self.beta / self.size
            xp.multiply(dy, powed, out=dx)
            dx -= temp
