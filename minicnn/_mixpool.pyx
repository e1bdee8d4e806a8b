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
from libc.math cimport exp, expf, fabs, fabsf
from libc.stdint cimport int32_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from minicnn._poolrows cimport axpy_step, gate_step, max_step, sigmoid_row, spread_step

ctypedef fused index_t:
    uint8_t
    int32_t


cdef inline void _pool_row(
    const floating* base, Py_ssize_t W, Py_ssize_t OW, int kh, int kw, int sw,
    floating* best, int32_t* at, floating* total, floating* z, const floating* w,
) noexcept nogil:
    """One output row's windows (top row at ``base``): their max, switch and sum,
    and with ``w`` (else NULL) the gate's input ``z = w . window``.

    Window offset by window offset (minicnn/_poolrows.h: branch-free and
    vectorised); each sum adds in row-major order."""
    cdef Py_ssize_t ow
    cdef int i, j, k
    cdef const floating* src
    for ow in range(OW):
        best[ow] = base[ow * sw]
        at[ow] = 0
        total[ow] = 0
        if w != NULL:
            z[ow] = 0
    for i in range(kh):
        for j in range(kw):
            k = i * kw + j
            src = base + i * W + j
            max_step(src, sw, best, at, total, OW, k)
            if w != NULL:
                axpy_step(src, sw, z, OW, w[k])


cdef inline floating _exp_neg_abs(floating z) noexcept nogil:
    """exp(-|z|), in z's type."""
    if floating is float:
        return expf(-fabsf(z))
    return exp(-fabs(z))


cdef void* _scratch(Py_ssize_t nbytes) except NULL:
    cdef void* buf = malloc(nbytes if nbytes > 0 else 1)
    if buf == NULL:
        raise MemoryError()
    return buf


cdef Py_ssize_t* _offsets(int kh, int kw, Py_ssize_t W) except NULL:
    """offset[k] = (k // kw) * W + k % kw: window offset k as a distance in the plane."""
    cdef Py_ssize_t* offset = <Py_ssize_t*>_scratch(kh * kw * sizeof(Py_ssize_t))
    cdef int k
    for k in range(kh * kw):
        offset[k] = (k // kw) * W + k % kw
    return offset


cdef inline void _hit_switches(floating* row, const floating* hit, const int32_t* at, const Py_ssize_t* offset,
                               Py_ssize_t OW, int sw) noexcept nogil:
    """Each window of the output row whose top-left is row + ow * sw: its switch += hit[ow]."""
    cdef Py_ssize_t ow
    for ow in range(OW):
        row[ow * sw + offset[at[ow]]] += hit[ow]


def mixed_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y, index_t[:, :, ::1] argmax, floating[:, :, ::1] diff,
    double a, int kh, int kw, int sh, int sw,
):
    """Mixed pooling forward.  Shape: x (P, H, W) -> y, argmax, diff (max - avg) (P, OH, OW)."""
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2], OH = y.shape[1], OW = y.shape[2], p, oh, ow
    cdef floating mix = <floating>a, inv = <floating>(1.0 / (kh * kw)), avg, one = 1
    if P == 0 or OH == 0 or OW == 0:
        return
    cdef floating* best = <floating*>_scratch(2 * OW * sizeof(floating))
    cdef floating* total = best + OW
    cdef int32_t* at = <int32_t*>_scratch(OW * sizeof(int32_t))
    with nogil:
        for p in range(P):
            for oh in range(OH):
                _pool_row(&x[p, oh * sh, 0], W, OW, kh, kw, sw, best, at, total, NULL, NULL)
                for ow in range(OW):
                    avg = total[ow] * inv
                    y[p, oh, ow] = mix * best[ow] + (one - mix) * avg
                    diff[p, oh, ow] = best[ow] - avg
                    argmax[p, oh, ow] = <index_t>at[ow]
    free(best)
    free(at)


def mixed_backward(
    const floating[:, :, ::1] dy, const index_t[:, :, ::1] argmax, const floating[:, :, ::1] diff,
    floating[:, :, ::1] dx, double[::1] da, double a, int kh, int kw, int sh, int sw,
):
    """Mixed pooling backward: dx (P, H, W), every element written; da[p] = sum of dy * diff over plane p.

    Per output row: each window element gets ``(1 - a) dy / K``, plus ``a dy`` at the switch."""
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p, oh, ow
    cdef int i, j, k
    cdef floating mix = <floating>a, inv = <floating>((1.0 - a) / (kh * kw)), g
    cdef floating* dst
    if P == 0 or H == 0 or W == 0:
        return
    cdef floating* share = <floating*>_scratch(2 * OW * sizeof(floating))
    cdef floating* hit = share + OW
    cdef int32_t* at = <int32_t*>_scratch(OW * sizeof(int32_t))
    cdef double* lane = <double*>_scratch(OW * sizeof(double))
    cdef Py_ssize_t* offset = _offsets(kh, kw, W)
    with nogil:
        for p in range(P):
            memset(&dx[p, 0, 0], 0, H * W * sizeof(floating))
            for ow in range(OW):
                lane[ow] = 0
            for oh in range(OH):
                for ow in range(OW):
                    g = dy[p, oh, ow]
                    lane[ow] = lane[ow] + <double>g * diff[p, oh, ow]
                    share[ow] = g * inv
                    hit[ow] = mix * g
                    at[ow] = argmax[p, oh, ow]
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        spread_step(&dx[p, oh * sh + i, j], sw, share, OW)
                _hit_switches(&dx[p, oh * sh, 0], hit, at, offset, OW, sw)
            da[p] = 0
            for ow in range(OW):
                da[p] += lane[ow]
    free(share)
    free(at)
    free(lane)
    free(offset)


