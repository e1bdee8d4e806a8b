# cython: language_level=3
"""Conv2D kernels: our float32 matrix product and Winograd F(2x2, 3x3) transforms.

``sgemm`` / ``sgemm_batch``: C = A @ B (or C += A @ B) in float32 with the
register-blocked micro-kernel of ``_gemm.h`` (AVX-512, AVX2 + FMA or plain C,
picked at run time).  Any strides for A and B; C's rows must be contiguous.

Winograd F(2x2, 3x3) (Lavin and Gray 2016) for 3x3 stride-1 convolution: the
output is cut into 2x2 tiles; tile t = (n * TH + th) * TW + tw reads the 4x4
input patch whose top-left corner is (2 * th - ph, 2 * tw - pw) (zeros outside
the image), TH = ceil(OH / 2), TW = ceil(OW / 2).  With

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

V = B^T d B per patch d, U = G w G^T per filter w, M = U V summed over input
channels (16 matrix products, one per element xi = 4 * r + s of the 4x4
transformed tile), and the output tile is A^T M A.  Backward applies the
adjoints: dM = A dY A^T, dV = U^T dM, dx += B dV B^T (patches overlap),
dU = dM V^T.

Array layouts (C-contiguous): V, dV (16, C, T); M, dM (16, O, T); U (16, O, C).
The caller (``minicnn/layers/conv.py``) validates shapes and dtypes.
"""
from cython cimport floating

import numpy as np


cdef extern from "_gemm.h" nogil:
    int mc_sgemm_batch(int which, Py_ssize_t nb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       const float* A, Py_ssize_t sa, Py_ssize_t rsa, Py_ssize_t csa,
                       const float* B, Py_ssize_t sb, Py_ssize_t rsb, Py_ssize_t csb,
                       float* C, Py_ssize_t sc, Py_ssize_t ldc, int accumulate, const float* packed_a)
    ctypedef struct mc_kernel_t:
        int mr
        int nr
    int mc_gemm_pick(int which, mc_kernel_t* kern)
    Py_ssize_t mc_packed_size(Py_ssize_t nb, Py_ssize_t M, Py_ssize_t K, int mr)
    void mc_pack_a_all(Py_ssize_t nb, Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t sa,
                       Py_ssize_t rsa, Py_ssize_t csa, int mr, float* pa)

KERNELS = {"plain": 0, "avx2": 1, "avx512": 2}


def gemm_kernel(int which=-1):
    """Name of the micro-kernel ``which`` selects (-1: the best this CPU runs), or None."""
    cdef mc_kernel_t kern
    picked = mc_gemm_pick(which, &kern)
    for name, code in KERNELS.items():
        if code == picked:
            return name
    return None


cdef int _mr(int kernel) except -1:
    cdef mc_kernel_t kern
    if mc_gemm_pick(kernel, &kern) < 0:
        raise RuntimeError(f"sgemm: kernel {kernel} cannot run on this CPU")
    return kern.mr


