"""Element-wise and per-row activations; the element-wise loops are in C (minicnn._activations)."""
from __future__ import annotations

import math

import numpy as np

from minicnn import _activations, threads
from minicnn.layers.base import Layer, check_array, check_grad, require_forward


class ReLU(Layer):
    r"""Rectified linear unit, elementwise: :math:`y = \max(x, 0)`.

    Shape:
        - Input: :math:`(N, *)`, any shape
        - Output: the input's shape

    Example::

        >>> import numpy as np, minicnn as mc
        >>> mc.ReLU()(np.array([[-1.0, 0.0, 2.0]]))
        array([[0., 0., 2.]])
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, x, training=True):
        x = check_array(x, "ReLU", None)
        y = np.empty_like(x)
        threads.split_rows(_activations.relu_forward, (x.reshape(-1), y.reshape(-1)))
        self._cache = y if training else None
        return y

    def backward(self, dy):
        y = require_forward(self._cache, "ReLU")
        dy = check_grad(dy, "ReLU", y.shape, y.dtype)
        dx = np.empty_like(y)
        threads.split_rows(_activations.relu_backward, (y.reshape(-1), dy.reshape(-1), dx.reshape(-1)))
        return dx


class LeakyReLU(Layer):
    """x if x > 0 else negative_slope * x.  PyTorch's torch.nn.LeakyReLU.

    Args:
        negative_slope: the slope for x <= 0 (a finite number; 0 gives ReLU's values).

    Shape: any (N, ...) -> the same.

    Example:
        >>> import numpy as np
        >>> LeakyReLU(0.1).forward(np.array([[-2.0, 0.0, 3.0]]))
        array([[-0.2,  0. ,  3. ]])
    """

    def __init__(self, negative_slope=0.01) -> None:
        super().__init__()
        if isinstance(negative_slope, (bool, np.bool_)) or not isinstance(
                negative_slope, (int, float, np.integer, np.floating)):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        if not math.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU: negative_slope must be finite, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self._cache = None

    def _describe(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def forward(self, x, training=True):
        x = check_array(x, "LeakyReLU", None)
        y = np.empty_like(x)
        threads.split_rows(_activations.leaky_relu_forward, (x.reshape(-1), y.reshape(-1)), self.negative_slope)
        self._cache = x if training else None
        return y

    def backward(self, dy):
        x = require_forward(self._cache, "LeakyReLU")
        dy = check_grad(dy, "LeakyReLU", x.shape, x.dtype)
        dx = np.empty_like(x)
        threads.split_rows(_activations.leaky_relu_backward, (x.reshape(-1), dy.reshape(-1), dx.reshape(-1)),
                           self.negative_slope)
        return dx


class Tanh(Layer):
    """tanh(x); backward dy * (1 - y^2) from the output y.  Shape: any (N, ...) -> the same.

    Example:
        >>> import numpy as np
        >>> Tanh().forward(np.array([[0.0, 1.0]])).round(4)
        array([[0.    , 0.7616]])
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, x, training=True):
        y = np.tanh(check_array(x, "Tanh", None))
        self._cache = y if training else None
        return y

    def backward(self, dy):
        y = require_forward(self._cache, "Tanh")
        dy = check_grad(dy, "Tanh", y.shape, y.dtype)
        dx = np.empty_like(y)
        threads.split_rows(_activations.tanh_backward, (y.reshape(-1), dy.reshape(-1), dx.reshape(-1)))
        return dx


