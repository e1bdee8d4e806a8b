# cython: language_level=3
"""im2col / col2im for Conv2D, float32 and float64.

Column layout: ``cols`` has shape ``(C * kh * kw, N * OH * OW)``; row
``r = (c * kh + i) * kw + j`` holds, for every output position ``(n, oh, ow)``
in C order, the input element ``x[n, c, oh * sh - ph + i, ow * sw - pw + j]``
(zero where that falls in the padding).  With this layout one matrix product
``W.reshape(O, -1) @ cols`` computes the whole chunk.

How: each input plane is first split into its sh * sw phase planes of the
zero-padded input, ``phase[a, b][u, v] = xpad[u * sh + a, v * sw + b]``.
Kernel offset (i, j) then reads, for output row oh, the contiguous run
``phase[i % sh, j % sw][oh + i // sh, j // sw : j // sw + OW]``: a plain copy
with no bounds tests and no stride, whatever the stride and padding.
col2im adds the runs into phase planes and scatters those back.

The caller (``minicnn/layers/conv.py``) validates shapes and dtypes, and calls
these on chunks of a few images whose columns stay in cache, one chunk per
call, from minicnn's own threads (minicnn.threads).
"""
from cython cimport floating
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset


cdef extern from "_im2col_avx512.h" nogil:
    int mc_im2col_avx512(const float* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         int kh, int kw, int sh, int sw, int ph, int pw, float* cols, Py_ssize_t ldc)
    int mc_col2im_avx512(const float* cols, Py_ssize_t ldc, float* dx, Py_ssize_t N, Py_ssize_t C,
                         Py_ssize_t H, Py_ssize_t W, int kh, int kw, int sh, int sw, int ph, int pw)


cdef struct Geometry:
    Py_ssize_t H, W, OH, OW, HP, WP, U, V   # input, output, padded extent, phase plane
    Py_ssize_t PA, PB                       # row and column phases that hold any padded element
    int kh, kw, sh, sw, ph, pw


cdef Geometry _geometry(Py_ssize_t H, Py_ssize_t W, int kh, int kw, int sh, int sw, int ph, int pw):
    cdef Geometry g
    g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw = H, W, kh, kw, sh, sw, ph, pw
    g.OH = (H + 2 * ph - kh) // sh + 1
    g.OW = (W + 2 * pw - kw) // sw + 1
    g.HP = (g.OH - 1) * sh + kh          # padded rows and columns any window reads
    g.WP = (g.OW - 1) * sw + kw
    g.U = (g.HP + sh - 1) // sh
    g.V = (g.WP + sw - 1) // sw
    g.PA = min(<Py_ssize_t>sh, g.HP)    # a stride beyond the padded extent leaves phases empty
    g.PB = min(<Py_ssize_t>sw, g.WP)
    return g


cdef inline Py_ssize_t _phases_size(const Geometry* g) noexcept nogil:
    """Elements of all phase planes."""
    return g.PA * g.PB * g.U * g.V


