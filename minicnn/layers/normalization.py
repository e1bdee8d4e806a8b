"""Batch normalisation with PyTorch's semantics (torch.nn.BatchNorm2d / BatchNorm1d).

Training normalises each channel by the batch's mean and biased variance and
updates the running estimates, ``running = (1 - momentum) * running +
momentum * batch`` with the unbiased variance; evaluation normalises by the
running estimates.  The work runs in C (minicnn._batchnorm): one pass for the
statistics, one for the output, and two for the backward; a following ReLU
can run inside the output pass (``relu=True``, which Sequential uses).
"""
from __future__ import annotations

import math

import numpy as np

from minicnn import _batchnorm, threads
from minicnn.layers.base import Layer, check_array, check_grad, count, require_forward


class _BatchNorm(Layer):
    """Shared by BatchNorm2D and BatchNorm1D; subclasses fix the input's shape."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5, affine=True, *, dtype=np.float64) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = count(num_features, "num_features", name)
        self.momentum = _number(momentum, "momentum", name, 0.0, 1.0)
        self.eps = _number(eps, "eps", name, 0.0, math.inf)
        if not 0 < self.eps < math.inf:
            raise ValueError(f"{name}: eps must be positive and finite, got {eps!r}")
        if not isinstance(affine, (bool, np.bool_)):
            raise TypeError(f"{name}: affine must be true or false, got {affine!r}")
        self.affine = bool(affine)
        c = self.num_features
        if self.affine:
            self.params = {"gamma": np.ones(c, dtype=dtype), "beta": np.zeros(c, dtype=dtype)}
            self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.state = {"running_mean": np.zeros(c, dtype=dtype), "running_var": np.ones(c, dtype=dtype)}
        self._cache = None

    def _describe(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}, affine={self.affine}"

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(gamma, beta) in float64: the params, or ones and zeros without affine."""
        if self.affine:
            return self.params["gamma"].astype(np.float64), self.params["beta"].astype(np.float64)
        return np.ones(self.num_features), np.zeros(self.num_features)

    def _channels(self, x) -> tuple[np.ndarray, tuple[int, ...]]:
        """x validated, as (N, C, S), and its shape."""
        x = check_array(x, type(self).__name__, None)
        if x.ndim not in self._ndims:
            raise ValueError(f"{type(self).__name__}: input must have {' or '.join(map(str, self._ndims))} "
                             f"dimensions, got {x.ndim} (shape {x.shape})")
        self.output_shape(x.shape[1:])
        return x.reshape(x.shape[0], self.num_features, -1), x.shape

    def forward(self, x, training=True, *, relu=False):
        """x (N, C, ...) -> y of the same shape; ``relu=True`` gives max(y, 0), bit for bit a
        ReLU layer's output after this one, and backward then takes the gradient of that."""
        x3, shape = self._channels(x)
        n, c, s = x3.shape
        dtype = x3.dtype.type
        gamma, beta = self._affine()
        parts = _parts(x3.size, c)
        if training:
            if n * s < 2:
                raise ValueError(f"{type(self).__name__}: training needs more than 1 value per channel, "
                                 f"got input shape {shape}")
            mean, var = np.empty(c), np.empty(c)
            _batchnorm.channel_stats(x3, mean, var, parts)
            m = n * s
            for key, batch in (("running_mean", mean), ("running_var", var * (m / (m - 1)))):
                running = self.state[key]
                running[...] = (1 - self.momentum) * running.astype(np.float64) + self.momentum * batch
        else:
            mean = self.state["running_mean"].astype(np.float64)
            var = self.state["running_var"].astype(np.float64)
        invstd = 1.0 / np.sqrt(var + self.eps)
        a = gamma * invstd
        m_typed = mean.astype(dtype)
        # (x - m_typed) * a + b equals (x - mean) * a + beta, whatever m_typed's rounding
        a_t, b_t = a.astype(dtype), (beta + a * (m_typed - mean)).astype(dtype)
        y = np.empty_like(x3)
        if y.size:
            _batchnorm.normalize(x3, y, m_typed, a_t, b_t, relu, parts)
        self._cache = (x3, shape, mean, invstd, m_typed, a, a_t, b_t, relu) if training else None
        return y.reshape(shape)

    def backward(self, dy, input_grad=True):
        """dy (N, C, ...) -> dx, or None with input_grad=False; fills grads (with affine)."""
        x3, shape, mean, invstd, m_typed, a, a_t, b_t, relu = require_forward(self._cache, type(self).__name__)
        dy3 = check_grad(dy, type(self).__name__, shape, x3.dtype).reshape(x3.shape)
        n, c, s = x3.shape
        parts = _parts(x3.size, c)
        sum_dz, sum_dzx = np.empty(c), np.empty(c)
        _batchnorm.backward_sums(x3, dy3, m_typed, a_t, b_t, relu, sum_dz, sum_dzx, parts)
        sum_dzx += (m_typed - mean) * sum_dz        # around the exact mean, not its rounding
        dgamma = sum_dzx * invstd                   # sum(dz * xhat)
        if self.affine:
            self.grads["gamma"][...] = dgamma
            self.grads["beta"][...] = sum_dz
        if not input_grad:
            return None
        # dx = a * (dz - mean(dz) - xhat * mean(dz * xhat)) = p dz + q (x - m_typed) + r
        m = n * s
        q = -a * invstd * dgamma / m
        r = -a * sum_dz / m + q * (m_typed - mean)
        dtype = x3.dtype.type
        dx = np.empty_like(x3)
        _batchnorm.backward_dx(x3, dy3, dx, m_typed, a_t, b_t, relu, a_t, q.astype(dtype), r.astype(dtype), parts)
        return dx.reshape(shape)


