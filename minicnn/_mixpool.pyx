# cython: language_level=3
"""Mixed and gated max-average pooling kernels (Lee, Gallagher and Tu 2016).

Every kernel works on a stack of P independent planes, ``x`` of shape
``(P, H, W)`` with ``P = N * C``, serially; ``minicnn.threads`` runs ranges of
planes on several threads (the kernels release the GIL).  The callers
(``minicnn/layers/mixpool.py``) validate everything first.

Windows have no padding: output ``(oh, ow)`` covers rows ``oh * sh ..
oh * sh + kh - 1`` and columns ``ow * sw .. ow * sw + kw - 1``.  Per window,
with ``K = kh * kw``, ``max`` (first maximum in row-major order, a NaN wins,
as in max pooling) and ``avg = sum / K``:

- mixed:  ``y = a * max + (1 - a) * avg``, one ``a`` for the layer;
- gated:  ``g = sigmoid(w . window)`` (``w`` has K weights, row-major), and
  ``y = g * max + (1 - g) * avg``.

Forward keeps, per output, the switch of the max and ``max - avg`` (gated
also ``g``) for backward.  The parameter gradients are summed per plane in
double (``da[p]``, ``dw[p, k]``); the caller adds the planes up, so the sum
does not depend on how planes were shared among threads.
"""
from cython cimport floating
from libc.math cimport exp, expf
from libc.stdint cimport int32_t, uint8_t
from libc.string cimport memset

ctypedef fused index_t:
    uint8_t
    int32_t


cdef inline floating _max_sum(const floating* corner, Py_ssize_t W, int kh, int kw,
                              index_t* pos, floating* total) noexcept nogil:
    """The window at ``corner``: returns its max, sets its switch and its sum."""
    cdef int i, j
    cdef floating best = corner[0], v, s = 0
    cdef index_t at = 0
    for i in range(kh):
        for j in range(kw):
            v = corner[i * W + j]
            s = s + v
            if v > best or v != v:
                best = v
                at = <index_t>(i * kw + j)
    pos[0] = at
    total[0] = s
    return best


cdef inline floating _sigmoid(floating z) noexcept nogil:
    """1 / (1 + exp(-z)), without overflow for either sign."""
    cdef floating e
    if floating is float:
        e = expf(-z if z >= 0 else z)
    else:
        e = exp(-z if z >= 0 else z)
    return 1 / (1 + e) if z >= 0 else e / (1 + e)


def mixed_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y, index_t[:, :, ::1] argmax, floating[:, :, ::1] diff,
    double a, int kh, int kw, int sh, int sw,
):
    """Mixed pooling forward.  Shape: x (P, H, W) -> y, argmax, diff (max - avg) (P, OH, OW)."""
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2], OH = y.shape[1], OW = y.shape[2], p, oh, ow, o
    cdef floating mix = <floating>a, inv = <floating>(1.0 / (kh * kw)), best, total, avg
    if P == 0 or OH == 0 or OW == 0:
        return
    with nogil:
        for p in range(P):
            for oh in range(OH):
                for ow in range(OW):
                    o = oh * OW + ow
                    best = _max_sum(&x[p, oh * sh, ow * sw], W, kh, kw, &argmax[p, 0, 0] + o, &total)
                    avg = total * inv
                    y[p, oh, ow] = mix * best + (1 - mix) * avg
                    diff[p, oh, ow] = best - avg


def mixed_backward(
    const floating[:, :, ::1] dy, const index_t[:, :, ::1] argmax, const floating[:, :, ::1] diff,
    floating[:, :, ::1] dx, double[::1] da, double a, int kh, int kw, int sh, int sw,
):
    """Mixed pooling backward: dx (P, H, W), every element written; da[p] = sum of dy * diff over plane p."""
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p, oh, ow
    cdef int i, j, pos
    cdef floating mix = <floating>a, inv = <floating>(1.0 / (kh * kw)), g, share
    cdef floating* corner
    cdef double acc
    if P == 0 or H == 0 or W == 0:
        return
    with nogil:
        for p in range(P):
            memset(&dx[p, 0, 0], 0, H * W * sizeof(floating))
            acc = 0
            for oh in range(OH):
                for ow in range(OW):
                    g = dy[p, oh, ow]
                    acc = acc + <double>g * diff[p, oh, ow]
                    share = (1 - mix) * g * inv
                    corner = &dx[p, oh * sh, ow * sw]
                    for i in range(kh):
                        for j in range(kw):
                            corner[i * W + j] += share
                    pos = argmax[p, oh, ow]
                    corner[(pos // kw) * W + pos % kw] += mix * g
            da[p] = acc


def gated_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y, index_t[:, :, ::1] argmax,
    floating[:, :, ::1] gate, floating[:, :, ::1] diff, const floating[::1] w, int kh, int kw, int sh, int sw,
):
    """Gated pooling forward.  Shape: x (P, H, W), w (kh * kw,) -> y, argmax, gate, diff (P, OH, OW)."""
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2], OH = y.shape[1], OW = y.shape[2], p, oh, ow, o
    cdef floating inv = <floating>(1.0 / (kh * kw)), best, total, avg, z, g
    cdef const floating* corner
    cdef int i, j
    if P == 0 or OH == 0 or OW == 0:
        return
    with nogil:
        for p in range(P):
            for oh in range(OH):
                for ow in range(OW):
                    o = oh * OW + ow
                    corner = &x[p, oh * sh, ow * sw]
                    best = _max_sum(corner, W, kh, kw, &argmax[p, 0, 0] + o, &total)
                    z = 0
                    for i in range(kh):
                        for j in range(kw):
                            z = z + w[i * kw + j] * corner[i * W + j]
                    g = _sigmoid(z)
                    avg = total * inv
                    y[p, oh, ow] = g * best + (1 - g) * avg
                    gate[p, oh, ow] = g
                    diff[p, oh, ow] = best - avg


def gated_backward(
    const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
    const index_t[:, :, ::1] argmax, const floating[:, :, ::1] gate, const floating[:, :, ::1] diff,
    floating[:, :, ::1] dx, double[:, ::1] dw, const floating[::1] w, int kh, int kw, int sh, int sw,
):
    """Gated pooling backward: dx (P, H, W), every element written; dw[p, k] = plane p's
    share of d loss / d w[k] (dz = dy * diff * g * (1 - g), dw[k] += dz * window[k])."""
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p, oh, ow
    cdef int i, j, k, pos
    cdef floating inv = <floating>(1.0 / (kh * kw)), d, g, dz, share
    cdef floating* corner
    cdef const floating* window
    cdef double* acc
    if P == 0 or H == 0 or W == 0:
        return
    with nogil:
        for p in range(P):
            memset(&dx[p, 0, 0], 0, H * W * sizeof(floating))
            acc = &dw[p, 0]
            for k in range(kh * kw):
                acc[k] = 0
            for oh in range(OH):
                for ow in range(OW):
                    d = dy[p, oh, ow]
                    g = gate[p, oh, ow]
                    dz = d * diff[p, oh, ow] * g * (1 - g)
                    share = (1 - g) * d * inv
                    corner = &dx[p, oh * sh, ow * sw]
                    window = &x[p, oh * sh, ow * sw]
                    for i in range(kh):
                        for j in range(kw):
                            k = i * kw + j
                            corner[i * W + j] += share + dz * w[k]
                            acc[k] = acc[k] + <double>dz * window[i * W + j]
                    pos = argmax[p, oh, ow]
                    corner[(pos // kw) * W + pos % kw] += g * d
