# cython: language_level=3
"""Anti-aliased pooling kernels (Zhang 2019): BlurPool and the fused MaxBlurPool.

Every kernel works on a stack of P independent planes, ``x`` of shape
``(P, H, W)`` with ``P = N * C``, serially; ``minicnn.threads`` runs ranges of
planes on several threads (the kernels release the GIL).  The callers
(``minicnn/layers/blurpool.py``) validate shapes, dtypes and sizes first.

Blur: the filter is the outer product ``t t^T`` of one normalised binomial row
``t`` of ``f`` taps, so each output row is computed in two 1-D passes: the
``f`` reflected input rows it covers are combined vertically into a row buffer
of ``W + f - 1`` elements (its ends filled by reflection), and that buffer is
filtered horizontally at the stride.  Padding is reflection (no edge repeat),
``top = left = (f - 1) // 2`` and ``bottom = right = f // 2``, so
``OH = ceil(H / sh)``; the callers ensure ``f // 2 < H`` and ``< W``, so one
reflection reaches every padded index.

MaxBlur: per plane, the stride-1 max map ``M`` (``H - kh + 1`` by
``W - kw + 1``, rows ``W`` apart) is written into a scratch buffer of one
plane, blurred from there, and overwritten by the next plane: the batch's max
map never exists.
Its switches (position in the window, ``i * kw + j``; first maximum in
row-major order, a NaN wins as in max pooling) are kept for backward, which
blurs ``dy`` back into the plane buffer and scatters it through them.
"""
from cython cimport floating
from libc.stdint cimport int32_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from minicnn._poolrows cimport max_step

ctypedef fused index_t:
    uint8_t
    int32_t


