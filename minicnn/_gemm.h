/* Single-precision matrix product C = A @ B (or C += A @ B) for Conv2D, in the
 * style of BLIS: A is packed into panels of MR rows, B is read in panels of
 * NR columns (in place when its rows are contiguous, else packed), and a
 * register-blocked micro-kernel computes one MR x NR block of C with FMAs.
 *
 * Why our own: Conv2D's products are small (M, K <= 128) and wide (N in the
 * thousands), and OpenBLAS's speed on them depends on which kernel it picked
 * (OPENBLAS_CORETYPE): 3x apart between its Haswell and SkylakeX kernels.
 *
 * The micro-kernel is chosen at run time, the best the instruction-set level
 * allows (mc_isa(), _isa.h: the CPU capped by MINICNN_ISA):
 *   avx512: 8 x 32 block, 16 zmm accumulators (AVX-512F)
 *   avx2:   6 x 16 block, 12 ymm accumulators (AVX2 + FMA)
 *   plain:  4 x 8 block, portable C (any CPU; the compiler vectorizes it)
 * plus, with AVX-512, a dot-product kernel for A @ B^T with both row-major
 * (B given as a transposed view, K >= 256), which needs no packing.
 * Each is compiled with a per-function target attribute, so the module itself
 * needs no -march flag and runs on any x86-64 CPU (other CPUs get plain only).
 * Packing uses AVX at level avx2 and up (a transpose: the same values).
 *
 * Layout: A element (i, k) at A[i * rsa + k * csa]; B element (k, j) at
 * B[k * rsb + j * csb]; C row-major with row stride ldc.  The packed kernels
 * sum over k in order within each KC block; the dot-product kernel keeps 16
 * partial sums.  Either way each entry is a sum of K products in float32.
 */
#ifndef MINICNN_GEMM_H
#define MINICNN_GEMM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "_isa.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MC_X86 1
#else
#define MC_X86 0
#endif

#define MC_NT_MIN_K 512  /* below, packing B (a transpose, 8 x 8 blocks at a time) costs less than the dot-product kernel's final sums */
#define MC_KC 128   /* k-block: a B panel (KC x NR) stays in L1 while A's panels stream past it */
#define MC_MAX_MR 8
#define MC_MAX_NR 32

enum { MC_GEMM_AUTO = -1, MC_GEMM_PLAIN = 0, MC_GEMM_AVX2 = 1, MC_GEMM_AVX512 = 2 };

/* One MR x NR block: C (ldc) = beta * C + sum_k pa[k*MR + i] * b[k*ldb + j]. */
typedef void (*mc_ukr_t)(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                         float *c, ptrdiff_t ldc, int beta);

static void mc_ukr_plain(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                         float *c, ptrdiff_t ldc, int beta)
{
    /* four rows of eight sums, one array each: small enough to stay in 16 SSE2 (or NEON)
     * registers; one 4 x 16 array made GCC shuffle and spill it (2 GFLOP/s) */
    float c0[8] = {0}, c1[8] = {0}, c2[8] = {0}, c3[8] = {0};
    ptrdiff_t k;
    int j;
    for (k = 0; k < K; k++) {
        const float *bk = b + k * ldb, *ak = pa + k * 4;
        float a0 = ak[0], a1 = ak[1], a2 = ak[2], a3 = ak[3];
        for (j = 0; j < 8; j++) {
            float bj = bk[j];
            c0[j] += a0 * bj;
            c1[j] += a1 * bj;
            c2[j] += a2 * bj;
            c3[j] += a3 * bj;
        }
    }
    for (j = 0; j < 8; j++) {
        c[j] = beta ? c[j] + c0[j] : c0[j];
        c[ldc + j] = beta ? c[ldc + j] + c1[j] : c1[j];
        c[2 * ldc + j] = beta ? c[2 * ldc + j] + c2[j] : c2[j];
        c[3 * ldc + j] = beta ? c[3 * ldc + j] + c3[j] : c3[j];
    }
}

#if MC_X86
/* The 6 x 16 block.  Row k of B is b + k * ldb, or b + btab[k * nseg] + off when
 * btab is given; row r of C is c + r * ldc, or c + ctab[r * nseg] + off when ctab
 * is given (as mc_ukr_avx512_rows below).  Inlined into each wrapper. */
