/* Winograd F(2x2, 3x3) transforms and their adjoints in AVX-512 registers, float32, for planes whose (zero-padded) rows fit in 32
 * floats (every Winograd layer of
 * configs/: 14x14 and 7x7 with padding 1).  Same arithmetic, in the same
 * order, as mc_wino_input in _winograd_impl.h (so the same bits), but a
 * padded row is two masked loads and two permutes instead of a scalar
 * deinterleave, and each row of tiles is one masked store per transformed
 * element instead of TW scalar ones: 4x fewer instructions per plane.
 *
 * mc_wino_input_avx512 returns 0, doing nothing, below the AVX-512 level (mc_isa(), _isa.h)
 * or the plane is too wide; the caller then runs the portable loops. */
#ifndef MINICNN_WINOGRAD_AVX512_H
#define MINICNN_WINOGRAD_AVX512_H

#include <stddef.h>
#include "_isa.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* e (lanes 0..15) = padded columns 0, 2, ..., 30 of a row held in (lo, hi);
 * o = columns 1, 3, ..., 31. */
/* (lo, hi): lanes shift .. shift + n - 1 of a 32-float row held in two registers */
static void mc_row_lanes(ptrdiff_t n, int shift, __mmask16 *lo, __mmask16 *hi)
{
    unsigned long long bits = ((n >= 32 ? ~0ull : (1ull << n) - 1) << shift) & 0xffffffffull;
    *lo = (__mmask16)(bits & 0xffff);
    *hi = (__mmask16)(bits >> 16);
}

#define MC_EVEN_LANES _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0)
#define MC_ODD_LANES _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1)

