/* Winograd F(2x2, 3x3) input transform and output-transform adjoint in
 * AVX-512 registers, float32, for planes whose (zero-padded) rows fit in 32
 * floats (every Winograd layer of
 * configs/: 14x14 and 7x7 with padding 1).  Same arithmetic, in the same
 * order, as mc_wino_input in _winograd_impl.h (so the same bits), but a
 * padded row is two masked loads and two permutes instead of a scalar
 * deinterleave, and each row of tiles is one masked store per transformed
 * element instead of TW scalar ones: 4x fewer instructions per plane.
 *
 * mc_wino_input_avx512 returns 0, doing nothing, when the CPU lacks AVX-512F
 * or the plane is too wide; the caller then runs the portable loops. */
#ifndef MINICNN_WINOGRAD_AVX512_H
#define MINICNN_WINOGRAD_AVX512_H

#include <stddef.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* e (lanes 0..15) = padded columns 0, 2, ..., 30 of a row held in (lo, hi);
 * o = columns 1, 3, ..., 31. */
#define MC_EVEN_LANES _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0)
#define MC_ODD_LANES _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1)

__attribute__((target("avx512f")))
static void mc_wino_input_avx512_planes(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                        int ph, int pw, float *X, ptrdiff_t xs, ptrdiff_t T, float *u)
{
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2, P = TH * TW, PR = 2 * TH + 2;
    ptrdiff_t n, c, R, th;
    int k;
    unsigned long long cols = ((W >= 32 ? ~0ull : (1ull << W) - 1) << pw) & 0xffffffffull;
    __mmask16 lo = (__mmask16)(cols & 0xffff), hi = (__mmask16)(cols >> 16);
    __mmask16 tiles = (__mmask16)((1u << TW) - 1);
    const __m512i even = MC_EVEN_LANES, odd = MC_ODD_LANES;
    const __m512 zero = _mm512_setzero_ps();
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const float *xp = x + (n * C + c) * H * W;
            float *out = X + c * T + n * P;
            /* (.) B along every padded row R: u_k[R][tw], 16 floats per row */
            for (R = 0; R < PR; R++) {
                ptrdiff_t ih = R - ph;
                __m512 a = zero, b = zero, e, o, e1, o1;
                if (ih >= 0 && ih < H) {    /* masked lanes are not read: no fault before the row */
                    const float *row = xp + ih * W - pw;
                    a = _mm512_maskz_loadu_ps(lo, row);
                    b = _mm512_maskz_loadu_ps(hi, row + 16);
                }
                e = _mm512_permutex2var_ps(a, even, b);
                o = _mm512_permutex2var_ps(a, odd, b);
                e1 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(zero), _mm512_castps_si512(e), 1));
                o1 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(zero), _mm512_castps_si512(o), 1));
                _mm512_store_ps(u + (0 * PR + R) * 16, _mm512_sub_ps(e, e1));
                _mm512_store_ps(u + (1 * PR + R) * 16, _mm512_add_ps(o, e1));
                _mm512_store_ps(u + (2 * PR + R) * 16, _mm512_sub_ps(e1, o));
                _mm512_store_ps(u + (3 * PR + R) * 16, _mm512_sub_ps(o, o1));
            }
            /* B^T (.) down the rows 2th..2th+3 of each u_k */
            for (th = 0; th < TH; th++)
                for (k = 0; k < 4; k++) {
                    const float *uk = u + (k * PR + 2 * th) * 16;
                    __m512 a0 = _mm512_load_ps(uk), a1 = _mm512_load_ps(uk + 16);
                    __m512 a2 = _mm512_load_ps(uk + 32), a3 = _mm512_load_ps(uk + 48);
                    float *v = out + th * TW;
                    _mm512_mask_storeu_ps(v + k * xs, tiles, _mm512_sub_ps(a0, a2));
                    _mm512_mask_storeu_ps(v + (4 + k) * xs, tiles, _mm512_add_ps(a1, a2));
                    _mm512_mask_storeu_ps(v + (8 + k) * xs, tiles, _mm512_sub_ps(a2, a1));
                    _mm512_mask_storeu_ps(v + (12 + k) * xs, tiles, _mm512_sub_ps(a1, a3));
                }
        }
}

