"""Fully connected layer."""
from __future__ import annotations

import numpy as np

from minicnn import threads
from minicnn.layers.base import Layer, check_array, check_grad, count, require_forward
from minicnn.layers.gemm import matmul_parts
from minicnn.layers.init import he_normal


class Dense(Layer):
    """y = x @ W + b.

    Params: W (in_features, out_features), b (out_features,).
    Shape: (N, in_features) -> (N, out_features).
    """

    def __init__(self, in_features, out_features, *, dtype=np.float64, rng=None) -> None:
        super().__init__()
        self.in_features = count(in_features, "in_features", "Dense")
        self.out_features = count(out_features, "out_features", "Dense")
        self.params = {
            "W": he_normal((self.in_features, self.out_features), self.in_features, dtype, rng),
            "b": np.zeros(self.out_features, dtype=dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None

    def _describe(self) -> str:
        return f"{self.in_features}, {self.out_features}"

    def output_shape(self, input_shape):
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
