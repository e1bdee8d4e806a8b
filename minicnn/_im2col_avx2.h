/* im2col in AVX2 registers, float32, stride 1 or 2 along rows, for the planes
 * _im2col_avx512.h takes (zero-padded rows up to 32 floats, at most 16
 * outputs a row): the im2col of the AVX2 level.  A padded input row is four
 * masked loads (for stride 2 then split into its even and odd columns); the
 * OW outputs of kernel column j are the row shifted by j (by j / 2 in the
 * even or odd half), two permutes and a blend per 8, stored 16 wide: the
 * floats past OW land on outputs that are written later (masked stores, slow
 * on AMD's cores, only where they would land past this call's columns).
 * Only copies: the portable loops' values, bit for bit.
 *
 * mc_im2col_avx2 returns 0, doing nothing, below the AVX2 level (mc_isa(),
 * _isa.h) or outside that geometry; the caller then runs the portable loops.
 * Layout as in _im2col.pyx: cols[(c * kh + i) * kw + j][(n * OH + oh) * OW + ow]. */
#ifndef MINICNN_IM2COL_AVX2_H
#define MINICNN_IM2COL_AVX2_H

#include <stddef.h>
#include "_isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* Lanes s .. s + 7 of the 16 floats (a, b), s < 8: idx = (lane + s) & 7, from_b = lane + s >= 8. */
__attribute__((target("avx2"), always_inline))
static inline __m256 mc_shift8(__m256 a, __m256 b, __m256i idx, __m256 from_b)
{
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, idx), _mm256_permutevar8x32_ps(b, idx), from_b);
}

/* Columns 0, 2, ..., 14 (odd: 1, 3, ..., 15) of the 16 floats (lo, hi). */
__attribute__((target("avx2"), always_inline))
static inline __m256 mc_phase8(__m256 lo, __m256 hi, int odd)
{
    __m256 t = odd ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)) : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

__attribute__((target("avx2")))
static void mc_im2col_avx2_run(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                               int kh, int kw, int sh, int sw, int ph, int pw,
                               ptrdiff_t OH, ptrdiff_t OW, float *cols, ptrdiff_t ldc)
{
    const __m256i lane = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    const __m256i out_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)OW), lane);
    const __m256i out_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)OW - 8), lane);
    __m256i in[4], idx[8];      /* in[g]: lanes of padded columns 8 g .. 8 g + 7 that hold the row */
    __m256 from_b[8];
    ptrdiff_t n, c, oh;
    int i, j, g;
    for (g = 0; g < 4; g++) {
        __m256i col = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * g - pw));   /* input column of each lane */
        in[g] = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), col),
                                    _mm256_cmpgt_epi32(_mm256_set1_epi32((int)W), col));
    }
    for (j = 0; j < kw; j++) {
        int s = sw == 1 ? j : j / 2;
        __m256i k = _mm256_add_epi32(lane, _mm256_set1_epi32(s));
        idx[j] = _mm256_and_si256(k, _mm256_set1_epi32(7));
        from_b[j] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(k, _mm256_set1_epi32(7)));
    }
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const float *xp = x + (n * C + c) * H * W;
            for (i = 0; i < kh; i++) {
                float *dst = cols + (ptrdiff_t)((c * kh + i) * kw) * ldc + n * OH * OW;
                for (oh = 0; oh < OH; oh++) {
                    int wide = (n * OH + oh) * OW + 16 <= N * OH * OW;   /* the spill stays inside this call's columns */
                    ptrdiff_t ih = oh * sh + i - ph;
                    __m256 r[4], p[2][3];
                    for (g = 0; g < 4; g++)     /* masked lanes are not read: no fault before the row */
                        r[g] = (ih >= 0 && ih < H) ? _mm256_maskload_ps(xp + ih * W - pw + 8 * g, in[g])
                                                    : _mm256_setzero_ps();
                    if (sw == 1) {
                        p[0][0] = r[0]; p[0][1] = r[1]; p[0][2] = r[2];
                        p[1][0] = p[1][1] = p[1][2] = r[0];     /* unused */
                    } else {
                        for (g = 0; g < 2; g++) {
                            p[g][0] = mc_phase8(r[0], r[1], g);
                            p[g][1] = mc_phase8(r[2], r[3], g);
                            p[g][2] = _mm256_setzero_ps();
                        }
                    }
                    for (j = 0; j < kw; j++) {
                        const __m256 *q = p[sw == 1 ? 0 : j % 2];
                        __m256 lo = mc_shift8(q[0], q[1], idx[j], from_b[j]), hi = mc_shift8(q[1], q[2], idx[j], from_b[j]);
                        float *d = dst + j * ldc + oh * OW;
                        if (wide) {     /* 16 floats: past OW they land on outputs written later */
                            _mm256_storeu_ps(d, lo);
                            _mm256_storeu_ps(d + 8, hi);
                        } else {
                            _mm256_maskstore_ps(d, out_lo, lo);
                            _mm256_maskstore_ps(d + 8, out_hi, hi);
                        }
                    }
                }
            }
        }
}

static int mc_im2col_avx2(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, float *cols, ptrdiff_t ldc)
{
    ptrdiff_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
    if (mc_isa() < MC_ISA_AVX2 || (sw != 1 && sw != 2) || W + pw > 32 || (OW - 1) * sw + kw > 32
        || OW < 1 || OW > 16 || OH < 1 || kw > 8)
        return 0;
    mc_im2col_avx2_run(x, N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW, cols, ldc);
    return 1;
}

#else
static int mc_im2col_avx2(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                          int kh, int kw, int sh, int sw, int ph, int pw, float *cols, ptrdiff_t ldc)
{
    (void)x; (void)N; (void)C; (void)H; (void)W; (void)kh; (void)kw; (void)sh; (void)sw; (void)ph; (void)pw;
    (void)cols; (void)ldc;
    return 0;
}
#endif

#endif