class Sigmoid(Layer):
    """1 / (1 + exp(-x)); backward dy * y * (1 - y) from the output y.  Shape: any (N, ...) -> the same.

    exp(-x) may overflow to inf for x below about -88 (float32) or -709 (float64):
    the output is then 0, as it should be, and no warning is raised.

    Example:
        >>> import numpy as np
        >>> Sigmoid().forward(np.array([[0.0, 2.0, -1000.0]])).round(4)
        array([[0.5   , 0.8808, 0.    ]])
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, x, training=True):
        x = check_array(x, "Sigmoid", None)
        y = np.empty_like(x)
        with np.errstate(over="ignore"):
            np.negative(x, out=y)
            np.exp(y, out=y)
        y += 1
        np.reciprocal(y, out=y)
        self._cache = y if training else None
        return y

    def backward(self, dy):
        y = require_forward(self._cache, "Sigmoid")
        dy = check_grad(dy, "Sigmoid", y.shape, y.dtype)
        dx = np.empty_like(y)
        threads.split_rows(_activations.sigmoid_backward, (y.reshape(-1), dy.reshape(-1), dx.reshape(-1)))
        return dx


class GELU(Layer):
    """x * Phi(x), Phi the standard normal CDF.  PyTorch's torch.nn.GELU.

    Args:
        approximate: "none", the exact 0.5 x (1 + erf(x / sqrt(2))), or "tanh",
            0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (PyTorch's argument).

    Computed in the input's precision, as PyTorch does: the exact form with libm's
    erf (scalar: several times PyTorch's vectorised time), the tanh form as
    x / (1 + exp(-2u)) with NumPy's exp (equal to it, without its cancellation near -1).
    Shape: any (N, ...) -> the same.

    Example:
        >>> import numpy as np
        >>> GELU().forward(np.array([[-1.0, 0.0, 1.0]])).round(4)
        array([[-0.1587,  0.    ,  0.8413]])
        >>> GELU("tanh").forward(np.array([[1.0]])).round(4)
        array([[0.8412]])
    """

    def __init__(self, approximate="none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._cache = None

    def _describe(self) -> str:
        return f"approximate={self.approximate!r}"

    def forward(self, x, training=True):
        x = check_array(x, "GELU", None)
        if self.approximate == "tanh":
            # 0.5 (1 + tanh(u)) = s = 1 / (1 + exp(-2u)), u = sqrt(2 / pi) (x + 0.044715 x^3): no cancellation
            # where tanh(u) nears -1, and NumPy's vectorised exp, 15x faster than libm's tanh
            s = x * x
            s *= x.dtype.type(GELU_KAPPA)
            s += 1
            s *= x
            s *= x.dtype.type(-2 * GELU_BETA)
            with np.errstate(over="ignore"):
                np.exp(s, out=s)
            s += 1
            np.reciprocal(s, out=s)
            self._cache = (x, s) if training else None
            return x * s
        y = np.empty_like(x)
        threads.split_rows(_activations.gelu_forward, (x.reshape(-1), y.reshape(-1)))
        self._cache = (x, None) if training else None
        return y

    def backward(self, dy):
        x, t = require_forward(self._cache, "GELU")   # t: s of the tanh form, else None
        dy = check_grad(dy, "GELU", x.shape, x.dtype)
        if t is not None:   # d/dx x s = s + 2 x s (1 - s) sqrt(2 / pi) (1 + 3 * 0.044715 x^2)
            s = t
            kappa, beta = x.dtype.type(GELU_KAPPA), x.dtype.type(GELU_BETA)
            dx = x * x
            dx *= 3 * kappa
            dx += 1
            dx *= x
            dx *= 2 * beta
            dx *= 1 - s
            dx += 1
            dx *= s
            dx *= dy
            return dx
        dx = np.empty_like(x)
        threads.split_rows(_activations.gelu_backward, (x.reshape(-1), dy.reshape(-1), dx.reshape(-1)))
        return dx


# GELU's tanh form: sqrt(2 / pi) and the cubic term's factor (PyTorch's kBeta, kKappa).
GELU_BETA = math.sqrt(2 / math.pi)
GELU_KAPPA = 0.044715


class Softmax(Layer):
    r"""Softmax over each example's K scores: :math:`y_k = e^{x_k} / \sum_j e^{x_j}`.

    Training folds it into the cross-entropy loss (see minicnn.losses), so this
    layer's own backward is only used when it is trained on its own.

    Shape:
        - Input: :math:`(N, K)`
        - Output: :math:`(N, K)`, each row summing to 1

    Example::

        >>> import numpy as np, minicnn as mc
        >>> mc.Softmax()(np.log(np.array([[1.0, 3.0]])))
        array([[0.25, 0.75]])
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Softmax: expects (K,) features per example, got shape {tuple(input_shape)}")
        return tuple(input_shape)

    def window(self, input_shape):
        return None

    def forward(self, x, training=True):
        x = check_array(x, "Softmax", 2)
        if x.shape[1] == 0:
            raise ValueError(f"Softmax: input needs at least one class, got shape {x.shape}")
        y = softmax(x)
        self._cache = y if training else None
        return y

    def backward(self, dy):
        y = require_forward(self._cache, "Softmax")
        dy = check_grad(dy, "Softmax", y.shape, y.dtype)
        return y * (dy - np.sum(dy * y, axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Stable row-wise softmax of (N, K) logits."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e