/* Elements of 64-byte-aligned scratch mc_wino_input_avx512 needs (plus 16 for alignment). */
static ptrdiff_t mc_wino_input_avx512_scratch(ptrdiff_t H, int ph)
{
    return 4 * (2 * ((H + 2 * ph - 1) / 2) + 2) * 16 + 16;
}

static int mc_wino_input_avx512(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                int ph, int pw, float *X, ptrdiff_t xs, ptrdiff_t T, float *scratch)
{
    ptrdiff_t TW = (W + 2 * pw - 1) / 2;
    float *u = (float *)(((size_t)scratch + 63) & ~(size_t)63);
    if (!__builtin_cpu_supports("avx512f") || W + pw > 32 || 2 * TW + 2 > 32 || TW < 1)
        return 0;
    mc_wino_input_avx512_planes(x, N, C, H, W, ph, pw, X, xs, T, u);
    return 1;
}

/* lanes < n of a zero-padded row: two masked loads of up to 32 floats, (lo, hi) */
#define MC_ROW_LOAD(lo, hi, p, mlo, mhi) do { lo = _mm512_maskz_loadu_ps(mlo, p); \
                                             hi = _mm512_maskz_loadu_ps(mhi, (p) + 16); } while (0)

__attribute__((target("avx512f")))
static inline __m512 mc_neg(__m512 v)   /* -v: the sign flipped, as C's unary minus (-(+0) = -0) */
{
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000)));
}

