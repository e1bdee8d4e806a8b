"""Flatten: the bridge from feature maps to dense layers."""
from __future__ import annotations

import math

from minicnn.layers.base import Layer, check_array, check_grad, require_forward


class Flatten(Layer):
    r"""Each example as one flat vector, from feature maps to a Dense layer (row-major order).

    Shape:
        - Input: :math:`(N, d_1, d_2, \ldots)`
        - Output: :math:`(N, d_1 d_2 \cdots)`

    Example::

        >>> import numpy as np, minicnn as mc
        >>> mc.Flatten()(np.zeros((2, 3, 4, 4), np.float32)).shape
        (2, 48)
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def window(self, input_shape):
        return None

    def forward(self, x, training=True):
        x = check_array(x, "Flatten", None)
        if x.ndim < 2:
            raise ValueError(f"Flatten: input must have a batch axis and at least one more, got shape {x.shape}")
        self._cache = (x.shape, x.dtype) if training else None
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, dy):
        shape, dtype = require_forward(self._cache, "Flatten")
        dy = check_grad(dy, "Flatten", (shape[0], math.prod(shape[1:])), dtype)
        return dy.reshape(shape)
