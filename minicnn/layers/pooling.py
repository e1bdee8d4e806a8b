"""Pooling layers: thin validating wrappers around the Cython kernels.

Semantics are PyTorch's defaults (``ceil_mode=False``, ``dilation=1``):

Shape:
    input  (N, C, H_in, W_in)
    output (N, C, H_out, W_out), H_out = floor((H_in + 2 * ph - kh) / sh) + 1
    (global pooling: output (N, C))
"""
from __future__ import annotations

import numpy as np

from minicnn import _pool
from minicnn import threads
from minicnn.layers.base import MAX_GEOMETRY, Layer, check_array, check_grad, pair, require_forward


class _Pool2D(Layer):
    """Shared geometry and checks; subclasses run one kernel."""

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name)
        for k, s, p in zip(self.kernel_size, self.stride, self.padding):
            if k <= 0:
                raise ValueError(f"{name}: kernel_size must be positive, got kernel_size={self.kernel_size}")
            if s <= 0:
                raise ValueError(f"{name}: stride must be positive, got stride={self.stride}")
            if p < 0:
                raise ValueError(f"{name}: padding must be non-negative, got padding={self.padding}")
            if p > k // 2:
                raise ValueError(
                    f"{name}: padding should be at most half of kernel_size, "
                    f"got padding={self.padding}, kernel_size={self.kernel_size}"
                )
        if self.kernel_size[0] * self.kernel_size[1] > MAX_GEOMETRY:
            raise ValueError(f"{name}: kernel_size={self.kernel_size} has more than {MAX_GEOMETRY} elements")
        self._cache = None

    def _describe(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def output_shape(self, input_shape):
        c, h, w = _spatial_shape(input_shape, type(self).__name__)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h == 0 or w == 0 or kh > h + 2 * ph or kw > w + 2 * pw:
            raise ValueError(
                f"{type(self).__name__}: kernel_size={self.kernel_size} with padding={self.padding} "
                f"does not fit the {h}x{w} input"
            )
        return c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    def window(self, input_shape):
        return self.kernel_size, self.stride

    def _planes(self, x):
        """Validate x (N, C, H, W); return it as planes (N*C, H, W) and y's shape."""
        x = check_array(x, type(self).__name__, 4)
        n, c, h, w = x.shape
        _, oh, ow = self.output_shape((c, h, w))
        return x.reshape(n * c, h, w), (n, c, oh, ow)

    @property
    def _geometry(self):
        return (*self.kernel_size, *self.stride, *self.padding)


class _ExtremePool2D(_Pool2D):
    _minimum = False

    def forward(self, x, training=True):
        planes, out_shape = self._planes(x)
        y = np.empty(out_shape, dtype=planes.dtype)
        index_dtype = np.uint8 if self.kernel_size[0] * self.kernel_size[1] <= 256 else np.int32
        argmax = np.empty(out_shape, dtype=index_dtype)
        threads.split_rows(_pool.extreme_forward, (planes, _flat(y), _flat(argmax)), *self._geometry, self._minimum)
        self._cache = (argmax, x.shape, out_shape, planes.dtype) if training else None
        return y

    def backward(self, dy):
        argmax, in_shape, out_shape, dtype = require_forward(self._cache, type(self).__name__)
        dy = check_grad(dy, type(self).__name__, out_shape, dtype)
        dx = np.empty(in_shape, dtype=dtype)
        threads.split_rows(_pool.extreme_backward, (_flat(dy), _flat(argmax), _flat(dx)), *self._geometry)
        return dx


class MaxPool2D(_ExtremePool2D):
    r"""2-D max pooling over each feature map, PyTorch's ``nn.MaxPool2d``.

    .. math::
        y[n, c, i, j] = \max_{u < k_h, v < k_w} x_p[n, c, s_h i + u, s_w j + v]

    where :math:`x_p` is the input padded with -inf.  Each output keeps its
    "switch", the input position its maximum came from (``switches``); on ties
    the first maximum in row-major order wins and takes the whole gradient, and
    overlapping windows add their gradients.

    Args:
        kernel_size: window height and width, an int or an (h, w) pair.
        stride: step between windows, an int or an (h, w) pair. Default: kernel_size.
        padding: rows and columns added on each side, at most half the window. Default: 0.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})`
        - Output: :math:`(N, C, H_{out}, W_{out})`, where
          :math:`H_{out} = \lfloor (H_{in} + 2 p_h - k_h) / s_h \rfloor + 1`, and the same for W.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> pool = mc.MaxPool2D(2)
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> pool(x)[0, 0]
        array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
        >>> mc.MaxPool2D(3, stride=2, padding=1)(np.zeros((2, 8, 28, 28), np.float32)).shape
        (2, 8, 14, 14)
    """

    def switches(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The output and, for every output, the input position its maximum came from.

        Args:
            x: (N, C, H, W) float32 or float64.

        Returns:
            (y, rows, cols): y (N, C, H_out, W_out) as ``forward`` gives it, and int64
            arrays of y's shape with the row and column of x (in 0..H-1, 0..W-1) of each
            output's maximum (the first in row-major order on ties).

        Example::

            >>> import numpy as np, minicnn as mc
            >>> x = np.array([[[[1, 9, 2, 0], [3, 4, 8, 5]]]], np.float32)
            >>> y, rows, cols = mc.MaxPool2D(2).switches(x)
            >>> rows[0, 0].tolist(), cols[0, 0].tolist()
            ([[0, 1]], [[1, 2]])
        """
        y = self.forward(x, training=True)
        argmax = self._cache[0].astype(np.int64)
        self._cache = None
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = y.shape[2:]
        rows = np.arange(oh)[:, None] * sh - ph + argmax // kw
        cols = np.arange(ow)[None, :] * sw - pw + argmax % kw
        return y, rows, cols


class MinPool2D(_ExtremePool2D):
    r"""2-D min pooling, the mirror of MaxPool2D: the minimum of each window, padding with +inf,
    the first minimum (row-major) winning ties and taking the gradient.

    Args:
        kernel_size: window height and width, an int or an (h, w) pair.
        stride: step between windows, an int or an (h, w) pair. Default: kernel_size.
        padding: rows and columns added on each side, at most half the window. Default: 0.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})`
        - Output: :math:`(N, C, H_{out}, W_{out})`, where
          :math:`H_{out} = \lfloor (H_{in} + 2 p_h - k_h) / s_h \rfloor + 1`, and the same for W.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> mc.MinPool2D(2)(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))[0, 0]
        array([[ 0.,  2.],
               [ 8., 10.]], dtype=float32)
    """

    _minimum = True


class AvgPool2D(_Pool2D):
    r"""2-D average pooling over each feature map, PyTorch's ``nn.AvgPool2d``.

    .. math::
        y[n, c, i, j] = \frac{1}{d} \sum_{u < k_h, v < k_w} x_p[n, c, s_h i + u, s_w j + v]

    where :math:`x_p` is the input padded with zeros and :math:`d = k_h k_w`
    (``count_include_pad``, PyTorch's default), else the number of input
    elements under the window.

    Args:
        kernel_size: window height and width, an int or an (h, w) pair.
        stride: step between windows, an int or an (h, w) pair. Default: kernel_size.
        padding: rows and columns added on each side, at most half the window. Default: 0.
        count_include_pad: count the padding in the divisor. Default: True.

    Shape:
        - Input: :math:`(N, C, H_{in}, W_{in})`
        - Output: :math:`(N, C, H_{out}, W_{out})`, where
          :math:`H_{out} = \lfloor (H_{in} + 2 p_h - k_h) / s_h \rfloor + 1`, and the same for W.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> mc.AvgPool2D(2)(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))[0, 0]
        array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True) -> None:
        super().__init__(kernel_size, stride, padding)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise TypeError(f"AvgPool2D: count_include_pad must be true or false, got {count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)

    def _describe(self) -> str:
        return super()._describe() + f", count_include_pad={self.count_include_pad}"

    def forward(self, x, training=True):
        planes, out_shape = self._planes(x)
        y = np.empty(out_shape, dtype=planes.dtype)
        threads.split_rows(_pool.average_forward, (planes, _flat(y)), *self._geometry, self.count_include_pad)
        self._cache = (x.shape, out_shape, planes.dtype) if training else None
        return y

    def backward(self, dy):
        in_shape, out_shape, dtype = require_forward(self._cache, "AvgPool2D")
        dy = check_grad(dy, "AvgPool2D", out_shape, dtype)
        dx = np.empty(in_shape, dtype=dtype)
        threads.split_rows(_pool.average_backward, (_flat(dy), _flat(dx)), *self._geometry, self.count_include_pad)
        return dx


class _GlobalPool2D(Layer):
    # One thread always: one pass at memory speed, where handing half of it to
    # a second thread measured slower (bench_pool: 0.76 vs 0.63 ms on
    # (128, 64, 14, 14)), the wake-up of an idle core costing more than it gained.
    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def output_shape(self, input_shape):
        c, h, w = _spatial_shape(input_shape, type(self).__name__)
        if h == 0 or w == 0:
            raise ValueError(f"{type(self).__name__}: input must not be empty, got {h}x{w}")
        return (c,)

    def window(self, input_shape):
        _, h, w = input_shape
        return (h, w), (h, w)

    def _planes(self, x):
        """Validate x (N, C, H, W); return planes (N*C, H*W)."""
        x = check_array(x, type(self).__name__, 4)
        n, c, h, w = x.shape
        self.output_shape((c, h, w))
        return x.reshape(n * c, h * w)


class GlobalAvgPool2D(_GlobalPool2D):
    r"""The mean of each feature map: :math:`y[n, c] = \frac{1}{HW} \sum_{i, j} x[n, c, i, j]`.

    Shape:
        - Input: :math:`(N, C, H, W)`
        - Output: :math:`(N, C)`

    Example::

        >>> import numpy as np, minicnn as mc
        >>> mc.GlobalAvgPool2D()(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
        array([[1.5, 5.5]], dtype=float32)
    """

    def forward(self, x, training=True):
        planes = self._planes(x)
        y = np.empty(planes.shape[0], dtype=planes.dtype)
        _pool.global_average_forward(planes, y)
        self._cache = (x.shape, planes.dtype) if training else None
        return y.reshape(x.shape[:2])

    def backward(self, dy):
        in_shape, dtype = require_forward(self._cache, "GlobalAvgPool2D")
        dy = check_grad(dy, "GlobalAvgPool2D", in_shape[:2], dtype)
        dx = np.empty(in_shape, dtype=dtype)
        _pool.global_average_backward(dy.reshape(-1),
                                      dx.reshape(in_shape[0] * in_shape[1], in_shape[2] * in_shape[3]))
        return dx


class GlobalMaxPool2D(_GlobalPool2D):
    r"""The maximum of each feature map: :math:`y[n, c] = \max_{i, j} x[n, c, i, j]` (the first
    maximum in row-major order takes the gradient).

    Shape:
        - Input: :math:`(N, C, H, W)`
        - Output: :math:`(N, C)`

    Example::

        >>> import numpy as np, minicnn as mc
        >>> mc.GlobalMaxPool2D()(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
        array([[3., 7.]], dtype=float32)
    """

    def forward(self, x, training=True):
        planes = self._planes(x)
        y = np.empty(planes.shape[0], dtype=planes.dtype)
        argmax = np.empty(planes.shape[0], dtype=np.int32)
        _pool.global_max_forward(planes, y, argmax)
        self._cache = (argmax, x.shape, planes.dtype) if training else None
        return y.reshape(x.shape[:2])

    def backward(self, dy):
        argmax, in_shape, dtype = require_forward(self._cache, "GlobalMaxPool2D")
        dy = check_grad(dy, "GlobalMaxPool2D", in_shape[:2], dtype)
        dx = np.empty(in_shape, dtype=dtype)
        _pool.global_max_backward(dy.reshape(-1), argmax,
                                  dx.reshape(in_shape[0] * in_shape[1], in_shape[2] * in_shape[3]))
        return dx


def _spatial_shape(input_shape, layer):
    if len(input_shape) != 3:
        raise ValueError(f"{layer}: expects a (C, H, W) feature map per example, got shape {tuple(input_shape)}")
    return tuple(int(v) for v in input_shape)


def _flat(a):
    """(N, C, H, W) -> (N*C, H, W) view."""
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])
