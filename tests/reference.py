"""Slow, obvious NumPy references for the layers, used only by the tests.

Every function loops over output windows in plain Python and always computes
in float64, whatever the input dtype; the tests compare the layers' results
(cast to float64) with these.  Nothing here imports minicnn.

Pooling follows PyTorch's defaults (``ceil_mode=False``, ``dilation=1``):
output row ``oh`` covers input rows ``oh * sh - ph ... oh * sh - ph + kh - 1``;
``H_out = floor((H + 2 * ph - kh) / sh) + 1``.

Shapes: ``x`` is (N, C, H, W); pooling returns (N, C, H_out, W_out), global
pooling (N, C); every ``*_backward`` returns ``dx`` shaped like ``x``.
"""
from __future__ import annotations

import math

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def out_size(size: int, k: int, s: int, p: int) -> int:
    """floor((size + 2p - k) / s) + 1, the number of windows that fit."""
    return (size + 2 * p - k) // s + 1


def windows(H, W, kernel_size, stride, padding):
    """Yield (oh, ow, cells) for each output window.

    ``cells`` lists the (i, j) input positions the window covers that lie
    inside the input, in row-major order; positions in the padding are left
    out (the caller decides what the padding is worth).
    """
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride), _pair(padding)
    for oh in range(out_size(H, kh, sh, ph)):
        for ow in range(out_size(W, kw, sw, pw)):
            top, left = oh * sh - ph, ow * sw - pw
            cells = [(i, j)
                     for i in range(top, top + kh)
                     for j in range(left, left + kw)
                     if 0 <= i < H and 0 <= j < W]
            yield oh, ow, cells


def _output(x, kernel_size, stride, padding):
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride), _pair(padding)
    return np.zeros((N, C, out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)))


# ----------------------------------------------------------- max and min --

def _chosen_cell(values, minimum):
    """Index into ``values`` (one window, row-major) of the element pooling picks.

    Padding (-inf for max, +inf for min) can at most tie, in a window whose
    real elements are all -inf (+inf); PyTorch then picks the first in-bounds
    element, never a padding cell.  So only in-bounds values matter, and the
    gradient always lands inside the input.
    NaN propagates, by PyTorch's CPU rule ``if (v > best || isnan(v))``: a NaN
    always takes over, so the output is NaN and the *last* NaN (row-major)
    gets the gradient.
    """
    nans = [i for i, v in enumerate(values) if math.isnan(v)]
    if nans:
        return nans[-1]
    best = min(values) if minimum else max(values)
    return values.index(best)          # first occurrence: first in row-major order


def _extreme_forward(x, kernel_size, stride, padding, minimum):
    stride = kernel_size if stride is None else stride
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    y = _output(x, kernel_size, stride, padding)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in windows(H, W, kernel_size, stride, padding):
                values = [x[n, c, i, j] for i, j in cells]
                y[n, c, oh, ow] = values[_chosen_cell(values, minimum)]
    return y


def _extreme_backward(x, dy, kernel_size, stride, padding, minimum):
    stride = kernel_size if stride is None else stride
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in windows(H, W, kernel_size, stride, padding):
                values = [x[n, c, i, j] for i, j in cells]
                i, j = cells[_chosen_cell(values, minimum)]
                dx[n, c, i, j] += dy[n, c, oh, ow]     # overlapping windows add up
    return dx


def max_pool_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling, padding with -inf."""
    return _extreme_forward(x, kernel_size, stride, padding, minimum=False)


def max_pool_backward(x, dy, kernel_size, stride=None, padding=0):
    """The whole of dy[window] goes to the element max pooling picked."""
    return _extreme_backward(x, dy, kernel_size, stride, padding, minimum=False)


def min_pool_forward(x, kernel_size, stride=None, padding=0):
    """Min pooling, padding with +inf; the mirror of max pooling."""
    return _extreme_forward(x, kernel_size, stride, padding, minimum=True)


def min_pool_backward(x, dy, kernel_size, stride=None, padding=0):
    return _extreme_backward(x, dy, kernel_size, stride, padding, minimum=True)


# --------------------------------------------------------------- average --

def _divisor(cells, kernel_size, count_include_pad):
    kh, kw = _pair(kernel_size)
    return kh * kw if count_include_pad else len(cells)


def avg_pool_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling, padding with zeros.

    Divides by kh * kw when count_include_pad, else by the number of input
    (non-padding) elements in the window.
    """
    stride = kernel_size if stride is None else stride
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    y = _output(x, kernel_size, stride, padding)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in windows(H, W, kernel_size, stride, padding):
                total = sum(x[n, c, i, j] for i, j in cells)
                y[n, c, oh, ow] = total / _divisor(cells, kernel_size, count_include_pad)
    return y


