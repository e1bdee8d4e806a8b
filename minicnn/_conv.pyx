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


from minicnn._gemm cimport gemm, mc_gemm_pick, mc_kernel_t, mc_pack_a_all, mc_packed_size, mc_sgemm_batch
from minicnn._isa cimport mc_isa_set
from minicnn import isa


def _set_isa(int level):
    """Cap this module's kernels at instruction-set level ``level`` (minicnn.isa calls it)."""
    if not mc_isa_set(level):
        raise ValueError(f"instruction-set level {level} cannot run on this CPU")


isa.register(_set_isa)

KERNELS = {"plain": 0, "avx2": 1, "avx512": 2}


def gemm_kernel(int which=-1):
    """Name of the micro-kernel ``which`` selects (-1: the best the instruction-set level allows, minicnn.isa), or None."""
    cdef mc_kernel_t kern
    picked = mc_gemm_pick(which, &kern)
    for name, code in KERNELS.items():
        if code == picked:
            return name
    return None


cdef int _mr(int kernel) except -1:
    cdef mc_kernel_t kern
    if mc_gemm_pick(kernel, &kern) < 0:
        raise RuntimeError(f"sgemm: kernel {kernel} is above the instruction-set level (minicnn.isa)")
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
        if packed_a.shape[0] != max(1, mc_packed_size(nb if A.strides[0] else 1, M, K, _mr(kernel))):
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
        raise RuntimeError(f"sgemm: kernel {kernel} is above the instruction-set level (minicnn.isa), or out of memory")


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
from libc.string cimport memset

from minicnn._team cimport largest_chunk, team_run


# The four transforms for either float type: float32 takes the AVX-512 path
# when ``simd`` and the instruction-set level (_isa.h) and geometry allow it, else the portable loops.
# Shared by the Python entry points below and the layer's team tasks.

cdef inline void _input(const floating* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                        int ph, int pw, floating* X, Py_ssize_t xs, Py_ssize_t T, floating* scratch,
                        bint simd) noexcept nogil:
    if floating is float:
        if not (simd and mc_wino_input_avx512(x, N, C, H, W, ph, pw, X, xs, T, scratch)):
            mc_wino_input_f32(x, N, C, H, W, ph, pw, X, xs, T, scratch)
    else:
        mc_wino_input_f64(x, N, C, H, W, ph, pw, X, xs, T, scratch)


cdef inline void _input_adjoint(const floating* X, Py_ssize_t xs, Py_ssize_t T, floating* dx,
                                Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int ph, int pw,
                                floating* scratch, bint simd) noexcept nogil:
    if floating is float:
        if not (simd and mc_wino_input_adjoint_avx512(X, xs, T, dx, N, C, H, W, ph, pw)):
            mc_wino_input_adjoint_f32(X, xs, T, dx, N, C, H, W, ph, pw, scratch)
    else:
        mc_wino_input_adjoint_f64(X, xs, T, dx, N, C, H, W, ph, pw, scratch)


cdef inline void _output(const floating* X, Py_ssize_t xs, Py_ssize_t T, const floating* bias, floating* y,
                         Py_ssize_t N, Py_ssize_t O, Py_ssize_t OH, Py_ssize_t OW, bint relu,
                         floating* scratch, bint simd) noexcept nogil:
    if floating is float:
        if not (simd and mc_wino_output_avx512(X, xs, T, bias, y, N, O, OH, OW, relu)):
            mc_wino_output_f32(X, xs, T, bias, y, N, O, OH, OW, relu, scratch)
    else:
        mc_wino_output_f64(X, xs, T, bias, y, N, O, OH, OW, relu, scratch)


