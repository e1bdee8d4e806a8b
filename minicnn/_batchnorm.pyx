# cython: language_level=3
"""Batch normalisation, forward and backward, in two passes each.

Arrays are seen as (N, C, S): a BatchNorm2D's (N, C, H, W) input with S = H * W,
a BatchNorm1D's (N, C) with S = 1 (or (N, C, L)).  Channel c's statistics are
over its N * S values.

- ``channel_stats``: one pass, the mean and biased variance of every channel,
  summed in double around a shift (the channel's first value), so a large mean
  does not cancel the variance away.
- ``normalize``: y = (x - m[c]) * a[c] + b[c], with max(y, 0) when ``relu``
  (a BatchNorm followed by a ReLU, fused: bit for bit ``_activations.relu_forward``
  of the unfused output).
- ``backward_sums``: one pass, per channel sum(dz) and sum(dz * (x - mean)),
  in double, dz being dy, or dy * (z > 0) when ``relu``, z recomputed from x
  exactly as ``normalize`` computed it.
- ``backward_dx``: dx = p[c] * dz + q[c] * (x - m[c]) + r[c].

Each channel's sums run in a fixed order (image by image, each image's
values in eight double lanes), whatever the thread count, so results do not
depend on it.  The work is cut into ranges of channels, one part each, run on
minicnn's team of threads (_team.h) without the GIL.

Shapes and types: x, dy, y, dx (N, C, S) C-contiguous of one float type;
a, b, m, p, q, r (C,) of that type; sums and statistics (C,) float64.  The
caller (``minicnn/layers/normalization.py``) validates them.
"""
from cython cimport floating

from minicnn._team cimport team_run

DEF LANES = 8
DEF BLOCK = 512     # values masked at a time into a stack buffer (a multiple of LANES)


cdef struct Job:
    const void* x
    const void* dy
    void* out
    const void* a
    const void* b
    const void* m
    const void* p
    const void* q
    const void* r
    double* sum1
    double* sum2
    Py_ssize_t N, C, S
    bint relu, is_double
    int kind


cdef enum:
    STATS, NORMALIZE, SUMS, DX


cdef inline floating _z(floating x, floating m, floating a, floating b) noexcept nogil:
    return (x - m) * a + b


cdef inline void _masked(const floating* x, const floating* dy, floating* dz, Py_ssize_t n,
                         floating m, floating a, floating b) noexcept nogil:
    """dz = dy * (1 if (x - m) * a + b > 0 else 0), as _activations.relu_backward masks dy
    (a loop of its own: so it compiles to vector compares and blends, not branches)."""
    cdef Py_ssize_t i
    for i in range(n):
        dz[i] = dy[i] * (<floating>1 if _z(x[i], m, a, b) > 0 else <floating>0)


