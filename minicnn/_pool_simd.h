/* Float32 pooling fast paths for _pool.pyx: 2x2 windows with stride 2 and no
 * padding (the reference network's case), any max/min window with stride 2
 * (padding included: 3x3/2 with padding 1 is max_pool_overlap's; with
 * AVX-512 and rows up to 32 floats, _pool_avx512.h takes that case), and the
 * global poolings.
 *
 * SSE2 is part of every x86-64 CPU, so these need no runtime dispatch; other
 * targets compile the plain C loops under #else.  At the AVX2 level and up
 * (mc_isa(), _isa.h) the stride-2 max/min loop takes eight windows at a time
 * (rows wider than _pool_avx512.h takes, or every row below the AVX-512 level).  Each function computes
 * exactly what the generic Cython loop computes for the same input (same
 * comparison rule, same order of additions), bit for bit.
 *
 * Vector tails: a row of OW >= 4 outputs is processed four at a time, and the
 * last group is the one ending at OW - 4 (it may overlap the group before).
 * Recomputing an output writes the same value again, so the overlap is safe
 * and no scalar tail loop is needed.
 *
 * Shapes: one plane x (H, W) -> y, argmax (OH, OW), OH = H / 2, OW = W / 2
 * (floor); an odd last row or column of x is outside every window.
 */
#ifndef MINICNN_POOL_SIMD_H
#define MINICNN_POOL_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_isa.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define MINICNN_SSE2 1
#else
#define MINICNN_SSE2 0
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MINICNN_AVX2 1   /* built with a target attribute, run at the AVX2 level and up (mc_isa) */
#else
#define MINICNN_AVX2 0
#endif

/* v replaces best: PyTorch's CPU rule (v > best) || isnan(v), or < for min. */
static inline int mc_wins(float v, float best, int minimum)
{
    return minimum ? (v < best || v != v) : (v > best || v != v);
}

static inline void mc_extreme_2x2_scalar(const float *r0, const float *r1, float *y, uint8_t *a,
                                         ptrdiff_t ow, int minimum)
{
    float best = r0[2 * ow], v;
    uint8_t pos = 0;
    v = r0[2 * ow + 1]; if (mc_wins(v, best, minimum)) { best = v; pos = 1; }
    v = r1[2 * ow];     if (mc_wins(v, best, minimum)) { best = v; pos = 2; }
    v = r1[2 * ow + 1]; if (mc_wins(v, best, minimum)) { best = v; pos = 3; }
    y[ow] = best;
    a[ow] = pos;
}

#if MINICNN_SSE2
/* Four windows starting at output column ow. */
static inline void mc_extreme_2x2_vec(const float *r0, const float *r1, float *y, uint8_t *a,
                                      ptrdiff_t ow, int minimum)
{
    __m128 lo0 = _mm_loadu_ps(r0 + 2 * ow), hi0 = _mm_loadu_ps(r0 + 2 * ow + 4);
    __m128 lo1 = _mm_loadu_ps(r1 + 2 * ow), hi1 = _mm_loadu_ps(r1 + 2 * ow + 4);
    __m128 v[4];
    v[0] = _mm_shuffle_ps(lo0, hi0, _MM_SHUFFLE(2, 0, 2, 0));   /* top-left */
    v[1] = _mm_shuffle_ps(lo0, hi0, _MM_SHUFFLE(3, 1, 3, 1));   /* top-right */
    v[2] = _mm_shuffle_ps(lo1, hi1, _MM_SHUFFLE(2, 0, 2, 0));   /* bottom-left */
    v[3] = _mm_shuffle_ps(lo1, hi1, _MM_SHUFFLE(3, 1, 3, 1));   /* bottom-right */
    __m128 best = v[0];
    __m128i pos = _mm_setzero_si128();
    for (int k = 1; k < 4; k++) {
        __m128 c = minimum ? _mm_cmplt_ps(v[k], best) : _mm_cmpgt_ps(v[k], best);
        c = _mm_or_ps(c, _mm_cmpunord_ps(v[k], v[k]));
        best = _mm_or_ps(_mm_and_ps(c, v[k]), _mm_andnot_ps(c, best));
        __m128i ci = _mm_castps_si128(c);
        pos = _mm_or_si128(_mm_and_si128(ci, _mm_set1_epi32(k)), _mm_andnot_si128(ci, pos));
    }
    _mm_storeu_ps(y + ow, best);
    pos = _mm_packs_epi32(pos, pos);
    pos = _mm_packus_epi16(pos, pos);
    int32_t packed = _mm_cvtsi128_si32(pos);
    memcpy(a + ow, &packed, 4);
}
#endif