def gated_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y, index_t[:, :, ::1] argmax,
    floating[:, :, ::1] gate, floating[:, :, ::1] diff, const floating[::1] w, int kh, int kw, int sh, int sw,
):
    """Gated pooling forward.  Shape: x (P, H, W), w (kh * kw,) -> y, argmax, gate, diff (P, OH, OW)."""
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2], OH = y.shape[1], OW = y.shape[2], p, oh, ow
    cdef floating inv = <floating>(1.0 / (kh * kw)), avg, g, one = 1
    if P == 0 or OH == 0 or OW == 0:
        return
    cdef floating* best = <floating*>_scratch(4 * OW * sizeof(floating))
    cdef floating* total = best + OW
    cdef floating* z = best + 2 * OW
    cdef floating* e = best + 3 * OW
    cdef int32_t* at = <int32_t*>_scratch(OW * sizeof(int32_t))
    with nogil:
        for p in range(P):
            for oh in range(OH):
                _pool_row(&x[p, oh * sh, 0], W, OW, kh, kw, sw, best, at, total, z, &w[0])
                for ow in range(OW):
                    e[ow] = _exp_neg_abs(z[ow])
                sigmoid_row(z, e, &gate[p, oh, 0], OW)
                for ow in range(OW):
                    g = gate[p, oh, ow]
                    avg = total[ow] * inv
                    y[p, oh, ow] = g * best[ow] + (one - g) * avg
                    diff[p, oh, ow] = best[ow] - avg
                    argmax[p, oh, ow] = <index_t>at[ow]
    free(best)
    free(at)


def gated_backward(
    const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
    const index_t[:, :, ::1] argmax, const floating[:, :, ::1] gate, const floating[:, :, ::1] diff,
    floating[:, :, ::1] dx, double[:, ::1] dw, const floating[::1] w, int kh, int kw, int sh, int sw,
):
    """Gated pooling backward: dx (P, H, W), every element written; dw[p, k] = plane p's
    share of d loss / d w[k].

    Per window, ``dz = dy (max - avg) g (1 - g)``; element k gets
    ``(1 - g) dy / K + dz w[k]``, plus ``g dy`` at the switch, and
    ``dw[k] += dz window[k]`` (summed per column of windows in double, then per plane)."""
    cdef Py_ssize_t P = dx.shape[0], H = dx.shape[1], W = dx.shape[2]
    cdef Py_ssize_t OH = dy.shape[1], OW = dy.shape[2], p, oh, ow
    cdef int i, j, k, K = kh * kw
    cdef floating inv = <floating>(1.0 / K), d, g, wk, one = 1
    cdef floating* dst
    cdef const floating* src
    cdef double* acc
    if P == 0 or H == 0 or W == 0:
        return
    cdef floating* share = <floating*>_scratch(3 * OW * sizeof(floating))
    cdef floating* hit = share + OW
    cdef floating* dz = share + 2 * OW
    cdef int32_t* at = <int32_t*>_scratch(OW * sizeof(int32_t))
    cdef double* lane = <double*>_scratch(K * OW * sizeof(double))
    cdef Py_ssize_t* offset = _offsets(kh, kw, W)
    with nogil:
        for p in range(P):
            memset(&dx[p, 0, 0], 0, H * W * sizeof(floating))
            memset(lane, 0, K * OW * sizeof(double))
            for oh in range(OH):
                for ow in range(OW):
                    d = dy[p, oh, ow]
                    g = gate[p, oh, ow]
                    dz[ow] = d * diff[p, oh, ow] * g * (one - g)
                    share[ow] = (one - g) * d * inv
                    hit[ow] = g * d
                    at[ow] = argmax[p, oh, ow]
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        gate_step(&dx[p, oh * sh + i, j], &x[p, oh * sh + i, j], sw, share, dz,
                                  lane + k * OW, OW, w[k])
                _hit_switches(&dx[p, oh * sh, 0], hit, at, offset, OW, sw)
            for k in range(K):
                acc = lane + k * OW
                dw[p, k] = 0
                for ow in range(OW):
                    dw[p, k] += acc[ow]
    free(share)
    free(at)
    free(lane)
    free(offset)
