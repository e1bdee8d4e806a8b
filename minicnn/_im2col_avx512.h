/* im2col and col2im in AVX-512 registers, float32, stride 1 or 2 along rows,
 * for planes whose zero-padded rows fit in 32 floats (every strided or
 * first-layer convolution of configs/: 28 and 14 columns with padding 1).
 *
 * A padded input row is two masked loads; the OW outputs of kernel column j
 * are then one permute (lane L takes padded column sw * L + j) and one masked
 * store, instead of a phase split and a copy per output row.  col2im runs the
 * same permutes backwards and adds, per padded pixel, in the portable loops'
 * order (kernel row i, then column j, onto 0), so it gives their values.
 *
 * Both return 0, doing nothing, below the AVX-512 level (mc_isa(), _isa.h) or the geometry
 * is outside that case; the caller then runs the portable loops.  Layout as
 * in _im2col.pyx: cols[(c * kh + i) * kw + j][(n * OH + oh) * OW + ow]. */
#ifndef MINICNN_IM2COL_AVX512_H
#define MINICNN_IM2COL_AVX512_H

#include <stddef.h>
#include "_isa.h"
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define MC_IM2COL_MAX_KW 8

/* Whether the geometry is one these loops handle, at the AVX-512 level. */
static int mc_im2col_avx512_fits(ptrdiff_t W, int kw, int sw, int pw, ptrdiff_t OW)
{
    return mc_isa() >= MC_ISA_AVX512 && (sw == 1 || sw == 2) && W + pw <= 32
        && (OW - 1) * sw + kw <= 32 && OW >= 1 && OW <= 16 && kw <= MC_IM2COL_MAX_KW;
}

/* lanes j, j + sw, ..., of the padded row: index vector for kernel column j */
__attribute__((target("avx512f")))
static inline __m512i mc_im2col_lanes(int sw, int j)
{
    return _mm512_add_epi32(_mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(sw)), _mm512_set1_epi32(j));
}

__attribute__((target("avx512f")))
static void mc_im2col_avx512_run(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                 int kh, int kw, int sh, int sw, int ph, int pw,
                                 ptrdiff_t OH, ptrdiff_t OW, float *cols, ptrdiff_t ldc)
{
    ptrdiff_t n, c, oh;
    int i, j;
    unsigned long long in_cols = ((W >= 32 ? ~0ull : (1ull << W) - 1) << pw) & 0xffffffffull;
    __mmask16 lo = (__mmask16)(in_cols & 0xffff), hi = (__mmask16)(in_cols >> 16);
    __mmask16 outs = (__mmask16)((1u << OW) - 1);
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const float *xp = x + (n * C + c) * H * W;
            for (i = 0; i < kh; i++)
                for (j = 0; j < kw; j++) {   /* one row of cols, written front to back */
                    __m512i lanes = mc_im2col_lanes(sw, j);
                    float *dst = cols + (ptrdiff_t)((c * kh + i) * kw + j) * ldc + n * OH * OW;
                    for (oh = 0; oh < OH; oh++) {
                        ptrdiff_t ih = oh * sh + i - ph;
                        __m512 a = _mm512_setzero_ps(), b = a;
                        if (ih >= 0 && ih < H) {    /* masked lanes are not read: no fault before the row */
                            a = _mm512_maskz_loadu_ps(lo, xp + ih * W - pw);
                            b = _mm512_maskz_loadu_ps(hi, xp + ih * W - pw + 16);
                        }
                        _mm512_mask_storeu_ps(dst + oh * OW, outs, _mm512_permutex2var_ps(a, lanes, b));
                    }
                }
        }
}

