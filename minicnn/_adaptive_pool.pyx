# cython: language_level=3
"""Adaptive pooling kernels (average and max) over one or more output grids.

Every kernel works on a stack of P independent planes, ``x`` of shape
``(P, H, W)`` with ``P = N * C``, serially; ``minicnn.threads`` runs ranges of
planes on several threads (the kernels release the GIL).

``levels`` lists output grids ``(OH_k, OW_k)``; a plane's outputs are those
of every grid, row-major, grid after grid: ``y`` is ``(P, S)`` with
``S = sum OH_k * OW_k``.  AdaptiveAvgPool2D and AdaptiveMaxPool2D use one
grid, SpatialPyramidPool2D one per pyramid level, so the plane is read from
cache for all of them.

Bins follow PyTorch's rule: output row ``i`` of a grid of ``OH`` rows covers
input rows ``floor(i * H / OH) <= h < ceil((i + 1) * H / OH)``, columns
likewise; bins overlap when ``OH`` does not divide ``H``, and each holds at
least one element when ``OH <= H``.

Average: the mean of the bin, summed in double.  Backward spreads
``dy / (bin rows * bin columns)`` over the bin, overlapping bins adding up.
Max: the maximum and its flat position ``h * W + w`` in the plane (int32, or
int64 for planes of 2^31 elements or more); ties go to the first in row-major
order and NaN wins (the last NaN), PyTorch's rule ``v > best || isnan(v)``.
Backward adds ``dy`` at each stored position.

The callers (``minicnn/layers/adaptive_pool.py``) validate shapes, dtypes and
grid sizes first; the loops trust their inputs.
"""
from cython cimport floating
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

cdef extern from "_adaptive_pool.h" nogil:
    void mc_column_max_f32(const float* row, float* cm, int32_t* cr, Py_ssize_t W, int32_t i)
    void mc_column_max_f64(const double* row, double* cm, int32_t* cr, Py_ssize_t W, int32_t i)
    Py_ssize_t mc_pick_f32(const float* cm, const int32_t* cr, Py_ssize_t ws, Py_ssize_t we, Py_ssize_t W)
    Py_ssize_t mc_pick_f64(const double* cm, const int32_t* cr, Py_ssize_t ws, Py_ssize_t we, Py_ssize_t W)

ctypedef fused index_t:
    int32_t
    int64_t


cdef inline Py_ssize_t _start(Py_ssize_t i, Py_ssize_t size, Py_ssize_t out) noexcept nogil:
    return (i * size) // out


cdef inline Py_ssize_t _end(Py_ssize_t i, Py_ssize_t size, Py_ssize_t out) noexcept nogil:
    return ((i + 1) * size + out - 1) // out


cdef Py_ssize_t* _bounds(const Py_ssize_t[::1] oh, const Py_ssize_t[::1] ow, Py_ssize_t H, Py_ssize_t W) noexcept nogil:
    """Every grid's bins, grid after grid: rows [start_0, end_0, start_1, ...], then columns
    likewise, so that the loops never divide.  NULL when out of memory; free() it."""
    cdef Py_ssize_t L = oh.shape[0], n = 0, k, i
    for k in range(L):
        n = n + 2 * (oh[k] + ow[k])
    cdef Py_ssize_t* b = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    if b == NULL:
        return NULL
    n = 0
    for k in range(L):
        for i in range(oh[k]):
            b[n] = _start(i, H, oh[k])
            b[n + 1] = _end(i, H, oh[k])
            n = n + 2
        for i in range(ow[k]):
            b[n] = _start(i, W, ow[k])
            b[n + 1] = _end(i, W, ow[k])
            n = n + 2
    return b


