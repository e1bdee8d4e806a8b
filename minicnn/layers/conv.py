"""2-D convolution: Winograd F(2x2, 3x3) for 3x3 stride-1 filters over several
input channels (minicnn.layers.winograd), else im2col plus one matrix product
per chunk of images, as below.  Matrix products run on our own float32
kernel (minicnn/_gemm.h).

The batch is cut into chunks of images whose im2col columns and outputs fit
in cache; each chunk is im2col'ed, multiplied by the filters in one product,
and written straight into the NCHW output (bias and the fused ReLU added in
the same pass).  The whole layer runs in C (minicnn._im2col.conv_forward /
conv_backward), its chunks shared out over minicnn's team of threads when
MINICNN_KERNEL_THREADS > 1 (minicnn.threads).  Backward works chunk by chunk
too, from the cached input, instead of keeping the whole batch's columns (a
(C*kh*kw, N*OH*OW) matrix, 14 MB for the reference network's second
convolution at batch 64): recomputing in cache costs less than writing and
re-reading them through memory.  In float32 with AVX-512 (AVX2: minicnn.isa),
when kw * C is a multiple of 32 (16) and C of 8 (the stride-2 layers of configs/), backward builds no columns at
all: both gradients' products read and write each window's runs of a
channels-last copy of the chunk (minicnn/_channels_last.h).
"""
from __future__ import annotations

import numpy as np

from minicnn import _im2col
from minicnn.layers import winograd
from minicnn.layers.gemm import pack
from minicnn.layers.base import WeightedLayer, check_array, check_grad, count, pair, require_forward


