"""Random pooling layers: fractional max pooling and stochastic pooling.

Thin validating wrappers around ``minicnn/_random_pool.pyx``.  Both follow
minicnn's convention for random layers: ``draws_random = True``, and forward
draws only from ``self.rng`` (a NumPy Generator; the trainer replaces it before
every training batch, ``Sequential.seed_batch``, so that a resumed run draws what
an uninterrupted one would).  ``forward(x, training=False)`` draws nothing and
is deterministic.  docs/pooling.md gives the formulas.
"""
from __future__ import annotations

import math

import numpy as np

from minicnn import _random_pool
from minicnn import threads
from minicnn.layers.base import MAX_GEOMETRY, Layer, check_array, check_grad, pair, require_forward
from minicnn.layers.pooling import _Pool2D, _flat, _spatial_shape

EVAL_SEED = 0   # FractionalMaxPool2D's evaluation samples: default_rng(EVAL_SEED).random((C, 2))


class FractionalMaxPool2D(Layer):
    """Fractional max pooling (Graham 2014), PyTorch's region rule.

    Each (image, channel) plane gets two samples ``u`` in [0, 1), one for the
    width and one for the height, drawn from ``self.rng`` in training.  Along an
    axis of input size L, output size O and kernel k, with
    ``alpha = (L - k) / (O - 1)``, output o < O - 1 is the maximum over the k
    input positions from ``int((o + u) * alpha) - int(u * alpha)``, the last
    output over the last k positions: pseudo-random regions, overlapping when
    k > alpha.  Samples are float64 draws rounded to the input's dtype, where
    the region arithmetic runs, as in PyTorch: given the same samples
    (``_random_samples`` of ``torch.nn.functional.fractional_max_pool2d``, shape
    (N, C, 2), here ``rng.random((N, C, 2))``), output and gradient are
    PyTorch's exactly.  The maximum of a region is the first one in row-major
    order (the last NaN); backward sends each output's gradient to it,
    overlapping regions adding up.

    Evaluation (``training=False``) is deterministic and draws nothing from
    ``self.rng``: channel c takes the samples ``default_rng(0).random((C, 2))[c]``
    for every image, so each channel keeps regions of its own, as in training,
    and an image's output does not depend on the batch it is in.  (One sample
    shared by every channel, such as u = 0.5, is a configuration training
    never shows: all channels' regions shifted alike.  On bar images like
    tests/conftest.py's, a model trained for two epochs scored 52% with it,
    100% with per-channel samples, fixed or fresh.)

    Args:
        kernel_size: region height and width (int or pair).
        output_size: output height and width (int or pair), or
        output_ratio: output size as a fraction of the input size, in (0, 1)
            (number or pair): ``H_out = int(H_in * ratio)``, as PyTorch.
            Exactly one of the two.
        rng: numpy Generator for the samples (default: a fresh unseeded one).

    Shape:
        input (N, C, H_in, W_in), output (N, C, H_out, W_out), with
        1 <= H_out <= H_in - kernel_height + 1 (the same for the width).

    Example:
        >>> import numpy as np, minicnn.layers as L
        >>> pool = L.FractionalMaxPool2D(3, output_ratio=0.5, rng=np.random.default_rng(0))
        >>> pool.forward(np.ones((2, 4, 28, 28), np.float32)).shape
        (2, 4, 14, 14)
    """

    draws_random = True

    def __init__(self, kernel_size, output_size=None, output_ratio=None, rng=None) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        if min(self.kernel_size) <= 0:
            raise ValueError(f"{name}: kernel_size must be positive, got kernel_size={self.kernel_size}")
        if (output_size is None) == (output_ratio is None):
            raise ValueError(f"{name}: give exactly one of output_size and output_ratio, got "
                             f"output_size={output_size!r}, output_ratio={output_ratio!r}")
        self.output_size = None if output_size is None else pair(output_size, "output_size", name)
        if self.output_size is not None and min(self.output_size) <= 0:
            raise ValueError(f"{name}: output_size must be positive, got output_size={self.output_size}")
        self.output_ratio = None if output_ratio is None else _ratio(output_ratio, name)
        self.rng = np.random.default_rng() if rng is None else rng
        self._cache = None

    def _describe(self) -> str:
        size = f"output_size={self.output_size}" if self.output_size else f"output_ratio={self.output_ratio}"
        return f"kernel_size={self.kernel_size}, {size}"

    def output_shape(self, input_shape):
        name = type(self).__name__
        c, h, w = _spatial_shape(input_shape, name)
        if self.output_size is not None:
            oh, ow = self.output_size
        else:
            oh, ow = int(h * self.output_ratio[0]), int(w * self.output_ratio[1])
            if oh < 1 or ow < 1:
                raise ValueError(f"{name}: output_ratio={self.output_ratio} leaves no output of the {h}x{w} "
                                 f"input ({oh}x{ow})")
        (kh, kw) = self.kernel_size
        if oh > h - kh + 1 or ow > w - kw + 1:
            raise ValueError(f"{name}: output size {oh}x{ow} is larger than input minus kernel_size plus one: "
                             f"{h}x{w} input, kernel_size={self.kernel_size} allow at most "
                             f"{max(0, h - kh + 1)}x{max(0, w - kw + 1)}")
        if h * w > MAX_GEOMETRY:
            raise ValueError(f"{name}: a {h}x{w} map has more than {MAX_GEOMETRY} elements")
        return c, oh, ow

    def window(self, input_shape):
        """The kernel and the largest step between regions, ceil(alpha): the receptive field the
        summary shows is an upper bound."""
        _, oh, ow = self.output_shape(input_shape)
        _, h, w = input_shape
        steps = [max(1, math.ceil((size - k) / (out - 1))) if out > 1 else 1
                 for size, k, out in ((h, self.kernel_size[0], oh), (w, self.kernel_size[1], ow))]
        return self.kernel_size, tuple(steps)

    def forward(self, x, training=True):
        name = type(self).__name__
        x = check_array(x, name, 4)
        n, c, h, w = x.shape
        _, oh, ow = self.output_shape((c, h, w))
        if training:
            samples = self.rng.random((n * c, 2)).astype(x.dtype)
        else:
            samples = np.tile(np.random.default_rng(EVAL_SEED).random((c, 2)).astype(x.dtype), (n, 1))
        np.minimum(samples, np.nextafter(x.dtype.type(1), x.dtype.type(0)), out=samples)  # float32 rounding
        y = np.empty((n, c, oh, ow), dtype=x.dtype)
        index = np.empty((n, c, oh, ow), dtype=np.int32)
        threads.split_rows(_random_pool.fractional_max_forward,
                           (x.reshape(n * c, h, w), samples, _flat(y), _flat(index)), *self.kernel_size)
        self._cache = (index, x.shape, y.shape, x.dtype) if training else None
        return y

    def backward(self, dy):
        return _scatter(self._cache, dy, type(self).__name__)