__attribute__((target("avx2,fma"), always_inline))
static inline void mc_ukr_avx2_rows(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                                    const ptrdiff_t *btab, const ptrdiff_t *ctab, ptrdiff_t nseg,
                                    ptrdiff_t off, float *c, ptrdiff_t ldc, int beta)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    ptrdiff_t k;
    for (k = 0; k < K; k++) {
        const float *bk = b + (btab != NULL ? btab[k * nseg] + off : k * ldb), *ak = pa + k * 6;
        __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8), a;
        a = _mm256_broadcast_ss(ak + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(ak + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(ak + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(ak + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(ak + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(ak + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    /* rows one after another: through ctab, rows may overlap (windows that share pixels) */
#define MC_STORE8(row, lo, hi) do { float *cr = c + (ctab != NULL ? ctab[(row) * nseg] + off : (row) * ldc); \
        if (beta) { lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr)); hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8)); } \
        _mm256_storeu_ps(cr, lo); _mm256_storeu_ps(cr + 8, hi); } while (0)
    MC_STORE8(0, c00, c01); MC_STORE8(1, c10, c11); MC_STORE8(2, c20, c21);
    MC_STORE8(3, c30, c31); MC_STORE8(4, c40, c41); MC_STORE8(5, c50, c51);
#undef MC_STORE8
}

__attribute__((target("avx2,fma")))
static void mc_ukr_avx2(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                        float *c, ptrdiff_t ldc, int beta)
{
    mc_ukr_avx2_rows(K, pa, b, ldb, NULL, NULL, 0, 0, c, ldc, beta);
}

__attribute__((target("avx2,fma")))
static void mc_ukr_avx2_tab(ptrdiff_t K, const float *pa, const float *b, const ptrdiff_t *tab,
                            ptrdiff_t nseg, ptrdiff_t off, float *c, ptrdiff_t ldc, int beta)
{
    mc_ukr_avx2_rows(K, pa, b, 0, tab, NULL, nseg, off, c, ldc, beta);
}

__attribute__((target("avx2,fma")))
static void mc_ukr_avx2_ctab(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                             float *c, const ptrdiff_t *tab, ptrdiff_t nseg, ptrdiff_t off)
{
    mc_ukr_avx2_rows(K, pa, b, ldb, NULL, tab, nseg, off, c, 0, 1);
}

/* The 8 x 32 block.  Row k of B is b + k * ldb, or b + btab[k * nseg] + off when
 * btab is given; row r of C is c + r * ldc, or c + ctab[r * nseg] + off when ctab
 * is given (rows found through a table of offsets: mc_sgemm_tab, mc_sgemm_ctab).
 * With n < 32, only B's first n columns are read (the rest count as zero).  Inlined into
 * each wrapper below, so each loop has one form. */
__attribute__((target("avx512f"), always_inline))
static inline void mc_ukr_avx512_rows(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                                      const ptrdiff_t *btab, const ptrdiff_t *ctab, ptrdiff_t nseg,
                                      ptrdiff_t off, float *c, ptrdiff_t ldc, int beta, ptrdiff_t n)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00,
           c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u), m1 = (__mmask16)(n > 16 ? (1u << (n - 16)) - 1u : 0u);
    ptrdiff_t k;
    for (k = 0; k < K; k++) {
        const float *bk = b + (btab != NULL ? btab[k * nseg] + off : k * ldb), *ak = pa + k * 8;
        __m512 b0, b1, a;
        if (n < 32) {   /* a last panel of n columns, read in place under masks */
            b0 = _mm512_maskz_loadu_ps(m0, bk);
            b1 = _mm512_maskz_loadu_ps(m1, bk + 16);
        } else {
            b0 = _mm512_loadu_ps(bk);
            b1 = _mm512_loadu_ps(bk + 16);
        }
        a = _mm512_set1_ps(ak[0]); c00 = _mm512_fmadd_ps(a, b0, c00); c01 = _mm512_fmadd_ps(a, b1, c01);
        a = _mm512_set1_ps(ak[1]); c10 = _mm512_fmadd_ps(a, b0, c10); c11 = _mm512_fmadd_ps(a, b1, c11);
        a = _mm512_set1_ps(ak[2]); c20 = _mm512_fmadd_ps(a, b0, c20); c21 = _mm512_fmadd_ps(a, b1, c21);
        a = _mm512_set1_ps(ak[3]); c30 = _mm512_fmadd_ps(a, b0, c30); c31 = _mm512_fmadd_ps(a, b1, c31);
        a = _mm512_set1_ps(ak[4]); c40 = _mm512_fmadd_ps(a, b0, c40); c41 = _mm512_fmadd_ps(a, b1, c41);
        a = _mm512_set1_ps(ak[5]); c50 = _mm512_fmadd_ps(a, b0, c50); c51 = _mm512_fmadd_ps(a, b1, c51);
        a = _mm512_set1_ps(ak[6]); c60 = _mm512_fmadd_ps(a, b0, c60); c61 = _mm512_fmadd_ps(a, b1, c61);
        a = _mm512_set1_ps(ak[7]); c70 = _mm512_fmadd_ps(a, b0, c70); c71 = _mm512_fmadd_ps(a, b1, c71);
    }
    /* rows one after another: through ctab, rows may overlap (windows that share pixels) */
