# cython: language_level=3
"""Pooling kernels: forward and backward, float32 and float64.

Every kernel works on a stack of P independent planes, ``x`` of shape
``(P, H, W)`` with ``P = N * C``, serially.  No two planes share an output
element, so ``minicnn.threads`` runs ranges of planes on several threads
without locks (the kernels release the GIL).

In float32, max/min windows with stride 2 (2x2 above all; padding included),
2x2/2 average windows and the global poolings run the vectorised loops of
``_pool_simd.h``; max/min backward of any other window of at most 256 elements
scatters through a table of offsets instead of dividing by the window width;
every other case runs the generic loops below.  Both give the same results, bit for bit: ``simd=False`` (the
last argument of every kernel that has a fast path) forces the generic loops,
so that tests/test_pooling.py can compare the two.

The callers (``minicnn/layers/pooling.py``) validate everything first: shapes,
dtypes, contiguity, window sizes.  The loops trust their inputs, which is what
makes ``boundscheck=False`` safe.

Window geometry (PyTorch's, ``ceil_mode=False``): output row ``oh`` covers input
rows ``oh * sh - ph ... oh * sh - ph + kh - 1``, clipped to ``[0, H)``; with
``ph <= kh // 2`` and ``H >= 1`` every clipped window holds at least one element.

Max and min pooling store, per output element, the position of the chosen
element inside its (unclipped) window, ``argmax = i * kw + j``, as uint8 when
``kh * kw <= 256`` and int32 otherwise.  The chosen element follows PyTorch's
CPU rule ``if (v > best) || isnan(v)``: the first maximum in row-major order on
ties, the last NaN when the window holds NaN.
"""
from cython cimport floating
import numpy as np
from libc.stdint cimport int32_t, uint8_t
from libc.string cimport memset
from minicnn._isa cimport mc_isa_set
from minicnn import isa


def _set_isa(int level):
    """Cap this module's kernels at instruction-set level ``level`` (minicnn.isa calls it)."""
    if not mc_isa_set(level):
        raise ValueError(f"instruction-set level {level} cannot run on this CPU")


isa.register(_set_isa)


cdef extern from "_pool_simd.h" nogil:
    # float32 fast paths (SSE2 on x86-64, plain C elsewhere); see the header
    void mc_extreme_2x2_f32(const float* x, float* y, uint8_t* argmax,
                            Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int minimum)
    void mc_extreme_s2_f32(const float* x, float* y, uint8_t* argmax, Py_ssize_t H,
                           Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int kh, int kw, int ph, int pw, int minimum)
    void mc_scatter_2x2_f32(const float* dy, const uint8_t* argmax, float* dx,
                            Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW)
    void mc_average_2x2_f32(const float* x, float* y, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW)
    void mc_spread_2x2_f32(const float* dy, float* dx,
                           Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW)
    void mc_global_max_f32(const float* x, Py_ssize_t L, float* y, int32_t* argmax)
    double mc_sum_f32(const float* x, Py_ssize_t L)

cdef extern from "_pool_avx512.h" nogil:
    # stride-2 max/min forward in AVX-512 for rows up to 32 floats; 0 when it does not apply
    int mc_extreme_s2_avx512(const float* x, float* y, uint8_t* argmax, Py_ssize_t P, Py_ssize_t H,
                             Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int kh, int kw, int ph, int pw,
                             int minimum)

ctypedef fused index_t:
    uint8_t
    int32_t


cdef inline bint _is_2x2(int kh, int kw, int sh, int sw, int ph, int pw) noexcept nogil:
    """2x2 windows, stride 2, no padding: the case with hand-unrolled loops."""
    return kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0


cdef inline bint _wins(floating v, floating best, bint minimum) noexcept nogil:
    """True when ``v`` replaces ``best`` (PyTorch's rule; ``v != v`` is isnan)."""
    if minimum:
        return v < best or v != v
    return v > best or v != v


# ---------------------------------------------------------------- max / min --

