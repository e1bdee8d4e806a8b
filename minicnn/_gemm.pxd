# cython: language_level=3
# Declarations of _gemm.h for the kernel modules that multiply (_conv, _im2col),
# and `gemm`: one product call for float32 (our kernel) and float64 (a plain loop).
from cython cimport floating

cdef extern from "_gemm.h" nogil:
    int mc_sgemm_batch(int which, Py_ssize_t nb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       const float* A, Py_ssize_t sa, Py_ssize_t rsa, Py_ssize_t csa,
                       const float* B, Py_ssize_t sb, Py_ssize_t rsb, Py_ssize_t csb,
                       float* C, Py_ssize_t sc, Py_ssize_t ldc, int accumulate, const float* packed_a)
    void mc_dgemm_batch(Py_ssize_t nb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                        const double* A, Py_ssize_t sa, Py_ssize_t rsa, Py_ssize_t csa,
                        const double* B, Py_ssize_t sb, Py_ssize_t rsb, Py_ssize_t csb,
                        double* C, Py_ssize_t sc, Py_ssize_t ldc, int accumulate)
    ctypedef struct mc_kernel_t:
        int mr
        int nr
    int mc_gemm_pick(int which, mc_kernel_t* kern)
    Py_ssize_t mc_packed_size(Py_ssize_t nb, Py_ssize_t M, Py_ssize_t K, int mr)
    void mc_pack_a_all(Py_ssize_t nb, Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t sa,
                       Py_ssize_t rsa, Py_ssize_t csa, int mr, float* pa)


cdef inline int gemm(Py_ssize_t nb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                     const floating* A, Py_ssize_t sa, Py_ssize_t rsa, Py_ssize_t csa,
                     const floating* B, Py_ssize_t sb, Py_ssize_t rsb, Py_ssize_t csb,
                     floating* C, Py_ssize_t sc, Py_ssize_t ldc, int accumulate, const float* packed) noexcept nogil:
    """C[b] (+)= A[b] @ B[b], b < nb (element strides); float32 on _gemm.h's kernel
    (``packed``: A packed for it, or NULL), float64 on the plain loop.  0, or -1."""
    if floating is float:
        return mc_sgemm_batch(-1, nb, M, N, K, A, sa, rsa, csa, B, sb, rsb, csb, C, sc, ldc,
                              accumulate, packed)
    mc_dgemm_batch(nb, M, N, K, A, sa, rsa, csa, B, sb, rsb, csb, C, sc, ldc, accumulate)
    return 0