cdef inline void _output_adjoint(const floating* dy, const floating* yr, Py_ssize_t N, Py_ssize_t O,
                                 Py_ssize_t OH, Py_ssize_t OW, floating* X, Py_ssize_t xs, Py_ssize_t T,
                                 double* db, floating* scratch, bint simd) noexcept nogil:
    if floating is float:
        if not (simd and mc_wino_output_adjoint_avx512(dy, yr, N, O, OH, OW, X, xs, T, db)):
            mc_wino_output_adjoint_f32(dy, yr, N, O, OH, OW, X, xs, T, db, scratch)
    else:
        mc_wino_output_adjoint_f64(dy, yr, N, O, OH, OW, X, xs, T, db, scratch)


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

    float32 planes up to 32 padded columns wide take the AVX-512 path at the
    AVX-512 level (same bits); ``simd=False`` forces the portable loops (tests)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t T = N * ((H + 2 * ph - 1) // 2) * ((W + 2 * pw - 1) // 2)
    cdef Py_ssize_t xs = _matrix_stride(V, C, T, "winograd_input")
    cdef floating* s
    if N * C * T == 0:
        return
    s = _scratch(H, W, ph, pw, &V[0, 0, 0])
    with nogil:
        _input(&x[0, 0, 0, 0], N, C, H, W, ph, pw, &V[0, 0, 0], xs, T, s, simd)
    free(s)


def winograd_input_adjoint(const floating[:, :, :] dV, floating[:, :, :, ::1] dx, int ph, int pw,
                           bint simd=True):
    """dx = sum over patches of B dV B^T (adjoint of winograd_input), overwritten.

    float32 planes up to 32 padded columns take the AVX-512 path at the AVX-512
    level (same bits but NaN payloads); ``simd=False`` forces the portable loops.

    Shapes: dV (16, C, N*TH*TW) -> dx (N, C, H, W)."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t T = N * ((H + 2 * ph - 1) // 2) * ((W + 2 * pw - 1) // 2)
    cdef Py_ssize_t xs = _matrix_stride(dV, C, T, "winograd_input_adjoint")
    cdef floating* s
    if N * C * T == 0:
        return
    s = _scratch(H, W, ph, pw, &dx[0, 0, 0, 0])
    with nogil:
        _input_adjoint(&dV[0, 0, 0], xs, T, &dx[0, 0, 0, 0], N, C, H, W, ph, pw, s, simd)
    free(s)


def winograd_output(const floating[:, :, :] M, const floating[::1] bias, floating[:, :, :, ::1] y,
                    bint relu=False, bint simd=True):
    """y = A^T M A + bias for every 2x2 output tile, or max(that, 0) with relu
    (NaN kept).  float32 rows up to 32 wide take the AVX-512 path at the AVX-512
    level (same bits but NaN payloads); ``simd=False`` forces the portable loops.

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
        _output(&M[0, 0, 0], xs, T, &bias[0], &y[0, 0, 0, 0], N, O, OH, OW, relu, s, simd)
    free(s)


def winograd_output_adjoint(const floating[:, :, :, ::1] dy, floating[:, :, :] dM, double[::1] db,
                            const floating[:, :, :, ::1] relu_out=None, bint simd=True):
    """dM = A dY A^T for every 2x2 output tile (adjoint of winograd_output, zero
    where the tile hangs over the output), and db[o] += the sum of dY over
    channel o.  dY = dy, or with ``relu_out`` (the rectified output of a
    forward with relu) dy * (relu_out > 0).

    float32 rows up to 32 wide take the AVX-512 path at the AVX-512 level
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
        _output_adjoint(&dy[0, 0, 0, 0], yr, N, O, OH, OW, &dM[0, 0, 0], xs, T, &db[0], s, simd)
    free(s)


# ---------------------------------------- Winograd layer, on the team --
# The whole layer, chunk by chunk, on minicnn's team of threads (_team.h):
# part p of `parts` takes chunks p, p + parts, ... of the batch, with its own
# scratch (V and M matrices, its slices of v and m) and, backward, its own
# dU and db sums, which the caller adds up in part order.  Shapes: x (N, C,
# H, W), U (16, O, C), U^T (16, C, O), y and dy (N, O, OH, OW); chunk i holds
# images bounds[i]..bounds[i+1]-1.


cdef Py_ssize_t _stride(Py_ssize_t rows, Py_ssize_t t, Py_ssize_t itemsize) noexcept nogil:
    """Elements between the 16 matrices of (rows, t): rows * t rounded up to
    64 bytes, then to an odd multiple of 64 bytes, so that matrices never
    start a multiple of 4 KB apart (the transforms stream through all 16 at
    once, and such matrices would fall in the same cache sets)."""
    cdef Py_ssize_t unit = 64 // itemsize
    cdef Py_ssize_t stride = (rows * t + unit - 1) // unit * unit
    if (stride // unit) % 2 == 0:
        stride += unit
    return stride


def matrix_stride(Py_ssize_t rows, Py_ssize_t t, Py_ssize_t itemsize):
    """Elements between the 16 (rows, t) matrices of a transform's buffer."""
    return _stride(rows, t, itemsize)


cdef struct WinoTask:
    const void* x
    const void* u           # U (forward) or U^T (backward's input gradient)
    const float* packed     # float32: u packed, else NULL
    const void* bias
    void* y
    const void* dy
    const void* relu_out    # NULL, or forward's rectified output: dy is masked by it > 0
    void* dx                # NULL: no input gradient
    void* du                # (parts, 16, O, C): each part's dU sum, zeroed by the caller
    double* db              # (parts, O): each part's db sum, zeroed by the caller
    void* v                 # per part: v + part * v_part, the V (and dV) matrices
    void* m                 # per part: m + part * m_part, the M (and dM) matrices
    Py_ssize_t v_part, m_part
    const Py_ssize_t* bounds
    Py_ssize_t chunks, C, O, H, W, OH, OW, per
    int ph, pw
    bint relu, simd, is_double
    int failed


cdef void _wino_forward_chunks(WinoTask* t, floating* y, int part, int parts) noexcept nogil:
    cdef const floating* x = <const floating*>t.x
    cdef floating* v = <floating*>t.v + part * t.v_part
    cdef floating* m = <floating*>t.m + part * t.m_part
    cdef Py_ssize_t i, n0, n, T, vs, ms, C = t.C, O = t.O
    cdef floating* s_in = <floating*>malloc(mc_wino_scratch(t.H, t.W, t.ph, t.pw) * sizeof(floating))
    cdef floating* s_out = <floating*>malloc(mc_wino_scratch(t.OH + 2, t.OW + 2, 0, 0) * sizeof(floating))
    if s_in == NULL or s_out == NULL:
        t.failed = 1
    i = part
    while i < t.chunks and not t.failed:
        n0 = t.bounds[i]
        n = t.bounds[i + 1] - n0
        T = n * t.per
        vs, ms = _stride(C, T, sizeof(floating)), _stride(O, T, sizeof(floating))
        _input(x + n0 * C * t.H * t.W, n, C, t.H, t.W, t.ph, t.pw, v, vs, T, s_in, t.simd)
        if gemm(16, O, T, C, <const floating*>t.u, O * C, C, 1, v, vs, T, 1, m, ms, T, 0, t.packed):
            t.failed = 1
            break
        _output(m, ms, T, <const floating*>t.bias, y + n0 * O * t.OH * t.OW, n, O, t.OH, t.OW, t.relu,
                s_out, t.simd)
        i += parts
    free(s_in)
    free(s_out)


cdef void _wino_forward_part(void* ctx, int part, int parts) noexcept nogil:
    cdef WinoTask* t = <WinoTask*>ctx
    if t.is_double:
        _wino_forward_chunks(t, <double*>t.y, part, parts)
    else:
        _wino_forward_chunks(t, <float*>t.y, part, parts)


cdef void _wino_backward_chunks(WinoTask* t, floating* du, int part, int parts) noexcept nogil:
    cdef const floating* x = <const floating*>t.x
    cdef const floating* dy = <const floating*>t.dy
    cdef const floating* yr = <const floating*>t.relu_out
    cdef floating* dx = <floating*>t.dx
    cdef floating* v = <floating*>t.v + part * t.v_part
    cdef floating* m = <floating*>t.m + part * t.m_part
    cdef double* db = t.db + part * t.O
    cdef Py_ssize_t i, n0, n, T, vs, ms, C = t.C, O = t.O, HW = t.H * t.W, OHW = t.OH * t.OW
    cdef floating* s_in = <floating*>malloc(mc_wino_scratch(t.H, t.W, t.ph, t.pw) * sizeof(floating))
    cdef floating* s_out = <floating*>malloc(mc_wino_scratch(t.OH + 2, t.OW + 2, 0, 0) * sizeof(floating))
    du += part * 16 * O * C
    if s_in == NULL or s_out == NULL:
        t.failed = 1
    i = part
    while i < t.chunks and not t.failed:
        n0 = t.bounds[i]
        n = t.bounds[i + 1] - n0
        T = n * t.per
        vs, ms = _stride(C, T, sizeof(floating)), _stride(O, T, sizeof(floating))
        _input(x + n0 * C * HW, n, C, t.H, t.W, t.ph, t.pw, v, vs, T, s_in, t.simd)
        _output_adjoint(dy + n0 * O * OHW, yr + n0 * O * OHW if yr != NULL else NULL,
                        n, O, t.OH, t.OW, m, ms, T, db, s_out, t.simd)
        # dU += dM @ V^T
        if gemm(16, O, C, T, m, ms, T, 1, v, vs, 1, T, du, O * C, C, 1, NULL):
            t.failed = 1
            break
        if dx != NULL:      # dV = U^T @ dM, in V's buffer, then its adjoint transform onto dx
            if gemm(16, C, T, O, <const floating*>t.u, C * O, O, 1, m, ms, T, 1, v, vs, T, 0, t.packed):
                t.failed = 1
                break
            _input_adjoint(v, vs, T, dx + n0 * C * HW, n, C, t.H, t.W, t.ph, t.pw, s_in, t.simd)
        i += parts
    free(s_in)
    free(s_out)


cdef void _wino_backward_part(void* ctx, int part, int parts) noexcept nogil:
    cdef WinoTask* t = <WinoTask*>ctx
    if t.is_double:
        _wino_backward_chunks(t, <double*>t.du, part, parts)
    else:
        _wino_backward_chunks(t, <float*>t.du, part, parts)


cdef Py_ssize_t _setup_wino(WinoTask* t, x, u, packed, const Py_ssize_t[::1] bounds, int parts,
                            int ph, int pw, Py_ssize_t O, v, m) except -1:
    """Fields forward and backward share, checked; returns the largest chunk's images."""
    cdef const float[::1] pk
    cdef Py_ssize_t b, N, C, H, W
    memset(t, 0, sizeof(WinoTask))
    N, C, H, W = x.shape
    if parts < 1:
        raise ValueError("winograd: parts must be at least 1")
    b = largest_chunk(bounds, N)
    t.C, t.O, t.H, t.W, t.ph, t.pw = C, O, H, W, ph, pw
    t.OH, t.OW = H + 2 * ph - 2, W + 2 * pw - 2
    if t.OH < 1 or t.OW < 1:
        raise ValueError("winograd: the 3x3 filter does not fit the padded input")
    t.per = ((t.OH + 1) // 2) * ((t.OW + 1) // 2)
    t.bounds = &bounds[0]
    t.chunks = bounds.shape[0] - 1
    t.is_double = x.itemsize == 8
    if packed is not None:
        if t.is_double:
            raise ValueError("winograd: packed filters are for float32")
        pk = packed
        t.packed = &pk[0]
    itemsize = x.itemsize
    t.v_part = 16 * _stride(C, b * t.per, itemsize)
    t.m_part = 16 * _stride(O, b * t.per, itemsize)
    if v.shape[0] < parts * t.v_part or m.shape[0] < parts * t.m_part:
        raise ValueError(f"winograd: scratch v, m need {parts * t.v_part} and {parts * t.m_part} elements")
    return b


def winograd_forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] u, packed,
                     const floating[::1] bias, floating[:, :, :, ::1] y,
                     floating[::1] v, floating[::1] m, const Py_ssize_t[::1] bounds, int parts,
                     int ph, int pw, bint relu=False, bint simd=True):
    """y = conv(x, w) + bias (max(., 0) with relu) by Winograd F(2x2, 3x3),
    chunk by chunk over ``parts`` threads.  u (16, O, C): the transformed
    filters; ``packed``: minicnn.layers.gemm.pack(u) or None.  Scratch v, m:
    parts * 16 * matrix_stride(C or O, b * TH * TW) elements (b: the largest chunk)."""
    cdef WinoTask t
    _setup_wino(&t, x, u, packed, bounds, parts, ph, pw, u.shape[1], v, m)
    if (u.shape[0] != 16 or u.shape[2] != t.C or bias.shape[0] != t.O or y.shape[0] != x.shape[0]
            or y.shape[1] != t.O or y.shape[2] != t.OH or y.shape[3] != t.OW):
        raise ValueError("winograd_forward: shapes of u, bias and y do not match x")
    if x.shape[0] * t.C * t.O == 0:
        return
    t.x, t.u, t.bias, t.y, t.v, t.m, t.relu, t.simd = &x[0, 0, 0, 0], &u[0, 0, 0], &bias[0], &y[0, 0, 0, 0], &v[0], &m[0], relu, simd
    with nogil:
        team_run(_wino_forward_part, &t, parts)
    if t.failed:
        raise MemoryError("winograd_forward: out of memory")