cdef inline void _extreme_plane(
    const floating* x, floating* y, index_t* argmax,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
    int kh, int kw, int sh, int sw, int ph, int pw, bint minimum,
) noexcept nogil:
    """Any window: one plane (H, W) -> y, argmax (OH, OW)."""
    cdef Py_ssize_t oh, ow, i, j, h0, w0, hs, he, ws, we
    cdef floating best, v
    cdef index_t pos
    for oh in range(OH):
        h0 = oh * sh - ph
        hs = h0 if h0 > 0 else 0
        he = h0 + kh if h0 + kh < H else H
        for ow in range(OW):
            w0 = ow * sw - pw
            ws = w0 if w0 > 0 else 0
            we = w0 + kw if w0 + kw < W else W
            best = x[hs * W + ws]
            pos = <index_t>((hs - h0) * kw + (ws - w0))
            for i in range(hs, he):
                for j in range(ws, we):
                    v = x[i * W + j]
                    if _wins(v, best, minimum):
                        best = v
                        pos = <index_t>((i - h0) * kw + (j - w0))
            y[oh * OW + ow] = best
            argmax[oh * OW + ow] = pos


cdef inline void _extreme_plane_2x2(
    const floating* x, floating* y, index_t* argmax,
    Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, bint minimum,
) noexcept nogil:
    """2x2 windows, stride 2, no padding: the reference network's case."""
    cdef Py_ssize_t oh, ow
    cdef const floating* r0
    cdef const floating* r1
    cdef floating* yr
    cdef index_t* ar
    cdef floating best, v
    cdef index_t pos
    for oh in range(OH):
        r0 = x + 2 * oh * W
        r1 = r0 + W
        yr = y + oh * OW
        ar = argmax + oh * OW
        for ow in range(OW):
            best = r0[2 * ow]
            pos = 0
            v = r0[2 * ow + 1]
            if _wins(v, best, minimum):
                best = v
                pos = 1
            v = r1[2 * ow]
            if _wins(v, best, minimum):
                best = v
                pos = 2
            v = r1[2 * ow + 1]
            if _wins(v, best, minimum):
                best = v
                pos = 3
            yr[ow] = best
            ar[ow] = pos


def extreme_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y, index_t[:, :, ::1] argmax,
    int kh, int kw, int sh, int sw, int ph, int pw, bint minimum, bint simd=True,
):
    """Max (or min) pooling forward.

    Shape: x (P, H, W) -> y (P, OH, OW), argmax (P, OH, OW) positions in window.
    """
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    cdef bint fast = _is_2x2(kh, kw, sh, sw, ph, pw)
    if P == 0 or OH == 0 or OW == 0:
        return
    # the SSE2 / AVX-512 paths exist for float32 with uint8 positions; the casts let the
    # other (dead) specialisations compile
    cdef bint vector = floating is float and index_t is uint8_t and simd
    cdef bint stride2 = sh == 2 and sw == 2
    with nogil:
        if vector and stride2 and not fast and mc_extreme_s2_avx512(
                <float*>&x[0, 0, 0], <float*>&y[0, 0, 0], <uint8_t*>&argmax[0, 0, 0],
                P, H, W, OH, OW, kh, kw, ph, pw, minimum):
            P = 0   # done, every plane
        for p in range(P):
            if vector and fast:
                mc_extreme_2x2_f32(<float*>&x[p, 0, 0], <float*>&y[p, 0, 0], <uint8_t*>&argmax[p, 0, 0],
                                   W, OH, OW, minimum)
            elif vector and stride2:
                mc_extreme_s2_f32(<float*>&x[p, 0, 0], <float*>&y[p, 0, 0], <uint8_t*>&argmax[p, 0, 0],
                                  H, W, OH, OW, kh, kw, ph, pw, minimum)
            elif fast:
                _extreme_plane_2x2(&x[p, 0, 0], &y[p, 0, 0], &argmax[p, 0, 0], W, OH, OW, minimum)
            else:
                _extreme_plane(&x[p, 0, 0], &y[p, 0, 0], &argmax[p, 0, 0],
                               H, W, OH, OW, kh, kw, sh, sw, ph, pw, minimum)


