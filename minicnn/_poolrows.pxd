# cython: language_level=3
# Declarations of _poolrows.h for _blurpool and _mixpool, and one fused wrapper per loop.
from cython cimport floating
from libc.stdint cimport int32_t

cdef extern from "_poolrows.h" nogil:
    void mc_max_step_f32(const float* src, Py_ssize_t s, float* best, int32_t* at, float* total,
                         Py_ssize_t n, int32_t k)
    void mc_max_step_f64(const double* src, Py_ssize_t s, double* best, int32_t* at, double* total,
                         Py_ssize_t n, int32_t k)
    void mc_axpy_step_f32(const float* src, Py_ssize_t s, float* acc, Py_ssize_t n, float w)
    void mc_axpy_step_f64(const double* src, Py_ssize_t s, double* acc, Py_ssize_t n, double w)
    void mc_spread_step_f32(float* dst, Py_ssize_t s, const float* share, Py_ssize_t n)
    void mc_spread_step_f64(double* dst, Py_ssize_t s, const double* share, Py_ssize_t n)
    void mc_gate_step_f32(float* dst, const float* src, Py_ssize_t s, const float* share, const float* dz,
                          double* lane, Py_ssize_t n, float w)
    void mc_gate_step_f64(double* dst, const double* src, Py_ssize_t s, const double* share, const double* dz,
                          double* lane, Py_ssize_t n, double w)

    void mc_sigmoid_row_f32(const float* z, const float* e, float* g, Py_ssize_t n)
    void mc_sigmoid_row_f64(const double* z, const double* e, double* g, Py_ssize_t n)


cdef inline void sigmoid_row(const floating* z, const floating* e, floating* g, Py_ssize_t n) noexcept nogil:
    """g = sigmoid(z), given e = exp(-|z|)."""
    if floating is float:
        mc_sigmoid_row_f32(z, e, g, n)
    else:
        mc_sigmoid_row_f64(z, e, g, n)


cdef inline void max_step(const floating* src, Py_ssize_t s, floating* best, int32_t* at, floating* total,
                          Py_ssize_t n, int32_t k) noexcept nogil:
    """Running max and switch over one window offset k of n windows (total += the elements unless NULL)."""
    if floating is float:
        mc_max_step_f32(src, s, best, at, total, n, k)
    else:
        mc_max_step_f64(src, s, best, at, total, n, k)


cdef inline void axpy_step(const floating* src, Py_ssize_t s, floating* acc, Py_ssize_t n, floating w) noexcept nogil:
    """acc += w * the elements at one window offset."""
    if floating is float:
        mc_axpy_step_f32(src, s, acc, n, w)
    else:
        mc_axpy_step_f64(src, s, acc, n, w)


cdef inline void spread_step(floating* dst, Py_ssize_t s, const floating* share, Py_ssize_t n) noexcept nogil:
    """dst += share, at one window offset."""
    if floating is float:
        mc_spread_step_f32(dst, s, share, n)
    else:
        mc_spread_step_f64(dst, s, share, n)


cdef inline void gate_step(floating* dst, const floating* src, Py_ssize_t s, const floating* share,
                           const floating* dz, double* lane, Py_ssize_t n, floating w) noexcept nogil:
    """dst += share + dz * w; lane += dz * the elements, at one window offset."""
    if floating is float:
        mc_gate_step_f32(dst, src, s, share, dz, lane, n, w)
    else:
        mc_gate_step_f64(dst, src, s, share, dz, lane, n, w)
