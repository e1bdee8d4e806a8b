/* Winograd F(2x2, 3x3) transforms for _conv.pyx, float and double.
 *
 * Every function works plane by plane (one image and channel) and arranges
 * the arithmetic as flat loops over the plane's P = TH * TW tiles, which the
 * compiler vectorizes: gathers and scatters between the image and per-tile
 * arrays are separate, simple copies.  The transformed arrays X (V, dV, M, dM)
 * hold element xi (0..15) of tile t = n * P + th * TW + tw of channel c at
 * X[xi * xs + c * T + t]: xs (the stride between the 16 matrices) is chosen by
 * the caller, T is the row length (tiles in the chunk).
 *
 * Formulas (minicnn/_conv.pyx gives the matrices): V = B^T d B,
 * y = A^T M A + bias, dM = A dY A^T, dx += B dV B^T.
 * TH = ceil(OH / 2), TW = ceil(OW / 2), OH = H + 2 ph - 2, OW = W + 2 pw - 2.
 * `scratch` must hold mc_wino_scratch(H, W, ph, pw) elements.
 */
#ifndef MINICNN_WINOGRAD_H
#define MINICNN_WINOGRAD_H

#include <stddef.h>
#include <string.h>


/* Elements of scratch any of the functions below needs for one plane. */
static ptrdiff_t mc_wino_scratch(ptrdiff_t H, ptrdiff_t W, int ph, int pw)
{
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2;
    ptrdiff_t P = TH * TW, PR = 2 * TH + 2, PWE = TW + 1, PC = 2 * TW + 2;
    ptrdiff_t in = 6 * (PR * PWE + 1), adj = 16 * P + PR * PC;
    return (in > adj ? in : adj) + 16;
}

