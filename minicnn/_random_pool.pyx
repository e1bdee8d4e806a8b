# cython: language_level=3
"""Random pooling kernels: fractional max pooling and stochastic pooling.

Every kernel works on a stack of P independent planes, ``x`` of shape
``(P, H, W)`` with ``P = N * C``, serially and without the GIL; no two planes
share an output element, so ``minicnn.threads`` runs ranges of planes on
several threads.  The random numbers are drawn by the caller
(``minicnn/layers/random_pool.py``, from the layer's ``rng``) and passed in,
so the kernels are deterministic functions of their arguments.  The callers
validate everything first; the loops trust their inputs.

The plane loops are C, in ``_random_pool_impl.h`` (``_random_pool.h`` says why).  Both
layers store, per output element, the flat position ``i * W + j`` in its
plane of the element that produced it (int32; -1: none, for a stochastic
window without a positive element), and share one backward, ``scatter_backward``.

Fractional max pooling (PyTorch's ``fractional_max_pool2d`` on the CPU): plane
``p``'s samples are ``samples[p, 0]`` for the width and ``samples[p, 1]`` for the
height; along an axis of input size ``L``, output size ``O`` and kernel ``k``,
``alpha = (L - k) / (O - 1)`` and region ``o < O - 1`` starts at
``int((o + u) * alpha) - int(u * alpha)``, the last at ``L - k``, computed in the
input's precision as PyTorch does.  The maximum follows PyTorch's rule
``if (v > best) || isnan(v)`` from ``best = -inf``: the first maximum in
row-major order, the last NaN.

Stochastic pooling (Zeiler and Fergus 2013), windows without padding:
weights ``w_i = a_i`` where ``a_i > 0``, else 0 (negative values and NaN weigh
nothing).  Training, with ``u`` in [0, 1) per window: with ``S = sum w`` and the
running sums ``c_i`` in row-major order, both in double, the pick is the first
``i`` with ``c_i > u * S`` (the last positive element if rounding leaves none),
so element ``i`` is picked with probability ``w_i / S``; output ``a_pick``, or 0
and no pick when ``S = 0``.  Evaluation: ``sum w_i^2 / S``, 0 when ``S = 0``.
"""
from cython cimport floating
from libc.stdint cimport int32_t
from libc.stdlib cimport free, malloc


cdef extern from "_random_pool.h" nogil:
    void mc_fractional_plane_f32(const float* x, float* y, int32_t* index, const Py_ssize_t* rows,
                                 const Py_ssize_t* cols, float* run, int32_t* run_at, float* part,
                                 int32_t* part_at, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                                 Py_ssize_t kh, Py_ssize_t kw)
    void mc_fractional_plane_f64(const double* x, double* y, int32_t* index, const Py_ssize_t* rows,
                                 const Py_ssize_t* cols, double* run, int32_t* run_at, double* part,
                                 int32_t* part_at, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                                 Py_ssize_t kh, Py_ssize_t kw)
    void mc_stochastic_plane_f32(const float* x, const double* u, float* y, int32_t* index, Py_ssize_t W,
                                 Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                                 Py_ssize_t sw)
    void mc_stochastic_plane_f64(const double* x, const double* u, double* y, int32_t* index, Py_ssize_t W,
                                 Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                                 Py_ssize_t sw)
    void mc_stochastic_plane_2x2_f32(const float* x, const double* u, float* y, int32_t* index, Py_ssize_t W,
                                     Py_ssize_t OH, Py_ssize_t OW)
    void mc_stochastic_plane_2x2_f64(const double* x, const double* u, double* y, int32_t* index, Py_ssize_t W,
                                     Py_ssize_t OH, Py_ssize_t OW)
    void mc_stochastic_eval_plane_2x2_f32(const float* x, float* y, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW)
    void mc_stochastic_eval_plane_2x2_f64(const double* x, double* y, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW)
    void mc_stochastic_eval_plane_f32(const float* x, float* y, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw)
    void mc_stochastic_eval_plane_f64(const double* x, double* y, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw)
    void mc_scatter_plane_f32(const float* dy, const int32_t* index, float* dx, Py_ssize_t HW, Py_ssize_t L)
    void mc_scatter_plane_f64(const double* dy, const int32_t* index, double* dx, Py_ssize_t HW, Py_ssize_t L)


# ------------------------------------------------------------- fractional --

cdef inline void _intervals(floating u, Py_ssize_t size, Py_ssize_t out, Py_ssize_t k,
                            Py_ssize_t* start) noexcept nogil:
    """PyTorch's generate_intervals: the start of each of ``out`` regions of ``k`` along an axis,
    in the precision of ``floating``."""
    cdef Py_ssize_t o
    cdef floating alpha
    if out > 1:
        alpha = <floating>(size - k) / <floating>(out - 1)
        for o in range(out - 1):
            start[o] = <Py_ssize_t>((<floating>o + u) * alpha) - <Py_ssize_t>(u * alpha)
    start[out - 1] = size - k