/* Max (minimum = 0) or min pooling forward of one plane. */
static inline void mc_extreme_2x2_f32(const float *x, float *y, uint8_t *argmax,
                                      ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW, int minimum)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + oh * OW;
        uint8_t *ar = argmax + oh * OW;
#if MINICNN_SSE2
        if (OW >= 4) {
            for (ptrdiff_t ow = 0; ow < OW; ow += 4)
                mc_extreme_2x2_vec(r0, r1, yr, ar, ow + 4 <= OW ? ow : OW - 4, minimum);
            continue;
        }
#endif
        for (ptrdiff_t ow = 0; ow < OW; ow++)
            mc_extreme_2x2_scalar(r0, r1, yr, ar, ow, minimum);
    }
}

/* One window of max/min pooling clipped to the plane (H, W): the generic
 * Cython loop's rule, for the windows at a padded edge. (h0, w0) is the
 * window's unclipped top-left corner, possibly negative. */
static inline void mc_extreme_clipped(const float *x, float *y, uint8_t *a,
                                      ptrdiff_t H, ptrdiff_t W, ptrdiff_t h0, ptrdiff_t w0,
                                      int kh, int kw, int minimum)
{
    ptrdiff_t hs = h0 > 0 ? h0 : 0, he = h0 + kh < H ? h0 + kh : H;
    ptrdiff_t ws = w0 > 0 ? w0 : 0, we = w0 + kw < W ? w0 + kw : W;
    float best = x[hs * W + ws];
    int pos = (int)((hs - h0) * kw + (ws - w0));
    for (ptrdiff_t i = hs; i < he; i++)
        for (ptrdiff_t j = ws; j < we; j++) {
            float v = x[i * W + j];
            if (mc_wins(v, best, minimum)) { best = v; pos = (int)((i - h0) * kw + (j - w0)); }
        }
    *y = best;
    *a = (uint8_t)pos;
}

/* Max (minimum = 0) or min pooling forward of one plane (H, W), any kh x kw
 * window with stride 2 and padding ph <= kh / 2, pw <= kw / 2 (kh * kw <= 256:
 * positions fit in uint8). Windows are visited in row-major order from the
 * window's top-left element, as in the generic loop. Windows inside the plane
 * go four at a time while the eight floats loaded from each of their rows stay
 * inside the row, else one at a time; windows cut by the padding are clipped. */
#if MINICNN_AVX2
/* Columns 0, 2, ..., 14 of the 16 floats at p. */
__attribute__((target("avx2"), always_inline))
static inline __m256 mc_even8(const float *p)
{
    __m256 t = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* Eight stride-2 windows (kh x kw, row stride W) whose first starts at base, all
 * inside the plane: the four-wide SSE2 loop of mc_extreme_s2_f32, eight at a time
 * (the same compares and selections, so the same bits). */
__attribute__((target("avx2")))
static void mc_extreme_s2_8_avx2(const float *base, ptrdiff_t W, int kh, int kw, int minimum,
                                 float *y, uint8_t *argmax)
{
    __m256 best = mc_even8(base);
    __m256i pos = _mm256_setzero_si256();
    for (int i = 0; i < kh; i++)
        for (int j = (i == 0); j < kw; j++) {
            __m256 v = mc_even8(base + i * W + j);
            __m256 c = minimum ? _mm256_cmp_ps(v, best, _CMP_LT_OQ) : _mm256_cmp_ps(v, best, _CMP_GT_OQ);
            c = _mm256_or_ps(c, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            best = _mm256_blendv_ps(best, v, c);
            pos = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(pos),
                                                       _mm256_castsi256_ps(_mm256_set1_epi32(i * kw + j)), c));
        }
    _mm256_storeu_ps(y, best);
    __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(pos), _mm256_extracti128_si256(pos, 1));
    _mm_storel_epi64((__m128i *)argmax, _mm_packus_epi16(p16, p16));
}
#endif