cdef inline floating* _phase(floating* phases, const Geometry* g, Py_ssize_t r, Py_ssize_t q) noexcept nogil:
    """Address of padded element (r, q) in its phase plane."""
    return phases + (((r % g.sh) * g.PB + q % g.sw) * g.U + r // g.sh) * g.V + q // g.sw


cdef inline void _columns(const Geometry* g, int b, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """Phase-plane columns v in [lo, hi) of column phase b that hold an input pixel,
    iw = v * sw + b - pw with 0 <= iw < W and v * sw + b < WP."""
    cdef Py_ssize_t v0 = 0, v1 = g.V
    while v0 < v1 and v0 * g.sw + b - g.pw < 0:
        v0 += 1
    while v1 > v0 and ((v1 - 1) * g.sw + b - g.pw >= g.W or (v1 - 1) * g.sw + b >= g.WP):
        v1 -= 1
    lo[0] = v0
    hi[0] = v1


cdef void _split(const floating* x, floating* phases, const Geometry* g) noexcept nogil:
    """phases <- the zero-padded plane x, split by row and column phase."""
    cdef Py_ssize_t u, v, ih, lo, hi
    cdef Py_ssize_t sw = g.sw   # a local: through g, every store would reload it (aliasing)
    cdef int a, b
    cdef floating* dst
    cdef const floating* src
    memset(phases, 0, _phases_size(g) * sizeof(floating))
    for a in range(g.PA):
        for b in range(g.PB):
            _columns(g, b, &lo, &hi)
            for u in range(g.U):
                ih = u * g.sh + a - g.ph
                if ih < 0 or ih >= g.H or u * g.sh + a >= g.HP:
                    continue
                dst = phases + ((a * g.PB + b) * g.U + u) * g.V
                src = x + ih * g.W + b - g.pw
                if sw == 1:
                    memcpy(dst + lo, src + lo, (hi - lo) * sizeof(floating))
                elif sw == 2:   # a constant stride: the loop vectorizes
                    for v in range(lo, hi):
                        dst[v] = src[2 * v]
                else:
                    for v in range(lo, hi):
                        dst[v] = src[v * sw]


cdef void _merge(const floating* phases, floating* dx, const Geometry* g) noexcept nogil:
    """dx (H, W) <- the phase planes' values at each input pixel (0 where no window reads)."""
    cdef Py_ssize_t u, v, ih, lo, hi
    cdef Py_ssize_t sw = g.sw   # a local, as in _split
    cdef int a, b
    cdef floating* dst
    cdef const floating* src
    memset(dx, 0, g.H * g.W * sizeof(floating))
    for a in range(g.PA):
        for b in range(g.PB):
            _columns(g, b, &lo, &hi)
            for u in range(g.U):
                ih = u * g.sh + a - g.ph
                if ih < 0 or ih >= g.H or u * g.sh + a >= g.HP:
                    continue
                src = phases + ((a * g.PB + b) * g.U + u) * g.V
                dst = dx + ih * g.W + b - g.pw
                if sw == 1:
                    memcpy(dst + lo, src + lo, (hi - lo) * sizeof(floating))
                elif sw == 2:
                    for v in range(lo, hi):
                        dst[2 * v] = src[v]
                else:
                    for v in range(lo, hi):
                        dst[v * sw] = src[v]


def im2col(const floating[:, :, :, ::1] x, floating[:, ::1] cols,
           int kh, int kw, int sh, int sw, int ph, int pw, bint simd=True):
    """Shape: x (N, C, H, W) -> cols (C*kh*kw, N*OH*OW).

    float32 with row stride 1 or 2 and padded rows up to 32 wide takes the
    AVX-512 path when the CPU has it (_im2col_avx512.h, the same values);
    ``simd=False`` forces the portable loops (tests)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], L = cols.shape[1], n, c, oh, ow
    cdef Geometry g = _geometry(x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw)
    cdef floating* phases
    cdef floating* dst
    cdef const floating* src
    cdef int i, j, done = 0
    if cols.shape[0] == 0 or L == 0:
        return
    if floating is float and simd:
        with nogil:
            done = mc_im2col_avx512(&x[0, 0, 0, 0], N, C, g.H, g.W, kh, kw, sh, sw, ph, pw, &cols[0, 0], L)
        if done:
            return
    phases = <floating*>malloc(_phases_size(&g) * sizeof(floating))
    if phases == NULL:
        raise MemoryError()
    with nogil:
        for n in range(N):
            for c in range(C):
                _split(&x[n, c, 0, 0], phases, &g)
                for i in range(kh):
                    for j in range(kw):
                        dst = &cols[(c * kh + i) * kw + j, n * g.OH * g.OW]
                        src = _phase(phases, &g, i, j)
                        for oh in range(g.OH):
                            for ow in range(g.OW):
                                dst[oh * g.OW + ow] = src[oh * g.V + ow]
    free(phases)


def col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] dx,
           int kh, int kw, int sh, int sw, int ph, int pw, bint simd=True):
    """Adjoint of im2col.  Shape: cols (C*kh*kw, N*OH*OW) -> dx (N, C, H, W).

    The AVX-512 path as for im2col (same values: each pixel's terms are added
    in the same order); ``simd=False`` forces the portable loops (tests)."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], n, c, oh, ow
    cdef Geometry g = _geometry(dx.shape[2], dx.shape[3], kh, kw, sh, sw, ph, pw)
    cdef floating* phases
    cdef floating* dst
    cdef const floating* src
    cdef int i, j, done = 0
    if N * C == 0 or g.H == 0 or g.W == 0:
        return
    if floating is float and simd and cols.shape[0] * cols.shape[1] > 0:
        with nogil:
            done = mc_col2im_avx512(&cols[0, 0], cols.shape[1], &dx[0, 0, 0, 0], N, C, g.H, g.W,
                                    kh, kw, sh, sw, ph, pw)
        if done:
            return
    phases = <floating*>malloc(_phases_size(&g) * sizeof(floating))
    if phases == NULL:
        raise MemoryError()
    with nogil:
        for n in range(N):
            for c in range(C):
                memset(phases, 0, _phases_size(&g) * sizeof(floating))
                for i in range(kh):
                    for j in range(kw):
                        src = &cols[(c * kh + i) * kw + j, n * g.OH * g.OW]
                        dst = _phase(phases, &g, i, j)
                        for oh in range(g.OH):
                            for ow in range(g.OW):
                                dst[oh * g.V + ow] += src[oh * g.OW + ow]
                _merge(phases, &dx[n, c, 0, 0], &g)
    free(phases)


# ------------------------------------------ between rows and NCHW output --
# A chunk's product gives its output as rows (O, m * P) (P = OH * OW); the
# layer's output is (m, O, P).  These move between the two in one pass,
# adding the bias and applying the ReLU that Sequential fuses into Conv2D on
# the way out, and masking by it on the way back.

cdef inline floating _relu(floating v) noexcept nogil:
    return v if (v > 0 or v != v) else 0    # NaN kept, as relu_forward


cdef void _add_bias(const floating* src, Py_ssize_t src_n, Py_ssize_t src_o, floating* out,
                    Py_ssize_t m, Py_ssize_t O, Py_ssize_t P, const floating* bias, bint relu) noexcept nogil:
    """out[n, o, q] = src[n * src_n + o * src_o + q] + bias[o], then the ReLU if relu."""
    cdef Py_ssize_t n, o, q
    cdef const floating* s
    cdef floating* d
    cdef floating b
    for n in range(m):
        for o in range(O):
            s = src + n * src_n + o * src_o
            d = out + (n * O + o) * P
            b = bias[o]
            if relu:
                for q in range(P):
                    d[q] = _relu(s[q] + b)
            else:
                for q in range(P):
                    d[q] = s[q] + b


def rows_to_output(const floating[:, ::1] rows, const floating[::1] bias, floating[:, :, ::1] out,
                   bint relu):
    """out[n, o, q] = rows[o, n * P + q] + bias[o], then max(., 0) (NaN kept) if relu.

    Shapes: rows (O, m*P), bias (O,), out (m, O, P)."""
    cdef Py_ssize_t m = out.shape[0], O = out.shape[1], P = out.shape[2]
    if m * O * P:
        with nogil:
            _add_bias(&rows[0, 0], P, m * P, &out[0, 0, 0], m, O, P, &bias[0], relu)


def add_bias(floating[:, :, ::1] out, const floating[::1] bias, bint relu):
    """out[n, o, :] += bias[o], then max(., 0) (NaN kept) if relu, in place.  Shape: out (m, O, P)."""
    cdef Py_ssize_t m = out.shape[0], O = out.shape[1], P = out.shape[2]
    if m * O * P:
        with nogil:
            _add_bias(&out[0, 0, 0], O * P, P, &out[0, 0, 0], m, O, P, &bias[0], relu)


def output_to_rows(const floating[:, :, ::1] dy, floating[:, ::1] rows, relu_out=None):
    """rows[o, n * P + q] = dy[n, o, q], times (relu_out[n, o, q] > 0) when
    relu_out (the rectified output, dy's shape) is given (0 * NaN is NaN).

    Shapes: dy (m, O, P), rows (O, m*P)."""
    cdef Py_ssize_t m = dy.shape[0], O = dy.shape[1], P = dy.shape[2], n, o, q
    cdef const floating[:, :, ::1] y
    cdef const floating* src
    cdef const floating* yp
    cdef floating* dst
    cdef floating keep
    if relu_out is None:
        with nogil:
            for n in range(m):
                for o in range(O):
                    if P:
                        memcpy(&rows[o, n * P], &dy[n, o, 0], P * sizeof(floating))
        return
    y = relu_out
    with nogil:
        for n in range(m):
            for o in range(O):
                if P == 0:
                    continue
                src = &dy[n, o, 0]
                yp = &y[n, o, 0]
                dst = &rows[o, n * P]
                for q in range(P):
                    keep = 1 if yp[q] > 0 else 0
                    dst[q] = src[q] * keep