cdef inline Py_ssize_t _reflect(Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Index i in [-(n - 1), 2n - 2] reflected into [0, n) (no edge repeat)."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


cdef inline void _blur_plane(
    const floating* x, Py_ssize_t ld, floating* y, floating* row, const floating* t, int f,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int sh, int sw,
) noexcept nogil:
    """One plane (H, W), rows ``ld`` apart -> y (OH, OW); ``row`` holds W + f - 1 elements of scratch."""
    cdef Py_ssize_t oh, ow, j, q
    cdef int i, top = (f - 1) // 2, bottom = f // 2
    cdef const floating* src
    cdef floating* mid = row + top
    cdef floating* out
    cdef floating acc, ti
    for oh in range(OH):
        src = x + _reflect(oh * sh - top, H) * ld
        ti = t[0]
        for j in range(W):
            mid[j] = ti * src[j]
        for i in range(1, f):
            src = x + _reflect(oh * sh - top + i, H) * ld
            ti = t[i]
            for j in range(W):
                mid[j] = mid[j] + ti * src[j]
        for q in range(1, top + 1):
            row[top - q] = mid[q]
        for q in range(1, bottom + 1):
            mid[W - 1 + q] = mid[W - 1 - q]
        out = y + oh * OW
        if f == 3 and sw == 2:
            for ow in range(OW):
                out[ow] = t[0] * row[2 * ow] + t[1] * row[2 * ow + 1] + t[2] * row[2 * ow + 2]
        else:
            for ow in range(OW):
                acc = 0
                for i in range(f):
                    acc = acc + t[i] * row[ow * sw + i]
                out[ow] = acc


cdef inline void _blur_plane_backward(
    const floating* dy, floating* dx, floating* row, const floating* t, int f,
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, int sh, int sw,
) noexcept nogil:
    """dy (OH, OW) -> dx (H, W), every element written; ``row`` as in _blur_plane."""
    cdef Py_ssize_t oh, ow, j, q
    cdef int i, top = (f - 1) // 2, bottom = f // 2
    cdef floating* dst
    cdef floating* mid = row + top
    cdef const floating* g
    cdef floating ti
    memset(dx, 0, H * W * sizeof(floating))
    for oh in range(OH):
        memset(row, 0, (W + f - 1) * sizeof(floating))
        g = dy + oh * OW
        for i in range(f):
            ti = t[i]
            for ow in range(OW):
                row[ow * sw + i] += ti * g[ow]
        for q in range(1, top + 1):
            mid[q] += row[top - q]
        for q in range(1, bottom + 1):
            mid[W - 1 - q] += mid[W - 1 + q]
        for i in range(f):
            dst = dx + _reflect(oh * sh - top + i, H) * W
            ti = t[i]
            for j in range(W):
                dst[j] = dst[j] + ti * mid[j]


cdef inline void _max_plane_s1(
    const floating* x, floating* m, index_t* argmax, int32_t* at,
    Py_ssize_t W, Py_ssize_t MH, Py_ssize_t MW, int kh, int kw,
) noexcept nogil:
    """Stride-1 max pooling of one plane: m (MH rows of stride W, MW used), argmax (MH, MW).

    ``at`` is scratch of (MH - 1) * W + MW ints.  Window offset by window offset,
    over the whole plane at once as one run of n = (MH - 1) * W + MW elements
    (max_step: branch-free, vectorised); the runs' last W - MW columns of each
    row are computed and ignored."""
    cdef Py_ssize_t a, b, n = (MH - 1) * W + MW
    cdef int i, j
    for b in range(n):
        m[b] = x[b]
        at[b] = 0
    for i in range(kh):
        for j in range(kw):
            max_step(x + i * W + j, 1, m, at, <floating*>NULL, n, i * kw + j)
    for a in range(MH):
        for b in range(MW):
            argmax[a * MW + b] = <index_t>at[a * W + b]


cdef floating* _scratch(Py_ssize_t n, floating* like) except NULL:
    """n elements of scratch (``like`` only picks the type)."""
    cdef floating* buf = <floating*>malloc((n if n > 0 else 1) * sizeof(floating))
    if buf == NULL:
        raise MemoryError()
    return buf


def blur_forward(const floating[:, :, ::1] x, floating[:, :, ::1] y, const floating[::1] taps, int sh, int sw):
    """BlurPool forward.  Shape: x (P, H, W) -> y (P, OH, OW), OH = ceil(H / sh); taps (f,)."""
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    cdef int f = taps.shape[0]
    if P == 0 or OH == 0 or OW == 0:
        return
    cdef floating* row = _scratch(W + f - 1, &y[0, 0, 0])
    with nogil:
        for p in range(P):
            _blur_plane(&x[p, 0, 0], W, &y[p, 0, 0], row, &taps[0], f, H, W, OH, OW, sh, sw)
    free(row)


def blur_backward(const floating[:, :, ::1] dy, floating[:, :, ::1] dx, const floating[::1] taps, int sh, int sw):
    """BlurPool backward, every element of dx written.  Shape: dy (P, OH, OW) -> dx (P, H, W)."""
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p
    cdef int f = taps.shape[0]
    if P == 0 or H == 0 or W == 0:
        return
    cdef floating* row = _scratch(W + f - 1, &dx[0, 0, 0])
    with nogil:
        for p in range(P):
            _blur_plane_backward(&dy[p, 0, 0], &dx[p, 0, 0], row, &taps[0], f, H, W, OH, OW, sh, sw)
    free(row)


def maxblur_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y, index_t[:, :, ::1] argmax,
    const floating[::1] taps, int kh, int kw, int sh, int sw,
):
    """MaxBlurPool forward: stride-1 max pooling (kh, kw), then the blur, one plane at a time.

    Shape: x (P, H, W) -> y (P, OH, OW), OH = ceil((H - kh + 1) / sh);
    argmax (P, H - kh + 1, W - kw + 1), the stride-1 max's switches.
    """
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2]
    cdef Py_ssize_t MH = argmax.shape[1], MW = argmax.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    cdef int f = taps.shape[0]
    if P == 0 or OH == 0 or OW == 0:
        return
    cdef floating* m = _scratch(MH * W + MW + f - 1, &y[0, 0, 0])
    cdef int32_t* at = <int32_t*>malloc(MH * W * sizeof(int32_t))
    if at == NULL:
        free(m)
        raise MemoryError()
    with nogil:
        for p in range(P):
            _max_plane_s1(&x[p, 0, 0], m, &argmax[p, 0, 0], at, W, MH, MW, kh, kw)
            _blur_plane(m, W, &y[p, 0, 0], m + MH * W, &taps[0], f, MH, MW, OH, OW, sh, sw)
    free(m)
    free(at)


def maxblur_backward(
    const floating[:, :, ::1] dy, const index_t[:, :, ::1] argmax, floating[:, :, ::1] dx,
    const floating[::1] taps, int kh, int kw, int sh, int sw,
):
    """MaxBlurPool backward, every element of dx written: the blur's transpose into a plane
    buffer, then each element's gradient added to the input its switch names.

    Shape: dy (P, OH, OW), argmax (P, MH, MW) -> dx (P, H, W).
    """
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t MH = argmax.shape[1], MW = argmax.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p, a, b
    cdef int f = taps.shape[0], pos
    if P == 0 or H == 0 or W == 0:
        return
    cdef floating* dm = _scratch(MH * MW + MW + f - 1, &dx[0, 0, 0])
    cdef Py_ssize_t* offset = <Py_ssize_t*>malloc(kh * kw * sizeof(Py_ssize_t))
    if offset == NULL:
        free(dm)
        raise MemoryError()
    for pos in range(kh * kw):
        offset[pos] = (pos // kw) * W + pos % kw
    cdef floating* d
    cdef const index_t* s
    with nogil:
        for p in range(P):
            _blur_plane_backward(&dy[p, 0, 0], dm, dm + MH * MW, &taps[0], f, MH, MW, OH, OW, sh, sw)
            d = &dx[p, 0, 0]
            s = &argmax[p, 0, 0]
            memset(d, 0, H * W * sizeof(floating))
            for a in range(MH):
                for b in range(MW):
                    d[a * W + b + offset[s[a * MW + b]]] += dm[a * MW + b]
    free(dm)
    free(offset)