static inline void mc_extreme_s2_f32(const float *x, float *y, uint8_t *argmax,
                                     ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW,
                                     int kh, int kw, int ph, int pw, int minimum)
{
    /* output columns [ow_in, ow_out) have windows inside the row: 2 ow - pw >= 0, 2 ow - pw + kw <= W */
    ptrdiff_t ow_in = (pw + 1) / 2, ow_out = W - kw + pw >= 0 ? (W - kw + pw) / 2 + 1 : 0;
    if (ow_out > OW) ow_out = OW;
    if (ow_in > ow_out) ow_in = ow_out;
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        ptrdiff_t h0 = 2 * oh - ph;
        float *yr = y + oh * OW;
        uint8_t *ar = argmax + oh * OW;
        if (h0 < 0 || h0 + kh > H) {
            for (ptrdiff_t ow = 0; ow < OW; ow++)
                mc_extreme_clipped(x, yr + ow, ar + ow, H, W, h0, 2 * ow - pw, kh, kw, minimum);
            continue;
        }
        const float *row = x + h0 * W;   /* window ow starts at row + 2 ow - pw */
        ptrdiff_t ow = 0;
        for (; ow < ow_in; ow++)
            mc_extreme_clipped(x, yr + ow, ar + ow, H, W, h0, 2 * ow - pw, kh, kw, minimum);
#if MINICNN_AVX2
        if (mc_isa() >= MC_ISA_AVX2)
            for (; ow + 8 <= ow_out && 2 * ow - pw + kw + 15 <= W; ow += 8)
                mc_extreme_s2_8_avx2(row + 2 * ow - pw, W, kh, kw, minimum, yr + ow, ar + ow);
#endif
#if MINICNN_SSE2
        for (; ow + 4 <= ow_out && 2 * ow - pw + kw + 7 <= W; ow += 4) {
            const float *base = row + 2 * ow - pw;
            __m128 best = _mm_shuffle_ps(_mm_loadu_ps(base), _mm_loadu_ps(base + 4), _MM_SHUFFLE(2, 0, 2, 0));
            __m128i pos = _mm_setzero_si128();
            for (int i = 0; i < kh; i++) {
                for (int j = (i == 0); j < kw; j++) {
                    const float *r = base + i * W + j;
                    __m128 v = _mm_shuffle_ps(_mm_loadu_ps(r), _mm_loadu_ps(r + 4), _MM_SHUFFLE(2, 0, 2, 0));
                    __m128 c = minimum ? _mm_cmplt_ps(v, best) : _mm_cmpgt_ps(v, best);
                    c = _mm_or_ps(c, _mm_cmpunord_ps(v, v));
                    best = _mm_or_ps(_mm_and_ps(c, v), _mm_andnot_ps(c, best));
                    __m128i ci = _mm_castps_si128(c);
                    pos = _mm_or_si128(_mm_and_si128(ci, _mm_set1_epi32(i * kw + j)), _mm_andnot_si128(ci, pos));
                }
            }
            _mm_storeu_ps(yr + ow, best);
            pos = _mm_packs_epi32(pos, pos);
            pos = _mm_packus_epi16(pos, pos);
            int32_t packed = _mm_cvtsi128_si32(pos);
            memcpy(ar + ow, &packed, 4);
        }
#endif
        for (; ow < ow_out; ow++) {
            const float *base = row + 2 * ow - pw;
            float best = base[0];
            int pos = 0;
            for (int i = 0; i < kh; i++)
                for (int j = 0; j < kw; j++) {
                    float v = base[i * W + j];
                    if (mc_wins(v, best, minimum)) { best = v; pos = i * kw + j; }
                }
            yr[ow] = best;
            ar[ow] = (uint8_t)pos;
        }
        for (; ow < OW; ow++)
            mc_extreme_clipped(x, yr + ow, ar + ow, H, W, h0, 2 * ow - pw, kh, kw, minimum);
    }
}

/* Max/min pooling backward of one plane: every element of dx (H, W) is written
 * once: dy where the window chose it, 0 elsewhere (also the odd last row/column). */