class StochasticPool2D(_Pool2D):
    """Stochastic pooling (Zeiler and Fergus 2013), windows without padding.

    Weights ``w_i = a_i`` where ``a_i > 0``, else 0: meant to follow a ReLU;
    after a layer that can be negative, negative values (and NaN) are simply
    never picked and count for nothing.  Training picks one element per window
    with probability ``w_i / sum(w)`` from one uniform draw per window
    (``self.rng.random((N, C, H_out, W_out))``, float64) and outputs it; a window
    without a positive element gives 0.  Backward sends each output's gradient
    to its picked element (overlapping windows add up); a window without a pick
    sends none.  Evaluation (``training=False``) gives the expectation,
    ``sum(w_i^2) / sum(w)`` (0 without a positive element), deterministically;
    it keeps nothing for backward, which needs a training forward.

    Args:
        kernel_size: window height and width (int or pair).
        stride: step between windows (default: kernel_size).
        rng: numpy Generator for the draws (default: a fresh unseeded one).

    Shape:
        input (N, C, H_in, W_in), output (N, C, H_out, W_out),
        H_out = floor((H_in - kernel_height) / stride_height) + 1.

    Example:
        >>> import numpy as np, minicnn.layers as L
        >>> pool = L.StochasticPool2D(2, rng=np.random.default_rng(0))
        >>> x = np.array([[[[1.0, 3.0], [0.0, 0.0]]]])
        >>> float(pool.forward(x, training=False)[0, 0, 0, 0])   # (1 + 9) / (1 + 3)
        2.5
    """

    draws_random = True

    def __init__(self, kernel_size, stride=None, rng=None) -> None:
        super().__init__(kernel_size, stride)
        self.rng = np.random.default_rng() if rng is None else rng

    def _describe(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def macs(self, input_shape):
        """Evaluation's multiply-accumulates: the sum of squares over every window."""
        c, oh, ow = self.output_shape(input_shape)
        return c * oh * ow * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x, training=True):
        planes, out_shape = self._planes(x)
        if planes.shape[1] * planes.shape[2] > MAX_GEOMETRY:
            raise ValueError(f"StochasticPool2D: a {planes.shape[1]}x{planes.shape[2]} map has more than "
                             f"{MAX_GEOMETRY} elements")
        y = np.empty(out_shape, dtype=planes.dtype)
        geometry = (*self.kernel_size, *self.stride)
        if not training:
            threads.split_rows(_random_pool.stochastic_eval_forward, (planes, _flat(y)), *geometry)
            self._cache = None
            return y
        u = self.rng.random(out_shape)
        index = np.empty(out_shape, dtype=np.int32)
        threads.split_rows(_random_pool.stochastic_forward, (planes, _flat(u), _flat(y), _flat(index)), *geometry)
        self._cache = (index, x.shape, out_shape, planes.dtype)
        return y

    def backward(self, dy):
        return _scatter(self._cache, dy, "StochasticPool2D")


def _scatter(cache, dy, layer):
    """dx of a layer that stored, per output, the flat plane position it came from."""
    index, in_shape, out_shape, dtype = require_forward(cache, layer)
    dy = check_grad(dy, layer, out_shape, dtype)
    dx = np.empty(in_shape, dtype=dtype)
    threads.split_rows(_random_pool.scatter_backward, (_flat(dy), _flat(index), _flat(dx)))
    return dx


def _ratio(value, layer) -> tuple[float, float]:
    """A number or an (h, w) pair of numbers, each in (0, 1)."""
    items = tuple(value) if isinstance(value, (list, tuple)) and len(value) == 2 else (value, value)
    if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating))
           for v in items):
        raise TypeError(f"{layer}: output_ratio must be a number or a pair of numbers, got {value!r}")
    if not all(0 < v < 1 for v in items):
        raise ValueError(f"{layer}: output_ratio must be in (0, 1), got output_ratio={value!r}")
    return float(items[0]), float(items[1])