cdef Py_ssize_t* _bounds_and_row(const Py_ssize_t[::1] oh, const Py_ssize_t[::1] ow, Py_ssize_t H, Py_ssize_t W,
                                 double** row) noexcept nogil:
    """_bounds, and in *row a scratch row of W doubles; NULL, with nothing left to free, when out
    of memory.  free() both."""
    row[0] = <double*>malloc(W * sizeof(double))
    cdef Py_ssize_t* b = _bounds(oh, ow, H, W)
    if row[0] == NULL or b == NULL:
        free(row[0])
        free(b)
        return NULL
    return b


# ------------------------------------------------------------------ average --

cdef inline void _average_plane(
    const floating* x, floating* y, double* colsum, const Py_ssize_t* rows, const Py_ssize_t* cols,
    Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
) noexcept nogil:
    """One grid: per row of bins, sum its rows column by column, then each bin's columns."""
    cdef Py_ssize_t oh, ow, i, j, hs, he, ws, we
    cdef const floating* row
    cdef double total
    for oh in range(OH):
        hs, he = rows[2 * oh], rows[2 * oh + 1]
        row = x + hs * W
        for j in range(W):
            colsum[j] = row[j]
        for i in range(hs + 1, he):
            row = x + i * W
            for j in range(W):
                colsum[j] = colsum[j] + row[j]
        for ow in range(OW):
            ws, we = cols[2 * ow], cols[2 * ow + 1]
            total = 0.0
            for j in range(ws, we):
                total = total + colsum[j]
            y[oh * OW + ow] = <floating>(total / <double>((he - hs) * (we - ws)))


def average_forward(const floating[:, :, ::1] x, floating[:, ::1] y,
                    const Py_ssize_t[::1] oh, const Py_ssize_t[::1] ow):
    """Adaptive average pooling onto each grid (oh[k], ow[k]).

    Shape: x (P, H, W) -> y (P, sum oh[k] * ow[k]).
    """
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2], S = y.shape[1]
    cdef Py_ssize_t L = oh.shape[0], q, k, offset, b
    cdef double* colsum
    cdef Py_ssize_t* bounds
    if P == 0 or S == 0:
        return
    with nogil:
        bounds = _bounds_and_row(oh, ow, H, W, &colsum)
        if bounds == NULL:
            with gil:
                raise MemoryError()
        for q in range(P):
            offset = 0
            b = 0
            for k in range(L):
                _average_plane(&x[q, 0, 0], &y[q, offset], colsum, bounds + b, bounds + b + 2 * oh[k],
                               W, oh[k], ow[k])
                offset = offset + oh[k] * ow[k]
                b = b + 2 * (oh[k] + ow[k])
        free(colsum)
        free(bounds)


cdef inline void _spread_plane(
    const floating* dy, floating* dx, double* rowgrad, const Py_ssize_t* rows, const Py_ssize_t* cols,
    Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
) noexcept nogil:
    """One grid, adding into dx: per row of bins, build the row of column shares, add it to each row."""
    cdef Py_ssize_t oh, ow, i, j, hs, he, ws, we
    cdef floating* row
    cdef double g
    for oh in range(OH):
        hs, he = rows[2 * oh], rows[2 * oh + 1]
        memset(rowgrad, 0, W * sizeof(double))
        for ow in range(OW):
            ws, we = cols[2 * ow], cols[2 * ow + 1]
            g = dy[oh * OW + ow] / <double>((he - hs) * (we - ws))
            for j in range(ws, we):
                rowgrad[j] = rowgrad[j] + g
        for i in range(hs, he):
            row = dx + i * W
            for j in range(W):
                row[j] = row[j] + <floating>rowgrad[j]


