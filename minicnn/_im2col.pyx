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
import numpy as np

from cython cimport floating
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memset
from minicnn._isa cimport mc_isa_set
from minicnn import isa


def _set_isa(int level):
    """Cap this module's kernels at instruction-set level ``level`` (minicnn.isa calls it)."""
    if not mc_isa_set(level):
        raise ValueError(f"instruction-set level {level} cannot run on this CPU")


isa.register(_set_isa)


cdef extern from "_im2col_avx2.h" nogil:
    int mc_im2col_avx2(const float* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                       int kh, int kw, int sh, int sw, int ph, int pw, float* cols, Py_ssize_t ldc)

cdef extern from "_im2col_avx512.h" nogil:
    int mc_im2col_avx512(const float* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         int kh, int kw, int sh, int sw, int ph, int pw, float* cols, Py_ssize_t ldc)
    int mc_col2im_avx512(const float* cols, Py_ssize_t ldc, float* dx, Py_ssize_t N, Py_ssize_t C,
                         Py_ssize_t H, Py_ssize_t W, int kh, int kw, int sh, int sw, int ph, int pw)


cdef extern from "_channels_last.h" nogil:
    int mc_channels_last_fits(Py_ssize_t C, int kw)
    int mc_channels_last(const float* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t HP, Py_ssize_t WP, int ph, int pw, float* xt)
    int mc_channels_first(const float* xt, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t HP, Py_ssize_t WP, int ph, int pw, float* x)
    void mc_row_table(Py_ssize_t N, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t OH, Py_ssize_t OW,
                      int kh, int sh, int sw, Py_ssize_t* tab)
    int mc_sgemm_tab(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A, Py_ssize_t lda,
                     const float* b, const Py_ssize_t* tab, Py_ssize_t nseg, Py_ssize_t seg,
                     float* C, Py_ssize_t ldc)
    int mc_sgemm_ctab(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A, Py_ssize_t rsa, Py_ssize_t csa,
                      const float* B, Py_ssize_t ldb, float* c, const Py_ssize_t* tab, Py_ssize_t nseg,
                      Py_ssize_t seg)


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


cdef int _im2col_run(const floating* x, Py_ssize_t N, Py_ssize_t C, const Geometry* g,
                     floating* cols, Py_ssize_t L, bint simd) noexcept nogil:
    """cols (C*kh*kw, L) <- x (N, C, H, W), into columns 0..N*OH*OW-1; -1 if out of memory."""
    cdef Py_ssize_t n, c, oh, ow
    cdef floating* phases
    cdef floating* dst
    cdef const floating* src
    cdef int i, j
    if floating is float:
        if simd and (mc_im2col_avx512(x, N, C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, cols, L)
                     or mc_im2col_avx2(x, N, C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, cols, L)):
            return 0
    phases = <floating*>malloc(_phases_size(g) * sizeof(floating))
    if phases == NULL:
        return -1
    for n in range(N):
        for c in range(C):
            _split(x + (n * C + c) * g.H * g.W, phases, g)
            for i in range(g.kh):
                for j in range(g.kw):
                    dst = cols + ((c * g.kh + i) * g.kw + j) * L + n * g.OH * g.OW
                    src = _phase(phases, g, i, j)
                    for oh in range(g.OH):
                        for ow in range(g.OW):
                            dst[oh * g.OW + ow] = src[oh * g.V + ow]
    free(phases)
    return 0


cdef int _col2im_run(const floating* cols, Py_ssize_t L, floating* dx, Py_ssize_t N, Py_ssize_t C,
                     const Geometry* g, bint simd) noexcept nogil:
    """dx (N, C, H, W) <- the adjoint of _im2col_run, overwritten; -1 if out of memory."""
    cdef Py_ssize_t n, c, oh, ow
    cdef floating* phases
    cdef floating* dst
    cdef const floating* src
    cdef int i, j
    if floating is float:
        if simd and mc_col2im_avx512(cols, L, dx, N, C, g.H, g.W, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw):
            return 0
    phases = <floating*>malloc(_phases_size(g) * sizeof(floating))
    if phases == NULL:
        return -1
    for n in range(N):
        for c in range(C):
            memset(phases, 0, _phases_size(g) * sizeof(floating))
            for i in range(g.kh):
                for j in range(g.kw):
                    src = cols + ((c * g.kh + i) * g.kw + j) * L + n * g.OH * g.OW
                    dst = _phase(phases, g, i, j)
                    for oh in range(g.OH):
                        for ow in range(g.OW):
                            dst[oh * g.V + ow] += src[oh * g.OW + ow]
            _merge(phases, dx + (n * C + c) * g.H * g.W, g)
    free(phases)
    return 0