#define MC_STORE16(row, lo, hi) do { float *cr = c + (ctab != NULL ? ctab[(row) * nseg] + off : (row) * ldc); \
        if (beta) { lo = _mm512_add_ps(lo, _mm512_loadu_ps(cr)); hi = _mm512_add_ps(hi, _mm512_loadu_ps(cr + 16)); } \
        _mm512_storeu_ps(cr, lo); _mm512_storeu_ps(cr + 16, hi); } while (0)
    MC_STORE16(0, c00, c01); MC_STORE16(1, c10, c11); MC_STORE16(2, c20, c21); MC_STORE16(3, c30, c31);
    MC_STORE16(4, c40, c41); MC_STORE16(5, c50, c51); MC_STORE16(6, c60, c61); MC_STORE16(7, c70, c71);
#undef MC_STORE16
}

__attribute__((target("avx512f")))
static void mc_ukr_avx512(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                          float *c, ptrdiff_t ldc, int beta)
{
    mc_ukr_avx512_rows(K, pa, b, ldb, NULL, NULL, 0, 0, c, ldc, beta, 32);
}

/* B's row k at b + tab[k * nseg] + off: a matrix gathered from runs of b (mc_sgemm_tab). */
__attribute__((target("avx512f")))
static void mc_ukr_avx512_tab(ptrdiff_t K, const float *pa, const float *b, const ptrdiff_t *tab,
                              ptrdiff_t nseg, ptrdiff_t off, float *c, ptrdiff_t ldc, int beta)
{
    mc_ukr_avx512_rows(K, pa, b, 0, tab, NULL, nseg, off, c, ldc, beta, 32);
}

/* C's row r at c + tab[r * nseg] + off, added to (mc_sgemm_ctab). */
__attribute__((target("avx512f")))
static void mc_ukr_avx512_ctab(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                               float *c, const ptrdiff_t *tab, ptrdiff_t nseg, ptrdiff_t off)
{
    mc_ukr_avx512_rows(K, pa, b, ldb, NULL, tab, nseg, off, c, 0, 1, 32);
}

/* The first n < 32 columns of B only, read in place: a last, narrow panel
 * without packing it; C as in mc_ukr_avx512, all 32 columns written. */
__attribute__((target("avx512f")))
static void mc_ukr_avx512_edge(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb, ptrdiff_t n,
                               float *c, ptrdiff_t ldc)
{
    mc_ukr_avx512_rows(K, pa, b, ldb, NULL, NULL, 0, 0, c, ldc, 0, n);
}
#endif

#if MC_X86
/* The 16 horizontal sums of x[i][j], as one vector (element 4 i + j): a
 * transpose-and-add tree, 45 instructions where 16 separate reductions take
 * about 130. */