cdef void _stats(const floating* x, double* sum1, double* sum2, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                 Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """sum1[c] = sum(x - k), sum2[c] = sum((x - k)^2), k = x[0, c, 0]."""
    cdef Py_ssize_t n, c, i, l, full = S - S % LANES
    cdef double s[LANES]
    cdef double q[LANES]
    cdef double k, d
    cdef const floating* plane
    for c in range(lo, hi):
        sum1[c] = 0
        sum2[c] = 0
    for n in range(N):
        for c in range(lo, hi):
            plane = x + (n * C + c) * S
            k = x[c * S]
            for l in range(LANES):
                s[l] = 0
                q[l] = 0
            for i in range(0, full, LANES):
                for l in range(LANES):
                    d = plane[i + l] - k
                    s[l] = s[l] + d
                    q[l] = q[l] + d * d
            for i in range(full, S):
                d = plane[i] - k
                s[0] = s[0] + d
                q[0] = q[0] + d * d
            for l in range(LANES):
                sum1[c] = sum1[c] + s[l]
                sum2[c] = sum2[c] + q[l]


cdef void _normalize(const floating* x, floating* y, const floating* a, const floating* b, const floating* m,
                     Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, Py_ssize_t lo, Py_ssize_t hi,
                     bint relu) noexcept nogil:
    cdef Py_ssize_t n, c, i, o
    cdef floating ac, bc, mc, v
    for n in range(N):
        for c in range(lo, hi):
            ac, bc, mc = a[c], b[c], m[c]
            o = (n * C + c) * S
            if relu:
                for i in range(o, o + S):
                    v = _z(x[i], mc, ac, bc)
                    y[i] = v if (v > 0 or v != v) else 0
            else:
                for i in range(o, o + S):
                    y[i] = _z(x[i], mc, ac, bc)


cdef void _sums(const floating* x, const floating* dy, const floating* a, const floating* b, const floating* m,
                double* sum1, double* sum2, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                Py_ssize_t lo, Py_ssize_t hi, bint relu) noexcept nogil:
    """sum1[c] = sum(dz), sum2[c] = sum(dz * (x - m[c])) (m in double); dz = dy, or with relu
    dy masked, BLOCK values at a time into a buffer."""
    cdef Py_ssize_t n, c, i, k, l, o, start, count, full
    cdef double s[LANES]
    cdef double q[LANES]
    cdef floating buf[BLOCK]
    cdef const floating* g
    cdef const floating* xs
    cdef double md
    for c in range(lo, hi):
        sum1[c] = 0
        sum2[c] = 0
    for n in range(N):
        for c in range(lo, hi):
            md = m[c]
            o = (n * C + c) * S
            for l in range(LANES):
                s[l] = 0
                q[l] = 0
            for start in range(o, o + S, BLOCK):
                count = min(BLOCK, o + S - start)
                xs = x + start
                g = dy + start
                if relu:
                    _masked(xs, g, buf, count, m[c], a[c], b[c])
                    g = buf
                full = count - count % LANES
                for i in range(0, full, LANES):
                    for l in range(LANES):
                        s[l] = s[l] + g[i + l]
                        q[l] = q[l] + g[i + l] * (xs[i + l] - md)
                for i in range(full, count):
                    s[0] = s[0] + g[i]
                    q[0] = q[0] + g[i] * (xs[i] - md)
            for l in range(LANES):
                sum1[c] = sum1[c] + s[l]
                sum2[c] = sum2[c] + q[l]


cdef void _dx(const floating* x, const floating* dy, floating* dx, const floating* a, const floating* b,
              const floating* m, const floating* p, const floating* q, const floating* r,
              Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, Py_ssize_t lo, Py_ssize_t hi, bint relu) noexcept nogil:
    """dx = p * dz + q * (x - m) + r per channel; with relu, dz (dy masked) first written into dx."""
    cdef Py_ssize_t n, c, i, o
    cdef floating mc, pc, qc, rc
    cdef const floating* g
    for n in range(N):
        for c in range(lo, hi):
            mc, pc, qc, rc = m[c], p[c], q[c], r[c]
            o = (n * C + c) * S
            g = dy + o
            if relu:
                _masked(x + o, dy + o, dx + o, S, mc, a[c], b[c])
                g = dx + o
            for i in range(S):
                dx[o + i] = pc * g[i] + qc * (x[o + i] - mc) + rc


cdef void _part(void* ctx, int part, int parts) noexcept nogil:
    cdef Job* j = <Job*>ctx
    cdef Py_ssize_t lo = j.C * part // parts, hi = j.C * (part + 1) // parts
    if j.is_double:
        _typed_part(j, lo, hi, <double*>NULL)
    else:
        _typed_part(j, lo, hi, <float*>NULL)


cdef void _typed_part(Job* j, Py_ssize_t lo, Py_ssize_t hi, floating* kind) noexcept nogil:
    """Job j on channels lo..hi (``kind``, a null pointer, only picks the float type)."""
    if j.kind == STATS:
        _stats(<const floating*>j.x, j.sum1, j.sum2, j.N, j.C, j.S, lo, hi)
    elif j.kind == NORMALIZE:
        _normalize(<const floating*>j.x, <floating*>j.out, <const floating*>j.a, <const floating*>j.b,
                   <const floating*>j.m, j.N, j.C, j.S, lo, hi, j.relu)
    elif j.kind == SUMS:
        _sums(<const floating*>j.x, <const floating*>j.dy, <const floating*>j.a, <const floating*>j.b,
              <const floating*>j.m, j.sum1, j.sum2, j.N, j.C, j.S, lo, hi, j.relu)
    else:
        _dx(<const floating*>j.x, <const floating*>j.dy, <floating*>j.out, <const floating*>j.a,
            <const floating*>j.b, <const floating*>j.m, <const floating*>j.p, <const floating*>j.q,
            <const floating*>j.r, j.N, j.C, j.S, lo, hi, j.relu)


cdef void _launch(Job* j, int parts) noexcept nogil:
    if j.N * j.C * j.S == 0:
        return
    team_run(_part, j, max(1, min(parts, <int>j.C)))


def channel_stats(const floating[:, :, ::1] x, double[::1] mean, double[::1] var, int parts):
    """mean[c] and biased var[c] of x[:, c, :]; N * S must be at least 1."""
    cdef Job j
    cdef Py_ssize_t c, count = x.shape[0] * x.shape[2]
    cdef double k, s1, s2
    j.x = &x[0, 0, 0]
    j.sum1, j.sum2 = &mean[0], &var[0]
    j.N, j.C, j.S = x.shape[0], x.shape[1], x.shape[2]
    j.is_double = floating is double
    j.kind = STATS
    with nogil:
        _launch(&j, parts)
        for c in range(j.C):
            k = x[0, c, 0]
            s1 = mean[c] / count
            s2 = var[c] / count - s1 * s1
            mean[c] = k + s1
            var[c] = s2 if s2 > 0 else 0


def normalize(const floating[:, :, ::1] x, floating[:, :, ::1] y, const floating[::1] m,
              const floating[::1] a, const floating[::1] b, bint relu, int parts):
    """y = (x - m[c]) * a[c] + b[c], then max(y, 0) (NaN kept) if relu."""
    cdef Job j
    j.x, j.out = &x[0, 0, 0], &y[0, 0, 0]
    j.m, j.a, j.b = &m[0], &a[0], &b[0]
    j.N, j.C, j.S = x.shape[0], x.shape[1], x.shape[2]
    j.relu = relu
    j.is_double = floating is double
    j.kind = NORMALIZE
    with nogil:
        _launch(&j, parts)


def backward_sums(const floating[:, :, ::1] x, const floating[:, :, ::1] dy, const floating[::1] m,
                  const floating[::1] a, const floating[::1] b, bint relu,
                  double[::1] sum_dz, double[::1] sum_dzx, int parts):
    """sum_dz[c] = sum(dz), sum_dzx[c] = sum(dz * (x - m[c])); dz = dy, or dy * (z > 0) if relu."""
    cdef Job j
    j.x, j.dy = &x[0, 0, 0], &dy[0, 0, 0]
    j.m, j.a, j.b = &m[0], &a[0], &b[0]
    j.sum1, j.sum2 = &sum_dz[0], &sum_dzx[0]
    j.N, j.C, j.S = x.shape[0], x.shape[1], x.shape[2]
    j.relu = relu
    j.is_double = floating is double
    j.kind = SUMS
    with nogil:
        _launch(&j, parts)


def backward_dx(const floating[:, :, ::1] x, const floating[:, :, ::1] dy, floating[:, :, ::1] dx,
                const floating[::1] m, const floating[::1] a, const floating[::1] b, bint relu,
                const floating[::1] p, const floating[::1] q, const floating[::1] r, int parts):
    """dx = p[c] * dz + q[c] * (x - m[c]) + r[c]."""
    cdef Job j
    j.x, j.dy, j.out = &x[0, 0, 0], &dy[0, 0, 0], &dx[0, 0, 0]
    j.m, j.a, j.b, j.p, j.q, j.r = &m[0], &a[0], &b[0], &p[0], &q[0], &r[0]
    j.N, j.C, j.S = x.shape[0], x.shape[1], x.shape[2]
    j.relu = relu
    j.is_double = floating is double
    j.kind = DX
    with nogil:
        _launch(&j, parts)
