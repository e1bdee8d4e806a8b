"""Anti-aliased pooling (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again").

BlurPool2D low-pass filters each channel with a fixed binomial filter, then
subsamples; MaxBlurPool2D is max pooling at stride 1 followed by BlurPool2D,
in one fused kernel (minicnn/_blurpool.pyx).  Filter and padding are those of
the reference implementation (adobe/antialiased-cnns): the filter is the
normalised outer product of the binomial row of ``filter_size`` taps, and the
map is reflection-padded by ``(f - 1) // 2`` rows/columns before and ``f // 2``
after, so that the result equals PyTorch's
``F.conv2d(F.pad(x, pads, mode="reflect"), filt, stride=stride, groups=C)``.
"""
from __future__ import annotations

import math

import numpy as np

from minicnn import _blurpool
from minicnn import threads
from minicnn.layers.base import MAX_GEOMETRY, Layer, check_array, check_grad, pair, require_forward

MAX_FILTER_SIZE = 7


def binomial_taps(filter_size: int) -> np.ndarray:
    """The normalised binomial row of ``filter_size`` taps: [1, 2, 1] / 4 for 3; the 2-D
    filter is its outer product with itself."""
    row = np.array([math.comb(filter_size - 1, i) for i in range(filter_size)], dtype=np.float64)
    return row / row.sum()


def _filter_size(value, layer: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer}: filter_size must be an int from 1 to {MAX_FILTER_SIZE}, got {value!r}")
    if not 1 <= value <= MAX_FILTER_SIZE:
        raise ValueError(f"{layer}: filter_size must be from 1 to {MAX_FILTER_SIZE}, got {value!r}")
    return int(value)


def _positive(value, name: str, layer: str) -> tuple[int, int]:
    size = pair(value, name, layer)
    if min(size) <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {name}={size}")
    return size