__attribute__((target("avx512f")))
static void mc_wino_output_adjoint_avx512_planes(const float *dy, const float *yr, ptrdiff_t N, ptrdiff_t O,
                                                 ptrdiff_t OH, ptrdiff_t OW, float *X, ptrdiff_t xs,
                                                 ptrdiff_t T, double *db)
{
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, P = TH * TW, n, o, th;
    unsigned long long cols = OW >= 32 ? 0xffffffffull : (1ull << OW) - 1;
    __mmask16 lo = (__mmask16)(cols & 0xffff), hi = (__mmask16)(cols >> 16);
    __mmask16 tiles = (__mmask16)((1u << TW) - 1);
    const __m512i even = MC_EVEN_LANES, odd = MC_ODD_LANES;
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    for (n = 0; n < N; n++)
        for (o = 0; o < O; o++) {
            const float *yp = dy + (n * O + o) * OH * OW;
            const float *rp = yr == NULL ? NULL : yr + (n * O + o) * OH * OW;
            float *m = X + o * T + n * P;
            __m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
            for (th = 0; th < TH; th++) {
                __m512 r0a, r0b, r1a = zero, r1b = zero, a, b, c, d, h10, h11, h20, h21;
                float *v = m + th * TW;
                MC_ROW_LOAD(r0a, r0b, yp + 2 * th * OW, lo, hi);
                if (2 * th + 1 < OH)
                    MC_ROW_LOAD(r1a, r1b, yp + (2 * th + 1) * OW, lo, hi);
                if (rp != NULL) {   /* dY = dy * (y > 0): times 1 or 0, so that 0 * NaN stays NaN */
                    __m512 y0a, y0b, y1a = zero, y1b = zero;
                    MC_ROW_LOAD(y0a, y0b, rp + 2 * th * OW, lo, hi);
                    if (2 * th + 1 < OH)
                        MC_ROW_LOAD(y1a, y1b, rp + (2 * th + 1) * OW, lo, hi);
                    r0a = _mm512_mul_ps(r0a, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y0a, zero, _CMP_GT_OQ), one));
                    r0b = _mm512_mul_ps(r0b, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y0b, zero, _CMP_GT_OQ), one));
                    r1a = _mm512_mul_ps(r1a, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y1a, zero, _CMP_GT_OQ), one));
                    r1b = _mm512_mul_ps(r1b, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y1b, zero, _CMP_GT_OQ), one));
                }
                sum0 = _mm512_add_pd(sum0, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(r0a)),
                                                         _mm512_cvtps_pd(_mm512_castps512_ps256(r1a))));
                sum1 = _mm512_add_pd(sum1, _mm512_add_pd(
                    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r0a), 1))),
                    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r1a), 1)))));
                sum0 = _mm512_add_pd(sum0, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(r0b)),
                                                         _mm512_cvtps_pd(_mm512_castps512_ps256(r1b))));
                sum1 = _mm512_add_pd(sum1, _mm512_add_pd(
                    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r0b), 1))),
                    _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r1b), 1)))));
                /* dY of each tile: a (0,0), b (0,1), c (1,0), d (1,1); zero where it hangs over */
                a = _mm512_permutex2var_ps(r0a, even, r0b);
                b = _mm512_permutex2var_ps(r0a, odd, r0b);
                c = _mm512_permutex2var_ps(r1a, even, r1b);
                d = _mm512_permutex2var_ps(r1a, odd, r1b);
                h10 = _mm512_add_ps(a, c); h11 = _mm512_add_ps(b, d);
                h20 = _mm512_sub_ps(a, c); h21 = _mm512_sub_ps(b, d);
                _mm512_mask_storeu_ps(v, tiles, a);
                _mm512_mask_storeu_ps(v + xs, tiles, _mm512_add_ps(a, b));
                _mm512_mask_storeu_ps(v + 2 * xs, tiles, _mm512_sub_ps(a, b));
                _mm512_mask_storeu_ps(v + 3 * xs, tiles, mc_neg(b));
                _mm512_mask_storeu_ps(v + 4 * xs, tiles, h10);
                _mm512_mask_storeu_ps(v + 5 * xs, tiles, _mm512_add_ps(h10, h11));
                _mm512_mask_storeu_ps(v + 6 * xs, tiles, _mm512_sub_ps(h10, h11));
                _mm512_mask_storeu_ps(v + 7 * xs, tiles, mc_neg(h11));
                _mm512_mask_storeu_ps(v + 8 * xs, tiles, h20);
                _mm512_mask_storeu_ps(v + 9 * xs, tiles, _mm512_add_ps(h20, h21));
                _mm512_mask_storeu_ps(v + 10 * xs, tiles, _mm512_sub_ps(h20, h21));
                _mm512_mask_storeu_ps(v + 11 * xs, tiles, mc_neg(h21));
                _mm512_mask_storeu_ps(v + 12 * xs, tiles, mc_neg(c));
                _mm512_mask_storeu_ps(v + 13 * xs, tiles, _mm512_sub_ps(mc_neg(c), d));
                _mm512_mask_storeu_ps(v + 14 * xs, tiles, _mm512_sub_ps(d, c));
                _mm512_mask_storeu_ps(v + 15 * xs, tiles, d);
            }
            db[o] += _mm512_reduce_add_pd(_mm512_add_pd(sum0, sum1));
        }
}

/* The output transform's adjoint (see mc_wino_output_adjoint in
 * _winograd_impl.h) for output rows of at most 32 floats; returns 0 when it
 * cannot run here.  Same dM bits; db summed in another order (in double). */
static int mc_wino_output_adjoint_avx512(const float *dy, const float *yr, ptrdiff_t N, ptrdiff_t O,
                                         ptrdiff_t OH, ptrdiff_t OW, float *X, ptrdiff_t xs, ptrdiff_t T,
                                         double *db)
{
    if (!__builtin_cpu_supports("avx512f") || OW > 32 || OW < 1 || OH < 1)
        return 0;
    mc_wino_output_adjoint_avx512_planes(dy, yr, N, O, OH, OW, X, xs, T, db);
    return 1;
}

#else
static int mc_wino_output_adjoint_avx512(const float *dy, const float *yr, ptrdiff_t N, ptrdiff_t O,
                                         ptrdiff_t OH, ptrdiff_t OW, float *X, ptrdiff_t xs, ptrdiff_t T,
                                         double *db)
{
    return 0;
}
static ptrdiff_t mc_wino_input_avx512_scratch(ptrdiff_t H, int ph) { (void)H; (void)ph; return 0; }
static int mc_wino_input_avx512(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                int ph, int pw, float *X, ptrdiff_t xs, ptrdiff_t T, float *scratch)
{
    return 0;
}
#endif

#endif