def pack_a(const float[:, :, :] A, int kernel=-1):
    """A (nb, M, K) packed for sgemm_batch's ``packed_a`` with the same kernel:
    a flat float32 array, for an A multiplied into many B's (Winograd's
    transformed filters, once per chunk of images)."""
    cdef Py_ssize_t nb = A.shape[0], M = A.shape[1], K = A.shape[2]
    cdef int mr = _mr(kernel)
    out = np.empty(max(1, mc_packed_size(nb, M, K, mr)), dtype=np.float32)
    cdef float[::1] pa = out
    if nb * M * K:
        with nogil:
            mc_pack_a_all(nb, M, K, &A[0, 0, 0], A.strides[0] // sizeof(float),
                          A.strides[1] // sizeof(float), A.strides[2] // sizeof(float), mr, &pa[0])
    return out


def sgemm_batch(const float[:, :, :] A, const float[:, :, :] B, float[:, :, :] C,
                bint accumulate=False, int kernel=-1, const float[::1] packed_a=None):
    """C[b] = A[b] @ B[b] (or +=) for every b.  Shapes: A (nb, M, K), B (nb, K, N), C (nb, M, N).

    ``packed_a``: pack_a(A, kernel), to skip packing A again; A must be the
    matrices it was made from (only its shape is checked)."""
    cdef Py_ssize_t nb = A.shape[0], M = A.shape[1], K = A.shape[2], N = B.shape[2]
    cdef int status = 0
    cdef const float* pa = NULL
    if B.shape[0] != nb or C.shape[0] != nb or B.shape[1] != K or C.shape[1] != M or C.shape[2] != N:
        raise ValueError("sgemm_batch: shapes do not match")
    if packed_a is not None:
        if packed_a.shape[0] != max(1, mc_packed_size(nb, M, K, _mr(kernel))):
            raise ValueError("sgemm_batch: packed_a was packed for another shape or kernel")
        pa = &packed_a[0]
    if N > 1 and C.strides[2] != sizeof(float):
        raise ValueError("sgemm_batch: C's rows must be contiguous")
    if nb == 0 or M == 0 or N == 0:
        return
    with nogil:
        status = mc_sgemm_batch(kernel, nb, M, N, K,
                                &A[0, 0, 0] if K > 0 else NULL, A.strides[0] // sizeof(float),
                                A.strides[1] // sizeof(float), A.strides[2] // sizeof(float),
                                &B[0, 0, 0] if K > 0 else NULL, B.strides[0] // sizeof(float),
                                B.strides[1] // sizeof(float), B.strides[2] // sizeof(float),
                                &C[0, 0, 0], C.strides[0] // sizeof(float), C.strides[1] // sizeof(float),
                                accumulate, pa)
    if status != 0:
        raise RuntimeError(f"sgemm: kernel {kernel} cannot run on this CPU, or out of memory")


def sgemm(const float[:, :] A, const float[:, :] B, float[:, :] C,
          bint accumulate=False, int kernel=-1, const float[::1] packed_a=None):
    """C = A @ B (or C += A @ B).  Shapes: A (M, K), B (K, N), C (M, N);
    ``packed_a``: pack_a(A[None], kernel)."""
    sgemm_batch(A[None], B[None], C[None], accumulate, kernel, packed_a)


# ------------------------------------------------------------- Winograd --

cdef extern from "_winograd.h" nogil:
    Py_ssize_t mc_wino_scratch(Py_ssize_t H, Py_ssize_t W, int ph, int pw)
    void mc_wino_input_f32(const float* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                           int ph, int pw, float* X, Py_ssize_t xs, Py_ssize_t T, float* scratch)
    void mc_wino_input_f64(const double* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                           int ph, int pw, double* X, Py_ssize_t xs, Py_ssize_t T, double* scratch)
    int mc_wino_input_avx512(const float* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             int ph, int pw, float* X, Py_ssize_t xs, Py_ssize_t T, float* scratch)
    int mc_wino_output_avx512(const float* X, Py_ssize_t xs, Py_ssize_t T, const float* bias, float* y,
                              Py_ssize_t N, Py_ssize_t O, Py_ssize_t OH, Py_ssize_t OW, int relu)
    int mc_wino_input_adjoint_avx512(const float* X, Py_ssize_t xs, Py_ssize_t T, float* dx,
                                     Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int ph, int pw)
    int mc_wino_output_adjoint_avx512(const float* dy, const float* yr, Py_ssize_t N, Py_ssize_t O,
                                      Py_ssize_t OH, Py_ssize_t OW, float* X, Py_ssize_t xs, Py_ssize_t T,
                                      double* db)
    void mc_wino_output_f32(const float* X, Py_ssize_t xs, Py_ssize_t T, const float* bias,
                            float* y, Py_ssize_t N, Py_ssize_t O, Py_ssize_t OH, Py_ssize_t OW,
                            int relu, float* scratch)
    void mc_wino_output_f64(const double* X, Py_ssize_t xs, Py_ssize_t T, const double* bias,
                            double* y, Py_ssize_t N, Py_ssize_t O, Py_ssize_t OH, Py_ssize_t OW,
                            int relu, double* scratch)
    void mc_wino_output_adjoint_f32(const float* dy, const float* yr, Py_ssize_t N, Py_ssize_t O,
                                    Py_ssize_t OH, Py_ssize_t OW, float* X, Py_ssize_t xs, Py_ssize_t T,
                                    double* db, float* scratch)
    void mc_wino_output_adjoint_f64(const double* dy, const double* yr, Py_ssize_t N, Py_ssize_t O,
                                    Py_ssize_t OH, Py_ssize_t OW, double* X, Py_ssize_t xs, Py_ssize_t T,
                                    double* db, double* scratch)
    void mc_wino_input_adjoint_f32(const float* X, Py_ssize_t xs, Py_ssize_t T, float* dx,
                                   Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int ph, int pw,
                                   float* scratch)
    void mc_wino_input_adjoint_f64(const double* X, Py_ssize_t xs, Py_ssize_t T, double* dx,
                                   Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int ph, int pw,
                                   double* scratch)

from libc.stdlib cimport malloc, free


cdef Py_ssize_t _matrix_stride(const floating[:, :, :] X, Py_ssize_t rows, Py_ssize_t tiles, str name) except -1:
    """Stride (elements) between X's 16 matrices; checks X is (16, rows, tiles), rows contiguous."""
    if X.shape[0] != 16 or X.shape[1] != rows or X.shape[2] != tiles:
        raise ValueError(f"{name}: expected shape (16, {rows}, {tiles}), got ({X.shape[0]}, {X.shape[1]}, {X.shape[2]})")
    if X.strides[2] != sizeof(floating) or X.strides[1] != tiles * sizeof(floating):
        raise ValueError(f"{name}: each of the 16 matrices must be C-contiguous")
    return X.strides[0] // sizeof(floating)


cdef floating* _scratch(Py_ssize_t H, Py_ssize_t W, int ph, int pw, floating* like) except NULL:
    cdef floating* s = <floating*>malloc(mc_wino_scratch(H, W, ph, pw) * sizeof(floating))
    if s == NULL:
        raise MemoryError()
    return s


def winograd_input(const floating[:, :, :, ::1] x, floating[:, :, :] V, int ph, int pw, bint simd=True):
    """V = B^T d B for every 4x4 input patch.  Shapes: x (N, C, H, W) -> V (16, C, N*TH*TW).

    float32 planes up to 32 padded columns wide take the AVX-512 path when the
    CPU has it (same bits); ``simd=False`` forces the portable loops (tests)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t T = N * ((H + 2 * ph - 1) // 2) * ((W + 2 * pw - 1) // 2)
    cdef Py_ssize_t xs = _matrix_stride(V, C, T, "winograd_input")
    cdef floating* s
    if N * C * T == 0:
        return
    s = _scratch(H, W, ph, pw, &V[0, 0, 0])
    with nogil:
        if floating is float:
            if not (simd and mc_wino_input_avx512(&x[0, 0, 0, 0], N, C, H, W, ph, pw, &V[0, 0, 0], xs, T, s)):
                mc_wino_input_f32(&x[0, 0, 0, 0], N, C, H, W, ph, pw, &V[0, 0, 0], xs, T, s)
        else:
            mc_wino_input_f64(&x[0, 0, 0, 0], N, C, H, W, ph, pw, &V[0, 0, 0], xs, T, s)
    free(s)


def winograd_input_adjoint(const floating[:, :, :] dV, floating[:, :, :, ::1] dx, int ph, int pw,
                           bint simd=True):
    """dx = sum over patches of B dV B^T (adjoint of winograd_input), overwritten.

    float32 planes up to 32 padded columns take the AVX-512 path when the CPU
    has it (same bits but NaN payloads); ``simd=False`` forces the portable loops.

    Shapes: dV (16, C, N*TH*TW) -> dx (N, C, H, W)."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t T = N * ((H + 2 * ph - 1) // 2) * ((W + 2 * pw - 1) // 2)
    cdef Py_ssize_t xs = _matrix_stride(dV, C, T, "winograd_input_adjoint")
    cdef floating* s
    if N * C * T == 0:
        return
    s = _scratch(H, W, ph, pw, &dx[0, 0, 0, 0])
    with nogil:
        if floating is float:
            if not (simd and mc_wino_input_adjoint_avx512(&dV[0, 0, 0], xs, T, &dx[0, 0, 0, 0], N, C, H, W, ph, pw)):
                mc_wino_input_adjoint_f32(&dV[0, 0, 0], xs, T, &dx[0, 0, 0, 0], N, C, H, W, ph, pw, s)
        else:
            mc_wino_input_adjoint_f64(&dV[0, 0, 0], xs, T, &dx[0, 0, 0, 0], N, C, H, W, ph, pw, s)
    free(s)


def winograd_output(const floating[:, :, :] M, const floating[::1] bias, floating[:, :, :, ::1] y,
                    bint relu=False, bint simd=True):
    """y = A^T M A + bias for every 2x2 output tile, or max(that, 0) with relu
    (NaN kept).  float32 rows up to 32 wide take the AVX-512 path when the CPU
    has it (same bits but NaN payloads); ``simd=False`` forces the portable loops.

    Shapes: M (16, O, N*TH*TW) -> y (N, O, OH, OW)."""
    cdef Py_ssize_t N = y.shape[0], O = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t T = N * ((OH + 1) // 2) * ((OW + 1) // 2)
    cdef Py_ssize_t xs = _matrix_stride(M, O, T, "winograd_output")
    cdef floating* s
    if bias.shape[0] != O:
        raise ValueError("winograd_output: bias must have O elements")
    if N * O * T == 0:
        return
    s = _scratch(OH + 2, OW + 2, 0, 0, &y[0, 0, 0, 0])
    with nogil:
        if floating is float:
            if not (simd and mc_wino_output_avx512(&M[0, 0, 0], xs, T, &bias[0], &y[0, 0, 0, 0], N, O, OH, OW, relu)):
                mc_wino_output_f32(&M[0, 0, 0], xs, T, &bias[0], &y[0, 0, 0, 0], N, O, OH, OW, relu, s)
        else:
            mc_wino_output_f64(&M[0, 0, 0], xs, T, &bias[0], &y[0, 0, 0, 0], N, O, OH, OW, relu, s)
    free(s)


def winograd_output_adjoint(const floating[:, :, :, ::1] dy, floating[:, :, :] dM, double[::1] db,
                            const floating[:, :, :, ::1] relu_out=None, bint simd=True):
    """dM = A dY A^T for every 2x2 output tile (adjoint of winograd_output, zero
    where the tile hangs over the output), and db[o] += the sum of dY over
    channel o.  dY = dy, or with ``relu_out`` (the rectified output of a
    forward with relu) dy * (relu_out > 0).

    float32 rows up to 32 wide take the AVX-512 path when the CPU has it
    (same dM bits, db added up in another order); ``simd=False`` forces the
    portable loops (tests).

    Shapes: dy, relu_out (N, O, OH, OW) -> dM (16, O, N*TH*TW); db (O,)."""
    cdef Py_ssize_t N = dy.shape[0], O = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t T = N * ((OH + 1) // 2) * ((OW + 1) // 2)
    cdef Py_ssize_t xs = _matrix_stride(dM, O, T, "winograd_output_adjoint")
    cdef const floating* yr = NULL
    cdef floating* s
    if db.shape[0] != O:
        raise ValueError("winograd_output_adjoint: db must have O elements")
    if relu_out is not None:
        if any(relu_out.shape[i] != dy.shape[i] for i in range(4)):
            raise ValueError("winograd_output_adjoint: relu_out must have dy's shape")
        if N * O * OH * OW:
            yr = &relu_out[0, 0, 0, 0]
    if N * O * T == 0:
        return
    s = _scratch(OH + 2, OW + 2, 0, 0, &dM[0, 0, 0])
    with nogil:
        if floating is float:
            if not (simd and mc_wino_output_adjoint_avx512(&dy[0, 0, 0, 0], yr, N, O, OH, OW,
                                                           &dM[0, 0, 0], xs, T, &db[0])):
                mc_wino_output_adjoint_f32(&dy[0, 0, 0, 0], yr, N, O, OH, OW, &dM[0, 0, 0], xs, T, &db[0], s)
        else:
            mc_wino_output_adjoint_f64(&dy[0, 0, 0, 0], yr, N, O, OH, OW, &dM[0, 0, 0], xs, T, &db[0], s)
    free(s)