def fractional_max_forward(
    const floating[:, :, ::1] x, const floating[:, ::1] samples, floating[:, :, ::1] y,
    int32_t[:, :, ::1] index, int kh, int kw,
):
    """Fractional max pooling forward.

    Shape: x (P, H, W), samples (P, 2) as (width, height) pairs in [0, 1)
    -> y, index (P, OH, OW); needs OH + kh - 1 <= H and OW + kw - 1 <= W.
    """
    cdef Py_ssize_t P = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    if P == 0 or OH == 0 or OW == 0:
        return
    # scratch: region starts; one row of runs, then the plane's rows of parts
    cdef Py_ssize_t* rows = <Py_ssize_t*>malloc((OH + OW) * sizeof(Py_ssize_t))
    cdef floating* run = <floating*>malloc((W + H * OW) * sizeof(floating))
    cdef int32_t* run_at = <int32_t*>malloc((W + H * OW) * sizeof(int32_t))
    if rows == NULL or run == NULL or run_at == NULL:
        free(rows)
        free(run)
        free(run_at)
        raise MemoryError()
    cdef Py_ssize_t* cols = rows + OH
    with nogil:
        for p in range(P):
            _intervals(samples[p, 0], W, OW, kw, cols)
            _intervals(samples[p, 1], H, OH, kh, rows)
            if floating is float:
                mc_fractional_plane_f32(&x[p, 0, 0], &y[p, 0, 0], &index[p, 0, 0], rows, cols,
                                        run, run_at, run + W, run_at + W, H, W, OH, OW, kh, kw)
            else:
                mc_fractional_plane_f64(&x[p, 0, 0], &y[p, 0, 0], &index[p, 0, 0], rows, cols,
                                        run, run_at, run + W, run_at + W, H, W, OH, OW, kh, kw)
    free(rows)
    free(run)
    free(run_at)


# ------------------------------------------------------------- stochastic --

cdef inline bint _unrolled(bint fast, int kh, int kw, int sh, int sw) noexcept nogil:
    """Whether the stochastic kernels take their unrolled loop: 2x2 windows, stride 2, ``fast``."""
    return fast and kh == 2 and kw == 2 and sh == 2 and sw == 2


def stochastic_forward(
    const floating[:, :, ::1] x, const double[:, :, ::1] u, floating[:, :, ::1] y,
    int32_t[:, :, ::1] index, int kh, int kw, int sh, int sw, bint fast=True,
):
    """Stochastic pooling, training: one element per window, picked with probability w_i / sum w.

    Shape: x (P, H, W), u (P, OH, OW) uniform in [0, 1) -> y, index (P, OH, OW).
    2x2 windows with stride 2 run an unrolled loop, the same bit for bit;
    ``fast=False`` forces the generic one (for the tests).
    """
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    cdef bint two = _unrolled(fast, kh, kw, sh, sw)
    if P == 0 or OH == 0 or OW == 0:
        return
    with nogil:
        for p in range(P):
            if floating is float and two:
                mc_stochastic_plane_2x2_f32(&x[p, 0, 0], &u[p, 0, 0], &y[p, 0, 0], &index[p, 0, 0], W, OH, OW)
            elif floating is double and two:
                mc_stochastic_plane_2x2_f64(&x[p, 0, 0], &u[p, 0, 0], &y[p, 0, 0], &index[p, 0, 0], W, OH, OW)
            elif floating is float:
                mc_stochastic_plane_f32(&x[p, 0, 0], &u[p, 0, 0], &y[p, 0, 0], &index[p, 0, 0],
                                        W, OH, OW, kh, kw, sh, sw)
            else:
                mc_stochastic_plane_f64(&x[p, 0, 0], &u[p, 0, 0], &y[p, 0, 0], &index[p, 0, 0],
                                        W, OH, OW, kh, kw, sh, sw)


def stochastic_eval_forward(
    const floating[:, :, ::1] x, floating[:, :, ::1] y, int kh, int kw, int sh, int sw, bint fast=True,
):
    """Stochastic pooling, evaluation: sum w_i^2 / sum w per window (0 without a positive element).

    Shape: x (P, H, W) -> y (P, OH, OW).  ``fast`` as in stochastic_forward.
    """
    cdef Py_ssize_t P = x.shape[0], W = x.shape[2]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], p
    cdef bint two = _unrolled(fast, kh, kw, sh, sw)
    if P == 0 or OH == 0 or OW == 0:
        return
    with nogil:
        for p in range(P):
            if floating is float and two:
                mc_stochastic_eval_plane_2x2_f32(&x[p, 0, 0], &y[p, 0, 0], W, OH, OW)
            elif floating is double and two:
                mc_stochastic_eval_plane_2x2_f64(&x[p, 0, 0], &y[p, 0, 0], W, OH, OW)
            elif floating is float:
                mc_stochastic_eval_plane_f32(&x[p, 0, 0], &y[p, 0, 0], W, OH, OW, kh, kw, sh, sw)
            else:
                mc_stochastic_eval_plane_f64(&x[p, 0, 0], &y[p, 0, 0], W, OH, OW, kh, kw, sh, sw)


# --------------------------------------------------------------- backward --

def scatter_backward(const floating[:, :, ::1] dy, const int32_t[:, :, ::1] index, floating[:, :, ::1] dx):
    """dx (P, H, W), zeroed here, += dy at each output's flat position (none where index < 0).

    Shape: dy, index (P, OH, OW) -> dx (P, H, W).
    """
    cdef Py_ssize_t P = dx.shape[0], HW = dx.shape[1] * dx.shape[2], L = dy.shape[1] * dy.shape[2], p
    if P == 0 or HW == 0:
        return
    with nogil:
        for p in range(P):
            if floating is float:
                mc_scatter_plane_f32(&dy[p, 0, 0] if L else NULL, &index[p, 0, 0] if L else NULL,
                                     &dx[p, 0, 0], HW, L)
            else:
                mc_scatter_plane_f64(&dy[p, 0, 0] if L else NULL, &index[p, 0, 0] if L else NULL,
                                     &dx[p, 0, 0], HW, L)
