/* Conv2D's backward without columns: on a channels-last copy of the input,
 * row p of the transposed columns colsT (N*P x K') - one output position's
 * window - is kh runs of kw * C floats, found through a table of offsets.
 * The weight gradient dW' = dy (O x N*P) @ colsT reads them in place
 * (mc_sgemm_tab in _gemm.h), and the input gradient dy^T @ W' is added
 * straight onto the same runs of a channels-last gradient (mc_sgemm_ctab),
 * then turned back to channels first.
 *
 * Why: im2col writes the columns (2.25x the input for a 3x3 stride-2 kernel,
 * 9x for stride 1), the weight gradient's product then transposes them, and
 * col2im reads its own columns back; here the only extra passes are the two
 * layout changes, on arrays the size of the input.
 *
 * K' runs in (i, j, c) order (kernel row, column, channel) instead of
 * Conv2D's (c, i, j).  At the AVX-512 level the products run on the 8 x 32
 * kernel (kw * C a multiple of 32), at the AVX2 level on the 6 x 16 one (of 16). */
#ifndef MINICNN_CHANNELS_LAST_H
#define MINICNN_CHANNELS_LAST_H

#include <stddef.h>
#include <string.h>
#include "_gemm.h"

/* Whether mc_channels_last and mc_sgemm_tab run here for C channels and kernel width kw. */
static int mc_channels_last_fits(ptrdiff_t C, int kw)
{
#if MC_X86
    return C % 8 == 0 && mc_sgemm_tab_fits(kw * C) && mc_isa() >= MC_ISA_AVX2;
#else
    (void)C; (void)kw;
    return 0;
#endif
}

/* xt (N, HP, WP, C) <- x (N, C, H, W) with ph zero rows above and pw zero columns
 * left; padded rows / columns past the input are zero, input past HP / WP is
 * left out.  Returns 0, doing nothing, unless mc_channels_last_fits. */
static int mc_channels_last(const float *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                            ptrdiff_t HP, ptrdiff_t WP, int ph, int pw, float *xt)
{
#if MC_X86
    ptrdiff_t n, r, lo = pw < WP ? pw : WP, wn = W < WP - lo ? W : WP - lo;
    if (C % 8 || mc_isa() < MC_ISA_AVX2)
        return 0;
    for (n = 0; n < N; n++)
        for (r = 0; r < HP; r++) {
            float *row = xt + (n * HP + r) * WP * C;
            ptrdiff_t h = r - ph;
            if (h < 0 || h >= H) {
                memset(row, 0, (size_t)(WP * C) * sizeof(float));
                continue;
            }
            memset(row, 0, (size_t)(lo * C) * sizeof(float));
            mc_transpose8_avx(x + (n * C * H + h) * W, H * W, C, wn < 8 ? wn : wn - wn % 8, (int)C, row + lo * C);
            if (wn > 8 && wn % 8)   /* the last columns: one more 8-wide block, overlapping the one before */
                mc_transpose8_avx(x + (n * C * H + h) * W + wn - 8, H * W, C, 8, (int)C, row + (lo + wn - 8) * C);
            memset(row + (lo + wn) * C, 0, (size_t)((WP - lo - wn) * C) * sizeof(float));
        }
    return 1;
#else
    (void)x; (void)N; (void)C; (void)H; (void)W; (void)HP; (void)WP; (void)ph; (void)pw; (void)xt;
    return 0;
#endif
}

/* x (N, C, H, W) <- xt (N, HP, WP, C), the inverse of mc_channels_last: the
 * padding dropped, input rows and columns past HP / WP set to zero.  Returns
 * 0, doing nothing, unless mc_channels_last_fits. */
static int mc_channels_first(const float *xt, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                             ptrdiff_t HP, ptrdiff_t WP, int ph, int pw, float *x)
{
#if MC_X86
    ptrdiff_t n, h, w, c, lo = pw < WP ? pw : WP, wn = W < WP - lo ? W : WP - lo, w8 = wn - wn % 8;
    if (C % 8 || mc_isa() < MC_ISA_AVX2)
        return 0;
    for (n = 0; n < N; n++)
        for (h = 0; h < H; h++) {
            float *out = x + n * C * H * W + h * W;     /* channel c's row h at out + c * H * W */
            const float *row = xt + ((n * HP + h + ph) * WP + lo) * C;
            if (h + ph >= HP) {
                for (c = 0; c < C; c++)
                    memset(out + c * H * W, 0, (size_t)W * sizeof(float));
                continue;
            }
            /* out[c * H * W + w] = row[w * C + c], in 8 x 8 blocks; the last wn % 8
             * columns by one more block overlapping the one before (one by one if wn < 8) */
            mc_transpose8_avx(row, C, w8, C, (int)(H * W), out);
            if (w8 < wn && wn >= 8)
                mc_transpose8_avx(row + (wn - 8) * C, C, 8, C, (int)(H * W), out + wn - 8);
            for (c = 0; c < C; c++) {
                for (w = wn >= 8 ? wn : w8; w < wn; w++)
                    out[c * H * W + w] = row[w * C + c];
                for (; w < W; w++)
                    out[c * H * W + w] = 0.0f;
            }
        }
    return 1;
#else
    (void)xt; (void)N; (void)C; (void)H; (void)W; (void)HP; (void)WP; (void)ph; (void)pw; (void)x;
    return 0;
#endif
}

/* tab[p * kh + i] = the offset in xt (N, HP, WP, C) of kernel row i's run for
 * output position p = (n * OH + oh) * OW + ow: ((n * HP + oh * sh + i) * WP + ow * sw) * C. */
static void mc_row_table(ptrdiff_t N, ptrdiff_t C, ptrdiff_t HP, ptrdiff_t WP, ptrdiff_t OH, ptrdiff_t OW,
                         int kh, int sh, int sw, ptrdiff_t *tab)
{
    ptrdiff_t n, oh, ow;
    int i;
    for (n = 0; n < N; n++)
        for (oh = 0; oh < OH; oh++)
            for (ow = 0; ow < OW; ow++)
                for (i = 0; i < kh; i++)
                    *tab++ = ((n * HP + oh * sh + i) * WP + ow * sw) * C;
}

#endif