__attribute__((target("avx512f")))
static void mc_wino_input_avx512_planes(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                        int ph, int pw, float *X, ptrdiff_t xs, ptrdiff_t T, float *u)
{
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2, P = TH * TW, PR = 2 * TH + 2;
    ptrdiff_t n, c, R, th;
    int k;
    __mmask16 lo, hi;
    __mmask16 tiles = (__mmask16)((1u << TW) - 1);
    const __m512i even = MC_EVEN_LANES, odd = MC_ODD_LANES;
    const __m512 zero = _mm512_setzero_ps();
    mc_row_lanes(W, pw, &lo, &hi);   /* the padded row's lanes that hold x */
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

static int mc_wino_input_avx512(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                int ph, int pw, float *X, ptrdiff_t xs, ptrdiff_t T, float *scratch)
{
    ptrdiff_t TW = (W + 2 * pw - 1) / 2;
    float *u = (float *)(((size_t)scratch + 63) & ~(size_t)63);
    if (mc_isa() < MC_ISA_AVX512 || W + pw > 32 || 2 * TW + 2 > 32 || TW < 1)
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
    __mmask16 lo, hi;
    __mmask16 tiles = (__mmask16)((1u << TW) - 1);
    const __m512i even = MC_EVEN_LANES, odd = MC_ODD_LANES;
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    mc_row_lanes(OW, 0, &lo, &hi);
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
    if (mc_isa() < MC_ISA_AVX512 || OW > 32 || OW < 1 || OH < 1)
        return 0;
    mc_wino_output_adjoint_avx512_planes(dy, yr, N, O, OH, OW, X, xs, T, db);
    return 1;
}

/* v shifted up one lane: lane j holds v[j - 1], lane 0 zero */
#define MC_SHIFT1(v) _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(v), _mm512_setzero_si512(), 15))

__attribute__((target("avx512f")))
static void mc_wino_input_adjoint_avx512_planes(const float *X, ptrdiff_t xs, ptrdiff_t T, float *dx,
                                                ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                                int ph, int pw)
{
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2, P = TH * TW, n, c, th;
    int xi, r0, L;
    __mmask16 tiles = (__mmask16)((1u << TW) - 1);
    __mmask16 lo, hi;
    int idx[32];
    __m512i idx_lo, idx_hi;
    const __m512 zero = _mm512_setzero_ps();
    mc_row_lanes(W, 0, &lo, &hi);
    for (L = 0; L < 32; L++)   /* dx column L is padded column L + pw: even ones in E, odd in O */
        idx[L] = (((L + pw) & 1) ? 16 : 0) + (((L + pw) >> 1) & 15);
    idx_lo = _mm512_loadu_si512(idx);
    idx_hi = _mm512_loadu_si512(idx + 16);
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const float *v = X + c * T + n * P;
            float *out = dx + (n * C + c) * H * W;
            __m512 F[16], prev[8];   /* F[4r+s] of this row of tiles; prev: r = 2, 3 of the row before */
            for (xi = 0; xi < 8; xi++)
                prev[xi] = zero;
            for (th = 0; th <= TH; th++) {
                if (th < TH) {   /* F = B dV B^T, in mc_wino_input_adjoint's order of operations */
                    __m512 vv[16], e[16];
                    for (xi = 0; xi < 16; xi++)
                        vv[xi] = _mm512_maskz_loadu_ps(tiles, v + xi * xs + th * TW);
                    for (xi = 0; xi < 16; xi += 4) {
                        e[xi] = vv[xi];
                        e[xi + 1] = _mm512_add_ps(_mm512_sub_ps(vv[xi + 1], vv[xi + 2]), vv[xi + 3]);
                        e[xi + 2] = _mm512_sub_ps(_mm512_add_ps(vv[xi + 1], vv[xi + 2]), vv[xi]);
                        e[xi + 3] = mc_neg(vv[xi + 3]);
                    }
                    for (xi = 0; xi < 4; xi++) {
                        F[xi] = e[xi];
                        F[4 + xi] = _mm512_add_ps(_mm512_sub_ps(e[4 + xi], e[8 + xi]), e[12 + xi]);
                        F[8 + xi] = _mm512_sub_ps(_mm512_add_ps(e[4 + xi], e[8 + xi]), e[xi]);
                        F[12 + xi] = mc_neg(e[12 + xi]);
                    }
                } else {
                    for (xi = 0; xi < 16; xi++)
                        F[xi] = zero;
                }
                /* padded rows 2th + r0: contributions (r0, s0), (r0, s0 + 2), then from the row
                 * of tiles above (r0 + 2, s0), (r0 + 2, s0 + 2), added to 0 in that order */
                for (r0 = 0; r0 < 2; r0++) {
                    ptrdiff_t ih = 2 * th + r0 - ph;
                    __m512 E, O, a, b;
                    if (ih < 0 || ih >= H)
                        continue;
                    E = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(zero, F[4 * r0]),
                                                                  MC_SHIFT1(F[4 * r0 + 2])),
                                                    prev[4 * r0]), MC_SHIFT1(prev[4 * r0 + 2]));
                    O = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(zero, F[4 * r0 + 1]),
                                                                  MC_SHIFT1(F[4 * r0 + 3])),
                                                    prev[4 * r0 + 1]), MC_SHIFT1(prev[4 * r0 + 3]));
                    a = _mm512_permutex2var_ps(E, idx_lo, O);
                    b = _mm512_permutex2var_ps(E, idx_hi, O);
                    _mm512_mask_storeu_ps(out + ih * W, lo, a);
                    _mm512_mask_storeu_ps(out + ih * W + 16, hi, b);
                }
                for (xi = 0; xi < 8; xi++)
                    prev[xi] = F[8 + xi];
            }
        }
}

/* The input transform's adjoint (see mc_wino_input_adjoint in _winograd_impl.h)
 * for planes whose padded rows fit in 32 floats; returns 0 when it cannot run
 * here.  Same bits, up to which NaN a sum of NaNs gives. */
static int mc_wino_input_adjoint_avx512(const float *X, ptrdiff_t xs, ptrdiff_t T, float *dx,
                                        ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W, int ph, int pw)
{
    ptrdiff_t TW = (W + 2 * pw - 1) / 2;
    if (mc_isa() < MC_ISA_AVX512 || W + pw > 32 || 2 * TW + 2 > 32 || TW < 1)
        return 0;
    mc_wino_input_adjoint_avx512_planes(X, xs, T, dx, N, C, H, W, ph, pw);
    return 1;
}

