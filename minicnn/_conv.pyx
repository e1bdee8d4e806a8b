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
from libc.string cimport memset


cdef extern from "_gemm.h" nogil:
    int mc_sgemm(int which, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                 const float* A, Py_ssize_t rsa, Py_ssize_t csa,
                 const float* B, Py_ssize_t rsb, Py_ssize_t csb,
                 float* C, Py_ssize_t ldc, int accumulate)
    ctypedef struct mc_kernel_t:
        int mr
        int nr
    int mc_gemm_pick(int which, mc_kernel_t* kern)

KERNELS = {"plain": 0, "avx2": 1, "avx512": 2}


def gemm_kernel(int which=-1):
    """Name of the micro-kernel ``which`` selects (-1: the best this CPU runs), or None."""
    cdef mc_kernel_t kern
    picked = mc_gemm_pick(which, &kern)
    for name, code in KERNELS.items():
        if code == picked:
            return name
    return None


def sgemm_batch(const float[:, :, :] A, const float[:, :, :] B, float[:, :, :] C,
                bint accumulate=False, int kernel=-1):
    """C[b] = A[b] @ B[b] (or +=) for every b.  Shapes: A (nb, M, K), B (nb, K, N), C (nb, M, N)."""
    cdef Py_ssize_t nb = A.shape[0], M = A.shape[1], K = A.shape[2], N = B.shape[2], b
    cdef int status = 0
    if B.shape[0] != nb or C.shape[0] != nb or B.shape[1] != K or C.shape[1] != M or C.shape[2] != N:
        raise ValueError("sgemm_batch: shapes do not match")
    if N > 1 and C.strides[2] != sizeof(float):
        raise ValueError("sgemm_batch: C's rows must be contiguous")
    if nb == 0 or M == 0 or N == 0:
        return
    with nogil:
        for b in range(nb):
            status = mc_sgemm(kernel, M, N, K,
                              &A[b, 0, 0] if K > 0 else NULL,
                              A.strides[1] // sizeof(float), A.strides[2] // sizeof(float),
                              &B[b, 0, 0] if K > 0 else NULL,
                              B.strides[1] // sizeof(float), B.strides[2] // sizeof(float),
                              &C[b, 0, 0], C.strides[1] // sizeof(float), accumulate)
            if status != 0:
                break
    if status != 0:
        raise RuntimeError(f"sgemm: kernel {kernel} cannot run on this CPU, or out of memory")


def sgemm(const float[:, :] A, const float[:, :] B, float[:, :] C,
          bint accumulate=False, int kernel=-1):
    """C = A @ B (or C += A @ B).  Shapes: A (M, K), B (K, N), C (M, N)."""
    sgemm_batch(A[None], B[None], C[None], accumulate, kernel)


# ------------------------------------------------------------- Winograd --

cdef inline void _bt_rows(floating* d) noexcept nogil:
    """d (4x4, row-major) <- B^T d."""
    cdef int s
    cdef floating d0, d1, d2, d3
    for s in range(4):
        d0 = d[s]; d1 = d[4 + s]; d2 = d[8 + s]; d3 = d[12 + s]
        d[s] = d0 - d2
        d[4 + s] = d1 + d2
        d[8 + s] = d2 - d1
        d[12 + s] = d1 - d3


def winograd_input(const floating[:, :, :, ::1] x, floating[:, :, ::1] V, int ph, int pw):
    """V = B^T d B for every 4x4 input patch.  Shapes: x (N, C, H, W) -> V (16, C, N*TH*TW)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t T = V.shape[2], TH, TW, n, c, th, tw, t, ih, iw, plane = C * T
    cdef int r, s
    cdef floating d[16]
    cdef floating d0, d1, d2, d3
    cdef const floating* xp
    cdef floating* vp
    if N == 0 or C == 0:
        return
    TH = (H + 2 * ph - 2 + 1) // 2
    TW = (W + 2 * pw - 2 + 1) // 2
    with nogil:
        for n in range(N):
            for c in range(C):
                xp = &x[n, c, 0, 0]
                for th in range(TH):
                    for tw in range(TW):
                        ih = 2 * th - ph
                        iw = 2 * tw - pw
                        if ih >= 0 and iw >= 0 and ih + 4 <= H and iw + 4 <= W:
                            for r in range(4):
                                for s in range(4):
                                    d[4 * r + s] = xp[(ih + r) * W + iw + s]
                        else:
                            for r in range(4):
                                for s in range(4):
                                    if 0 <= ih + r < H and 0 <= iw + s < W:
                                        d[4 * r + s] = xp[(ih + r) * W + iw + s]
                                    else:
                                        d[4 * r + s] = 0
                        _bt_rows(d)
                        t = (n * TH + th) * TW + tw
                        vp = &V[0, c, t]
                        for r in range(4):      # (B^T d) B: the same combination along each row
                            d0 = d[4 * r]; d1 = d[4 * r + 1]; d2 = d[4 * r + 2]; d3 = d[4 * r + 3]
                            vp[(4 * r) * plane] = d0 - d2
                            vp[(4 * r + 1) * plane] = d1 + d2
                            vp[(4 * r + 2) * plane] = d2 - d1
                            vp[(4 * r + 3) * plane] = d1 - d3


def winograd_input_adjoint(const floating[:, :, ::1] dV, floating[:, :, :, ::1] dx, int ph, int pw):
    """dx = sum over patches of B dV B^T (adjoint of winograd_input).

    Shapes: dV (16, C, N*TH*TW) -> dx (N, C, H, W), overwritten."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t T = dV.shape[2], TH, TW, n, c, th, tw, t, ih, iw, plane = C * T
    cdef int r, s
    cdef floating e[16]
    cdef floating v0, v1, v2, v3
    cdef const floating* vp
    cdef floating* xp
    if N == 0 or C == 0 or H == 0 or W == 0:
        return
    TH = (H + 2 * ph - 2 + 1) // 2
    TW = (W + 2 * pw - 2 + 1) // 2
    with nogil:
        for n in range(N):
            for c in range(C):
                xp = &dx[n, c, 0, 0]
                memset(xp, 0, H * W * sizeof(floating))
                for th in range(TH):
                    for tw in range(TW):
                        t = (n * TH + th) * TW + tw
                        vp = &dV[0, c, t]
                        # B v = (v0, v1 - v2 + v3, -v0 + v1 + v2, -v3), along each row, then down each column
                        for r in range(4):
                            v0 = vp[(4 * r) * plane]; v1 = vp[(4 * r + 1) * plane]
                            v2 = vp[(4 * r + 2) * plane]; v3 = vp[(4 * r + 3) * plane]
                            e[4 * r] = v0
                            e[4 * r + 1] = v1 - v2 + v3
                            e[4 * r + 2] = -v0 + v1 + v2
                            e[4 * r + 3] = -v3
                        for s in range(4):
                            v0 = e[s]; v1 = e[4 + s]; v2 = e[8 + s]; v3 = e[12 + s]
                            e[s] = v0
                            e[4 + s] = v1 - v2 + v3
                            e[8 + s] = -v0 + v1 + v2
                            e[12 + s] = -v3
                        ih = 2 * th - ph
                        iw = 2 * tw - pw
                        for r in range(4):
                            if 0 <= ih + r < H:
                                for s in range(4):
                                    if 0 <= iw + s < W:
                                        xp[(ih + r) * W + iw + s] += e[4 * r + s]


def winograd_output(const floating[:, :, ::1] M, const floating[::1] bias, floating[:, :, :, ::1] y):
    """y = A^T M A + bias for every 2x2 output tile.  Shapes: M (16, O, N*TH*TW) -> y (N, O, OH, OW)."""
    cdef Py_ssize_t N = y.shape[0], O = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t T = M.shape[2], TH = (OH + 1) // 2, TW = (OW + 1) // 2, n, o, th, tw, t
    cdef Py_ssize_t plane = O * T
    cdef int r
    cdef floating a[8]
    cdef floating m0, m1, m2, m3, b
    cdef const floating* mp
    cdef floating* yp
    if N == 0 or O == 0:
        return
    with nogil:
        for n in range(N):
            for o in range(O):
                yp = &y[n, o, 0, 0]
                b = bias[o]
                for th in range(TH):
                    for tw in range(TW):
                        t = (n * TH + th) * TW + tw
                        mp = &M[0, o, t]
                        for r in range(4):      # M A along each row
                            m0 = mp[(4 * r) * plane]; m1 = mp[(4 * r + 1) * plane]
                            m2 = mp[(4 * r + 2) * plane]; m3 = mp[(4 * r + 3) * plane]
                            a[2 * r] = m0 + m1 + m2
                            a[2 * r + 1] = m1 - m2 - m3
                        for r in range(2):      # A^T (.) down each column
                            m0 = a[r]; m1 = a[2 + r]; m2 = a[4 + r]; m3 = a[6 + r]
                            if 2 * tw + r < OW:
                                yp[(2 * th) * OW + 2 * tw + r] = m0 + m1 + m2 + b
                                if 2 * th + 1 < OH:
                                    yp[(2 * th + 1) * OW + 2 * tw + r] = m1 - m2 - m3 + b


def winograd_output_adjoint(const floating[:, :, :, ::1] dy, floating[:, :, ::1] dM):
    """dM = A dY A^T for every 2x2 output tile (adjoint of winograd_output, zero
    where the tile hangs over the output).  Shapes: dy (N, O, OH, OW) -> dM (16, O, N*TH*TW)."""
    cdef Py_ssize_t N = dy.shape[0], O = dy.shape[1], OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t T = dM.shape[2], TH = (OH + 1) // 2, TW = (OW + 1) // 2, n, o, th, tw, t
    cdef Py_ssize_t plane = O * T
    cdef int r
    cdef floating g[4]
    cdef floating h[8]
    cdef const floating* yp
    cdef floating* mp
    if N == 0 or O == 0:
        return
    with nogil:
        for n in range(N):
            for o in range(O):
                yp = &dy[n, o, 0, 0]
                for th in range(TH):
                    for tw in range(TW):
                        for r in range(4):
                            g[r] = 0
                        g[0] = yp[(2 * th) * OW + 2 * tw]
                        if 2 * tw + 1 < OW:
                            g[1] = yp[(2 * th) * OW + 2 * tw + 1]
                        if 2 * th + 1 < OH:
                            g[2] = yp[(2 * th + 1) * OW + 2 * tw]
                            if 2 * tw + 1 < OW:
                                g[3] = yp[(2 * th + 1) * OW + 2 * tw + 1]
                        for r in range(2):      # A (.) down each column: (g0, g0 + g1, g0 - g1, -g1)
                            h[r] = g[r]
                            h[2 + r] = g[r] + g[2 + r]
                            h[4 + r] = g[r] - g[2 + r]
                            h[6 + r] = -g[2 + r]
                        t = (n * TH + th) * TW + tw
                        mp = &dM[0, o, t]
                        for r in range(4):      # (.) A^T along each row
                            mp[(4 * r) * plane] = h[2 * r]
                            mp[(4 * r + 1) * plane] = h[2 * r] + h[2 * r + 1]
                            mp[(4 * r + 2) * plane] = h[2 * r] - h[2 * r + 1]
                            mp[(4 * r + 3) * plane] = -h[2 * r + 1]
