"""LPPool2D: power-average pooling, a thin validating wrapper around ``minicnn._lp_pool``."""
from __future__ import annotations

import math

import numpy as np

from minicnn import _lp_pool
from minicnn import threads
from minicnn.layers.base import check_grad, require_forward
from minicnn.layers.pooling import _flat, _Pool2D


class LPPool2D(_Pool2D):
    """Power-average pooling: ``y = (sum over the window of |x|^p)^(1/p)``, p = ``norm_type``.

    PyTorch's ``LPPool2d`` on non-negative inputs; on signed inputs it pools
    ``|x|``, so a non-integer p gives no NaN.  p = 1 is sum pooling, p = 2 the
    Euclidean norm of the window, and as p grows it tends to max pooling of
    ``|x|`` (within a factor ``(kh * kw)^(1/p)``).  Computed as
    ``m * (sum (|x| / m)^p)^(1/p)`` with ``m`` the window's largest ``|x|``,
    so that no power overflows or underflows, whatever p.  Backward:
    ``dx_i = dy * sign(x_i) * (|x_i| / y)^(p - 1)`` (0 where ``x_i = 0``, so an
    all-zero window has gradient 0), overlapping windows adding up.

    Args:
        norm_type: p, a finite number > 0.
        kernel_size: window (kh, kw), an int or a pair.
        stride: step between windows; default kernel_size.  No padding.

    Shape:
        (N, C, H_in, W_in) -> (N, C, H_out, W_out), H_out = floor((H_in - kh) / sh) + 1.

    Example:
        >>> import numpy as np
        >>> layer = LPPool2D(2, 2)
        >>> x = np.array([[[[3.0, 4.0], [0.0, 0.0]]]])
        >>> layer.forward(x)
        array([[[[5.]]]])
    """

    def __init__(self, norm_type, kernel_size, stride=None) -> None:
        super().__init__(kernel_size, stride, 0)
        if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, (int, float, np.integer, np.floating)):
            raise TypeError(f"LPPool2D: norm_type must be a number, got {norm_type!r}")
        try:
            p = float(norm_type)
        except OverflowError:   # an int past float's range
            p = math.inf
        if not (math.isfinite(p) and p > 0):
            raise ValueError(f"LPPool2D: norm_type must be a finite number > 0, got norm_type={repr(norm_type)[:60]}")
        self.norm_type = p

    def _describe(self) -> str:
        return f"norm_type={self.norm_type:g}, kernel_size={self.kernel_size}, stride={self.stride}"

    def macs(self, input_shape):
        """One multiply-accumulate per window element (the power, summed)."""
        c, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x, training=True):
        planes, out_shape = self._planes(x)
        y = np.empty(out_shape, dtype=planes.dtype)
        threads.split_rows(_lp_pool.lp_forward, (planes, _flat(y)), *self.kernel_size, *self.stride, self.norm_type)
        self._cache = (planes, y) if training else None
        return y

    def backward(self, dy):
        planes, y = require_forward(self._cache, "LPPool2D")
        dy = check_grad(dy, "LPPool2D", y.shape, y.dtype)
        n, c = y.shape[:2]
        dx = np.empty((n, c, *planes.shape[1:]), dtype=y.dtype)
        threads.split_rows(_lp_pool.lp_backward, (planes, _flat(y), _flat(dy), _flat(dx)),
                           *self.kernel_size, *self.stride, self.norm_type)
        return dx