__attribute__((target("avx512f")))
static inline __m512 mc_sum16(__m512 x[4][4])
{
    __m512 y[8], z[4], w01, w23;
    int p;
    for (p = 0; p < 8; p++) {   /* each 128-bit lane: a0+a2, b0+b2, a1+a3, b1+b3 */
        __m512 a = x[p / 2][2 * (p % 2)], b = x[p / 2][2 * (p % 2) + 1];
        y[p] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    for (p = 0; p < 4; p++) {   /* each 128-bit lane: partial sums of vectors 4p..4p+3 */
        __m512d a = _mm512_castps_pd(y[2 * p]), b = _mm512_castps_pd(y[2 * p + 1]);
        z[p] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    w01 = _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
    w23 = _mm512_add_ps(_mm512_shuffle_f32x4(z[2], z[3], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_f32x4(z[2], z[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(w01, w23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* C (M x N, ldc) = beta * C + A B^T with A (M x K) and B (N x K) both row-major:
 * dot products along k, 16 at a time, in 4 x 4 blocks of C (16 zmm accumulators).
 * Used when B comes as a transposed view (the weight gradients' products),
 * where the packed path would spend more time transposing B than multiplying. */
__attribute__((target("avx512f")))
static void mc_sgemm_nt_avx512(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A, ptrdiff_t lda,
                               const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc, int beta)
{
    ptrdiff_t i0, j0, k, i, j;
    __mmask16 tail = (__mmask16)((1u << (K % 16)) - 1u);
    for (i0 = 0; i0 < M; i0 += 4)
        for (j0 = 0; j0 < N; j0 += 4) {
            ptrdiff_t mi = M - i0 < 4 ? M - i0 : 4, nj = N - j0 < 4 ? N - j0 : 4;
            const float *a[4], *b[4];
            __m512 acc[4][4];
            for (i = 0; i < 4; i++) {
                a[i] = A + (i0 + (i < mi ? i : 0)) * lda;    /* rows past the edge repeat row 0 */
                b[i] = B + (j0 + (i < nj ? i : 0)) * ldb;
                for (j = 0; j < 4; j++)
                    acc[i][j] = _mm512_setzero_ps();
            }
            for (k = 0; k + 16 <= K; k += 16) {
                __m512 av[4], bv[4];
                for (i = 0; i < 4; i++) {
                    av[i] = _mm512_loadu_ps(a[i] + k);
                    bv[i] = _mm512_loadu_ps(b[i] + k);
                }
                for (i = 0; i < 4; i++)
                    for (j = 0; j < 4; j++)
                        acc[i][j] = _mm512_fmadd_ps(av[i], bv[j], acc[i][j]);
            }
            if (tail) {
                __m512 av[4], bv[4];
                for (i = 0; i < 4; i++) {
                    av[i] = _mm512_maskz_loadu_ps(tail, a[i] + k);
                    bv[i] = _mm512_maskz_loadu_ps(tail, b[i] + k);
                }
                for (i = 0; i < 4; i++)
                    for (j = 0; j < 4; j++)
                        acc[i][j] = _mm512_fmadd_ps(av[i], bv[j], acc[i][j]);
            }
            {
                float sums[16];
                _mm512_storeu_ps(sums, mc_sum16(acc));
                for (i = 0; i < mi; i++)
                    for (j = 0; j < nj; j++) {
                        float *c = C + (i0 + i) * ldc + j0 + j;
                        *c = beta ? *c + sums[4 * i + j] : sums[4 * i + j];
                    }
            }
        }
}
#endif

/* edge_in_place: a narrow last panel of B is read in place (mc_ukr_avx512_edge), not packed */
typedef struct { mc_ukr_t ukr; int mr, nr, edge_in_place; } mc_kernel_t;

/* The best kernel the instruction-set level allows (which = MC_GEMM_AUTO), or
 * the one asked for; returns which one, or -1 if the level does not allow it. */
static int mc_gemm_pick(int which, mc_kernel_t *kern)
{
#if MC_X86
    if (which == MC_GEMM_AUTO)
        which = mc_isa() >= MC_ISA_AVX512 ? MC_GEMM_AVX512 : mc_isa() >= MC_ISA_AVX2 ? MC_GEMM_AVX2 : MC_GEMM_PLAIN;
    if (which == MC_GEMM_AVX512 && mc_isa() >= MC_ISA_AVX512) {
        kern->ukr = mc_ukr_avx512; kern->mr = 8; kern->nr = 32; kern->edge_in_place = 1; return which;
    }
    if (which == MC_GEMM_AVX2 && mc_isa() >= MC_ISA_AVX2) {
        kern->ukr = mc_ukr_avx2; kern->mr = 6; kern->nr = 16; kern->edge_in_place = 0; return which;
    }
#else
    if (which == MC_GEMM_AUTO)
        which = MC_GEMM_PLAIN;
#endif
    if (which == MC_GEMM_PLAIN) {
        kern->ukr = mc_ukr_plain; kern->mr = 4; kern->nr = 8; kern->edge_in_place = 0; return which;
    }
    return -1;
}

#if MC_X86
/* pa[k*mr + i] = a[i*rsa + k] for i < m8 (a multiple of 8) and k < kc: a
 * transpose, in 8 x 8 blocks of AVX registers; the last kc % 8 columns one by
 * one.  Each register is loaded as two 4-float halves from rows i and i + 4,
 * which leaves 16 shuffles a block instead of 24 (the shuffle port is what a
 * transpose waits on). */
__attribute__((target("avx")))
static void mc_transpose8_avx(const float *a, ptrdiff_t rsa, ptrdiff_t m8, ptrdiff_t kc, int mr, float *pa)
{
    ptrdiff_t i, k, r;
    for (i = 0; i < m8; i += 8) {
        for (k = 0; k + 8 <= kc; k += 8) {
            const float *src = a + i * rsa + k;
#define MC_ROWS(row, col) _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + (row) * rsa + (col))), \
                                               _mm_loadu_ps(src + ((row) + 4) * rsa + (col)), 1)
            /* r_q: rows q and q + 4 (lanes), columns 0-3 (r0-r3) or 4-7 (r4-r7) */
            __m256 r0 = MC_ROWS(0, 0), r1 = MC_ROWS(1, 0), r2 = MC_ROWS(2, 0), r3 = MC_ROWS(3, 0),
                   r4 = MC_ROWS(0, 4), r5 = MC_ROWS(1, 4), r6 = MC_ROWS(2, 4), r7 = MC_ROWS(3, 4);
#undef MC_ROWS
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
                   t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
                   t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            float *dst = pa + k * mr + i;
            _mm256_storeu_ps(dst, _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)));
            _mm256_storeu_ps(dst + mr, _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)));
            _mm256_storeu_ps(dst + 2 * mr, _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)));
            _mm256_storeu_ps(dst + 3 * mr, _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)));
            _mm256_storeu_ps(dst + 4 * mr, _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)));
            _mm256_storeu_ps(dst + 5 * mr, _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)));
            _mm256_storeu_ps(dst + 6 * mr, _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)));
            _mm256_storeu_ps(dst + 7 * mr, _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2)));
        }
        for (; k < kc; k++)
            for (r = 0; r < 8; r++)
                pa[k * mr + i + r] = a[(i + r) * rsa + k];
    }
}
#endif