def average_backward(const floating[:, ::1] dy, floating[:, :, ::1] dx,
                     const Py_ssize_t[::1] oh, const Py_ssize_t[::1] ow):
    """Every element of dx is written.  Shape: dy (P, S) -> dx (P, H, W)."""
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t L = oh.shape[0], q, k, offset, b
    cdef double* rowgrad
    cdef Py_ssize_t* bounds
    if P == 0 or H == 0 or W == 0:
        return
    with nogil:
        bounds = _bounds_and_row(oh, ow, H, W, &rowgrad)
        if bounds == NULL:
            with gil:
                raise MemoryError()
        for q in range(P):
            memset(&dx[q, 0, 0], 0, H * W * sizeof(floating))
            offset = 0
            b = 0
            for k in range(L):
                _spread_plane(&dy[q, offset], &dx[q, 0, 0], rowgrad, bounds + b, bounds + b + 2 * oh[k],
                              W, oh[k], ow[k])
                offset = offset + oh[k] * ow[k]
                b = b + 2 * (oh[k] + ow[k])
        free(rowgrad)
        free(bounds)


# ---------------------------------------------------------------------- max --

cdef inline void _max_plane(
    const floating* x, floating* y, index_t* argmax, floating* cm, int32_t* cr,
    const Py_ssize_t* rows, const Py_ssize_t* cols, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
) noexcept nogil:
    """One grid.  Per row of bins, the column maxima and their rows, then per bin the column
    the row-major scan would pick (_adaptive_pool.h)."""
    cdef Py_ssize_t oh, ow, i, j, hs, he, pos
    for oh in range(OH):
        hs, he = rows[2 * oh], rows[2 * oh + 1]
        for j in range(W):
            cm[j] = x[hs * W + j]
            cr[j] = <int32_t>hs
        for i in range(hs + 1, he):
            if floating is float:
                mc_column_max_f32(x + i * W, cm, cr, W, <int32_t>i)
            else:
                mc_column_max_f64(x + i * W, cm, cr, W, <int32_t>i)
        for ow in range(OW):
            if floating is float:
                pos = mc_pick_f32(cm, cr, cols[2 * ow], cols[2 * ow + 1], W)
            else:
                pos = mc_pick_f64(cm, cr, cols[2 * ow], cols[2 * ow + 1], W)
            y[oh * OW + ow] = x[pos]
            argmax[oh * OW + ow] = <index_t>pos


def max_forward(const floating[:, :, ::1] x, floating[:, ::1] y, index_t[:, ::1] argmax,
                const Py_ssize_t[::1] oh, const Py_ssize_t[::1] ow):
    """Adaptive max pooling onto each grid (oh[k], ow[k]).

    Shape: x (P, H, W) -> y, argmax (P, sum oh[k] * ow[k]); argmax = h * W + w.
    """
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2], S = y.shape[1]
    cdef Py_ssize_t L = oh.shape[0], q, k, offset, b
    cdef Py_ssize_t* bounds
    cdef floating* cm
    cdef int32_t* cr
    if P == 0 or S == 0:
        return
    with nogil:
        bounds = _bounds(oh, ow, H, W)
        cm = <floating*>malloc(W * sizeof(floating))
        cr = <int32_t*>malloc(W * sizeof(int32_t))
        if bounds == NULL or cm == NULL or cr == NULL:
            free(bounds)
            free(cm)
            free(cr)
            with gil:
                raise MemoryError()
        for q in range(P):
            offset = 0
            b = 0
            for k in range(L):
                _max_plane(&x[q, 0, 0], &y[q, offset], &argmax[q, offset], cm, cr,
                           bounds + b, bounds + b + 2 * oh[k], W, oh[k], ow[k])
                offset = offset + oh[k] * ow[k]
                b = b + 2 * (oh[k] + ow[k])
        free(bounds)
        free(cm)
        free(cr)


def max_backward(const floating[:, ::1] dy, const index_t[:, ::1] argmax, floating[:, :, ::1] dx):
    """Every element of dx is written: zero, plus dy at each stored position.

    Shape: dy, argmax (P, S) -> dx (P, H, W).
    """
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2], S = dy.shape[1], q, o
    cdef floating* plane
    if P == 0 or H == 0 or W == 0:
        return
    with nogil:
        for q in range(P):
            plane = &dx[q, 0, 0]
            memset(plane, 0, H * W * sizeof(floating))
            for o in range(S):
                plane[argmax[q, o]] += dy[q, o]