def im2col(const floating[:, :, :, ::1] x, floating[:, ::1] cols,
           int kh, int kw, int sh, int sw, int ph, int pw, bint simd=True):
    """Shape: x (N, C, H, W) -> cols (C*kh*kw, N*OH*OW).

    float32 with row stride 1 or 2 and padded rows up to 32 wide takes the
    AVX-512 path at the AVX-512 level (_im2col_avx512.h), the AVX2 one at the
    AVX2 level (_im2col_avx2.h), both the same values;
    ``simd=False`` forces the portable loops (tests)."""
    cdef Geometry g = _geometry(x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw)
    cdef int status = 0
    if cols.shape[0] == 0 or cols.shape[1] == 0:
        return
    with nogil:
        status = _im2col_run(&x[0, 0, 0, 0], x.shape[0], x.shape[1], &g, &cols[0, 0], cols.shape[1], simd)
    if status:
        raise MemoryError()


def col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] dx,
           int kh, int kw, int sh, int sw, int ph, int pw, bint simd=True):
    """Adjoint of im2col.  Shape: cols (C*kh*kw, N*OH*OW) -> dx (N, C, H, W).

    The AVX-512 path as for im2col (same values: each pixel's terms are added
    in the same order); ``simd=False`` forces the portable loops (tests)."""
    cdef Geometry g = _geometry(dx.shape[2], dx.shape[3], kh, kw, sh, sw, ph, pw)
    cdef int status = 0
    if dx.shape[0] * dx.shape[1] == 0 or g.H == 0 or g.W == 0:
        return
    if cols.shape[0] * cols.shape[1] == 0:      # no window reads any pixel
        dx[...] = 0
        return
    with nogil:
        status = _col2im_run(&cols[0, 0], cols.shape[1], &dx[0, 0, 0, 0], dx.shape[0], dx.shape[1], &g, simd)
    if status:
        raise MemoryError()


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


cdef void _output_to_rows(const floating* dy, const floating* relu_out, floating* rows,
                          Py_ssize_t m, Py_ssize_t O, Py_ssize_t P, double* db) noexcept nogil:
    """rows[o, n * P + q] = dy[n, o, q], times (relu_out[n, o, q] > 0) unless
    relu_out is NULL; and db[o] += the sum of row o, unless db is NULL."""
    cdef Py_ssize_t n, o, q
    cdef int k
    cdef const floating* src
    cdef const floating* yp
    cdef floating* dst
    cdef floating keep
    cdef double partial[8]      # 8 independent sums: one chain of dependent adds would run 4x slower
    for n in range(m):
        for o in range(O):
            src = dy + (n * O + o) * P
            dst = rows + o * m * P + n * P
            if relu_out == NULL:
                memcpy(dst, src, P * sizeof(floating))
            else:
                yp = relu_out + (n * O + o) * P
                for q in range(P):
                    keep = 1 if yp[q] > 0 else 0
                    dst[q] = src[q] * keep
            if db != NULL:
                memset(partial, 0, sizeof(partial))
                q = 0
                while q + 8 <= P:
                    for k in range(8):
                        partial[k] += dst[q + k]
                    q += 8
                while q < P:
                    partial[0] += dst[q]
                    q += 1
                db[o] += ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]))


def output_to_rows(const floating[:, :, ::1] dy, floating[:, ::1] rows, relu_out=None):
    """rows[o, n * P + q] = dy[n, o, q], times (relu_out[n, o, q] > 0) when
    relu_out (the rectified output, dy's shape) is given (0 * NaN is NaN).

    Shapes: dy (m, O, P), rows (O, m*P)."""
    cdef Py_ssize_t m = dy.shape[0], O = dy.shape[1], P = dy.shape[2]
    cdef const floating[:, :, ::1] y
    cdef const floating* yp = NULL
    if m * O * P == 0:
        return
    if relu_out is not None:
        y = relu_out
        if any(y.shape[i] != dy.shape[i] for i in range(3)):
            raise ValueError("output_to_rows: relu_out must have dy's shape")
        yp = &y[0, 0, 0]
    with nogil:
        _output_to_rows(&dy[0, 0, 0], yp, &rows[0, 0], m, O, P, NULL)