__attribute__((target("avx512f")))
static void mc_col2im_avx512_run(const float *cols, ptrdiff_t ldc, float *dx, ptrdiff_t N, ptrdiff_t C,
                                 ptrdiff_t H, ptrdiff_t W, int kh, int kw, int sh, int sw, int ph, int pw,
                                 ptrdiff_t OH, ptrdiff_t OW)
{
    ptrdiff_t n, c, R;
    int i, j, q;
    __mmask16 outs = (__mmask16)((1u << OW) - 1);
    /* the input row is padded lanes pw .. pw + W - 1 of (acc_lo, acc_hi): shifted
     * down by pw with permutes and stored under masks (W + pw <= 32) */
    __m512i shift_lo = _mm512_add_epi32(mc_im2col_lanes(1, 0), _mm512_set1_epi32(pw));
    __m512i shift_hi = _mm512_add_epi32(shift_lo, _mm512_set1_epi32(16));
    __mmask16 keep_lo = (__mmask16)(W >= 16 ? 0xffffu : (1u << W) - 1u);
    __mmask16 keep_hi = (__mmask16)(W > 16 ? (1u << (W - 16)) - 1u : 0u);
    __m512i inv_lo[MC_IM2COL_MAX_KW], inv_hi[MC_IM2COL_MAX_KW];
    for (j = 0; j < kw; j++) {   /* padded column q takes lane (q - j) / sw when that is a whole lane < OW */
        int inv[32];
        for (q = 0; q < 32; q++) {
            int t = q - j;
            inv[q] = (t >= 0 && t % sw == 0 && t / sw < OW) ? t / sw : 16;   /* 16: a zero lane */
        }
        inv_lo[j] = _mm512_loadu_si512(inv);
        inv_hi[j] = _mm512_loadu_si512(inv + 16);
    }
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            float *out = dx + (n * C + c) * H * W;
            for (R = ph; R < ph + H; R++) {    /* padded rows that are input rows */
                __m512 acc_lo = _mm512_setzero_ps(), acc_hi = acc_lo;
                for (i = 0; i < kh; i++) {
                    ptrdiff_t oh;
                    if ((R - i) < 0 || (R - i) % sh)
                        continue;
                    oh = (R - i) / sh;
                    if (oh >= OH)
                        continue;
                    for (j = 0; j < kw; j++) {
                        const float *src = cols + (ptrdiff_t)((c * kh + i) * kw + j) * ldc + (n * OH + oh) * OW;
                        __m512 d = _mm512_maskz_loadu_ps(outs, src);
                        acc_lo = _mm512_add_ps(acc_lo, _mm512_permutex2var_ps(d, inv_lo[j], _mm512_setzero_ps()));
                        acc_hi = _mm512_add_ps(acc_hi, _mm512_permutex2var_ps(d, inv_hi[j], _mm512_setzero_ps()));
                    }
                }
                _mm512_mask_storeu_ps(out + (R - ph) * W, keep_lo, _mm512_permutex2var_ps(acc_lo, shift_lo, acc_hi));
                if (keep_hi)
                    _mm512_mask_storeu_ps(out + (R - ph) * W + 16, keep_hi,
                                          _mm512_permutex2var_ps(acc_lo, shift_hi, acc_hi));
            }
        }
}

static int mc_im2col_avx512(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                            int kh, int kw, int sh, int sw, int ph, int pw, float *cols, ptrdiff_t ldc)
{
    ptrdiff_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
    if (!mc_im2col_avx512_fits(W, kw, sw, pw, OW) || OH < 1)
        return 0;
    mc_im2col_avx512_run(x, N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW, cols, ldc);
    return 1;
}

static int mc_col2im_avx512(const float *cols, ptrdiff_t ldc, float *dx, ptrdiff_t N, ptrdiff_t C,
                            ptrdiff_t H, ptrdiff_t W, int kh, int kw, int sh, int sw, int ph, int pw)
{
    ptrdiff_t OH = (H + 2 * ph - kh) / sh + 1, OW = (W + 2 * pw - kw) / sw + 1;
    if (!mc_im2col_avx512_fits(W, kw, sw, pw, OW) || OH < 1)
        return 0;
    mc_col2im_avx512_run(cols, ldc, dx, N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW);
    return 1;
}

#else
static int mc_im2col_avx512(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                            int kh, int kw, int sh, int sw, int ph, int pw, float *cols, ptrdiff_t ldc)
{
    return 0;
}
static int mc_col2im_avx512(const float *cols, ptrdiff_t ldc, float *dx, ptrdiff_t N, ptrdiff_t C,
                            ptrdiff_t H, ptrdiff_t W, int kh, int kw, int sh, int sw, int ph, int pw)
{
    return 0;
}
#endif

#endif