cdef inline void _scatter_plane(
    const floating* dy, const index_t* argmax, floating* dx,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
    int kw, int sh, int sw, int ph, int pw,
) noexcept nogil:
    """Any window: dx (H, W), zeroed here, += dy at each window's argmax."""
    cdef Py_ssize_t oh, ow, o
    cdef int pos
    memset(dx, 0, H * W * sizeof(floating))
    for oh in range(OH):
        for ow in range(OW):
            o = oh * OW + ow
            pos = argmax[o]
            dx[(oh * sh - ph + pos // kw) * W + ow * sw - pw + pos % kw] += dy[o]


cdef inline void _scatter_plane_table(
    const floating* dy, const index_t* argmax, floating* dx,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
    const Py_ssize_t* offset, int sh, int sw, int ph, int pw,
) noexcept nogil:
    """_scatter_plane with the division by kw taken out: offset[pos] = (pos // kw) * W + pos % kw.
    Same additions in the same order, so the same result bit for bit."""
    cdef Py_ssize_t oh, ow, o, corner
    memset(dx, 0, H * W * sizeof(floating))
    for oh in range(OH):
        corner = (oh * sh - ph) * W - pw   # the window's unclipped top-left corner, ow = 0
        for ow in range(OW):
            o = oh * OW + ow
            dx[corner + ow * sw + offset[argmax[o]]] += dy[o]


cdef inline void _scatter_plane_2x2(
    const floating* dy, const index_t* argmax, floating* dx,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
) noexcept nogil:
    """2x2 windows, stride 2, no padding: writes every element of dx once."""
    cdef Py_ssize_t oh, ow
    cdef floating* d0
    cdef floating* d1
    cdef const floating* g
    cdef const index_t* a
    for oh in range(OH):
        d0 = dx + 2 * oh * W
        d1 = d0 + W
        g = dy + oh * OW
        a = argmax + oh * OW
        for ow in range(OW):
            d0[2 * ow] = g[ow] if a[ow] == 0 else 0
            d0[2 * ow + 1] = g[ow] if a[ow] == 1 else 0
            d1[2 * ow] = g[ow] if a[ow] == 2 else 0
            d1[2 * ow + 1] = g[ow] if a[ow] == 3 else 0
        if W % 2:
            d0[W - 1] = 0
            d1[W - 1] = 0
    if H % 2:
        memset(dx + (H - 1) * W, 0, W * sizeof(floating))


def extreme_backward(
    const floating[:, :, ::1] dy, const index_t[:, :, ::1] argmax, floating[:, :, ::1] dx,
    int kh, int kw, int sh, int sw, int ph, int pw, bint simd=True,
):
    """Max (or min) pooling backward: every element of dx is written.

    Shape: dy, argmax (P, OH, OW) -> dx (P, H, W).
    """
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p
    cdef bint fast = _is_2x2(kh, kw, sh, sw, ph, pw)
    if P == 0 or H == 0 or W == 0:
        return
    cdef bint vector = floating is float and index_t is uint8_t and simd
    # the offset table only for uint8 positions (kh * kw <= 256): a window of int32 positions
    # may hold up to 2^31 elements, and a table that size is no way to save a division
    cdef bint table = index_t is uint8_t and simd and not fast
    cdef Py_ssize_t[::1] offset = (np.arange(kh, dtype=np.intp)[:, None] * W
                                   + np.arange(kw, dtype=np.intp)).ravel() if table else np.zeros(1, np.intp)
    with nogil:
        for p in range(P):
            if table:
                _scatter_plane_table(&dy[p, 0, 0], &argmax[p, 0, 0], &dx[p, 0, 0], H, W, OH, OW, &offset[0],
                                     sh, sw, ph, pw)
            elif not fast:
                _scatter_plane(&dy[p, 0, 0], &argmax[p, 0, 0], &dx[p, 0, 0], H, W, OH, OW, kw, sh, sw, ph, pw)
            elif vector:
                mc_scatter_2x2_f32(<float*>&dy[p, 0, 0], <uint8_t*>&argmax[p, 0, 0], <float*>&dx[p, 0, 0],
                                   H, W, OH, OW)
            else:
                _scatter_plane_2x2(&dy[p, 0, 0], &argmax[p, 0, 0], &dx[p, 0, 0], H, W, OH, OW)


# ------------------------------------------------------------------ average --

cdef inline void _average_plane(
    const floating* x, floating* y,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
    int kh, int kw, int sh, int sw, int ph, int pw, bint count_include_pad,
) noexcept nogil:
    cdef Py_ssize_t oh, ow, i, j, h0, w0, hs, he, ws, we
    cdef double total
    for oh in range(OH):
        h0 = oh * sh - ph
        hs = h0 if h0 > 0 else 0
        he = h0 + kh if h0 + kh < H else H
        for ow in range(OW):
            w0 = ow * sw - pw
            ws = w0 if w0 > 0 else 0
            we = w0 + kw if w0 + kw < W else W
            total = 0
            for i in range(hs, he):
                for j in range(ws, we):
                    total = total + x[i * W + j]
            if count_include_pad:
                y[oh * OW + ow] = <floating>(total / (kh * kw))
            else:
                y[oh * OW + ow] = <floating>(total / ((he - hs) * (we - ws)))


cdef inline void _average_plane_2x2(
    const floating* x, floating* y, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
) noexcept nogil:
    cdef Py_ssize_t oh, ow
    cdef const floating* r0
    cdef const floating* r1
    cdef floating* yr
    for oh in range(OH):
        r0 = x + 2 * oh * W
        r1 = r0 + W
        yr = y + oh * OW
        for ow in range(OW):
            yr[ow] = ((r0[2 * ow] + r0[2 * ow + 1]) + (r1[2 * ow] + r1[2 * ow + 1])) * <floating>0.25


def average_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y,
    int kh, int kw, int sh, int sw, int ph, int pw, bint count_include_pad, bint simd=True,
):
    """Average pooling forward (zero padding).

    Shape: x (P, H, W) -> y (P, OH, OW).  The divisor is kh * kw when
    count_include_pad, else the number of input elements in the window.
    """
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    cdef bint fast = _is_2x2(kh, kw, sh, sw, ph, pw)
    if P == 0 or OH == 0 or OW == 0:
        return
    with nogil:
        if floating is float and simd and fast:
            for p in range(P):
                mc_average_2x2_f32(<float*>&x[p, 0, 0], <float*>&y[p, 0, 0], W, OH, OW)
        else:
            for p in range(P):
                if fast:
                    _average_plane_2x2(&x[p, 0, 0], &y[p, 0, 0], W, OH, OW)
                else:
                    _average_plane(&x[p, 0, 0], &y[p, 0, 0], H, W, OH, OW,
                                   kh, kw, sh, sw, ph, pw, count_include_pad)


cdef inline void _spread_plane(
    const floating* dy, floating* dx,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
    int kh, int kw, int sh, int sw, int ph, int pw, bint count_include_pad,
) noexcept nogil:
    """Any window: dx (H, W), zeroed here, += dy / divisor over each window."""
    cdef Py_ssize_t oh, ow, i, j, h0, w0, hs, he, ws, we
    cdef floating g
    memset(dx, 0, H * W * sizeof(floating))
    for oh in range(OH):
        h0 = oh * sh - ph
        hs = h0 if h0 > 0 else 0
        he = h0 + kh if h0 + kh < H else H
        for ow in range(OW):
            w0 = ow * sw - pw
            ws = w0 if w0 > 0 else 0
            we = w0 + kw if w0 + kw < W else W
            if count_include_pad:
                g = dy[oh * OW + ow] / (kh * kw)
            else:
                g = dy[oh * OW + ow] / ((he - hs) * (we - ws))
            for i in range(hs, he):
                for j in range(ws, we):
                    dx[i * W + j] += g


cdef inline void _spread_plane_2x2(
    const floating* dy, floating* dx,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
) noexcept nogil:
    cdef Py_ssize_t oh, ow
    cdef floating* d0
    cdef floating* d1
    cdef const floating* g
    cdef floating q
    for oh in range(OH):
        d0 = dx + 2 * oh * W
        d1 = d0 + W
        g = dy + oh * OW
        for ow in range(OW):
            q = g[ow] * <floating>0.25
            d0[2 * ow] = q
            d0[2 * ow + 1] = q
            d1[2 * ow] = q
            d1[2 * ow + 1] = q
        if W % 2:
            d0[W - 1] = 0
            d1[W - 1] = 0
    if H % 2:
        memset(dx + (H - 1) * W, 0, W * sizeof(floating))


def average_backward(
    const floating[:, :, ::1] dy, floating[:, :, ::1] dx,
    int kh, int kw, int sh, int sw, int ph, int pw, bint count_include_pad, bint simd=True,
):
    """Average pooling backward: every element of dx is written.

    Shape: dy (P, OH, OW) -> dx (P, H, W).
    """
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p
    cdef bint fast = _is_2x2(kh, kw, sh, sw, ph, pw)
    if P == 0 or H == 0 or W == 0:
        return
    with nogil:
        if floating is float and simd and fast:
            for p in range(P):
                mc_spread_2x2_f32(<float*>&dy[p, 0, 0], <float*>&dx[p, 0, 0], H, W, OH, OW)
        else:
            for p in range(P):
                if fast:
                    _spread_plane_2x2(&dy[p, 0, 0], &dx[p, 0, 0], H, W, OH, OW)
                else:
                    _spread_plane(&dy[p, 0, 0], &dx[p, 0, 0], H, W, OH, OW,
                                  kh, kw, sh, sw, ph, pw, count_include_pad)


# ------------------------------------------------------------------- global --

cdef inline double _plane_sum(const floating* x, Py_ssize_t L) noexcept nogil:
    """Sum in double with four independent accumulators (no serial add chain)."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= L:
        s0 = s0 + x[i]
        s1 = s1 + x[i + 1]
        s2 = s2 + x[i + 2]
        s3 = s3 + x[i + 3]
        i = i + 4
    while i < L:
        s0 = s0 + x[i]
        i = i + 1
    return (s0 + s1) + (s2 + s3)


def global_average_forward(const floating[:, ::1] x, floating[::1] y, bint simd=True):
    """Mean of each plane.  Shape: x (P, H*W) -> y (P,)."""
    cdef Py_ssize_t P = x.shape[0], L = x.shape[1], p
    if L == 0:
        return
    with nogil:
        if floating is float and simd:
            for p in range(P):
                y[p] = <floating>(mc_sum_f32(&x[p, 0], L) / L)
        else:
            for p in range(P):
                y[p] = <floating>(_plane_sum(&x[p, 0], L) / L)


def global_average_backward(const floating[::1] dy, floating[:, ::1] dx):
    """Shape: dy (P,) -> dx (P, H*W), every element dy[p] / (H*W)."""
    cdef Py_ssize_t P = dx.shape[0], L = dx.shape[1], p, i
    cdef floating g
    if L == 0:
        return
    cdef floating* row
    with nogil:
        for p in range(P):
            g = dy[p] / L
            row = &dx[p, 0]
            for i in range(L):
                row[i] = g


def global_max_forward(const floating[:, ::1] x, floating[::1] y, int32_t[::1] argmax, bint simd=True):
    """Maximum of each plane and its flat position (first on ties, last NaN).

    Shape: x (P, H*W) -> y (P,), argmax (P,).
    """
    cdef Py_ssize_t P = x.shape[0], L = x.shape[1], p, i
    cdef floating best, v
    cdef int32_t pos
    if L == 0:
        return
    with nogil:
        if floating is float and simd:
            for p in range(P):
                mc_global_max_f32(&x[p, 0], L, &y[p], &argmax[p])
        else:
            for p in range(P):
                best = x[p, 0]
                pos = 0
                for i in range(1, L):
                    v = x[p, i]
                    if _wins(v, best, False):
                        best = v
                        pos = <int32_t>i
                y[p] = best
                argmax[p] = pos


def global_max_backward(const floating[::1] dy, const int32_t[::1] argmax, floating[:, ::1] dx):
    """Shape: dy, argmax (P,) -> dx (P, H*W), zero but dy[p] at argmax[p]."""
    cdef Py_ssize_t P = dx.shape[0], L = dx.shape[1], p
    if L == 0:
        return
    with nogil:
        for p in range(P):
            memset(&dx[p, 0], 0, L * sizeof(floating))
            dx[p, argmax[p]] = dy[p]