# ------------------------------------------------ Conv2D's im2col path --
# The whole layer, chunk by chunk, on minicnn's team of threads (_team.h):
# part p of `parts` takes chunks p, p + parts, ... of the batch, each with its
# own scratch (its slice of `cols` and `rows`) and, backward, its own filter-
# and bias-gradient sums, which the caller adds up in part order.  Shapes:
# x (N, C, H, W), w (O, K) with K = C*kh*kw, y and dy (N, O, OH, OW), P = OH*OW;
# chunk i holds images bounds[i]..bounds[i+1]-1.

from minicnn._gemm cimport gemm
from minicnn._team cimport largest_chunk, team_run


cdef struct ConvTask:
    const void* x
    const void* w           # (O, K)
    const float* packed     # float32: w packed (forward) or w^T packed (backward), else NULL
    const void* bias        # (O,), forward
    void* y                 # forward's output
    const void* dy          # backward's input gradient ...
    const void* relu_out    # ... masked by relu_out > 0 unless NULL
    void* dx                # (N, C, H, W), or NULL: no input gradient
    void* gwt               # (parts, K, O): each part's sum of dW^T, zeroed by the caller
    double* gb              # (parts, O): each part's sum of db, zeroed by the caller
    void* cols              # per part: cols + part * cols_part, (K, b*P) (and backward's d-columns after)
    Py_ssize_t cols_part
    void* rows              # per part: rows + part * rows_part, (O, b*P)
    Py_ssize_t rows_part
    const Py_ssize_t* bounds
    Py_ssize_t chunks, C, O, K, P
    Geometry g
    bint relu, per_image, simd, is_double
    bint channels_last      # backward, float32: without columns, on a channels-last input (_channels_last.h) ...
    const float* w_last     # ... with w (O, K) in (kernel row, column, channel) order
    int failed              # set by a part that ran out of memory


cdef void _forward_chunks(ConvTask* t, floating* y, int part, int parts) noexcept nogil:
    cdef const floating* x = <const floating*>t.x
    cdef const floating* w = <const floating*>t.w
    cdef const floating* bias = <const floating*>t.bias
    cdef floating* cols = <floating*>t.cols + part * t.cols_part
    cdef floating* rows = <floating*>t.rows + part * t.rows_part if t.rows != NULL else NULL
    cdef Py_ssize_t i, n0, m, O = t.O, K = t.K, P = t.P
    cdef floating* out
    i = part
    while i < t.chunks and not t.failed:
        n0 = t.bounds[i]
        m = t.bounds[i + 1] - n0
        out = y + n0 * O * P
        if _im2col_run(x + n0 * t.C * t.g.H * t.g.W, m, t.C, &t.g, cols, m * P, t.simd):
            t.failed = 1
        elif t.per_image:   # one (O, K) @ (K, P) product per image, straight into y
            if gemm(m, O, P, K, w, 0, K, 1, cols, P, m * P, 1, out, O * P, P, 0, t.packed):
                t.failed = 1
            _add_bias(out, O * P, P, out, m, O, P, bias, t.relu)
        else:               # small images: one product for the chunk, then (O, m, P) -> (m, O, P)
            if gemm(1, O, m * P, K, w, 0, K, 1, cols, 0, m * P, 1, rows, 0, m * P, 0, t.packed):
                t.failed = 1
            _add_bias(rows, P, m * P, out, m, O, P, bias, t.relu)
        i += parts


cdef void _forward_part(void* ctx, int part, int parts) noexcept nogil:
    cdef ConvTask* t = <ConvTask*>ctx
    if t.is_double:
        _forward_chunks(t, <double*>t.y, part, parts)
    else:
        _forward_chunks(t, <float*>t.y, part, parts)