/* Rows i0..i0+m-1 (m <= mr) of A, columns k0..k0+kc-1, as pa[k*mr + i], zero-padded. */
static void mc_pack_a(const float *A, ptrdiff_t rsa, ptrdiff_t csa, ptrdiff_t i0, ptrdiff_t m,
                      ptrdiff_t k0, ptrdiff_t kc, int mr, float *pa)
{
    ptrdiff_t k, i = 0;
    if (csa == 1) {     /* rows contiguous: read along them */
#if MC_X86
        if (mr % 8 == 0 && m >= 8 && mc_isa() >= MC_ISA_AVX2) {
            i = m - m % 8;
            mc_transpose8_avx(A + i0 * rsa + k0, rsa, i, kc, mr, pa);
        }
#endif
        for (; i < m; i++)
            for (k = 0; k < kc; k++)
                pa[k * mr + i] = A[(i0 + i) * rsa + k0 + k];
    } else {
        for (k = 0; k < kc; k++)
            for (i = 0; i < m; i++)
                pa[k * mr + i] = A[(i0 + i) * rsa + (k0 + k) * csa];
    }
    for (i = m; i < mr; i++)
        for (k = 0; k < kc; k++)
            pa[k * mr + i] = 0.0f;
}

/* Columns j0..j0+n-1 (n <= nr) of B, rows k0..k0+kc-1, as pb[k*nr + j], zero-padded:
 * packing rows of B's transpose, whose strides are B's swapped. */
static void mc_pack_b(const float *B, ptrdiff_t rsb, ptrdiff_t csb, ptrdiff_t j0, ptrdiff_t n,
                      ptrdiff_t k0, ptrdiff_t kc, int nr, float *pb)
{
    mc_pack_a(B, csb, rsb, j0, n, k0, kc, nr, pb);
}

/* C (M x N, ldc) (+)= (packed k-block kc of A) @ (rows k0..k0+kc-1 of B). */
static void mc_sgemm_kblock(const mc_kernel_t *kern, ptrdiff_t M, ptrdiff_t N, ptrdiff_t k0, ptrdiff_t kc,
                            const float *pa, const float *B, ptrdiff_t rsb, ptrdiff_t csb,
                            float *C, ptrdiff_t ldc, int beta, float *pb)
{
    ptrdiff_t i0, j0, m, n, i, j;
    int mr = kern->mr, nr = kern->nr;
    float edge[MC_MAX_MR * MC_MAX_NR];
    for (j0 = 0; j0 < N; j0 += nr) {
        const float *b;
        ptrdiff_t ldb;
        n = N - j0 < nr ? N - j0 : nr;
        if (csb == 1 && (n == nr || kern->edge_in_place)) {   /* rows of the panel are contiguous: read in place */
            b = B + k0 * rsb + j0;
            ldb = rsb;
        } else {
            mc_pack_b(B, rsb, csb, j0, n, k0, kc, nr, pb);
            b = pb;
            ldb = nr;
        }
        for (i0 = 0; i0 < M; i0 += mr) {
            const float *pai = pa + (i0 / mr) * mr * kc;
            m = M - i0 < mr ? M - i0 : mr;
            if (m == mr && n == nr) {
                kern->ukr(kc, pai, b, ldb, C + i0 * ldc + j0, ldc, beta);
            } else {
#if MC_X86
                if (n < nr && b != pb)   /* the AVX-512 kernel's narrow last panel, in place (above) */
                    mc_ukr_avx512_edge(kc, pai, b, ldb, n, edge, nr);
                else
#endif
                kern->ukr(kc, pai, b, ldb, edge, nr, 0);
                for (i = 0; i < m; i++)
                    for (j = 0; j < n; j++)
                        C[(i0 + i) * ldc + j0 + j] = beta ? C[(i0 + i) * ldc + j0 + j] + edge[i * nr + j]
                                                          : edge[i * nr + j];
            }
        }
    }
}

