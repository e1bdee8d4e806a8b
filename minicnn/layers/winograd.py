"""Winograd F(2x2, 3x3) convolution (Lavin and Gray 2016) for Conv2D's 3x3 stride-1 case.

Each 2x2 output tile comes from a 4x4 input patch: the patches and filters are
transformed (minicnn._conv says how), multiplied as 16 independent
(O, C) @ (C, tiles) matrix products, and transformed back.  That takes 16
multiplications per tile and channel pair where the direct form takes 36, so
2.25x fewer.  Backward runs the adjoint of each step: the input gradient is
the transposed products, the filter gradient 16 (O, tiles) @ (tiles, C)
products summed over the batch.

Work is cut into chunks of images (their transformed tiles stay in cache)
and the chunks are shared out over minicnn's team of threads
(minicnn._conv.winograd_forward / winograd_backward run the whole layer in
C); each part has its own scratch buffers and its own filter-gradient sum,
added up in part order.

Shapes: x (N, C, H, W), W (O, C, 3, 3), b (O,), y (N, O, OH, OW) with
OH = H + 2 * ph - 2, OW = W + 2 * pw - 2; tiles per image TH * TW,
TH = ceil(OH / 2), TW = ceil(OW / 2).
"""
from __future__ import annotations

import numpy as np

from minicnn import _conv
from minicnn import threads
from minicnn.layers.gemm import matmul, pack

# Filter transform: U = G w G^T per 3x3 filter.
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
# U[(a, b)] = sum over (i, j) of G[a, i] G[b, j] w[i, j]: the transform of a flattened filter.
KRON = np.kron(G, G)                                        # (16, 9)
# Bytes of transformed tiles (input and output) per chunk of images.  Measured
# (forward + backward ms per batch of 64, 1 thread, same process): 32->64 on
# 14x14 2.49+5.27 at 1 MB against 2.72+5.83 at 2 MB and 2.96+5.56 at 512 KB;
# 64->128 on 7x7 2.94+6.03 against 2.94+6.38 (2.32+5.51 at 512 KB).
CHUNK_BYTES = 1 << 20


def filter_transform(w: np.ndarray, out: np.ndarray) -> np.ndarray:
    """w (O, C, 3, 3) -> out (16, O, C) = G w G^T, as one product with
    kron(G, G) (16, 9) in out's dtype; returns out."""
    o, c = w.shape[:2]
    k = KRON.astype(out.dtype, copy=False)
    matmul(k, w.astype(out.dtype, copy=False).reshape(o * c, 9).T, out.reshape(16, o * c))
    return out


def filter_transform_adjoint(du: np.ndarray) -> np.ndarray:
    """dU (16, O, C) -> dw (O, C, 3, 3) = G^T dU G, in dU's dtype."""
    o, c = du.shape[1:]
    dw = np.empty((o * c, 9), dtype=du.dtype)
    matmul(du.reshape(16, o * c).T, KRON.astype(du.dtype, copy=False), dw)
    return dw.reshape(o, c, 3, 3)


def tiles(h, w, padding):
    """(TH, TW): 2x2 output tiles per image."""
    ph, pw = padding
    return (h + 2 * ph - 1) // 2, (w + 2 * pw - 1) // 2


def matrices(buffer, rows, t):
    """A (16, rows, t) view of ``buffer`` whose 16 matrices start
    _conv.matrix_stride(rows, t) elements apart (never a multiple of 4 KB:
    the transforms stream through all 16 at once, and matrices a multiple of
    4 KB apart would all fall in the same cache sets)."""
    stride = _conv.matrix_stride(rows, t, buffer.itemsize)
    return np.lib.stride_tricks.as_strided(
        buffer, (16, rows, t), (stride * buffer.itemsize, t * buffer.itemsize, buffer.itemsize))


def matrices_size(rows, t, itemsize):
    """Elements of buffer that matrices(buffer, rows, t) needs."""
    return 16 * _conv.matrix_stride(rows, t, itemsize)


def plan(n, per_image, budget=None):
    """Cut n images into chunks of at most ``budget`` bytes (default
    CHUNK_BYTES; per_image bytes each, at least one image), in a multiple of
    minicnn's thread count when there are enough images, so that every thread
    gets as many images as the others, give or take one.

    Returns (largest chunk, chunk bounds (intp array: chunk i is images
    bounds[i]..bounds[i+1]-1), parts: threads to run them on)."""
    if n == 0:
        return 1, np.zeros(1, dtype=np.intp), 1
    b = max(1, min(n, (CHUNK_BYTES if budget is None else budget) // max(1, per_image)))
    count = -(-n // b)
    parts = threads.KERNEL_THREADS
    if count % parts and n >= parts:
        count = min(n, -(-count // parts) * parts)
    bounds = np.array([n * i // count for i in range(count + 1)], dtype=np.intp)
    return int(np.diff(bounds).max()), bounds, max(1, min(parts, count))


def forward(x, w, bias, padding, workspace, relu=False):
    """y = conv(x, w) + bias, or max(that, 0) with relu, rectified tile by
    tile in the output transform.  ``workspace(name, size, dtype)`` gives scratch."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    th, tw = tiles(h, wd, padding)
    y = np.empty((n, o, h + 2 * padding[0] - 2, wd + 2 * padding[1] - 2), dtype=x.dtype)
    u = filter_transform(w, workspace("wu", 16 * o * c, x.dtype)[:16 * o * c].reshape(16, o, c))
    bias = np.ascontiguousarray(bias, dtype=x.dtype)
    per = th * tw
    b, bounds, parts = plan(n, 16 * (c + o) * per * x.itemsize)
    v = workspace("wv", parts * matrices_size(c, b * per, x.itemsize), x.dtype)
    m = workspace("wm", parts * matrices_size(o, b * per, x.itemsize), x.dtype)
    _conv.winograd_forward(x, u, pack(u), bias, y, v, m, bounds, parts, *padding, relu)
    return y


def backward(x, w, dy, padding, workspace, input_grad=True, relu_out=None):
    """(dx or None, dw (O, C, 3, 3), db (O,) float64) for forward's y; with
    ``relu_out`` (forward's rectified output), dy is the gradient after the
    ReLU and is masked by relu_out > 0 as the output transform's adjoint reads it."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    th, tw = tiles(h, wd, padding)
    u = filter_transform(w, workspace("wu", 16 * o * c, x.dtype)[:16 * o * c].reshape(16, o, c))
    ut = workspace("wut", 16 * o * c, x.dtype)[:16 * o * c].reshape(16, c, o)
    np.copyto(ut, u.transpose(0, 2, 1))
    dx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
    per = th * tw
    b, bounds, parts = plan(n, 16 * (c + o) * per * x.itemsize)
    v = workspace("wv", parts * matrices_size(c, b * per, x.itemsize), x.dtype)
    m = workspace("wm", parts * matrices_size(o, b * per, x.itemsize), x.dtype)
    du = np.zeros((parts, 16, o, c), dtype=x.dtype)
    db = np.zeros((parts, o), dtype=np.float64)
    _conv.winograd_backward(x, ut, pack(ut) if input_grad else None, dy, relu_out, dx, du, db,
                            v, m, bounds, parts, *padding)
    return dx, filter_transform_adjoint(du.sum(axis=0)), db.sum(axis=0)