cdef Py_ssize_t _channels_last_size(const Geometry* g, Py_ssize_t m, Py_ssize_t C) noexcept nogil:
    """Floats of scratch _channels_last_backward needs in each half of a part's
    cols: the channels-last input (m, HP, WP, C), 16-float aligned, then the
    offsets table (m * OH * OW * kh); in the second half, the input gradient."""
    cdef Py_ssize_t xt = (m * g.HP * g.WP * C + 15) // 16 * 16
    return xt + (m * g.OH * g.OW * g.kh * sizeof(Py_ssize_t) + sizeof(float) - 1) // sizeof(float)


cdef int _channels_last_backward(const ConvTask* t, const float* x, Py_ssize_t m, float* scratch,
                                 float* dxt, const float* dy2, float* gw, float* dx) noexcept nogil:
    """For m images x (m, C, H, W) and their dy2 (O, m*P): gw (O, K') += dy2 @ colsT,
    and, unless dx is NULL, dx (m, C, H, W) = the input gradient; K' in (i, j, c)
    order (_channels_last.h), t.w_last the filters in that order.  0, or -1."""
    cdef const Geometry* g = &t.g
    cdef Py_ssize_t mp = m * t.P, seg = g.kw * t.C
    cdef Py_ssize_t* tab = <Py_ssize_t*>(scratch + (m * g.HP * g.WP * t.C + 15) // 16 * 16)
    if not mc_channels_last(x, m, t.C, g.H, g.W, g.HP, g.WP, g.ph, g.pw, scratch):
        return -1
    mc_row_table(m, t.C, g.HP, g.WP, g.OH, g.OW, g.kh, g.sh, g.sw, tab)
    if mc_sgemm_tab(t.O, t.K, mp, dy2, mp, scratch, tab, g.kh, seg, gw, t.K):
        return -1
    if dx == NULL:
        return 0
    memset(dxt, 0, m * g.HP * g.WP * t.C * sizeof(float))
    # dx' (positions x K', added onto each window's runs) = dy2^T (m*P, O) @ w_last (O, K')
    if mc_sgemm_ctab(mp, t.K, t.O, dy2, 1, mp, t.w_last, t.K, dxt, tab, g.kh, seg):
        return -1
    if not mc_channels_first(dxt, m, t.C, g.H, g.W, g.HP, g.WP, g.ph, g.pw, dx):
        return -1
    return 0


cdef void _add_permuted(const float* gw, float* gwt, Py_ssize_t C, Py_ssize_t taps, Py_ssize_t O) noexcept nogil:
    """gwt[c * taps + s, o] += gw[o, s * C + c]: (O, K') in (tap, channel) order
    onto (K, O) in (channel, tap) order."""
    cdef Py_ssize_t o, c, s
    for c in range(C):
        for s in range(taps):
            for o in range(O):
                gwt[(c * taps + s) * O + o] += gw[o * taps * C + s * C + c]


cdef void _backward_chunks(ConvTask* t, floating* gwt, int part, int parts) noexcept nogil:
    cdef const floating* x = <const floating*>t.x
    cdef const floating* w = <const floating*>t.w
    cdef const floating* dy = <const floating*>t.dy
    cdef const floating* relu_out = <const floating*>t.relu_out
    cdef floating* dx = <floating*>t.dx
    cdef floating* cols = <floating*>t.cols + part * t.cols_part
    cdef floating* dcols = cols + t.cols_part // 2
    cdef floating* dy2 = <floating*>t.rows + part * t.rows_part
    cdef double* gb = t.gb + part * t.O
    cdef Py_ssize_t i, n0, m, O = t.O, K = t.K, P = t.P, HW = t.g.H * t.g.W
    cdef float* gw = NULL
    gwt += part * K * O
    if floating is float:
        if t.channels_last:
            gw = <float*>calloc(O * K, sizeof(float))
            if gw == NULL:
                t.failed = 1
                return
    i = part
    while i < t.chunks and not t.failed:
        n0 = t.bounds[i]
        m = t.bounds[i + 1] - n0
        _output_to_rows(dy + n0 * O * P, relu_out + n0 * O * P if relu_out != NULL else NULL,
                        dy2, m, O, P, gb)
        if gw != NULL:
            if _channels_last_backward(t, <const float*>x + n0 * t.C * HW, m, <float*>cols, <float*>dcols,
                                       <const float*>dy2, gw, <float*>dx + n0 * t.C * HW if dx != NULL else NULL):
                t.failed = 1
        elif _im2col_run(x + n0 * t.C * HW, m, t.C, &t.g, cols, m * P, t.simd):
            t.failed = 1
        # dW^T (K, O) += cols @ dy2^T: only the narrow dy2^T (O columns) is packed
        elif gemm(1, K, O, m * P, cols, 0, m * P, 1, dy2, 0, 1, m * P, gwt, 0, O, 1, NULL):
            t.failed = 1
        # d-columns = w^T @ dy2, then scattered back onto the images
        elif dx != NULL and gemm(1, K, m * P, O, w, 0, 1, K, dy2, 0, m * P, 1, dcols, 0, m * P, 0, t.packed):
            t.failed = 1
        elif dx != NULL and _col2im_run(dcols, m * P, dx + n0 * t.C * HW, m, t.C, &t.g, t.simd):
            t.failed = 1
        i += parts
    if floating is float:
        if gw != NULL:
            _add_permuted(gw, <float*>gwt, t.C, t.g.kh * t.g.kw, O)
            free(gw)


cdef void _backward_part(void* ctx, int part, int parts) noexcept nogil:
    cdef ConvTask* t = <ConvTask*>ctx
    if t.is_double:
        _backward_chunks(t, <double*>t.gwt, part, parts)
    else:
        _backward_chunks(t, <float*>t.gwt, part, parts)


cdef int _setup(ConvTask* t, x, w, packed, const Py_ssize_t[::1] bounds, int parts,
                int kh, int kw, int sh, int sw, int ph, int pw, Py_ssize_t O, Py_ssize_t OH,
                Py_ssize_t OW, bint simd) except -1:
    """The fields forward and backward share, checked (shapes of x, w, packed)."""
    cdef const float[::1] pk
    memset(t, 0, sizeof(ConvTask))
    N, C, H, W = x.shape
    t.g = _geometry(H, W, kh, kw, sh, sw, ph, pw)
    if t.g.OH != OH or t.g.OW != OW or w.shape[0] != O or w.shape[1] != C * kh * kw:
        raise ValueError("conv: shapes of x, w and the output do not match")
    if parts < 1:
        raise ValueError("conv: parts must be at least 1")
    t.C, t.O, t.K, t.P = C, O, C * kh * kw, OH * OW
    t.bounds = &bounds[0]
    t.chunks = bounds.shape[0] - 1
    t.simd = simd
    t.is_double = x.itemsize == 8
    if packed is not None:
        if t.is_double:
            raise ValueError("conv: packed filters are for float32")
        pk = packed
        t.packed = &pk[0]
    return largest_chunk(bounds, N)


def _scratch_part(buffer, Py_ssize_t need, int parts, str name):
    """Elements of ``buffer`` per part, checked to hold ``need`` each."""
    if buffer.shape[0] < parts * need:
        raise ValueError(f"conv: {name} holds {buffer.shape[0]} elements, {parts} parts need {parts * need}")
    return need


def conv_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] w, packed,
                 const floating[::1] bias, floating[:, :, :, ::1] y,
                 floating[::1] cols, floating[::1] rows, const Py_ssize_t[::1] bounds, int parts,
                 int kh, int kw, int sh, int sw, int ph, int pw, bint relu=False, bint simd=True):
    """y = conv(x, w) + bias (max(., 0), NaN kept, with relu), chunk by chunk over
    ``parts`` threads.  ``packed``: minicnn.layers.gemm.pack(w) or None.
    Scratch: cols >= parts * K * b * P elements (b: the largest chunk), rows
    the same with O for K, or None when P >= per-image threshold is used
    (each image's product written straight into y)."""
    cdef ConvTask t
    cdef Py_ssize_t b = _setup(&t, x, w, packed, bounds, parts, kh, kw, sh, sw, ph, pw,
                               y.shape[1], y.shape[2], y.shape[3], simd)
    if y.shape[0] != x.shape[0] or bias.shape[0] != y.shape[1]:
        raise ValueError("conv_forward: y or bias does not match")
    if x.shape[0] == 0:
        return
    t.cols_part = _scratch_part(cols, t.K * b * t.P, parts, "cols")
    t.per_image = rows is None
    if not t.per_image:
        t.rows_part = _scratch_part(rows, t.O * b * t.P, parts, "rows")
        t.rows = &rows[0]
    t.x, t.w, t.bias, t.y, t.cols, t.relu = &x[0, 0, 0, 0], &w[0, 0], &bias[0], &y[0, 0, 0, 0], &cols[0], relu
    with nogil:
        team_run(_forward_part, &t, parts)
    if t.failed:
        raise MemoryError("conv_forward: out of memory")