class Conv2D(WeightedLayer):
    r"""2-D cross-correlation of the input with learned filters, after zero padding.

    .. math::
        y[n, o, i, j] = b[o] + \sum_{c, u, v} W[o, c, u, v] \, x_p[n, c, s_h i + u, s_w j + v]

    where :math:`x_p` is the input padded with ``padding`` zeros on each side.

    Args:
        in_channels: channels of the input; None (or left out, with the other
            arguments given by name) to infer them from the input shape when a
            Sequential builds the layer.
        out_channels: filters, the channels of the output.
        kernel_size: filter height and width, an int or an (h, w) pair.
        stride: step between windows, an int or an (h, w) pair. Default: 1.
        padding: zeros added on each side, an int or an (h, w) pair. Default: 0.
        dtype: float32 (default) or float64, the weights' type.
        rng: a numpy Generator for the weights. Default: the Sequential's seed
            (a layer used alone draws from seed 0).

    Weights (``params``):
        W: (out_channels, in_channels, kh, kw), He-normal; b: (out_channels,), zeros.

    Shape:
        - Input: :math:`(N, C_{in}, H_{in}, W_{in})`
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})`, where
          :math:`H_{out} = \lfloor (H_{in} + 2 p_h - k_h) / s_h \rfloor + 1`, and the same for W.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> conv = mc.Conv2D(1, 8, 3, padding=1)
        >>> conv(np.zeros((2, 1, 28, 28), np.float32)).shape
        (2, 8, 28, 28)
        >>> mc.Conv2D(out_channels=8, kernel_size=3).in_channels is None   # inferred when built
        True
    """

    def __init__(self, in_channels=None, out_channels=None, kernel_size=None, stride=1, padding=0,
                 *, dtype=np.float32, rng=None) -> None:
        if out_channels is None or kernel_size is None:
            raise TypeError("Conv2D: out_channels and kernel_size are required, e.g. Conv2D(1, 32, 3) "
                            "or Conv2D(out_channels=32, kernel_size=3)")
        self.out_channels = count(out_channels, "out_channels", "Conv2D")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = pair(stride, "stride", "Conv2D")
        self.padding = pair(padding, "padding", "Conv2D")
        if min(self.kernel_size) <= 0:
            raise ValueError(f"Conv2D: kernel_size must be positive, got {self.kernel_size}")
        if min(self.stride) <= 0:
            raise ValueError(f"Conv2D: stride must be positive, got {self.stride}")
        if min(self.padding) < 0:
            raise ValueError(f"Conv2D: padding must be non-negative, got {self.padding}")
        self._cache = None
        self._relu_out = None    # the output, when forward applied ReLU (see forward)
        self._buffers = {}
        super().__init__(None if in_channels is None else count(in_channels, "in_channels", "Conv2D"), dtype, rng)

    SIZE = "in_channels"

    @property
    def in_channels(self):
        return self._in_size

    @in_channels.setter
    def in_channels(self, value):
        self._in_size = value

    def _shapes(self):
        return {"W": (self.out_channels, self.in_channels, *self.kernel_size), "b": (self.out_channels,)}

    def _fan_in(self):
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def _infer(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D: expects a (C, H, W) feature map per example, got shape {tuple(input_shape)}")
        return count(int(input_shape[0]), "in_channels", "Conv2D")

    def _describe(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D: expects a (C, H, W) feature map per example, got shape {tuple(input_shape)}")
        c, h, w = input_shape
        if self.in_channels is None:
            raise ValueError("Conv2D: in_channels is not known yet: give it, or build the layer in a Sequential")
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

    def _plan(self, n, k, p, itemsize):
        """Split a batch of n images into chunks whose columns and output fit in cache.

        A chunk of b images has a (k, b * p) column matrix and (O, b * p)
        outputs; b is chosen so that they hold at most CHUNK_BYTES, enough for
        the product to run at full speed.
        Returns (largest chunk, chunk bounds as an index array, parts to run).
        """
        return winograd.plan(n, (k + self.out_channels) * p * itemsize, CHUNK_BYTES)

    def _workspace(self, name, size, dtype):
        """A flat scratch buffer of at least ``size`` elements, kept between calls.

        Only scratch is reused; every array handed to a caller is fresh, so
        results stay valid across later calls.
        """
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(size, dtype=dtype)
        return buf

    def _winograd(self) -> bool:
        """Whether this layer runs Winograd F(2x2, 3x3): 3x3 filters, stride 1,
        and enough input channels for the products to dominate the transforms."""
        return (self.kernel_size == (3, 3) and self.stride == (1, 1)
                and self.in_channels >= WINOGRAD_MIN_CHANNELS)

    def forward(self, x, training=True, *, relu=False):
        """x (N, C, H, W) -> y (N, O, OH, OW).

        ``relu=True`` returns max(y, 0) instead, bit for bit what a ReLU layer
        after this one would give, and backward then takes the gradient of
        that: Sequential fuses each Conv2D followed by ReLU this way, so the
        rectifier runs on each chunk of the output while it is in cache
        instead of in a separate pass over the whole batch.
        """
        x = check_array(x, "Conv2D", 4)
        n = x.shape[0]
        o, oh, ow = self.output_shape(x.shape[1:])
        # backward rebuilds what it needs from x (cheaper than storing it all)
        self._cache = x if training else None
        if self._winograd():
            y = winograd.forward(x, self.params["W"], self.params["b"], self.padding, self._workspace, relu)
            self._relu_out = y if relu and training else None
            return y
        kh, kw = self.kernel_size
        k, p = self.in_channels * kh * kw, oh * ow
        w2 = np.ascontiguousarray(self.params["W"].reshape(o, -1), dtype=x.dtype)
        bias = np.ascontiguousarray(self.params["b"], dtype=x.dtype)
        y = np.empty((n, o, oh, ow), dtype=x.dtype)
        b, bounds, parts = self._plan(n, k, p, x.itemsize)
        per_image = p >= PER_IMAGE_MIN_OUTPUTS
        cols = self._workspace("cols", parts * k * b * p, x.dtype)
        rows = None if per_image else self._workspace("rows", parts * o * b * p, x.dtype)
        _im2col.conv_forward(x, w2, pack(w2), bias, y, cols, rows, bounds, parts,
                             kh, kw, *self.stride, *self.padding, relu)
        self._relu_out = y if relu and training else None
        return y

    def backward(self, dy, input_grad=True):
        """dy (N, O, OH, OW) -> dx (N, C, H, W), or None with input_grad=False."""
        x = require_forward(self._cache, "Conv2D")
        n = x.shape[0]
        o, oh, ow = self.output_shape(x.shape[1:])
        kh, kw = self.kernel_size
        k, p = self.in_channels * kh * kw, oh * ow
        dy = check_grad(dy, "Conv2D", (n, o, oh, ow), x.dtype)
        relu_out = self._relu_out
        if self._winograd():
            dx, dw, db = winograd.backward(x, self.params["W"], dy, self.padding, self._workspace,
                                           input_grad, relu_out)
            self.grads["W"][...] = dw
            self.grads["b"][...] = db
            return dx
        w2 = np.ascontiguousarray(self.params["W"].reshape(o, -1), dtype=x.dtype)
        dx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
        b, bounds, parts = self._plan(n, k, p, x.itemsize)
        gwt = np.zeros((parts, k, o), dtype=x.dtype)
        gb = np.zeros((parts, o), dtype=np.float64)
        cols = self._workspace("cols", parts * 2 * k * b * p, x.dtype)
        rows = self._workspace("rows", parts * o * b * p, x.dtype)
        _im2col.conv_backward(x, w2, pack(w2.T) if input_grad else None, dy, relu_out, dx, gwt, gb,
                              cols, rows, bounds, parts, kh, kw, *self.stride, *self.padding)
        self.grads["W"][...] = gwt.sum(axis=0).T.reshape(self.grads["W"].shape)
        self.grads["b"][...] = gb.sum(axis=0)
        return dx


# Winograd pays from this many input channels on (below, im2col's single
# product with K = C * 9 is cheaper than 16 products with K = C).
WINOGRAD_MIN_CHANNELS = 8
# From this many output pixels per image, forward multiplies image by image
# straight into the output; below, the products' ragged edges (OH*OW is not a
# multiple of the kernel's 32 columns) cost more than one transposing pass.
PER_IMAGE_MIN_OUTPUTS = 256
# Bytes of im2col columns and outputs per chunk of images: small enough to
# stay in the core's cache between im2col, the product and col2im, big enough
# for the product.  Measured on the im2col layers of configs/ (forward +
# backward ms per batch of 64, 1 thread), against columns alone within 1 MB
# before: 32->32 stride 2 on 28x28 2.31+5.50 against 2.30+6.11; 32->64 stride
# 2 on 14x14 1.11+2.41 against 1.13+2.93; 1->32 on 28x28 (whose outputs are
# 3.5x its columns) 0.67+1.62 against 0.77+2.10.
CHUNK_BYTES = 1 << 19