__attribute__((target("avx512f")))
static void mc_wino_output_avx512_planes(const float *X, ptrdiff_t xs, ptrdiff_t T, const float *bias,
                                         float *y, ptrdiff_t N, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW,
                                         int relu)
{
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, P = TH * TW, n, o, th;
    int xi, L;
    __mmask16 tiles = (__mmask16)((1u << TW) - 1);
    __mmask16 lo, hi;
    int idx[32];
    __m512i idx_lo, idx_hi;
    const __m512 zero = _mm512_setzero_ps();
    mc_row_lanes(OW, 0, &lo, &hi);
    for (L = 0; L < 32; L++)   /* output column L: tile L / 2, its left (even L) or right output */
        idx[L] = ((L & 1) ? 16 : 0) + ((L >> 1) & 15);
    idx_lo = _mm512_loadu_si512(idx);
    idx_hi = _mm512_loadu_si512(idx + 16);
    for (n = 0; n < N; n++)
        for (o = 0; o < O; o++) {
            const float *m = X + o * T + n * P;
            float *yp = y + (n * O + o) * OH * OW;
            __m512 b = _mm512_set1_ps(bias[o]);
            for (th = 0; th < TH; th++) {
                __m512 mm[16], p00, p01, p02, p03, p10, p11, p12, p13, y00, y01, y10, y11;
                for (xi = 0; xi < 16; xi++)
                    mm[xi] = _mm512_maskz_loadu_ps(tiles, m + xi * xs + th * TW);
                /* mc_wino_output's operations, in its order */
                p00 = _mm512_add_ps(_mm512_add_ps(mm[0], mm[4]), mm[8]);
                p01 = _mm512_add_ps(_mm512_add_ps(mm[1], mm[5]), mm[9]);
                p02 = _mm512_add_ps(_mm512_add_ps(mm[2], mm[6]), mm[10]);
                p03 = _mm512_add_ps(_mm512_add_ps(mm[3], mm[7]), mm[11]);
                p10 = _mm512_sub_ps(_mm512_sub_ps(mm[4], mm[8]), mm[12]);
                p11 = _mm512_sub_ps(_mm512_sub_ps(mm[5], mm[9]), mm[13]);
                p12 = _mm512_sub_ps(_mm512_sub_ps(mm[6], mm[10]), mm[14]);
                p13 = _mm512_sub_ps(_mm512_sub_ps(mm[7], mm[11]), mm[15]);
                y00 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p00, p01), p02), b);
                y01 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(p01, p02), p03), b);
                y10 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p10, p11), p12), b);
                y11 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(p11, p12), p13), b);
                if (relu) {   /* v if v > 0 or NaN, else +0: keep where not (v <= 0) */
                    y00 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y00, zero, _CMP_NLE_UQ), y00);
                    y01 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y01, zero, _CMP_NLE_UQ), y01);
                    y10 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y10, zero, _CMP_NLE_UQ), y10);
                    y11 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y11, zero, _CMP_NLE_UQ), y11);
                }
                _mm512_mask_storeu_ps(yp + 2 * th * OW, lo, _mm512_permutex2var_ps(y00, idx_lo, y01));
                _mm512_mask_storeu_ps(yp + 2 * th * OW + 16, hi, _mm512_permutex2var_ps(y00, idx_hi, y01));
                if (2 * th + 1 < OH) {
                    _mm512_mask_storeu_ps(yp + (2 * th + 1) * OW, lo, _mm512_permutex2var_ps(y10, idx_lo, y11));
                    _mm512_mask_storeu_ps(yp + (2 * th + 1) * OW + 16, hi, _mm512_permutex2var_ps(y10, idx_hi, y11));
                }
            }
        }
}

/* The output transform (see mc_wino_output in _winograd_impl.h) for output
 * rows of at most 32 floats; returns 0 when it cannot run here.  Same bits,
 * up to which NaN a sum of NaNs gives. */
static int mc_wino_output_avx512(const float *X, ptrdiff_t xs, ptrdiff_t T, const float *bias, float *y,
                                 ptrdiff_t N, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, int relu)
{
    if (mc_isa() < MC_ISA_AVX512 || OW > 32 || OW < 1 || OH < 1)
        return 0;
    mc_wino_output_avx512_planes(X, xs, T, bias, y, N, O, OH, OW, relu);
    return 1;
}

#else
static int mc_wino_output_avx512(const float *X, ptrdiff_t xs, ptrdiff_t T, const float *bias, float *y,
                                 ptrdiff_t N, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW, int relu)
{
    return 0;
}
static int mc_wino_input_adjoint_avx512(const float *X, ptrdiff_t xs, ptrdiff_t T, float *dx,
                                        ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W, int ph, int pw)
{
    return 0;
}
static int mc_wino_output_adjoint_avx512(const float *dy, const float *yr, ptrdiff_t N, ptrdiff_t O,
                                         ptrdiff_t OH, ptrdiff_t OW, float *X, ptrdiff_t xs, ptrdiff_t T,
                                         double *db)
{
    return 0;
}
static int mc_wino_input_avx512(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                int ph, int pw, float *X, ptrdiff_t xs, ptrdiff_t T, float *scratch)
{
    return 0;
}
#endif

#endif