def _blurred_shape(c, h, w, filter_size, stride, layer, what="input"):
    """(C, ceil(H / sh), ceil(W / sw)); reflection needs more rows and columns than it pads."""
    pad = filter_size // 2
    if h <= pad or w <= pad:
        raise ValueError(f"{layer}: reflection padding of {pad} needs a map of at least {pad + 1}x{pad + 1}, "
                         f"got a {h}x{w} {what}")
    return c, -(-h // stride[0]), -(-w // stride[1])


def _spatial(input_shape, layer):
    if len(input_shape) != 3:
        raise ValueError(f"{layer}: expects a (C, H, W) feature map per example, got shape {tuple(input_shape)}")
    return tuple(int(v) for v in input_shape)


def _flat(a):
    """(N, C, ...) -> (N*C, ...) view."""
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


class BlurPool2D(Layer):
    """Binomial low-pass filter per channel with reflection padding, then subsampling.

    ``y[c] = (pad_reflect(x[c]) * (t t^T))[::sh, ::sw]`` (cross-correlation),
    with ``t`` the normalised binomial row of ``filter_size`` taps ([1, 2, 1] / 4
    for 3) and padding ``(f - 1) // 2`` before, ``f // 2`` after, on each axis.
    ``filter_size=1`` is plain subsampling ``x[:, :, ::sh, ::sw]`` (as in the
    reference implementation).  Backward is the filter's transpose: each dy
    spread over its window, the padded positions folded back onto the pixels
    they reflect.

    Args:
        filter_size: taps of the binomial row, 1 to 7.
        stride: subsampling step, an int or an (h, w) pair.

    Shape: (N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw)); H and W must
    exceed the padding ``filter_size // 2`` (reflection), else ValueError.

    Example:
        >>> import numpy as np
        >>> layer = BlurPool2D(filter_size=3, stride=2)
        >>> layer.forward(np.ones((1, 2, 5, 6))).shape
        (1, 2, 3, 3)
    """

    def __init__(self, filter_size=3, stride=2) -> None:
        super().__init__()
        self.filter_size = _filter_size(filter_size, "BlurPool2D")
        self.stride = _positive(stride, "stride", "BlurPool2D")
        self.taps = binomial_taps(self.filter_size)
        self._cache = None

    def _describe(self) -> str:
        return f"filter_size={self.filter_size}, stride={self.stride}"

    def output_shape(self, input_shape):
        c, h, w = _spatial(input_shape, "BlurPool2D")
        return _blurred_shape(c, h, w, self.filter_size, self.stride, "BlurPool2D")

    def macs(self, input_shape):
        c, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * self.filter_size ** 2

    def window(self, input_shape):
        return (self.filter_size, self.filter_size), self.stride

    def forward(self, x, training=True):
        x = check_array(x, "BlurPool2D", 4)
        n, c, h, w = x.shape
        out_shape = (n, *self.output_shape((c, h, w)))
        y = np.empty(out_shape, dtype=x.dtype)
        taps = self.taps.astype(x.dtype)
        threads.split_rows(_blurpool.blur_forward, (_flat(x), _flat(y)), taps, *self.stride)
        self._cache = (x.shape, out_shape, x.dtype) if training else None
        return y

    def backward(self, dy):
        in_shape, out_shape, dtype = require_forward(self._cache, "BlurPool2D")
        dy = check_grad(dy, "BlurPool2D", out_shape, dtype)
        dx = np.empty(in_shape, dtype=dtype)
        threads.split_rows(_blurpool.blur_backward, (_flat(dy), _flat(dx)), self.taps.astype(dtype), *self.stride)
        return dx


class MaxBlurPool2D(Layer):
    """Max pooling at stride 1, then BlurPool2D: Zhang's anti-aliased max pooling.

    ``m = max_pool(x, kernel_size, stride=1)`` (first maximum in row-major order
    on ties), then ``y = BlurPool2D(filter_size, stride)(m)``; fused, so the
    stride-1 max map exists one plane at a time in a scratch buffer, never for
    the batch.  Backward blurs dy back onto ``m``'s positions and routes each
    through the switch of its stride-1 max window (overlapping windows add up).

    Args:
        kernel_size: the max pooling window, an int or an (h, w) pair.
        filter_size: taps of the binomial row, 1 to 7.
        stride: subsampling step of the blur, an int or an (h, w) pair.

    Shape: (N, C, H, W) -> (N, C, ceil(M_h / sh), ceil(M_w / sw)) with
    M_h = H - kh + 1, M_w = W - kw + 1, which must exceed ``filter_size // 2``.

    Example:
        >>> import numpy as np
        >>> layer = MaxBlurPool2D(kernel_size=2, filter_size=3, stride=2)
        >>> layer.forward(np.ones((1, 2, 28, 28))).shape
        (1, 2, 14, 14)
    """

    def __init__(self, kernel_size=2, filter_size=3, stride=2) -> None:
        super().__init__()
        self.kernel_size = _positive(kernel_size, "kernel_size", "MaxBlurPool2D")
        if self.kernel_size[0] * self.kernel_size[1] > MAX_GEOMETRY:
            raise ValueError(f"MaxBlurPool2D: kernel_size={self.kernel_size} has more than {MAX_GEOMETRY} elements")
        self.filter_size = _filter_size(filter_size, "MaxBlurPool2D")
        self.stride = _positive(stride, "stride", "MaxBlurPool2D")
        self.taps = binomial_taps(self.filter_size)
        self._cache = None

    def _describe(self) -> str:
        return f"kernel_size={self.kernel_size}, filter_size={self.filter_size}, stride={self.stride}"

    def _max_shape(self, input_shape):
        c, h, w = _spatial(input_shape, "MaxBlurPool2D")
        kh, kw = self.kernel_size
        if kh > h or kw > w:
            raise ValueError(f"MaxBlurPool2D: kernel_size={self.kernel_size} does not fit the {h}x{w} input")
        return c, h - kh + 1, w - kw + 1

    def output_shape(self, input_shape):
        return _blurred_shape(*self._max_shape(input_shape), self.filter_size, self.stride, "MaxBlurPool2D",
                              what=f"max-pooled map (kernel_size={self.kernel_size})")

    def macs(self, input_shape):
        c, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * self.filter_size ** 2

    def window(self, input_shape):
        (kh, kw), f = self.kernel_size, self.filter_size
        return (kh + f - 1, kw + f - 1), self.stride

    def forward(self, x, training=True):
        x = check_array(x, "MaxBlurPool2D", 4)
        n, c, h, w = x.shape
        _, mh, mw = self._max_shape((c, h, w))
        out_shape = (n, *self.output_shape((c, h, w)))
        y = np.empty(out_shape, dtype=x.dtype)
        index_dtype = np.uint8 if self.kernel_size[0] * self.kernel_size[1] <= 256 else np.int32
        argmax = np.empty((n * c, mh, mw), dtype=index_dtype)
        threads.split_rows(_blurpool.maxblur_forward, (_flat(x), _flat(y), argmax), self.taps.astype(x.dtype),
                           *self.kernel_size, *self.stride)
        self._cache = (argmax, x.shape, out_shape, x.dtype) if training else None
        return y

    def backward(self, dy):
        argmax, in_shape, out_shape, dtype = require_forward(self._cache, "MaxBlurPool2D")
        dy = check_grad(dy, "MaxBlurPool2D", out_shape, dtype)
        dx = np.empty(in_shape, dtype=dtype)
        threads.split_rows(_blurpool.maxblur_backward, (_flat(dy), argmax, _flat(dx)), self.taps.astype(dtype),
                           *self.kernel_size, *self.stride)
        return dx
