"""2-D convolution as im2col (Cython) plus one BLAS matrix product per batch."""
from __future__ import annotations

import numpy as np

from minicnn import _im2col
from minicnn.layers.base import Layer, check_array, check_grad, pair, require_forward
from minicnn.layers.init import he_normal


class Conv2D(Layer):
    """Cross-correlation with learned filters, zero padding.

    Params: W (out_channels, in_channels, kh, kw), b (out_channels,).
    Shape: (N, in_channels, H, W) -> (N, out_channels, H_out, W_out),
    H_out = floor((H + 2 * ph - kh) / sh) + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 *, dtype=np.float64, rng=None) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Conv2D: {name} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = pair(stride, "stride", "Conv2D")
        self.padding = pair(padding, "padding", "Conv2D")
        if min(self.kernel_size) <= 0:
            raise ValueError(f"Conv2D: kernel_size must be positive, got {self.kernel_size}")
        if min(self.stride) <= 0:
            raise ValueError(f"Conv2D: stride must be positive, got {self.stride}")
        if min(self.padding) < 0:
            raise ValueError(f"Conv2D: padding must be non-negative, got {self.padding}")
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.params = {
            "W": he_normal((self.out_channels, self.in_channels, kh, kw), fan_in, dtype, rng),
            "b": np.zeros(self.out_channels, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None

    def _describe(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D: expects a (C, H, W) feature map per example, got shape {tuple(input_shape)}")
        c, h, w = input_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2D: expects {self.in_channels} input channels, got {c}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h == 0 or w == 0 or kh > h + 2 * ph or kw > w + 2 * pw:
            raise ValueError(
                f"Conv2D: kernel_size={self.kernel_size} with padding={self.padding} "
                f"does not fit the {h}x{w} input")
        return self.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    def macs(self, input_shape):
        _, oh, ow = self.output_shape(input_shape)
        return self.out_channels * oh * ow * self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def window(self, input_shape):
        return self.kernel_size, self.stride

    def forward(self, x, training=True):
        x = check_array(x, "Conv2D", 4)
        n = x.shape[0]
        o, oh, ow = self.output_shape(x.shape[1:])
        kh, kw = self.kernel_size
        cols = np.empty((self.in_channels * kh * kw, n * oh * ow), dtype=x.dtype)
        _im2col.im2col(x, cols, kh, kw, *self.stride, *self.padding)
        w2 = self.params["W"].reshape(o, -1).astype(x.dtype, copy=False)
        y = w2 @ cols                                        # (O, N*OH*OW)
        y += self.params["b"].astype(x.dtype, copy=False)[:, None]
        self._cache = (cols, x.shape) if training else None
        return np.ascontiguousarray(y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3))

    def backward(self, dy):
        cols, in_shape = require_forward(self._cache, "Conv2D")
        n = in_shape[0]
        o, oh, ow = self.output_shape(in_shape[1:])
        dy = check_grad(dy, "Conv2D", (n, o, oh, ow), cols.dtype)
        dy2 = dy.transpose(1, 0, 2, 3).reshape(o, -1)        # (O, N*OH*OW)
        W = self.params["W"]
        self.grads["W"][...] = (dy2 @ cols.T).reshape(W.shape)
        self.grads["b"][...] = dy2.sum(axis=1)
        dcols = W.reshape(o, -1).astype(dy.dtype, copy=False).T @ dy2
        dx = np.empty(in_shape, dtype=dy.dtype)
        _im2col.col2im(dcols, dx, *self.kernel_size, *self.stride, *self.padding)
        return dx
