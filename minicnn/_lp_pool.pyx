# cython: language_level=3
"""Power-average (LP) pooling kernels: forward and backward, float32 and float64.

Every kernel works on a stack of P independent planes, ``x`` of shape
``(P, H, W)`` with ``P = N * C``, serially; ``minicnn.threads`` runs ranges of
planes on several threads (the kernels release the GIL).  No padding;
output row ``oh`` covers input rows ``oh * sh ... oh * sh + kh - 1``.

Forward, per window: ``y = (sum |x_i|^p)^(1/p)``.  The sum of powers is
taken directly in double, one branch-free loop over a row of windows per
window element.  Where that sum leaves [1e-280, 1e280] (an all-zero window,
tiny or huge values, large p, inf, NaN) the window is recomputed as
``m * (sum (|x_i| / m)^p)^(1/p)`` with ``m = max |x_i|``: every term then lies
in [0, 1] and the sum in [1, kh * kw], so nothing overflows or underflows for
any p > 0 and any dtype.  An all-zero window gives 0; a window holding NaN
gives NaN, else one holding +-inf gives +inf.  p = 1 is ``sum |x_i|``.

Backward: ``dx_i += dy * sign(x_i) * (|x_i| / y)^(p - 1)``, overlapping
windows accumulating; a zero ``x_i`` (so every element of an all-zero
window) gets 0, the subgradient for p = 1 and the convention for p < 1, where
the derivative is unbounded.  ``y`` is the forward's output.

Integer p up to 64 raises to the power by repeated squaring, and p = 2, 3, 4
take their root without ``pow``; other p call ``pow`` per element (p = 3.5
measured five times p = 3's time).

The callers (``minicnn/layers/lp_pool.py``) validate shapes, dtypes, p and the
window first; the loops trust their inputs.
"""
from cython cimport floating
from libc.math cimport fabs, pow, sqrt, INFINITY, NAN
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset


cdef inline double _power(double r, double p, int ip) noexcept nogil:
    """r ** p for r in [0, 1]; ip = p when p is an integer in 1..64, else 0."""
    cdef double result, base
    cdef int e
    if ip == 2:
        return r * r
    if ip == 3:
        return r * r * r
    if ip > 0:
        result, base, e = 1.0, r, ip
        while e:
            if e & 1:
                result = result * base
            base = base * base
            e = e >> 1
        return result
    return pow(r, p)


cdef inline double _cube_root(double t, int steps) noexcept nogil:
    """t ** (1/3) for a normal t > 0: a first guess from the exponent bits (3% off), then Halley
    steps (relative error 2e-5, 6e-15, 4e-16 after 1, 2, 3): 2 for a float32 result, 3 (about
    2 ulp) for float64.  Here it halved the forward's time against libm's cbrt."""
    cdef int64_t bits
    cdef double y, y3
    cdef int k
    memcpy(&bits, &t, sizeof(double))
    bits = 0x2A9F7893782DA1CELL + bits // 3
    memcpy(&y, &bits, sizeof(double))
    for k in range(steps):
        y3 = y * y * y
        y = y * ((y3 + 2.0 * t) / (2.0 * y3 + t))
    return y


cdef inline double _root(double t, double p, int ip, int steps) noexcept nogil:
    """t ** (1 / p); steps: of the cube root's iteration."""
    if ip == 1:
        return t
    if ip == 2:
        return sqrt(t)
    if ip == 3:
        return _cube_root(t, steps)
    if ip == 4:
        return sqrt(sqrt(t))
    return pow(t, 1.0 / p)