/* Elements of the packed form of nb matrices of M x K for kernel mr (see
 * mc_pack_a_all): per matrix, every k-block's panels, ceil(M / mr) * mr * K. */
static ptrdiff_t mc_packed_size(ptrdiff_t nb, ptrdiff_t M, ptrdiff_t K, int mr)
{
    return nb * ((M + mr - 1) / mr) * mr * K;
}

/* Pack all of A[b] (b < nb, M x K) for kernel mr, as mc_sgemm_batch would one
 * k-block at a time: matrix b's k-block at k0 starts at
 * pa + b * mc_packed_size(1, M, K, mr) + ceil(M / mr) * mr * k0. */
static void mc_pack_a_all(ptrdiff_t nb, ptrdiff_t M, ptrdiff_t K, const float *A, ptrdiff_t sa,
                          ptrdiff_t rsa, ptrdiff_t csa, int mr, float *pa)
{
    ptrdiff_t b, k0, kc, i0, mpanels = (M + mr - 1) / mr;
    for (b = 0; b < nb; b++)
        for (k0 = 0; k0 < K; k0 += MC_KC) {
            float *dst = pa + b * mpanels * mr * K + mpanels * mr * k0;
            kc = K - k0 < MC_KC ? K - k0 : MC_KC;
            for (i0 = 0; i0 < M; i0 += mr)
                mc_pack_a(A + b * sa, rsa, csa, i0, M - i0 < mr ? M - i0 : mr, k0, kc, mr,
                          dst + (i0 / mr) * mr * kc);
        }
}

/* C[b] (M x N, row stride ldc) = A[b] @ B[b], or += when accumulate is set, for
 * b < nb; A[b] = A + b * sa, and so on.  With sa == 0 (one A for all) A is
 * packed once per k-block for the whole batch; with packed_a (mc_pack_a_all's
 * result for this kernel and A, reused across calls; for one matrix when
 * sa == 0) A is not read at all.
 * Returns 0, or -1 if the kernel asked for cannot run here or memory ran out. */
static int mc_sgemm_batch(int which, ptrdiff_t nb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                          const float *A, ptrdiff_t sa, ptrdiff_t rsa, ptrdiff_t csa,
                          const float *B, ptrdiff_t sb, ptrdiff_t rsb, ptrdiff_t csb,
                          float *C, ptrdiff_t sc, ptrdiff_t ldc, int accumulate,
                          const float *packed_a)
{
    mc_kernel_t kern;
    ptrdiff_t k0, kc, i0, i, b, mpanels;
    float *pa, *pb;
    int mr, picked = mc_gemm_pick(which, &kern);
    if (picked < 0)
        return -1;
    if (M <= 0 || N <= 0 || nb <= 0)
        return 0;
    if (K <= 0) {
        if (!accumulate)
            for (b = 0; b < nb; b++)
                for (i = 0; i < M; i++)
                    memset(C + b * sc + i * ldc, 0, (size_t)N * sizeof(float));
        return 0;
    }
#if MC_X86
    if (packed_a == NULL && picked == MC_GEMM_AVX512 && csa == 1 && rsb == 1 && K >= MC_NT_MIN_K) {
        for (b = 0; b < nb; b++)
            mc_sgemm_nt_avx512(M, N, K, A + b * sa, rsa, B + b * sb, csb, C + b * sc, ldc, accumulate);
        return 0;
    }
#endif
    mr = kern.mr;
    mpanels = (M + mr - 1) / mr;
    pa = (float *)malloc(sizeof(float) * (size_t)(mpanels * mr * MC_KC + MC_KC * kern.nr));
    if (pa == NULL)
        return -1;
    pb = pa + mpanels * mr * MC_KC;
    for (k0 = 0; k0 < K; k0 += MC_KC) {
        kc = K - k0 < MC_KC ? K - k0 : MC_KC;
        for (b = 0; b < nb; b++) {
            const float *pab = pa;
            if (packed_a != NULL)   /* with sa == 0, one packed A serves every b */
                pab = packed_a + (sa != 0 ? b : 0) * mpanels * mr * K + mpanels * mr * k0;
            else if (b == 0 || sa != 0)     /* A's k-block, packed once per matrix */
                for (i0 = 0; i0 < M; i0 += mr)
                    mc_pack_a(A + b * sa, rsa, csa, i0, M - i0 < mr ? M - i0 : mr, k0, kc, mr,
                              pa + (i0 / mr) * mr * kc);
            mc_sgemm_kblock(&kern, M, N, k0, kc, pab, B + b * sb, rsb, csb, C + b * sc, ldc,
                            accumulate || k0 > 0, pb);
        }
    }
    free(pa);
    return 0;
}