static inline void mc_scatter_2x2_f32(const float *dy, const uint8_t *argmax, float *dx,
                                      ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        float *d0 = dx + 2 * oh * W, *d1 = d0 + W;
        const float *g = dy + oh * OW;
        const uint8_t *a = argmax + oh * OW;
        ptrdiff_t ow = 0;
#if MINICNN_SSE2
        if (OW >= 4) {
            const __m128i zero = _mm_setzero_si128();
            for (ow = 0; ow < OW; ow += 4) {
                ptrdiff_t o = ow + 4 <= OW ? ow : OW - 4;
                int32_t packed;
                memcpy(&packed, a + o, 4);
                __m128i ai = _mm_cvtsi32_si128(packed);
                ai = _mm_unpacklo_epi16(_mm_unpacklo_epi8(ai, zero), zero);
                __m128 gv = _mm_loadu_ps(g + o);
                __m128 v0 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ai, _mm_set1_epi32(0))), gv);
                __m128 v1 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ai, _mm_set1_epi32(1))), gv);
                __m128 v2 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ai, _mm_set1_epi32(2))), gv);
                __m128 v3 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ai, _mm_set1_epi32(3))), gv);
                _mm_storeu_ps(d0 + 2 * o, _mm_unpacklo_ps(v0, v1));
                _mm_storeu_ps(d0 + 2 * o + 4, _mm_unpackhi_ps(v0, v1));
                _mm_storeu_ps(d1 + 2 * o, _mm_unpacklo_ps(v2, v3));
                _mm_storeu_ps(d1 + 2 * o + 4, _mm_unpackhi_ps(v2, v3));
            }
            ow = OW;
        }
#endif
        for (; ow < OW; ow++) {
            d0[2 * ow] = a[ow] == 0 ? g[ow] : 0.0f;
            d0[2 * ow + 1] = a[ow] == 1 ? g[ow] : 0.0f;
            d1[2 * ow] = a[ow] == 2 ? g[ow] : 0.0f;
            d1[2 * ow + 1] = a[ow] == 3 ? g[ow] : 0.0f;
        }
        if (W % 2) {
            d0[W - 1] = 0.0f;
            d1[W - 1] = 0.0f;
        }
    }
    if (H % 2)
        memset(dx + (H - 1) * W, 0, (size_t)W * sizeof(float));
}

/* Average pooling forward of one plane: ((a + b) + (c + d)) * 0.25. */
static inline void mc_average_2x2_f32(const float *x, float *y, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + oh * OW;
        ptrdiff_t ow = 0;
#if MINICNN_SSE2
        if (OW >= 4) {
            const __m128 q = _mm_set1_ps(0.25f);
            for (ow = 0; ow < OW; ow += 4) {
                ptrdiff_t o = ow + 4 <= OW ? ow : OW - 4;
                __m128 lo0 = _mm_loadu_ps(r0 + 2 * o), hi0 = _mm_loadu_ps(r0 + 2 * o + 4);
                __m128 lo1 = _mm_loadu_ps(r1 + 2 * o), hi1 = _mm_loadu_ps(r1 + 2 * o + 4);
                __m128 top = _mm_add_ps(_mm_shuffle_ps(lo0, hi0, _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm_shuffle_ps(lo0, hi0, _MM_SHUFFLE(3, 1, 3, 1)));
                __m128 bot = _mm_add_ps(_mm_shuffle_ps(lo1, hi1, _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm_shuffle_ps(lo1, hi1, _MM_SHUFFLE(3, 1, 3, 1)));
                _mm_storeu_ps(yr + o, _mm_mul_ps(_mm_add_ps(top, bot), q));
            }
            ow = OW;
        }
#endif
        for (; ow < OW; ow++)
            yr[ow] = ((r0[2 * ow] + r0[2 * ow + 1]) + (r1[2 * ow] + r1[2 * ow + 1])) * 0.25f;
    }
}

/* Average pooling backward of one plane: dy / 4 to every element of its window. */
static inline void mc_spread_2x2_f32(const float *dy, float *dx,
                                     ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        float *d0 = dx + 2 * oh * W, *d1 = d0 + W;
        const float *g = dy + oh * OW;
        ptrdiff_t ow = 0;
#if MINICNN_SSE2
        if (OW >= 4) {
            const __m128 q = _mm_set1_ps(0.25f);
            for (ow = 0; ow < OW; ow += 4) {
                ptrdiff_t o = ow + 4 <= OW ? ow : OW - 4;
                __m128 v = _mm_mul_ps(_mm_loadu_ps(g + o), q);
                __m128 l = _mm_unpacklo_ps(v, v), h = _mm_unpackhi_ps(v, v);
                _mm_storeu_ps(d0 + 2 * o, l);
                _mm_storeu_ps(d0 + 2 * o + 4, h);
                _mm_storeu_ps(d1 + 2 * o, l);
                _mm_storeu_ps(d1 + 2 * o + 4, h);
            }
            ow = OW;
        }
#endif
        for (; ow < OW; ow++) {
            float v = g[ow] * 0.25f;
            d0[2 * ow] = v;
            d0[2 * ow + 1] = v;
            d1[2 * ow] = v;
            d1[2 * ow + 1] = v;
        }
        if (W % 2) {
            d0[W - 1] = 0.0f;
            d1[W - 1] = 0.0f;
        }
    }
    if (H % 2)
        memset(dx + (H - 1) * W, 0, (size_t)W * sizeof(float));
}

