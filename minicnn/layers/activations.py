"""Element-wise and per-row activations."""
from __future__ import annotations

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