def winograd_backward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] ut, packed_t,
                      const floating[:, :, :, ::1] dy, relu_out, dx,
                      floating[:, :, :, ::1] du, double[:, ::1] db,
                      floating[::1] v, floating[::1] m, const Py_ssize_t[::1] bounds, int parts,
                      int ph, int pw, bint simd=True):
    """Gradients of winograd_forward's y, chunk by chunk over ``parts`` threads.

    dy (N, O, OH, OW), masked by relu_out > 0 when relu_out is given; dx (x's
    shape) overwritten, or None; ut (16, C, O) = U transposed, ``packed_t`` its
    pack or None.  Part p adds its chunks' dU into du[p] (16, O, C) and db into
    db[p] (O,), zeroed by the caller.  Scratch as winograd_forward's."""
    cdef WinoTask t
    cdef const floating[:, :, :, ::1] yr
    cdef floating[:, :, :, ::1] dxv
    _setup_wino(&t, x, ut, packed_t, bounds, parts, ph, pw, ut.shape[2], v, m)
    if ut.shape[0] != 16 or ut.shape[1] != t.C or any(dy.shape[i] != s for i, s in enumerate((x.shape[0], t.O, t.OH, t.OW))):
        raise ValueError("winograd_backward: shapes of ut and dy do not match x")
    if du.shape[0] < parts or du.shape[1] != 16 or du.shape[2] != t.O or du.shape[3] != t.C or db.shape[0] < parts or db.shape[1] != t.O:
        raise ValueError("winograd_backward: du must be (parts, 16, O, C) and db (parts, O)")
    if relu_out is not None:
        yr = relu_out
        if any(yr.shape[i] != dy.shape[i] for i in range(4)):
            raise ValueError("winograd_backward: relu_out must have dy's shape")
        t.relu_out = &yr[0, 0, 0, 0] if x.shape[0] else NULL
    if dx is not None:
        dxv = dx
        if any(dxv.shape[i] != x.shape[i] for i in range(4)):
            raise ValueError("winograd_backward: dx must have x's shape")
        t.dx = &dxv[0, 0, 0, 0] if dxv.size else NULL
    if x.shape[0] * t.C * t.O == 0:
        if dx is not None:
            dx[...] = 0
        return
    t.x, t.u, t.dy, t.du, t.db, t.v, t.m, t.simd = &x[0, 0, 0, 0], &ut[0, 0, 0], &dy[0, 0, 0, 0], &du[0, 0, 0, 0], &db[0, 0], &v[0], &m[0], simd
    with nogil:
        team_run(_wino_backward_part, &t, parts)
    if t.failed:
        raise MemoryError("winograd_backward: out of memory")


