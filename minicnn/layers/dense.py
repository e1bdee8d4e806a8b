"""Fully connected layer."""
from __future__ import annotations

import numpy as np

from minicnn import threads
from minicnn.layers.base import Layer, check_array, check_grad, count, require_forward
from minicnn.layers.gemm import matmul
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

    # Forward splits the batch (each part packs only its rows of x and reads W
    # in place), and only from DENSE_PARALLEL_MIN_MACS: the reference network's
    # Dense(3136, 128) at batch 64 (26 M MACs) took 0.36-0.42 ms on one thread
    # and 0.45-0.57 ms on two, the hand-off costing more than the second thread
    # saved.  Backward gives each part a range of W's rows.
    def forward(self, x, training=True):
        x = check_array(x, "Dense", 2)
        self.output_shape(x.shape[1:])
        w = self.params["W"].astype(x.dtype, copy=False)
        b = self.params["b"].astype(x.dtype, copy=False)
        y = np.empty((x.shape[0], self.out_features), dtype=x.dtype)

        def work(_, my_ranges):
            for lo, hi in my_ranges:
                matmul(x[lo:hi], w, y[lo:hi])
                y[lo:hi] += b

        with threads.one_blas_thread():
            threads.run_parts(work, threads.row_ranges(x.shape[0], x.size * self.out_features,
                                                       DENSE_PARALLEL_MIN_MACS))
        self._cache = x if training else None
        return y

    def backward(self, dy, input_grad=True):
        """dy (N, out_features) -> dx (N, in_features), or None with input_grad=False."""
        x = require_forward(self._cache, "Dense")
        dy = check_grad(dy, "Dense", (x.shape[0], self.out_features), x.dtype)
        w = self.params["W"].astype(dy.dtype, copy=False)
        dx = np.empty_like(x) if input_grad else None

        def work(_, my_ranges):
            for lo, hi in my_ranges:
                if input_grad:
                    matmul(dy, w[lo:hi].T, dx[:, lo:hi])
                matmul(x[:, lo:hi].T, dy, self.grads["W"][lo:hi])

        with threads.one_blas_thread():
            threads.run_parts(work, threads.row_ranges(self.in_features, x.size * self.out_features))
        self.grads["b"][...] = dy.sum(axis=0)
        return dx


# Multiply-accumulates from which Dense's forward uses minicnn's threads.
DENSE_PARALLEL_MIN_MACS = 1 << 26