/* The kernels of mc_sgemm_tab and mc_sgemm_ctab: an mr x nr block with B's rows,
 * or C's, found through a table (tab, ctab), and the plain block for C's last rows. */
typedef void (*mc_tab_ukr_t)(ptrdiff_t K, const float *pa, const float *b, const ptrdiff_t *tab,
                             ptrdiff_t nseg, ptrdiff_t off, float *c, ptrdiff_t ldc, int beta);
typedef void (*mc_ctab_ukr_t)(ptrdiff_t K, const float *pa, const float *b, ptrdiff_t ldb,
                              float *c, const ptrdiff_t *tab, ptrdiff_t nseg, ptrdiff_t off);
typedef struct { int mr, nr; mc_tab_ukr_t tab; mc_ctab_ukr_t ctab; mc_ukr_t ukr; } mc_tab_kernel_t;

/* The table kernels of the instruction-set level: AVX-512 8 x 32, AVX2 6 x 16;
 * 0 below AVX2 (the callers then take the columns' path). */
static int mc_tab_pick(mc_tab_kernel_t *kern)
{
#if MC_X86
    if (mc_isa() >= MC_ISA_AVX512) {
        kern->mr = 8; kern->nr = 32; kern->tab = mc_ukr_avx512_tab; kern->ctab = mc_ukr_avx512_ctab;
        kern->ukr = mc_ukr_avx512;
        return 1;
    }
    if (mc_isa() >= MC_ISA_AVX2) {
        kern->mr = 6; kern->nr = 16; kern->tab = mc_ukr_avx2_tab; kern->ctab = mc_ukr_avx2_ctab;
        kern->ukr = mc_ukr_avx2;
        return 1;
    }
#endif
    (void)kern;
    return 0;
}

/* Whether mc_sgemm_tab runs here for segments of seg floats (a multiple of the kernel's nr). */
static int mc_sgemm_tab_fits(ptrdiff_t seg)
{
    mc_tab_kernel_t kern;
    return mc_tab_pick(&kern) && seg > 0 && seg % kern.nr == 0;
}

/* C (M x N, ldc) += A @ B, where A (M x K) has contiguous rows (lda) and B (K x N) is never stored: its row k is the
 * segments b + tab[k * nseg + s], s < nseg, of seg floats each, end to end
 * (N = nseg * seg).  Conv2D's columns, transposed, read in place: row k (one
 * output position) is kh runs of kw * C floats of a channels-last input
 * (_channels_last.h).  AVX-512 or AVX2, seg a multiple of the kernel's width
 * (mc_sgemm_tab_fits); returns 0, or -1 if it does not run here or memory ran out. */
static int mc_sgemm_tab(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A, ptrdiff_t lda,
                        const float *b, const ptrdiff_t *tab, ptrdiff_t nseg, ptrdiff_t seg,
                        float *C, ptrdiff_t ldc)
{
    mc_tab_kernel_t kern;
    ptrdiff_t k0, kc, i0, j0, i, j, m, mr, nr, mpanels;
    float *pa, edge[MC_MAX_MR * MC_MAX_NR];
    if (!mc_tab_pick(&kern) || seg <= 0 || seg % kern.nr || N != nseg * seg)   /* mc_sgemm_tab_fits */
        return -1;
    if (M <= 0 || N <= 0 || K <= 0)
        return 0;
    mr = kern.mr;
    nr = kern.nr;
    mpanels = (M + mr - 1) / mr;
    pa = (float *)malloc(sizeof(float) * (size_t)(mpanels * mr * MC_KC));
    if (pa == NULL)
        return -1;
    for (k0 = 0; k0 < K; k0 += MC_KC) {
        kc = K - k0 < MC_KC ? K - k0 : MC_KC;
        for (i0 = 0; i0 < M; i0 += mr)
            mc_pack_a(A, lda, 1, i0, M - i0 < mr ? M - i0 : mr, k0, kc, (int)mr, pa + (i0 / mr) * mr * kc);
        for (j0 = 0; j0 < N; j0 += nr) {   /* a panel of B: kc rows of nr, stays in L1 across A's panels */
            const ptrdiff_t *t = tab + k0 * nseg + j0 / seg;
            for (i0 = 0; i0 < M; i0 += mr) {
                m = M - i0 < mr ? M - i0 : mr;
                if (m == mr) {
                    kern.tab(kc, pa + (i0 / mr) * mr * kc, b, t, nseg, j0 % seg, C + i0 * ldc + j0, ldc, 1);
                } else {
                    kern.tab(kc, pa + (i0 / mr) * mr * kc, b, t, nseg, j0 % seg, edge, nr, 0);
                    for (i = 0; i < m; i++)
                        for (j = 0; j < nr; j++)
                            C[(i0 + i) * ldc + j0 + j] += edge[i * nr + j];
                }
            }
        }
    }
    free(pa);
    return 0;
}