cdef inline double _scaled_window(
    const floating* x, Py_ssize_t W, Py_ssize_t h0, Py_ssize_t w0, int kh, int kw,
    double p, int ip, int steps,
) noexcept nogil:
    """The LP norm (p != 1) of the window whose top-left corner is (h0, w0), rescaled by its largest |x|."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    cdef double a, m = 0.0, total = 0.0
    cdef bint nan = False
    for i in range(h0, h0 + kh):
        row = x + i * W
        for j in range(w0, w0 + kw):
            a = fabs(row[j])
            if a > m:
                m = a
            elif a != a:
                nan = True
    if nan:
        return NAN
    if m == 0.0:
        return 0.0
    if m == INFINITY:
        return INFINITY
    for i in range(h0, h0 + kh):      # divide, not multiply by 1 / m: the largest term must be 1 exactly
        row = x + i * W
        for j in range(w0, w0 + kw):
            total = total + _power(fabs(row[j]) / m, p, ip)
    return m * _root(total, p, ip, steps)


cdef inline void _row_sums(
    const floating* x, double* acc, Py_ssize_t W, Py_ssize_t h0, Py_ssize_t OW,
    int kh, int kw, int sw, double p, int ip,
) noexcept nogil:
    """acc[ow] = sum of |x|^p over window (h0, ow * sw), unscaled, in double; one loop
    over the row of windows per window element, so that the loops have no branches."""
    cdef Py_ssize_t i, dj, ow
    cdef const floating* r
    cdef double v
    memset(acc, 0, OW * sizeof(double))
    for i in range(h0, h0 + kh):
        for dj in range(kw):
            r = x + i * W + dj
            if ip == 1:
                for ow in range(OW):
                    acc[ow] = acc[ow] + fabs(<double>r[ow * sw])
            elif ip == 2:
                for ow in range(OW):
                    v = r[ow * sw]
                    acc[ow] = acc[ow] + v * v
            elif ip == 3:
                for ow in range(OW):
                    v = fabs(<double>r[ow * sw])
                    acc[ow] = acc[ow] + v * v * v
            else:
                for ow in range(OW):
                    acc[ow] = acc[ow] + _power(fabs(<double>r[ow * sw]), p, ip)


def lp_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y,
    int kh, int kw, int sh, int sw, double p,
):
    """LP pooling forward.  Shape: x (P, H, W) -> y (P, OH, OW).

    The sum of powers is taken directly; a window whose sum falls outside
    [1e-280, 1e280] (all zeros, tiny or huge values, inf, NaN) is recomputed
    rescaled by its largest |x|.  Both give the same value to rounding.
    """
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], q, oh, ow
    cdef int ip = <int>p if p == <int>p and 1 <= p <= 64 else 0
    cdef int steps = 2 if floating is float else 3
    cdef double t
    cdef double* acc
    if P == 0 or OH == 0 or OW == 0:
        return
    with nogil:
        acc = <double*>malloc(OW * sizeof(double))
        if acc == NULL:
            with gil:
                raise MemoryError()
        for q in range(P):
            for oh in range(OH):
                _row_sums(&x[q, 0, 0], acc, W, oh * sh, OW, kh, kw, sw, p, ip)
                for ow in range(OW):
                    t = acc[ow]
                    if ip == 1:
                        y[q, oh, ow] = <floating>t
                    elif 1e-280 <= t <= 1e280:
                        y[q, oh, ow] = <floating>_root(t, p, ip, steps)
                    else:
                        y[q, oh, ow] = <floating>_scaled_window(&x[q, 0, 0], W, oh * sh, ow * sw, kh, kw, p, ip,
                                                                steps)
        free(acc)


def lp_backward(
    const floating[:, :, ::1] x, const floating[:, :, ::1] y, const floating[:, :, ::1] dy,
    floating[:, :, ::1] dx, int kh, int kw, int sh, int sw, double p,
):
    """LP pooling backward: every element of dx is written.

    Shape: x (P, H, W), y and dy (P, OH, OW) -> dx (P, H, W).
    Per element ``r = |x| / y`` lies in [0, 1], so its power cannot overflow.
    """
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], q, oh, ow, i, dj
    cdef int ip = <int>p if p == <int>p and 1 <= p <= 64 else 0
    cdef double v, r, yv
    cdef double* g
    cdef double* inv
    cdef const floating* xr
    cdef floating* dr
    if P == 0 or H == 0 or W == 0:
        return
    with nogil:
        g = <double*>malloc(2 * OW * sizeof(double) + 1)
        if g == NULL:
            with gil:
                raise MemoryError()
        inv = g + OW
        for q in range(P):
            memset(&dx[q, 0, 0], 0, H * W * sizeof(floating))
            for oh in range(OH):
                for ow in range(OW):
                    yv = y[q, oh, ow]
                    g[ow] = dy[q, oh, ow]
                    inv[ow] = 1.0 / yv if yv != 0 else 0.0   # y = 0: every x is 0, so is every term
                for i in range(oh * sh, oh * sh + kh):
                    for dj in range(kw):
                        xr = &x[q, i, dj]
                        dr = &dx[q, i, dj]
                        if ip == 1:      # sign(x)
                            for ow in range(OW):
                                v = xr[ow * sw]
                                dr[ow * sw] += <floating>(g[ow] * ((v > 0) - (v < 0)))
                        elif ip == 2:    # sign(x) |x| / y
                            for ow in range(OW):
                                dr[ow * sw] += <floating>(g[ow] * (xr[ow * sw] * inv[ow]))
                        elif ip == 3:    # sign(x) (|x| / y)^2
                            for ow in range(OW):
                                r = xr[ow * sw] * inv[ow]
                                dr[ow * sw] += <floating>(g[ow] * (r * fabs(r)))
                        elif ip > 3:
                            for ow in range(OW):
                                v = xr[ow * sw]
                                r = _power(fabs(v) * inv[ow], p - 1, ip - 1)
                                dr[ow * sw] += <floating>(g[ow] * (r if v > 0 else -r))
                        else:            # non-integer p: pow, and 0 where x = 0 (unbounded for p < 1)
                            for ow in range(OW):
                                v = xr[ow * sw]
                                if v != 0:
                                    r = pow(fabs(v) * inv[ow], p - 1)
                                    dr[ow * sw] += <floating>(g[ow] * (r if v > 0 else -r))
        free(g)
