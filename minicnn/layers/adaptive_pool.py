"""Adaptive pooling onto fixed output grids: AdaptiveAvgPool2D, AdaptiveMaxPool2D and
SpatialPyramidPool2D, thin validating wrappers around ``minicnn._adaptive_pool``.

Bins follow PyTorch's rule (``adaptive_avg_pool2d``, ``adaptive_max_pool2d``):
output row ``i`` of ``OH`` covers input rows ``floor(i * H / OH) <= h <
ceil((i + 1) * H / OH)``, columns likewise, so sizes that do not divide give
overlapping bins of unequal size.  The layers take any input of at least the
output size, whatever the model's ``input_shape`` was.
"""
from __future__ import annotations

import numpy as np

from minicnn import _adaptive_pool
from minicnn import threads
from minicnn.layers.base import MAX_GEOMETRY, Layer, check_array, check_grad, count, pair, require_forward
from minicnn.layers.pooling import MaxPool2D, _spatial_shape


def bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each of ``out`` bins over ``size`` elements."""
    i = np.arange(out, dtype=np.int64)
    return (i * size) // out, ((i + 1) * size + out - 1) // out


def _grid_window(size: int, out: int) -> tuple[int, int]:
    """(largest bin, largest step between bin starts) of one axis, for receptive-field arithmetic:
    the window and stride when ``out`` divides ``size``, an upper bound otherwise."""
    start, end = bins(size, out)
    step = int(np.diff(start).max()) if out > 1 else size
    return int((end - start).max()), step


class _GridPool2D(Layer):
    """Pools each (H, W) plane onto the grids ``self._grids`` [(OH, OW), ...]; subclasses shape the output."""

    _maximum = False

    def __init__(self) -> None:
        super().__init__()
        self._grids: tuple[tuple[int, int], ...] = ()
        self._cache = None

    def _fit(self, h: int, w: int) -> None:
        raise NotImplementedError

    def _pool(self, x, training):
        """Validate x (N, C, H, W); return y (N, C, S), S = sum OH * OW, in grid order."""
        name = type(self).__name__
        x = check_array(x, name, 4)
        n, c, h, w = x.shape
        self._fit(h, w)
        planes = x.reshape(n * c, h, w)
        oh = np.array([g[0] for g in self._grids], dtype=np.intp)
        ow = np.array([g[1] for g in self._grids], dtype=np.intp)
        y = np.empty((n * c, int(np.dot(oh, ow))), dtype=x.dtype)
        if self._maximum:
            argmax = np.empty(y.shape, dtype=np.int32 if h * w < 2**31 else np.int64)
            threads.split_rows(_adaptive_pool.max_forward, (planes, y, argmax), oh, ow)
        else:
            argmax = None
            threads.split_rows(_adaptive_pool.average_forward, (planes, y), oh, ow)
        self._cache = (argmax, x.shape, x.dtype, oh, ow) if training else None
        return y.reshape(n, c, y.shape[1])

    def _unpool(self, dy):
        """dy (N, C, S) or (N, C, OH, OW) -> dx (N, C, H, W)."""
        argmax, shape, dtype, oh, ow = self._cache
        n, c, h, w = shape
        dx = np.empty(shape, dtype=dtype)
        planes, grad = dx.reshape(n * c, h, w), dy.reshape(n * c, int(np.dot(oh, ow)))
        if argmax is not None:
            threads.split_rows(_adaptive_pool.max_backward, (grad, argmax, planes))
        else:
            threads.split_rows(_adaptive_pool.average_backward, (grad, planes), oh, ow)
        return dx


def _output_size(value, layer: str) -> tuple[int, int]:
    size = pair(value, "output_size", layer)
    if min(size) <= 0:
        raise ValueError(f"{layer}: output_size must be positive, got output_size={size}")
    return size


class _AdaptivePool2D(_GridPool2D):
    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = _output_size(output_size, type(self).__name__)
        self._grids = (self.output_size,)

    def _describe(self) -> str:
        return f"output_size={self.output_size}"

    def _fit(self, h, w):
        oh, ow = self.output_size
        if oh > h or ow > w:
            raise ValueError(f"{type(self).__name__}: output_size={self.output_size} is larger than "
                             f"the {h}x{w} input")

    def output_shape(self, input_shape):
        c, h, w = _spatial_shape(input_shape, type(self).__name__)
        self._fit(h, w)
        return (c, *self.output_size)

    def window(self, input_shape):
        _, h, w = input_shape
        (kh, sh), (kw, sw) = _grid_window(h, self.output_size[0]), _grid_window(w, self.output_size[1])
        return (kh, kw), (sh, sw)

    def forward(self, x, training=True):
        y = self._pool(x, training)
        return y.reshape(*y.shape[:2], *self.output_size)

    def backward(self, dy):
        name = type(self).__name__
        _, shape, dtype, _, _ = require_forward(self._cache, name)
        dy = check_grad(dy, name, (*shape[:2], *self.output_size), dtype)
        return self._unpool(dy)


class AdaptiveAvgPool2D(_AdaptivePool2D):
    """Adaptive average pooling: the mean of each of OH x OW bins (PyTorch's ``AdaptiveAvgPool2d``).

    Bins: rows ``floor(i * H / OH) .. ceil((i + 1) * H / OH) - 1``, columns
    likewise; they overlap when OH does not divide H.  Backward spreads
    ``dy / bin size`` over each bin, overlapping bins adding up.

    Args:
        output_size: (OH, OW), an int or a pair; at most the input's (H, W).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), for any H >= OH, W >= OW.

    Example:
        >>> import numpy as np
        >>> AdaptiveAvgPool2D(2).forward(np.arange(9.0).reshape(1, 1, 3, 3))
        array([[[[2., 3.],
                 [5., 6.]]]])
    """


class AdaptiveMaxPool2D(_AdaptivePool2D):
    """Adaptive max pooling: the maximum of each of OH x OW bins (PyTorch's ``AdaptiveMaxPool2d``).

    Bins as AdaptiveAvgPool2D.  It keeps one switch per output, the position
    of its maximum (the first in row-major order on ties, the last NaN when
    the bin holds NaN); backward adds dy there, bins that overlap adding up.

    Args:
        output_size: (OH, OW), an int or a pair; at most the input's (H, W).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), for any H >= OH, W >= OW.

    Example:
        >>> import numpy as np
        >>> AdaptiveMaxPool2D((1, 2)).forward(np.arange(9.0).reshape(1, 1, 3, 3))
        array([[[[7., 8.]]]])
    """

    _maximum = True

    def __init__(self, output_size) -> None:
        super().__init__(output_size)
        self._plain = None   # the MaxPool2D the last forward ran, when the bins tiled the map

    def forward(self, x, training=True):
        x = check_array(x, "AdaptiveMaxPool2D", 4)
        (h, w), (oh, ow) = x.shape[2:], self.output_size
        self._plain = None
        if h % oh or w % ow or x.size == 0:
            return super().forward(x, training)
        # bins of (H/OH) x (W/OW) with that stride: max pooling exactly (same ties and NaN rule,
        # tests/test_pool_family_adaptive.py), whose kernel is faster
        self._cache = None
        plain = MaxPool2D((h // oh, w // ow))
        y = plain.forward(x, training)
        self._plain = plain if training else None
        return y

    def backward(self, dy):
        if self._plain is not None:
            return self._plain.backward(dy)
        return super().backward(dy)


class SpatialPyramidPool2D(_GridPool2D):
    """Spatial pyramid pooling (He et al. 2014): adaptive pools onto l x l grids, concatenated.

    For each level l in ``levels``, in order, the (N, C, l, l) adaptive max
    (or average) pool of the input, flattened to (N, C * l * l); the levels
    side by side give a vector of fixed length from any input of at least
    max(levels) rows and columns.  Backward: each level's adaptive backward,
    added up.

    Args:
        levels: grid sizes, a non-empty list of positive ints; default (1, 2, 4).
        mode: "max" or "avg".

    Shape:
        (N, C, H, W) -> (N, C * sum(l * l)), for any H, W >= max(levels).

    Example:
        >>> import numpy as np
        >>> SpatialPyramidPool2D(levels=(1, 2)).forward(np.arange(16.0).reshape(1, 1, 4, 4))
        array([[15.,  5.,  7., 13., 15.]])
    """

    def __init__(self, levels=(1, 2, 4), mode="max") -> None:
        super().__init__()
        if not isinstance(levels, (list, tuple)) or not levels:
            raise TypeError(f"SpatialPyramidPool2D: levels must be a non-empty list of positive ints, "
                            f"got {repr(levels)[:60]}")
        self.levels = tuple(count(level, "levels", "SpatialPyramidPool2D") for level in levels)
        if max(self.levels) > MAX_GEOMETRY:
            raise ValueError(f"SpatialPyramidPool2D: levels must be at most {MAX_GEOMETRY}, got {self.levels}")
        if not isinstance(mode, str):
            raise TypeError(f"SpatialPyramidPool2D: mode must be 'max' or 'avg', got {repr(mode)[:60]}")
        if mode not in ("max", "avg"):
            raise ValueError(f"SpatialPyramidPool2D: mode must be 'max' or 'avg', got {mode[:60]!r}")
        self.mode = mode
        self._maximum = mode == "max"
        self._grids = tuple((level, level) for level in self.levels)

    def _describe(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"

    def _fit(self, h, w):
        if max(self.levels) > min(h, w):
            raise ValueError(f"SpatialPyramidPool2D: level {max(self.levels)} needs an input of at least "
                             f"{max(self.levels)}x{max(self.levels)}, got {h}x{w}")

    def output_shape(self, input_shape):
        c, h, w = _spatial_shape(input_shape, "SpatialPyramidPool2D")
        self._fit(h, w)
        return (c * sum(level * level for level in self.levels),)

    def window(self, input_shape):
        """The coarsest level's bins (the whole map with level 1)."""
        _, h, w = input_shape
        level = min(self.levels)
        (kh, sh), (kw, sw) = _grid_window(h, level), _grid_window(w, level)
        return (kh, kw), (sh, sw)

    def _offsets(self):
        return np.cumsum([0] + [level * level for level in self.levels])

    def forward(self, x, training=True):
        y = self._pool(x, training)   # (N, C, S): per plane, level after level
        n, c, _ = y.shape
        o = self._offsets()
        return np.concatenate([y[:, :, o[k]:o[k + 1]].reshape(n, c * (o[k + 1] - o[k]))
                               for k in range(len(self.levels))], axis=1)

    def backward(self, dy):
        _, shape, dtype, _, _ = require_forward(self._cache, "SpatialPyramidPool2D")
        n, c = shape[:2]
        o = self._offsets()
        dy = check_grad(dy, "SpatialPyramidPool2D", (n, c * int(o[-1])), dtype)
        planes = np.empty((n, c, int(o[-1])), dtype=dtype)
        for k in range(len(self.levels)):
            planes[:, :, o[k]:o[k + 1]] = dy[:, c * o[k]:c * o[k + 1]].reshape(n, c, o[k + 1] - o[k])
        return self._unpool(planes)
