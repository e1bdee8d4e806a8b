"""Fully connected layer."""
from __future__ import annotations

import numpy as np

from minicnn import threads
from minicnn.layers.base import WeightedLayer, check_array, check_grad, count, require_forward
from minicnn.layers.gemm import matmul_parts


class Dense(WeightedLayer):
    r"""Fully connected layer: :math:`y = x W + b`.

    Args:
        in_features: size of each input example; None (or left out, with
            ``out_features`` given by name) to infer it when a Sequential builds the layer.
        out_features: size of each output example.
        dtype: float32 (default) or float64, the weights' type.
        rng: a numpy Generator for the weights. Default: the Sequential's seed
            (a layer used alone draws from seed 0).

    Weights (``params``):
        W: (in_features, out_features), He-normal; b: (out_features,), zeros.

    Shape:
        - Input: :math:`(N, H_{in})` with :math:`H_{in}` = in_features
        - Output: :math:`(N, H_{out})` with :math:`H_{out}` = out_features

    Example::

        >>> import numpy as np, minicnn as mc
        >>> dense = mc.Dense(20, 10)
        >>> dense(np.ones((4, 20), np.float32)).shape
        (4, 10)
        >>> dense.params["W"].dtype
        dtype('float32')
    """

    def __init__(self, in_features=None, out_features=None, *, dtype=np.float32, rng=None) -> None:
        if out_features is None:
            raise TypeError("Dense: out_features is required, e.g. Dense(128, 10) or Dense(out_features=10)")
        self.out_features = count(out_features, "out_features", "Dense")
        self._cache = None
        super().__init__(None if in_features is None else count(in_features, "in_features", "Dense"), dtype, rng)

    SIZE = "in_features"

    @property
    def in_features(self):
        return self._in_size

    @in_features.setter
    def in_features(self, value):
        self._in_size = value

    def _shapes(self):
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def _fan_in(self):
        return self.in_features

    def _infer(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Dense: expects flat (features,) examples, got shape {tuple(input_shape)} "
                             "(add a Flatten before it)")
        return count(int(input_shape[0]), "in_features", "Dense")

    def _describe(self) -> str:
        return f"{self.in_features}, {self.out_features}"

    def output_shape(self, input_shape):
        if self.in_features is None:
            raise ValueError("Dense: in_features is not known yet: give it, or build the layer in a Sequential")
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Dense: expects ({self.in_features},) features per example, got shape "
                f"{tuple(input_shape)}" + (" (add a flatten layer before it)" if len(input_shape) > 1 else ""))
        return (self.out_features,)

    def macs(self, input_shape):
        return self.in_features * self.out_features

    def window(self, input_shape):
        return None

    # Both directions give part j the same range of W's rows (in_features), as
    # the optimizer does (minicnn._optim): each core reads and writes only its
    # share of W and dW, which stays in its cache from one step to the next.
    # Forward sums the parts' partial products (x[:, lo:hi] @ W[lo:hi]).
    # The products run on minicnn's team of threads (gemm.matmul_parts).
    def forward(self, x, training=True):
        x = check_array(x, "Dense", 2)
        self.output_shape(x.shape[1:])
        w = self.params["W"].astype(x.dtype, copy=False)
        b = self.params["b"].astype(x.dtype, copy=False)
        ranges = threads.row_ranges(self.in_features, x.size * self.out_features)
        y = np.empty((len(ranges), x.shape[0], self.out_features), dtype=x.dtype)
        matmul_parts([(x[:, lo:hi], w[lo:hi], y[j], False) for j, (lo, hi) in enumerate(ranges)], len(ranges))
        for j in range(1, len(ranges)):
            y[0] += y[j]
        y = y[0]
        y += b
        self._cache = x if training else None
        return y

    def backward(self, dy, input_grad=True):
        """dy (N, out_features) -> dx (N, in_features), or None with input_grad=False."""
        x = require_forward(self._cache, "Dense")
        dy = check_grad(dy, "Dense", (x.shape[0], self.out_features), x.dtype)
        w = self.params["W"].astype(dy.dtype, copy=False)
        dx = np.empty_like(x) if input_grad else None
        ranges = threads.row_ranges(self.in_features, x.size * self.out_features)
        # product i runs on part i % len(ranges): part j takes dx's columns and dW's rows lo_j:hi_j
        products = [(dy, w[lo:hi].T, dx[:, lo:hi], False) for lo, hi in ranges] if input_grad else []
        products += [(x[:, lo:hi].T, dy, self.grads["W"][lo:hi], False) for lo, hi in ranges]
        matmul_parts(products, len(ranges))
        self.grads["b"][...] = dy.sum(axis=0)
        return dx