def avg_pool_backward(x_shape, dy, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Each window spreads dy / divisor over its input elements."""
    stride = kernel_size if stride is None else stride
    dy = np.asarray(dy, dtype=np.float64)
    N, C, H, W = x_shape
    dx = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in windows(H, W, kernel_size, stride, padding):
                share = dy[n, c, oh, ow] / _divisor(cells, kernel_size, count_include_pad)
                for i, j in cells:
                    dx[n, c, i, j] += share
    return dx


# ---------------------------------------------------------------- global --

def global_avg_forward(x):
    """(N, C, H, W) -> (N, C): the mean of each feature map."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    y = np.zeros((N, C))
    for n in range(N):
        for c in range(C):
            y[n, c] = sum(x[n, c, i, j] for i in range(H) for j in range(W)) / (H * W)
    return y


def global_avg_backward(x_shape, dy):
    N, C, H, W = x_shape
    dx = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            dx[n, c, :, :] = float(dy[n, c]) / (H * W)
    return dx


def global_max_forward(x):
    """(N, C, H, W) -> (N, C): max pooling with one window covering the map."""
    x = np.asarray(x, dtype=np.float64)
    return max_pool_forward(x, x.shape[2:])[:, :, 0, 0]


def global_max_backward(x, dy):
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    return max_pool_backward(x, dy[:, :, None, None], x.shape[2:])


# ------------------------------------------------------- conv and dense --

def conv2d_forward(x, W, b, stride=1, padding=0):
    """Direct cross-correlation with zero padding.

    x (N, C, H, W_in), W (O, C, kh, kw), b (O,) -> y (N, O, H_out, W_out).
    """
    x = np.asarray(x, dtype=np.float64)
    Wt = np.asarray(W, dtype=np.float64)
    N, C, H, Win = x.shape
    O, C2, kh, kw = Wt.shape
    assert C == C2
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xp = np.zeros((N, C, H + 2 * ph, Win + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + Win] = x
    OH, OW = out_size(H, kh, sh, ph), out_size(Win, kw, sw, pw)
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for oh in range(OH):
                for ow in range(OW):
                    patch = xp[n, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw]
                    y[n, o, oh, ow] = np.sum(patch * Wt[o]) + b[o]
    return y


def dense_forward(x, W, b):
    """y[n, j] = sum_i x[n, i] * W[i, j] + b[j]."""
    x = np.asarray(x, dtype=np.float64)
    N, I = x.shape
    J = W.shape[1]
    y = np.zeros((N, J))
    for n in range(N):
        for j in range(J):
            y[n, j] = sum(x[n, i] * W[i, j] for i in range(I)) + b[j]
    return y


# ------------------------------------------------------------ comparing --

TOLERANCE = {np.dtype(np.float64): dict(rtol=1e-12, atol=1e-12),
             np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6)}


def assert_close(actual, expected, dtype=None):
    """The one comparison every kernel test uses.

    ``actual`` must be an ndarray of ``dtype`` (default: its own dtype, which
    must be float32 or float64) with ``expected``'s shape; values are compared
    in float64 with that dtype's tolerance; NaNs must sit in the same places.
    """
    assert isinstance(actual, np.ndarray), type(actual)
    dtype = np.dtype(actual.dtype if dtype is None else dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_allclose(actual.astype(np.float64), expected, equal_nan=True,
                               **TOLERANCE[dtype])


# ------------------------------------------------------- batch norm --

def batchnorm_forward(x, gamma, beta, eps, mean=None, var=None):
    """Per channel c (axis 1): (x - mean) / sqrt(var + eps) * gamma + beta.

    mean and var default to the batch's (biased variance) over every axis but 1.
    """
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    mean = x.mean(axis=axes) if mean is None else np.asarray(mean, dtype=np.float64)
    var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes) if var is None else np.asarray(var, dtype=np.float64)
    xhat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return xhat * np.reshape(gamma, shape) + np.reshape(beta, shape)


def batchnorm_backward(x, dy, gamma, eps):
    """Training-mode gradients (dx, dgamma, dbeta) by the chain rule through the batch mean
    and variance, term by term (the textbook derivation, not the folded formula)."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    g = np.reshape(gamma, shape).astype(np.float64)
    dxhat = dy * g
    dvar = np.sum(dxhat * (x - mu) * -0.5 * std ** -3, axis=axes, keepdims=True)
    dmu = np.sum(-dxhat / std, axis=axes, keepdims=True) + dvar * np.sum(-2 * (x - mu), axis=axes, keepdims=True) / m
    dx = dxhat / std + dvar * 2 * (x - mu) / m + dmu / m
    return dx, np.sum(dy * xhat, axis=axes), np.sum(dy, axis=axes)