class BatchNorm2D(_BatchNorm):
    """y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c], per channel c.

    Training: mean and biased variance of the batch's N * H * W values of each
    channel; the running estimates move by ``momentum`` towards them (the
    unbiased variance for running_var).  Evaluation (training=False): the
    running estimates.  PyTorch's torch.nn.BatchNorm2d, momentum not None.

    Args:
        num_features: channels C (YAML: inferred from the previous layer).
        momentum: weight of the batch in the running estimates, in [0, 1].
        eps: added to the variance, > 0.
        affine: learn gamma and beta (else gamma = 1, beta = 0, no params).

    Params: gamma (C,) ones, beta (C,) zeros (with affine).
    State: running_mean (C,) zeros, running_var (C,) ones.
    Shape: (N, C, H, W) -> (N, C, H, W).

    Example:
        >>> import numpy as np
        >>> bn = BatchNorm2D(3)
        >>> x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)) * 2 + 1
        >>> y = bn.forward(x)
        >>> bool(np.allclose(y.mean(axis=(0, 2, 3)), 0)), bool(np.allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-4))
        (True, True)
        >>> bn.state["running_mean"].round(2)
        array([0.08, 0.11, 0.09])
    """

    _ndims = (4,)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"BatchNorm2D: expects a (C, H, W) feature map per example, got shape "
                             f"{tuple(input_shape)}")
        if input_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm2D: expects {self.num_features} channels, got {input_shape[0]}")
        return tuple(input_shape)


class BatchNorm1D(_BatchNorm):
    """BatchNorm2D's normalisation for features: (N, C) or (N, C, L) input, statistics
    over N (and L) per feature.  PyTorch's torch.nn.BatchNorm1d; after a Dense layer.

    Args, params and state: as BatchNorm2D (num_features: the features C).
    Shape: (N, C) -> (N, C), (N, C, L) -> (N, C, L).

    Example:
        >>> import numpy as np
        >>> bn = BatchNorm1D(2, affine=False)
        >>> bn.forward(np.array([[1.0, 10.0], [3.0, 30.0]]))
        array([[-0.999995  , -0.99999995],
               [ 0.999995  ,  0.99999995]])
        >>> bn.params, bn.state["running_var"]
        ({}, array([ 1.1, 20.9]))
    """

    _ndims = (2, 3)

    def output_shape(self, input_shape):
        if len(input_shape) not in (1, 2):
            raise ValueError(f"BatchNorm1D: expects (C,) or (C, L) features per example, got shape "
                             f"{tuple(input_shape)}")
        if input_shape[0] != self.num_features:
            raise ValueError(f"BatchNorm1D: expects {self.num_features} features, got {input_shape[0]}")
        return tuple(input_shape)

    def window(self, input_shape):
        return None


def _number(value, name: str, layer: str, least: float, most: float) -> float:
    """A real number in [least, most]: TypeError for another type, ValueError out of range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{layer}: {name} must be a number, got {value!r}")
    if not least <= value <= most:
        raise ValueError(f"{layer}: {name} must be in [{least:g}, {most:g}], got {value!r}")
    return float(value)


def _parts(size: int, channels: int) -> int:
    """Threads for a pass over ``size`` elements, each part a range of the channels."""
    return max(1, min(threads.KERNEL_THREADS if size >= threads.PARALLEL_MIN_WORK else 1, channels))