# ------------------------------------------- products shared out, on the team --

cdef struct Product:
    const float* A
    const float* B
    float* C
    Py_ssize_t M, N, K, rsa, csa, rsb, csb, ldc
    int accumulate


cdef struct ProductsTask:
    Product* products
    Py_ssize_t count
    int failed


cdef void _products_part(void* ctx, int part, int parts) noexcept nogil:
    """Products part, part + parts, ... of the task."""
    cdef ProductsTask* t = <ProductsTask*>ctx
    cdef Product* p
    cdef Py_ssize_t i = part
    while i < t.count:
        p = &t.products[i]
        if mc_sgemm_batch(-1, 1, p.M, p.N, p.K, p.A, 0, p.rsa, p.csa, p.B, 0, p.rsb, p.csb,
                          p.C, 0, p.ldc, p.accumulate, NULL):
            t.failed = 1
        i += parts


def sgemm_parts(list products, int parts):
    """C = A @ B (or C += A @ B) for every (A, B, C, accumulate) in ``products``,
    float32 2-D arrays (any strides for A and B; C's rows contiguous), shared
    out over ``parts`` threads of the team: part p runs products p, p + parts, ...
    The products must write disjoint parts of memory."""
    cdef Py_ssize_t i, count = len(products)
    cdef ProductsTask task
    cdef const float[:, :] a
    cdef const float[:, :] b
    cdef float[:, :] c
    views = []      # keeps every buffer alive until the products are done
    task.products = <Product*>malloc(max(1, count) * sizeof(Product))
    if task.products == NULL:
        raise MemoryError()
    task.count = 0
    task.failed = 0
    try:
        for A, B, C, accumulate in products:
            a, b, c = A, B, C
            views.append((a, b, c))
            if a.shape[1] != b.shape[0] or c.shape[0] != a.shape[0] or c.shape[1] != b.shape[1]:
                raise ValueError("sgemm_parts: shapes do not match")
            if c.shape[1] > 1 and c.strides[1] != sizeof(float):
                raise ValueError("sgemm_parts: C's rows must be contiguous")
            if c.shape[0] * c.shape[1] == 0:
                continue
            if a.shape[1] == 0:
                if not accumulate:
                    C[...] = 0
                continue
            i = task.count
            task.products[i].A, task.products[i].B, task.products[i].C = &a[0, 0], &b[0, 0], &c[0, 0]
            task.products[i].M, task.products[i].N, task.products[i].K = a.shape[0], b.shape[1], a.shape[1]
            task.products[i].rsa, task.products[i].csa = a.strides[0] // sizeof(float), a.strides[1] // sizeof(float)
            task.products[i].rsb, task.products[i].csb = b.strides[0] // sizeof(float), b.strides[1] // sizeof(float)
            task.products[i].ldc = c.strides[0] // sizeof(float)
            task.products[i].accumulate = bool(accumulate)
            task.count += 1
        with nogil:
            team_run(_products_part, &task, max(1, min(parts, <int>task.count)))
    finally:
        free(task.products)
    if task.failed:
        raise MemoryError("sgemm_parts: out of memory")
