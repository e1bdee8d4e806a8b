"""Dropout: zero a random share p of the activations in training, scale the rest by
1 / (1 - p) ("inverted" dropout, PyTorch's), so that evaluation is the identity.

The masks come from ``self.rng``; Sequential.seed_batch gives the layer a fresh
generator before every training batch, so a run's masks follow from its seed.
The masking runs in C (minicnn._dropout), one pass each way.
"""
from __future__ import annotations

import numpy as np

from minicnn import _dropout, threads
from minicnn.layers.base import Layer, check_array, check_grad, require_forward


class _Dropout(Layer):
    """Shared by Dropout and Dropout2D: p, the generator, the draws and the kernel calls."""

    draws_random = True

    def __init__(self, p=0.5, *, rng=None) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: p must be a number in [0, 1], got {p!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"{name}: p must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng() if rng is None else rng
        self._cache = None

    def _describe(self) -> str:
        return f"p={self.p}"

    def _draw(self, count: int) -> np.ndarray:
        """``count`` uniform uint32 draws from self.rng (the generator's raw 64-bit output, halved)."""
        return self.rng.bit_generator.random_raw((count + 1) // 2).view(np.uint32)[:count]

    @property
    def _threshold(self) -> int:
        """Draws below this are dropped: round(p * 2^32) of the 2^32 values (a uint32; for p = 1
        every draw is kept, with _scale 0)."""
        return min(round(self.p * 2**32), 2**32 - 1) if self.p < 1 else 0

    @property
    def _scale(self) -> float:
        return 1.0 / (1.0 - self.p) if self.p < 1 else 0.0

    def forward(self, x, training=True):
        x = self._check(x)
        if not training:
            self._cache = None
            return x
        draws = self._draw(self._mask_count(x))
        y = np.empty_like(x)
        self._apply(x, draws, y)
        self._cache = (draws, x.shape, x.dtype)
        return y

    def backward(self, dy):
        draws, shape, dtype = require_forward(self._cache, type(self).__name__)
        dy = check_grad(dy, type(self).__name__, shape, dtype)
        dx = np.empty_like(dy)
        self._apply(dy, draws, dx)
        return dx


class Dropout(_Dropout):
    """Each element: 0 with probability p, else x / (1 - p); the identity when training=False.

    Args:
        p: probability of dropping an element, in [0, 1] (1: all zeros).
        rng: numpy Generator the masks are drawn from (default: a fresh
            ``np.random.default_rng()``; training replaces it before every batch).

    Shape: any (N, ...) -> the same.

    Example:
        >>> import numpy as np
        >>> drop = Dropout(0.5, rng=np.random.default_rng(0))
        >>> drop.forward(np.ones((1, 6)))
        array([[2., 2., 2., 0., 0., 0.]])
        >>> drop.forward(np.ones((1, 6)), training=False)
        array([[1., 1., 1., 1., 1., 1.]])
    """

    def _check(self, x):
        return check_array(x, "Dropout", None)

    def _mask_count(self, x) -> int:
        return x.size

    def _apply(self, x, draws, out):
        threads.split_rows(_dropout.apply, (x.reshape(-1), draws, out.reshape(-1)), self._threshold, self._scale)


class Dropout2D(_Dropout):
    """Whole channels: each (n, c) feature map is 0 with probability p, else x / (1 - p);
    the identity when training=False.  PyTorch's torch.nn.Dropout2d.

    Args: as Dropout (p: the probability of dropping a channel).
    Shape: (N, C, H, W) -> (N, C, H, W).

    Example:
        >>> import numpy as np
        >>> drop = Dropout2D(0.5, rng=np.random.default_rng(0))
        >>> drop.forward(np.ones((1, 4, 1, 2)))[0, :, 0]
        array([[2., 2.],
               [2., 2.],
               [2., 2.],
               [0., 0.]])
    """

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Dropout2D: expects a (C, H, W) feature map per example, got shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def _check(self, x):
        return check_array(x, "Dropout2D", 4)

    def _mask_count(self, x) -> int:
        return x.shape[0] * x.shape[1]

    def _apply(self, x, draws, out):
        n, c, h, w = x.shape
        threads.split_rows(_dropout.apply_rows, (x.reshape(n * c, h * w), draws, out.reshape(n * c, h * w)),
                           self._threshold, self._scale)
