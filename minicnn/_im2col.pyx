# cython: language_level=3
"""im2col / col2im for Conv2D, float32 and float64.

Column layout: ``cols`` has shape ``(C * kh * kw, N * OH * OW)``; row
``r = (c * kh + i) * kw + j`` holds, for every output position ``(n, oh, ow)``
in C order, the input element ``x[n, c, oh * sh - ph + i, ow * sw - pw + j]``
(zero where that falls in the padding).  With this layout one BLAS product
``W.reshape(O, -1) @ cols`` computes the whole chunk.

The caller (``minicnn/layers/conv.py``) validates shapes and dtypes, and calls
these on chunks of a few images whose columns stay in cache, one chunk per
call, from minicnn's own threads (minicnn.threads).
"""
from cython cimport floating
from libc.string cimport memset


cdef inline void _valid_range(
    Py_ssize_t n_out, int stride, Py_ssize_t offset, Py_ssize_t size,
    Py_ssize_t* lo, Py_ssize_t* hi,
) noexcept nogil:
    """Output indices o in [lo, hi) with 0 <= o * stride + offset < size."""
    cdef Py_ssize_t a = 0, b = n_out
    while a < b and a * stride + offset < 0:
        a += 1
    while b > a and (b - 1) * stride + offset >= size:
        b -= 1
    lo[0] = a
    hi[0] = b


cdef inline void _fill_row(
    const floating* x, floating* row,
    Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
    Py_ssize_t c, int i, int j, int sh, int sw, int ph, int pw,
) noexcept nogil:
    """One row of cols: kernel offset (i, j) of channel c for all n, oh, ow."""
    cdef Py_ssize_t n, oh, ow, ih, oh_lo, oh_hi, ow_lo, ow_hi
    cdef const floating* src
    cdef floating* dst
    _valid_range(OH, sh, i - ph, H, &oh_lo, &oh_hi)
    _valid_range(OW, sw, j - pw, W, &ow_lo, &ow_hi)
    for n in range(N):
        for oh in range(OH):
            dst = row + (n * OH + oh) * OW
            if oh < oh_lo or oh >= oh_hi:
                memset(dst, 0, OW * sizeof(floating))
                continue
            ih = oh * sh - ph + i
            src = x + ((n * C + c) * H + ih) * W + j - pw
            for ow in range(ow_lo):
                dst[ow] = 0
            if sw == 1:
                for ow in range(ow_lo, ow_hi):
                    dst[ow] = src[ow]
            else:
                for ow in range(ow_lo, ow_hi):
                    dst[ow] = src[ow * sw]
            for ow in range(ow_hi, OW):
                dst[ow] = 0


def im2col(
    const floating[:, :, :, ::1] x, floating[:, ::1] cols,
    int kh, int kw, int sh, int sw, int ph, int pw,
):
    """Shape: x (N, C, H, W) -> cols (C*kh*kw, N*OH*OW), OH/OW taken from cols."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t R = cols.shape[0], L = cols.shape[1], r
    cdef Py_ssize_t OH, OW
    if R == 0 or L == 0:
        return
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    with nogil:
        for r in range(R):
            _fill_row(&x[0, 0, 0, 0], &cols[r, 0], N, C, H, W, OH, OW,
                      r // (kh * kw), (r // kw) % kh, r % kw, sh, sw, ph, pw)


cdef inline void _add_rows_to_plane(
    const floating* cols, Py_ssize_t L, floating* dx,
    Py_ssize_t n, Py_ssize_t c, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
    int kh, int kw, int sh, int sw, int ph, int pw,
) noexcept nogil:
    """dx plane (H, W) of image n, channel c: zeroed, then += every cols row of c."""
    cdef Py_ssize_t i, j, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi
    cdef const floating* src
    cdef floating* dst
    memset(dx, 0, H * W * sizeof(floating))
    for i in range(kh):
        _valid_range(OH, sh, i - ph, H, &oh_lo, &oh_hi)
        for j in range(kw):
            _valid_range(OW, sw, j - pw, W, &ow_lo, &ow_hi)
            for oh in range(oh_lo, oh_hi):
                src = cols + ((c * kh + i) * kw + j) * L + (n * OH + oh) * OW
                dst = dx + (oh * sh - ph + i) * W + j - pw
                if sw == 1:
                    for ow in range(ow_lo, ow_hi):
                        dst[ow] += src[ow]
                else:
                    for ow in range(ow_lo, ow_hi):
                        dst[ow * sw] += src[ow]


def col2im(
    const floating[:, ::1] cols, floating[:, :, :, ::1] dx,
    int kh, int kw, int sh, int sw, int ph, int pw,
):
    """Adjoint of im2col.  Shape: cols (C*kh*kw, N*OH*OW) -> dx (N, C, H, W)."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t L = cols.shape[1], p
    cdef Py_ssize_t OH, OW
    if N * C == 0 or H == 0 or W == 0:
        return
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    with nogil:
        for p in range(N * C):
            _add_rows_to_plane(&cols[0, 0], L, &dx[p // C, p % C, 0, 0],
                               p // C, p % C, H, W, OH, OW, kh, kw, sh, sw, ph, pw)
