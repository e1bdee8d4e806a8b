/* Max/min pooling forward with stride 2 in AVX-512 registers, float32, for
 * planes whose rows fit in 32 floats with their left padding and at most 16
 * outputs a row (max_pool_overlap's 3x3/2 windows with padding 1 on 28x28
 * and 14x14 planes).  One output row at a time, all its windows at once: a
 * padded input row is two masked loads, and kernel column j of every window
 * is one permute of them (lane ow takes padded column 2 ow + j).
 *
 * Same result as the generic loop, bit for bit: each window is scanned in
 * row-major order over its elements inside the plane, starting from the
 * first; an element replaces the best so far when it is greater (less, for
 * min) or NaN; the position is counted from the unclipped window's top-left.
 *
 * mc_extreme_s2_avx512 (P planes at once) returns 0, doing nothing, below the AVX-512 level (mc_isa(), _isa.h)
 * or the geometry is outside that case; the caller then runs the SSE2 loops. */
#ifndef MINICNN_POOL_AVX512_H
#define MINICNN_POOL_AVX512_H

#include <stddef.h>
#include "_isa.h"
#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define MC_POOL_MAX_KW 8

/* Output row oh of nq planes side by side (x, y, argmax at plane 0; plane
 * strides H * W and OH * OW): each plane's scan is a chain of dependent
 * compares, so several planes at once keep the core busy while one waits. */
__attribute__((target("avx512f"), always_inline))
static inline void mc_extreme_s2_row(const float *x, float *y, uint8_t *argmax, const int nq,
                                     ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t oh,
                                     int kh, int kw, int ph, int pw, int minimum, __mmask16 lo, __mmask16 hi,
                                     __mmask16 outs, const __m512i *column, const __mmask16 *inside)
{
    __m512 best[4], a[4], b[4];
    __m512i pos[4];
    __mmask16 started[4];
    int i, j, q;
    for (q = 0; q < nq; q++) {
        best[q] = _mm512_setzero_ps();
        pos[q] = _mm512_setzero_si512();
        started[q] = 0;
    }
    for (i = 0; i < kh; i++) {
        ptrdiff_t r = 2 * oh - ph + i;
        if (r < 0 || r >= H)
            continue;
        for (q = 0; q < nq; q++) {      /* masked lanes are not read: no fault before the row */
            const float *row = x + q * H * W + r * W - pw;
            a[q] = _mm512_maskz_loadu_ps(lo, row);
            b[q] = _mm512_maskz_loadu_ps(hi, row + 16);
        }
        for (j = 0; j < kw; j++)
            for (q = 0; q < nq; q++) {
                __m512 v = _mm512_permutex2var_ps(a[q], column[j], b[q]);
                __mmask16 better = minimum ? _mm512_cmp_ps_mask(v, best[q], _CMP_LT_OQ)
                                           : _mm512_cmp_ps_mask(v, best[q], _CMP_GT_OQ);
                __mmask16 win = inside[j] & (~started[q] | better | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
                best[q] = _mm512_mask_mov_ps(best[q], win, v);
                pos[q] = _mm512_mask_mov_epi32(pos[q], win, _mm512_set1_epi32(i * kw + j));
                started[q] |= inside[j];
            }
    }
    for (q = 0; q < nq; q++) {
        _mm512_mask_storeu_ps(y + q * OH * OW + oh * OW, outs, best[q]);
        _mm512_mask_cvtepi32_storeu_epi8(argmax + q * OH * OW + oh * OW, outs, pos[q]);
    }
}

/* P planes x (P, H, W) -> y, argmax (P, OH, OW), four planes at a time. */
__attribute__((target("avx512f")))
static void mc_extreme_s2_avx512_run(const float *x, float *y, uint8_t *argmax, ptrdiff_t P,
                                     ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW,
                                     int kh, int kw, int ph, int pw, int minimum)
{
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    unsigned long long in_cols = ((1ull << W) - 1) << pw;     /* padded lanes that hold the row */
    __mmask16 lo = (__mmask16)(in_cols & 0xffff), hi = (__mmask16)(in_cols >> 16);
    __mmask16 outs = (__mmask16)((1u << OW) - 1);
    __m512i column[MC_POOL_MAX_KW];     /* lane ow of kernel column j: padded column 2 ow + j */
    __mmask16 inside[MC_POOL_MAX_KW];   /* windows whose column j is in the plane */
    ptrdiff_t p, oh;
    int j;
    for (j = 0; j < kw; j++) {
        __m512i c = _mm512_add_epi32(_mm512_slli_epi32(lane, 1), _mm512_set1_epi32(j));
        column[j] = c;
        inside[j] = outs & _mm512_cmpge_epi32_mask(c, _mm512_set1_epi32(pw))
                         & _mm512_cmplt_epi32_mask(c, _mm512_set1_epi32(pw + (int)W));
    }
    for (p = 0; p + 4 <= P; p += 4)
        for (oh = 0; oh < OH; oh++)
            mc_extreme_s2_row(x + p * H * W, y + p * OH * OW, argmax + p * OH * OW, 4, H, W, OH, OW, oh,
                              kh, kw, ph, pw, minimum, lo, hi, outs, column, inside);
    for (; p < P; p++)
        for (oh = 0; oh < OH; oh++)
            mc_extreme_s2_row(x + p * H * W, y + p * OH * OW, argmax + p * OH * OW, 1, H, W, OH, OW, oh,
                              kh, kw, ph, pw, minimum, lo, hi, outs, column, inside);
}

/* Whether the geometry is one these loops handle, at the AVX-512 level. */
static int mc_extreme_s2_avx512_fits(ptrdiff_t W, ptrdiff_t OW, int kw, int pw)
{
    return mc_isa() >= MC_ISA_AVX512 && W >= 1 && W + pw <= 32 && OW >= 1 && OW <= 16
        && kw >= 1 && kw <= MC_POOL_MAX_KW && 2 * (OW - 1) + kw <= 32;
}

static int mc_extreme_s2_avx512(const float *x, float *y, uint8_t *argmax, ptrdiff_t P,
                                ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW,
                                int kh, int kw, int ph, int pw, int minimum)
{
    if (!mc_extreme_s2_avx512_fits(W, OW, kw, pw))
        return 0;
    mc_extreme_s2_avx512_run(x, y, argmax, P, H, W, OH, OW, kh, kw, ph, pw, minimum);
    return 1;
}

#else
static int mc_extreme_s2_avx512(const float *x, float *y, uint8_t *argmax, ptrdiff_t P,
                                ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW,
                                int kh, int kw, int ph, int pw, int minimum)
{
    (void)x; (void)y; (void)argmax; (void)P; (void)H; (void)W; (void)OH; (void)OW; (void)kh; (void)kw;
    (void)ph; (void)pw; (void)minimum;
    return 0;
}
#endif

#endif