def conv_backward(const floating[:, :, :, ::1] x, const floating[:, ::1] w, packed_t,
                  const floating[:, :, :, ::1] dy, relu_out, dx,
                  floating[:, :, ::1] gwt, double[:, ::1] gb,
                  floating[::1] cols, floating[::1] rows, const Py_ssize_t[::1] bounds, int parts,
                  int kh, int kw, int sh, int sw, int ph, int pw, bint simd=True):
    """Gradients of conv_forward's y, chunk by chunk over ``parts`` threads.

    dy (N, O, OH, OW), masked by relu_out > 0 when relu_out (forward's rectified
    output) is given; dx (x's shape) is overwritten, or None.  Each part p adds
    its chunks' dW^T into gwt[p] (K, O) and db into gb[p] (O,) (zeroed by the
    caller).  ``packed_t``: minicnn.layers.gemm.pack(w.T) or None.  Scratch:
    cols >= parts * 2 * K * b * P elements (columns and their gradient), rows
    >= parts * O * b * P.  In float32 with AVX-512, when kw * C is a multiple
    of 32 and C of 8, both gradients are computed without columns, on a
    channels-last copy of each chunk held in the same scratch (_channels_last.h)."""
    cdef ConvTask t
    cdef Py_ssize_t b = _setup(&t, x, w, packed_t, bounds, parts, kh, kw, sh, sw, ph, pw,
                               dy.shape[1], dy.shape[2], dy.shape[3], simd)
    cdef const floating[:, :, :, ::1] yr
    cdef floating[:, :, :, ::1] dxv
    cdef const float[:, ::1] wl
    if dy.shape[0] != x.shape[0]:
        raise ValueError("conv_backward: dy does not match x")
    if gwt.shape[0] < parts or gwt.shape[1] != t.K or gwt.shape[2] != t.O or gb.shape[0] < parts or gb.shape[1] != t.O:
        raise ValueError("conv_backward: gwt must be (parts, K, O) and gb (parts, O)")
    if relu_out is not None:
        yr = relu_out
        if any(yr.shape[i] != dy.shape[i] for i in range(4)):
            raise ValueError("conv_backward: relu_out must have dy's shape")
        t.relu_out = &yr[0, 0, 0, 0] if x.shape[0] else NULL
    if dx is not None:
        dxv = dx
        if any(dxv.shape[i] != x.shape[i] for i in range(4)):
            raise ValueError("conv_backward: dx must have x's shape")
        t.dx = &dxv[0, 0, 0, 0] if x.shape[0] else NULL
    if x.shape[0] == 0:
        return
    t.cols_part = _scratch_part(cols, 2 * t.K * b * t.P, parts, "cols")
    t.rows_part = _scratch_part(rows, t.O * b * t.P, parts, "rows")
    t.channels_last = (not t.is_double and simd and mc_channels_last_fits(t.C, kw)
                       and _channels_last_size(&t.g, b, t.C) <= t.K * b * t.P)
    if t.channels_last:
        w_last = np.ascontiguousarray(np.asarray(w).reshape(t.O, t.C, kh * kw).transpose(0, 2, 1))
        wl = w_last.reshape(t.O, t.K)
        t.w_last = &wl[0, 0]
    t.x, t.w, t.dy, t.gwt, t.gb = &x[0, 0, 0, 0], &w[0, 0], &dy[0, 0, 0, 0], &gwt[0, 0, 0], &gb[0, 0]
    t.cols, t.rows = &cols[0], &rows[0]
    with nogil:
        team_run(_backward_part, &t, parts)
    if t.failed:
        raise MemoryError("conv_backward: out of memory")