/* c += A @ B where A (M x K) is strided (rsa, csa), B (K x N) has contiguous
 * rows (ldb), and row i of the product is never stored: it is added onto the
 * segments c + tab[i * nseg + s], s < nseg, of seg floats each (N = nseg *
 * seg), which may overlap (each addition sees the ones before).  Conv2D's
 * input gradient scattered straight onto a channels-last image, row i being
 * one output position's kh runs of kw * C floats.  Conditions and result as
 * mc_sgemm_tab. */
static int mc_sgemm_ctab(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A, ptrdiff_t rsa, ptrdiff_t csa,
                         const float *B, ptrdiff_t ldb, float *c, const ptrdiff_t *tab, ptrdiff_t nseg,
                         ptrdiff_t seg)
{
    mc_tab_kernel_t kern;
    ptrdiff_t k0, kc, i0, j0, i, j, m, mr, nr;
    float *pa, edge[MC_MAX_MR * MC_MAX_NR];
    if (!mc_tab_pick(&kern) || seg <= 0 || seg % kern.nr || N != nseg * seg)   /* mc_sgemm_tab_fits */
        return -1;
    if (M <= 0 || N <= 0 || K <= 0)
        return 0;
    mr = kern.mr;
    nr = kern.nr;
    pa = (float *)malloc(sizeof(float) * (size_t)(mr * MC_KC));
    if (pa == NULL)
        return -1;
    for (k0 = 0; k0 < K; k0 += MC_KC) {
        kc = K - k0 < MC_KC ? K - k0 : MC_KC;
        for (i0 = 0; i0 < M; i0 += mr) {     /* mr rows of A in L1, B streams past them */
            m = M - i0 < mr ? M - i0 : mr;
            mc_pack_a(A, rsa, csa, i0, m, k0, kc, (int)mr, pa);
            for (j0 = 0; j0 < N; j0 += nr) {
                const ptrdiff_t *t = tab + i0 * nseg + j0 / seg;
                if (m == mr) {
                    kern.ctab(kc, pa, B + k0 * ldb + j0, ldb, c, t, nseg, j0 % seg);
                } else {
                    kern.ukr(kc, pa, B + k0 * ldb + j0, ldb, edge, nr, 0);
                    for (i = 0; i < m; i++)
                        for (j = 0; j < nr; j++)
                            c[t[i * nseg] + j0 % seg + j] += edge[i * nr + j];
                }
            }
        }
    }
    free(pa);
    return 0;
}

/* The float64 product, for checking (tests and gradient checks run float64):
 * C[b] = A[b] @ B[b] (+= with accumulate), same layout as mc_sgemm_batch; a
 * plain loop over i, k, j that the compiler vectorizes along rows of B. */
static void mc_dgemm_batch(ptrdiff_t nb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                           const double *A, ptrdiff_t sa, ptrdiff_t rsa, ptrdiff_t csa,
                           const double *B, ptrdiff_t sb, ptrdiff_t rsb, ptrdiff_t csb,
                           double *C, ptrdiff_t sc, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t b, i, k, j;
    for (b = 0; b < nb; b++)
        for (i = 0; i < M; i++) {
            double *c = C + b * sc + i * ldc;
            if (!accumulate)
                for (j = 0; j < N; j++)
                    c[j] = 0.0;
            for (k = 0; k < K; k++) {
                double a = A[b * sa + i * rsa + k * csa];
                const double *bk = B + b * sb + k * rsb;
                if (csb == 1)
                    for (j = 0; j < N; j++)
                        c[j] += a * bk[j];
                else
                    for (j = 0; j < N; j++)
                        c[j] += a * bk[j * csb];
            }
        }
}

#endif