/* Global max of one plane of L >= 1 elements: value and first position (the
 * last NaN when there is one), the rule of the generic loop.  Pass 1 finds the
 * maximum with vector max and notes any NaN; pass 2 finds its first position. */
static inline void mc_global_max_f32(const float *x, ptrdiff_t L, float *y, int32_t *argmax)
{
    ptrdiff_t i = 0;
    float best;
    int nan = 0;
#if MINICNN_SSE2
    if (L >= 8) {
        __m128 m0 = _mm_loadu_ps(x), m1 = _mm_loadu_ps(x + 4);
        __m128 un = _mm_or_ps(_mm_cmpunord_ps(m0, m0), _mm_cmpunord_ps(m1, m1));
        for (i = 8; i + 8 <= L; i += 8) {
            __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
            un = _mm_or_ps(un, _mm_or_ps(_mm_cmpunord_ps(a, a), _mm_cmpunord_ps(b, b)));
            m0 = _mm_max_ps(m0, a);
            m1 = _mm_max_ps(m1, b);
        }
        float lanes[8];
        _mm_storeu_ps(lanes, m0);
        _mm_storeu_ps(lanes + 4, m1);
        nan = _mm_movemask_ps(un) != 0;
        best = lanes[0];
        for (int k = 1; k < 8; k++)
            best = lanes[k] > best ? lanes[k] : best;
    } else
#endif
    {
        best = x[0];
        nan = x[0] != x[0];
        i = 1;
    }
    for (; i < L; i++) {
        if (x[i] != x[i]) nan = 1;
        best = x[i] > best ? x[i] : best;
    }
    if (nan) {                      /* rare: the exact sequential rule */
        int32_t pos = 0;
        best = x[0];
        for (i = 1; i < L; i++)
            if (x[i] > best || x[i] != x[i]) { best = x[i]; pos = (int32_t)i; }
        *y = best;
        *argmax = pos;
        return;
    }
    i = 0;                          /* the first element equal to the maximum */
#if MINICNN_SSE2
    {
        const __m128 b = _mm_set1_ps(best);
        for (; i + 4 <= L; i += 4) {
            int m = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(x + i), b));
            if (m) {
                while (!(m & 1)) { m >>= 1; i++; }
                break;
            }
        }
    }
#endif
    for (; i < L; i++)
        if (x[i] == best) break;
    *y = x[i];                      /* x[i], not best: keeps the sign of a zero */
    *argmax = (int32_t)i;
}

/* Sum of one plane of L floats in double precision (for the global mean):
 * four float -> double conversions and two vector additions per four floats. */
static inline double mc_sum_f32(const float *x, ptrdiff_t L)
{
    ptrdiff_t i = 0;
    double total = 0.0;
#if MINICNN_SSE2
    __m128d a0 = _mm_setzero_pd(), a1 = _mm_setzero_pd();
    for (; i + 4 <= L; i += 4) {
        __m128 v = _mm_loadu_ps(x + i);
        a0 = _mm_add_pd(a0, _mm_cvtps_pd(v));
        a1 = _mm_add_pd(a1, _mm_cvtps_pd(_mm_movehl_ps(v, v)));
    }
    double lanes[2];
    _mm_storeu_pd(lanes, _mm_add_pd(a0, a1));
    total = lanes[0] + lanes[1];
#endif
    for (; i < L; i++)
        total += x[i];
    return total;
}

#endif /* MINICNN_POOL_SIMD_H */
