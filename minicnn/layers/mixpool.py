"""Learned mixtures of max and average pooling (Lee, Gallagher and Tu 2016,
"Generalizing Pooling Functions in CNNs: Mixed, Gated, and Tree").

Both layers pool each window two ways, ``max`` (first maximum in row-major
order on ties) and ``avg`` (the window's mean; no padding), and mix them:
MixedPool2D with one learned proportion for the layer, GatedPool2D with a
proportion computed from each window by a learned gate ("responsive" mixing).
Kernels: minicnn/_mixpool.pyx.

Initial values: the mix starts at 1/2 in both (theta = 0, w = 0), the neutral
point between max and average pooling; nothing is drawn at random, so a
network's other layers get the same initial weights from a seed as with any
other pooling (the paired comparisons of a study rely on that).
"""
from __future__ import annotations

import math

import numpy as np

from minicnn import _mixpool
from minicnn import threads
from minicnn.layers.base import check_grad, require_forward
from minicnn.layers.pooling import _Pool2D, _flat


class _MixPool2D(_Pool2D):
    """Window geometry without padding, parameters in ``dtype``."""

    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__(kernel_size, stride, 0)

    def _describe(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def macs(self, input_shape):
        c, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * self.kernel_size[0] * self.kernel_size[1]

    def _switches(self, shape):
        index_dtype = np.uint8 if self.kernel_size[0] * self.kernel_size[1] <= 256 else np.int32
        return np.empty(shape, dtype=index_dtype)


class MixedPool2D(_MixPool2D):
    """``y = a * max(window) + (1 - a) * mean(window)``, one learned ``a`` per layer.

    ``a = sigmoid(theta)`` keeps the proportion in (0, 1), the range the paper
    gives it, without clipping; ``theta`` starts at 0 (``a = 1/2``).  Backward:
    ``dx`` gets ``a * dy`` at each window's max and ``(1 - a) * dy / (kh * kw)``
    on every element of the window (overlapping windows add up);
    ``d theta = a (1 - a) sum(dy * (max - mean))``.

    Args:
        kernel_size: window height and width, an int or an (h, w) pair.
        stride: step between windows (default: kernel_size).
        dtype, rng: as for Conv2D; ``rng`` is accepted for the same constructor
            but not used (the start is fixed, see the module's docstring).

    Params: theta (1,).
    Shape: (N, C, H, W) -> (N, C, H_out, W_out), H_out = floor((H - kh) / sh) + 1.

    Example:
        >>> import numpy as np
        >>> layer = MixedPool2D(2)
        >>> layer.forward(np.array([[[[0.0, 4.0], [0.0, 0.0]]]]))   # 4/2 + 1/2
        array([[[[2.5]]]])
    """

    def __init__(self, kernel_size, stride=None, *, dtype=np.float64, rng=None) -> None:
        super().__init__(kernel_size, stride)
        self.params = {"theta": np.zeros(1, dtype=dtype)}
        self.grads = {"theta": np.zeros(1, dtype=dtype)}

    @property
    def mix(self) -> float:
        """a = sigmoid(theta), in float64."""
        theta = float(self.params["theta"][0])
        return 1 / (1 + math.exp(-theta)) if theta >= 0 else math.exp(theta) / (1 + math.exp(theta))

    def forward(self, x, training=True):
        planes, out_shape = self._planes(x)
        y = np.empty(out_shape, dtype=planes.dtype)
        argmax, diff = self._switches(out_shape), np.empty(out_shape, dtype=planes.dtype)
        a = self.mix
        threads.split_rows(_mixpool.mixed_forward, (planes, _flat(y), _flat(argmax), _flat(diff)), a,
                           *self.kernel_size, *self.stride)
        self._cache = (argmax, diff, a, x.shape, out_shape, planes.dtype) if training else None
        return y

    def backward(self, dy, input_grad=True):
        argmax, diff, a, in_shape, out_shape, dtype = require_forward(self._cache, "MixedPool2D")
        dy = check_grad(dy, "MixedPool2D", out_shape, dtype)
        dx = np.empty(in_shape, dtype=dtype)
        da = np.empty(in_shape[0] * in_shape[1], dtype=np.float64)
        threads.split_rows(_mixpool.mixed_backward, (_flat(dy), _flat(argmax), _flat(diff), _flat(dx), da), a,
                           *self.kernel_size, *self.stride)
        self.grads["theta"][0] = da.sum() * a * (1 - a)
        return dx if input_grad else None


class GatedPool2D(_MixPool2D):
    """``y = g * max(window) + (1 - g) * mean(window)``, ``g = sigmoid(w . window)``.

    One gate vector ``w`` of ``kh * kw`` weights for the layer (the window read
    in row-major order), the paper's responsive gating: each window sets its
    own mix.  ``w`` starts at 0 (``g = 1/2``).  Backward, per window with
    ``dz = dy * (max - mean) * g (1 - g)``: ``dx`` gets ``g * dy`` at the max,
    ``(1 - g) * dy / (kh * kw) + dz * w[k]`` on element k, and
    ``dw[k] += dz * window[k]``.

    Args:
        kernel_size: window height and width, an int or an (h, w) pair.
        stride: step between windows (default: kernel_size).
        dtype, rng: as for Conv2D; ``rng`` is accepted for the same constructor
            but not used (the start is fixed, see the module's docstring).

    Params: w (kh * kw,).
    Shape: (N, C, H, W) -> (N, C, H_out, W_out), H_out = floor((H - kh) / sh) + 1.

    Example:
        >>> import numpy as np
        >>> layer = GatedPool2D(2)
        >>> layer.forward(np.array([[[[0.0, 4.0], [0.0, 0.0]]]]))   # g = 1/2 at w = 0
        array([[[[2.5]]]])
    """

    def __init__(self, kernel_size, stride=None, *, dtype=np.float64, rng=None) -> None:
        super().__init__(kernel_size, stride)
        k = self.kernel_size[0] * self.kernel_size[1]
        self.params = {"w": np.zeros(k, dtype=dtype)}
        self.grads = {"w": np.zeros(k, dtype=dtype)}

    def forward(self, x, training=True):
        planes, out_shape = self._planes(x)
        w = np.ascontiguousarray(self.params["w"], dtype=planes.dtype)
        y = np.empty(out_shape, dtype=planes.dtype)
        argmax = self._switches(out_shape)
        gate, diff = np.empty(out_shape, dtype=planes.dtype), np.empty(out_shape, dtype=planes.dtype)
        threads.split_rows(_mixpool.gated_forward, (planes, _flat(y), _flat(argmax), _flat(gate), _flat(diff)),
                           w, *self.kernel_size, *self.stride)
        self._cache = (planes, w, argmax, gate, diff, x.shape, out_shape) if training else None
        return y

    def backward(self, dy, input_grad=True):
        planes, w, argmax, gate, diff, in_shape, out_shape = require_forward(self._cache, "GatedPool2D")
        dy = check_grad(dy, "GatedPool2D", out_shape, planes.dtype)
        dx = np.empty(in_shape, dtype=planes.dtype)
        dw = np.empty((planes.shape[0], w.size), dtype=np.float64)
        threads.split_rows(_mixpool.gated_backward,
                           (_flat(dy), planes, _flat(argmax), _flat(gate), _flat(diff), _flat(dx), dw),
                           w, *self.kernel_size, *self.stride)
        self.grads["w"][...] = dw.sum(axis=0)
        return dx if input_grad else None