#define MC_WINO_DEFINE(T_, SFX)                                                              \
/* e[j] = row[2j - pw], o[j] = row[2j + 1 - pw] for j < n, zero outside the row (W wide). */     \
static void mc_deinterleave_##SFX(const T_ *restrict row, ptrdiff_t W, int pw,                 \
                                  T_ *restrict e, T_ *restrict o, ptrdiff_t n)                  \
{                                                                                              \
    ptrdiff_t j = 0, lo = (pw + 1) / 2, hi = (W + pw - 1) / 2;  /* 0 <= 2j-pw, 2j+1-pw < W */  \
    if (hi > n) hi = n;                                                                        \
    for (; j < lo && j < n; j++) {                                                             \
        ptrdiff_t iw = 2 * j - pw;                                                             \
        e[j] = (iw >= 0 && iw < W) ? row[iw] : 0;                                              \
        o[j] = (iw + 1 >= 0 && iw + 1 < W) ? row[iw + 1] : 0;                                  \
    }                                                                                          \
    for (; j < hi; j++) {                                                                      \
        e[j] = row[2 * j - pw];                                                                \
        o[j] = row[2 * j + 1 - pw];                                                            \
    }                                                                                          \
    for (; j < n; j++) {                                                                       \
        ptrdiff_t iw = 2 * j - pw;                                                             \
        e[j] = (iw >= 0 && iw < W) ? row[iw] : 0;                                              \
        o[j] = (iw + 1 >= 0 && iw + 1 < W) ? row[iw + 1] : 0;                                  \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* x (N, C, H, W) -> X: V = B^T d B of every 4x4 patch. */                                     \
static void mc_wino_input_##SFX(const T_ *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,\
                                int ph, int pw, T_ *X, ptrdiff_t xs, ptrdiff_t T, T_ *scratch)  \
{                                                                                              \
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2, P = TH * TW;               \
    ptrdiff_t PR = 2 * TH + 2, PWE = TW + 1, L = PR * PWE, n, c, R, i, th, tw, k;              \
    T_ *restrict E = scratch, *restrict O = E + L + 1;                                          \
    T_ *restrict u = O + L + 1;  /* 4 arrays of L */                                            \
    for (n = 0; n < N; n++)                                                                    \
        for (c = 0; c < C; c++) {                                                              \
            const T_ *xp = x + (n * C + c) * H * W;                                            \
            T_ *out = X + c * T + n * P;                                                       \
            /* the zero-padded plane, even and odd columns apart */                            \
            for (R = 0; R < PR; R++) {                                                         \
                ptrdiff_t ih = R - ph;                                                         \
                T_ *restrict e = E + R * PWE, *restrict o = O + R * PWE;                       \
                if (ih < 0 || ih >= H) {                                                       \
                    memset(e, 0, PWE * sizeof(T_));                                            \
                    memset(o, 0, PWE * sizeof(T_));                                            \
                    continue;                                                                  \
                }                                                                              \
                mc_deinterleave_##SFX(xp + ih * W, W, pw, e, o, PWE);                         \
            }                                                                                  \
            E[L] = 0;                                                                          \
            O[L] = 0;                                                                          \
            /* (.) B along every padded row: columns 2tw..2tw+3 */                             \
            for (i = 0; i < L; i++) {                                                          \
                u[i] = E[i] - E[i + 1];                                                        \
                u[L + i] = O[i] + E[i + 1];                                                    \
                u[2 * L + i] = E[i + 1] - O[i];                                                \
                u[3 * L + i] = O[i] - O[i + 1];                                                \
            }                                                                                  \
            /* B^T (.) down the rows 2th..2th+3 */                                             \
            for (k = 0; k < 4; k++) {                                                          \
                const T_ *restrict uk = u + k * L;                                             \
                T_ *restrict v0 = out + k * xs, *restrict v1 = out + (4 + k) * xs;             \
                T_ *restrict v2 = out + (8 + k) * xs, *restrict v3 = out + (12 + k) * xs;      \
                for (th = 0; th < TH; th++) {                                                  \
                    const T_ *a = uk + 2 * th * PWE;                                           \
                    ptrdiff_t q = th * TW;                                                     \
                    for (tw = 0; tw < TW; tw++) {                                              \
                        T_ a0 = a[tw], a1 = a[PWE + tw], a2 = a[2 * PWE + tw], a3 = a[3 * PWE + tw];\
                        v0[q + tw] = a0 - a2;                                                  \
                        v1[q + tw] = a1 + a2;                                                  \
                        v2[q + tw] = a2 - a1;                                                  \
                        v3[q + tw] = a1 - a3;                                                  \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
}                                                                                              \
                                                                                               \
/* X (M) -> y (N, O, OH, OW) = A^T M A + bias. */                                              \
static void mc_wino_output_##SFX(const T_ *X, ptrdiff_t xs, ptrdiff_t T, const T_ *bias,       \
                                 T_ *y, ptrdiff_t N, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW,  \
                                 T_ *scratch)                                                  \
{                                                                                              \
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, P = TH * TW, n, o, q, th, tw;              \
    T_ *restrict Y = scratch;  /* 4 arrays of P: outputs (0,0), (0,1), (1,0), (1,1) of each tile */\
    for (n = 0; n < N; n++)                                                                    \
        for (o = 0; o < O; o++) {                                                              \
            const T_ *m = X + o * T + n * P;                                                   \
            T_ *yp = y + (n * O + o) * OH * OW, b = bias[o];                                   \
            for (q = 0; q < P; q++) {                                                          \
                T_ p0[4], p1[4];                                                               \
                int k;                                                                         \
                for (k = 0; k < 4; k++) {                                                      \
                    T_ m0 = m[k * xs + q], m1 = m[(4 + k) * xs + q];                           \
                    T_ m2 = m[(8 + k) * xs + q], m3 = m[(12 + k) * xs + q];                    \
                    p0[k] = m0 + m1 + m2;                                                      \
                    p1[k] = m1 - m2 - m3;                                                      \
                }                                                                              \
                Y[q] = p0[0] + p0[1] + p0[2] + b;                                              \
                Y[P + q] = p0[1] - p0[2] - p0[3] + b;                                          \
                Y[2 * P + q] = p1[0] + p1[1] + p1[2] + b;                                      \
                Y[3 * P + q] = p1[1] - p1[2] - p1[3] + b;                                      \
            }                                                                                  \
            for (th = 0; th < TH; th++) {                                                      \
                T_ *r0 = yp + 2 * th * OW, *r1 = r0 + OW;                                      \
                const T_ *y00 = Y + th * TW, *y01 = y00 + P, *y10 = y01 + P, *y11 = y10 + P;   \
                int two = 2 * th + 1 < OH;                                                     \
                for (tw = 0; tw < OW / 2; tw++) {                                              \
                    r0[2 * tw] = y00[tw];                                                      \
                    r0[2 * tw + 1] = y01[tw];                                                  \
                }                                                                              \
                if (OW % 2) r0[OW - 1] = y00[TW - 1];                                          \
                if (two) {                                                                     \
                    for (tw = 0; tw < OW / 2; tw++) {                                          \
                        r1[2 * tw] = y10[tw];                                                  \
                        r1[2 * tw + 1] = y11[tw];                                              \
                    }                                                                          \
                    if (OW % 2) r1[OW - 1] = y10[TW - 1];                                      \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
}                                                                                              \
                                                                                               \
/* dy (N, O, OH, OW) -> X (dM) = A dY A^T, dY zero where a tile hangs over. */                 \
static void mc_wino_output_adjoint_##SFX(const T_ *dy, ptrdiff_t N, ptrdiff_t O, ptrdiff_t OH, \
                                         ptrdiff_t OW, T_ *X, ptrdiff_t xs, ptrdiff_t T,        \
                                         T_ *scratch)                                          \
{                                                                                              \
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, P = TH * TW, n, o, q, th, tw;              \
    T_ *restrict g = scratch;  /* 4 arrays of P: dY (0,0), (0,1), (1,0), (1,1) of each tile */ \
    for (n = 0; n < N; n++)                                                                    \
        for (o = 0; o < O; o++) {                                                              \
            const T_ *yp = dy + (n * O + o) * OH * OW;                                         \
            T_ *m = X + o * T + n * P;                                                         \
            memset(g, 0, 4 * P * sizeof(T_));                                                  \
            for (th = 0; th < TH; th++) {                                                      \
                const T_ *r0 = yp + 2 * th * OW, *r1 = r0 + OW;                                \
                T_ *g00 = g + th * TW, *g01 = g00 + P, *g10 = g01 + P, *g11 = g10 + P;         \
                for (tw = 0; tw < OW / 2; tw++) {                                              \
                    g00[tw] = r0[2 * tw];                                                      \
                    g01[tw] = r0[2 * tw + 1];                                                  \
                }                                                                              \
                if (OW % 2) g00[TW - 1] = r0[OW - 1];                                          \
                if (2 * th + 1 < OH) {                                                         \
                    for (tw = 0; tw < OW / 2; tw++) {                                          \
                        g10[tw] = r1[2 * tw];                                                  \
                        g11[tw] = r1[2 * tw + 1];                                              \
                    }                                                                          \
                    if (OW % 2) g10[TW - 1] = r1[OW - 1];                                      \
                }                                                                              \
            }                                                                                  \
            for (q = 0; q < P; q++) {                                                          \
                T_ a = g[q], b = g[P + q], c = g[2 * P + q], d = g[3 * P + q];                 \
                /* A (.) down the columns: h[r][j] */                                          \
                T_ h00 = a, h01 = b, h10 = a + c, h11 = b + d, h20 = a - c, h21 = b - d;       \
                T_ h30 = -c, h31 = -d;                                                         \
                /* (.) A^T along the rows */                                                   \
                m[0 * xs + q] = h00; m[1 * xs + q] = h00 + h01;                                \
                m[2 * xs + q] = h00 - h01; m[3 * xs + q] = -h01;                               \
                m[4 * xs + q] = h10; m[5 * xs + q] = h10 + h11;                                \
                m[6 * xs + q] = h10 - h11; m[7 * xs + q] = -h11;                               \
                m[8 * xs + q] = h20; m[9 * xs + q] = h20 + h21;                                \
                m[10 * xs + q] = h20 - h21; m[11 * xs + q] = -h21;                             \
                m[12 * xs + q] = h30; m[13 * xs + q] = h30 + h31;                              \
                m[14 * xs + q] = h30 - h31; m[15 * xs + q] = -h31;                             \
            }                                                                                  \
        }                                                                                      \
}                                                                                              \
                                                                                               \
/* X (dV) -> dx (N, C, H, W) = sum over patches of B dV B^T (overwritten). */                  \
static void mc_wino_input_adjoint_##SFX(const T_ *X, ptrdiff_t xs, ptrdiff_t T, T_ *dx,        \
                                        ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,    \
                                        int ph, int pw, T_ *scratch)                           \
{                                                                                              \
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2, P = TH * TW;               \
    ptrdiff_t PC = 2 * TW + 2, n, c, q, th, tw, ih;                                            \
    T_ *restrict F = scratch, *restrict pad = F + 16 * P;  /* 16 arrays of P; (2TH+2, PC) */   \
    int r, s;                                                                                  \
    for (n = 0; n < N; n++)                                                                    \
        for (c = 0; c < C; c++) {                                                              \
            const T_ *v = X + c * T + n * P;                                                   \
            for (q = 0; q < P; q++) {                                                          \
                T_ e[16], t0, t1, t2, t3;                                                      \
                for (r = 0; r < 4; r++) { /* (.) B^T along the rows: B v */                    \
                    t0 = v[(4 * r) * xs + q]; t1 = v[(4 * r + 1) * xs + q];                    \
                    t2 = v[(4 * r + 2) * xs + q]; t3 = v[(4 * r + 3) * xs + q];                \
                    e[4 * r] = t0; e[4 * r + 1] = t1 - t2 + t3;                                \
                    e[4 * r + 2] = -t0 + t1 + t2; e[4 * r + 3] = -t3;                          \
                }                                                                              \
                for (s = 0; s < 4; s++) { /* B (.) down the columns */                         \
                    t0 = e[s]; t1 = e[4 + s]; t2 = e[8 + s]; t3 = e[12 + s];                   \
                    F[s * P + q] = t0;                                                         \
                    F[(4 + s) * P + q] = t1 - t2 + t3;                                         \
                    F[(8 + s) * P + q] = -t0 + t1 + t2;                                        \
                    F[(12 + s) * P + q] = -t3;                                                 \
                }                                                                              \
            }                                                                                  \
            memset(pad, 0, (2 * TH + 2) * PC * sizeof(T_));                                    \
            for (r = 0; r < 4; r++)                                                            \
                for (s = 0; s < 4; s++) {                                                      \
                    const T_ *f = F + (4 * r + s) * P;                                         \
                    for (th = 0; th < TH; th++) {                                              \
                        T_ *row = pad + (2 * th + r) * PC + s;                                 \
                        for (tw = 0; tw < TW; tw++)                                            \
                            row[2 * tw] += f[th * TW + tw];                                    \
                    }                                                                          \
                }                                                                              \
            for (ih = 0; ih < H; ih++)                                                         \
                memcpy(dx + ((n * C + c) * H + ih) * W, pad + (ih + ph) * PC + pw, W * sizeof(T_));\
        }                                                                                      \
}

MC_WINO_DEFINE(float, f32)
MC_WINO_DEFINE(double, f64)

#endif
