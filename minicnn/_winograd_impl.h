/* Winograd F(2x2, 3x3) transforms for one element type: included by
 * _winograd.h once for float and once for double, with MC_T the type and
 * MC_NAME(f) the function's name for it.  See _winograd.h for the layouts.
 * The loops over tiles use one restrict pointer per transformed matrix, so
 * that the compiler can vectorize them. */

/* e[j] = row[2j - pw], o[j] = row[2j + 1 - pw] for j < n, zero outside the row (W wide). */
static void MC_NAME(mc_deinterleave)(const MC_T *restrict row, ptrdiff_t W, int pw,
                                  MC_T *restrict e, MC_T *restrict o, ptrdiff_t n)
{
    ptrdiff_t j = 0, lo = (pw + 1) / 2, hi = (W + pw - 1) / 2;  /* 0 <= 2j-pw, 2j+1-pw < W */
    if (hi > n) hi = n;
    for (; j < lo && j < n; j++) {
        ptrdiff_t iw = 2 * j - pw;
        e[j] = (iw >= 0 && iw < W) ? row[iw] : 0;
        o[j] = (iw + 1 >= 0 && iw + 1 < W) ? row[iw + 1] : 0;
    }
    for (; j < hi; j++) {
        e[j] = row[2 * j - pw];
        o[j] = row[2 * j + 1 - pw];
    }
    for (; j < n; j++) {
        ptrdiff_t iw = 2 * j - pw;
        e[j] = (iw >= 0 && iw < W) ? row[iw] : 0;
        o[j] = (iw + 1 >= 0 && iw + 1 < W) ? row[iw + 1] : 0;
    }
}

/* x (N, C, H, W) -> X: V = B^T d B of every 4x4 patch. */
MC_VECTOR_BODY
static void MC_NAME(mc_wino_input_any)(const MC_T *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                int ph, int pw, MC_T *X, ptrdiff_t xs, ptrdiff_t T, MC_T *scratch)
{
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2, P = TH * TW;
    ptrdiff_t PR = 2 * TH + 2, PWE = TW + 1, L = PR * PWE, n, c, R, i, th, tw, k;
    MC_T *restrict E = scratch, *restrict O = E + L + 1;
    MC_T *restrict u = O + L + 1;  /* 4 arrays of L */
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const MC_T *xp = x + (n * C + c) * H * W;
            MC_T *out = X + c * T + n * P;
            /* the zero-padded plane, even and odd columns apart */
            for (R = 0; R < PR; R++) {
                ptrdiff_t ih = R - ph;
                MC_T *restrict e = E + R * PWE, *restrict o = O + R * PWE;
                if (ih < 0 || ih >= H) {
                    memset(e, 0, PWE * sizeof(MC_T));
                    memset(o, 0, PWE * sizeof(MC_T));
                    continue;
                }
                MC_NAME(mc_deinterleave)(xp + ih * W, W, pw, e, o, PWE);
            }
            E[L] = 0;
            O[L] = 0;
            /* (.) B along every padded row: columns 2tw..2tw+3 */
            for (i = 0; i < L; i++) {
                u[i] = E[i] - E[i + 1];
                u[L + i] = O[i] + E[i + 1];
                u[2 * L + i] = E[i + 1] - O[i];
                u[3 * L + i] = O[i] - O[i + 1];
            }
            /* B^T (.) down the rows 2th..2th+3 */
            for (k = 0; k < 4; k++) {
                const MC_T *restrict uk = u + k * L;
                MC_T *restrict v0 = out + k * xs, *restrict v1 = out + (4 + k) * xs;
                MC_T *restrict v2 = out + (8 + k) * xs, *restrict v3 = out + (12 + k) * xs;
                for (th = 0; th < TH; th++) {
                    const MC_T *a = uk + 2 * th * PWE;
                    ptrdiff_t q = th * TW;
                    for (tw = 0; tw < TW; tw++) {
                        MC_T a0 = a[tw], a1 = a[PWE + tw], a2 = a[2 * PWE + tw], a3 = a[3 * PWE + tw];
                        v0[q + tw] = a0 - a2;
                        v1[q + tw] = a1 + a2;
                        v2[q + tw] = a2 - a1;
                        v3[q + tw] = a1 - a3;
                    }
                }
            }
        }
}

/* X (M) -> y (N, O, OH, OW) = A^T M A + bias, then max(y, 0) if relu (NaN kept,
 * as minicnn/_activations.pyx's relu_forward). */
static void MC_NAME(mc_wino_output)(const MC_T *X, ptrdiff_t xs, ptrdiff_t T, const MC_T *bias,
                                 MC_T *y, ptrdiff_t N, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW,
                                 int relu, MC_T *scratch)
{
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, P = TH * TW, n, o, q, th, tw;
    MC_T *Y = scratch;  /* 4 arrays of P: outputs (0,0), (0,1), (1,0), (1,1) of each tile */
    for (n = 0; n < N; n++)
        for (o = 0; o < O; o++) {
            const MC_T *m = X + o * T + n * P;
            MC_T *yp = y + (n * O + o) * OH * OW, b = bias[o];
            MC_DECLARE16(const MC_T, mm, m, xs)
            MC_T *restrict y00 = Y, *restrict y01 = Y + P, *restrict y10 = Y + 2 * P, *restrict y11 = Y + 3 * P;
            for (q = 0; q < P; q++) {   /* M A along the rows, A^T (.) down the columns, + b */
                MC_T p00 = mm0[q] + mm4[q] + mm8[q], p01 = mm1[q] + mm5[q] + mm9[q];
                MC_T p02 = mm2[q] + mm6[q] + mm10[q], p03 = mm3[q] + mm7[q] + mm11[q];
                MC_T p10 = mm4[q] - mm8[q] - mm12[q], p11 = mm5[q] - mm9[q] - mm13[q];
                MC_T p12 = mm6[q] - mm10[q] - mm14[q], p13 = mm7[q] - mm11[q] - mm15[q];
                y00[q] = p00 + p01 + p02 + b;
                y01[q] = p01 - p02 - p03 + b;
                y10[q] = p10 + p11 + p12 + b;
                y11[q] = p11 - p12 - p13 + b;
            }
            if (relu)
                for (q = 0; q < 4 * P; q++) {
                    MC_T v = Y[q];
                    Y[q] = (v > 0 || v != v) ? v : 0;
                }
            for (th = 0; th < TH; th++) {
                MC_T *r0 = yp + 2 * th * OW, *r1 = r0 + OW;
                const MC_T *a00 = y00 + th * TW, *a01 = y01 + th * TW;
                const MC_T *a10 = y10 + th * TW, *a11 = y11 + th * TW;
                for (tw = 0; tw < OW / 2; tw++) {
                    r0[2 * tw] = a00[tw];
                    r0[2 * tw + 1] = a01[tw];
                }
                if (OW % 2) r0[OW - 1] = a00[TW - 1];
                if (2 * th + 1 < OH) {
                    for (tw = 0; tw < OW / 2; tw++) {
                        r1[2 * tw] = a10[tw];
                        r1[2 * tw + 1] = a11[tw];
                    }
                    if (OW % 2) r1[OW - 1] = a10[TW - 1];
                }
            }
        }
}

/* out = d * (r > 0), as relu_backward in _activations.pyx (0 * NaN is NaN).
 * The 0/1 factor goes through a local so that gcc turns the condition into a
 * vector compare and the loop vectorizes: written inline, it became a branch
 * per element, which mispredicts half the time on random signs (3x slower). */
static void MC_NAME(mc_relu_mask)(const MC_T *restrict d, const MC_T *restrict r, MC_T *restrict out,
                                  ptrdiff_t n)
{
    ptrdiff_t i;
    for (i = 0; i < n; i++) {
        MC_T keep = r[i] > 0 ? (MC_T)1 : (MC_T)0;
        out[i] = d[i] * keep;
    }
}

/* dy (N, O, OH, OW) -> X (dM) = A dY A^T, dY zero where a tile hangs over;
 * db[o] += the sum of dY over the plane (in double).  With yr (the forward's
 * rectified output, same shape as dy; NULL for none), dY = dy * (yr > 0):
 * the gradient through that ReLU, as relu_backward in _activations.pyx. */
MC_VECTOR_BODY
static void MC_NAME(mc_wino_output_adjoint_any)(const MC_T *dy, const MC_T *yr, ptrdiff_t N, ptrdiff_t O,
                                         ptrdiff_t OH, ptrdiff_t OW, MC_T *X, ptrdiff_t xs, ptrdiff_t T,
                                         double *db, MC_T *scratch)
{
    ptrdiff_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, P = TH * TW, n, o, q, i, th, tw;
    MC_T *restrict g = scratch;  /* 4 arrays of P: dY (0,0), (0,1), (1,0), (1,1) of each tile */
    MC_T *restrict masked = g + 4 * P;  /* yr given: the plane of dY */
    for (n = 0; n < N; n++)
        for (o = 0; o < O; o++) {
            const MC_T *yp = dy + (n * O + o) * OH * OW;
            MC_T *m = X + o * T + n * P;
            double sum = 0;
            if (yr != NULL) {
                MC_NAME(mc_relu_mask)(yp, yr + (n * O + o) * OH * OW, masked, OH * OW);
                yp = masked;
            }
            {   /* 8 running sums, so that the adds pipeline (and vectorize) */
                double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                int j;
                for (i = 0; i + 8 <= OH * OW; i += 8)
                    for (j = 0; j < 8; j++)
                        part[j] += yp[i + j];
                for (; i < OH * OW; i++)
                    sum += yp[i];
                for (j = 0; j < 8; j++)
                    sum += part[j];
            }
            db[o] += sum;
            memset(g, 0, 4 * P * sizeof(MC_T));
            for (th = 0; th < TH; th++) {
                const MC_T *r0 = yp + 2 * th * OW, *r1 = r0 + OW;
                MC_T *g00 = g + th * TW, *g01 = g00 + P, *g10 = g01 + P, *g11 = g10 + P;
                for (tw = 0; tw < OW / 2; tw++) {
                    g00[tw] = r0[2 * tw];
                    g01[tw] = r0[2 * tw + 1];
                }
                if (OW % 2) g00[TW - 1] = r0[OW - 1];
                if (2 * th + 1 < OH) {
                    for (tw = 0; tw < OW / 2; tw++) {
                        g10[tw] = r1[2 * tw];
                        g11[tw] = r1[2 * tw + 1];
                    }
                    if (OW % 2) g10[TW - 1] = r1[OW - 1];
                }
            }
            {
                MC_DECLARE16(MC_T, mm, m, xs)
                const MC_T *restrict ga = g, *restrict gb = g + P, *restrict gc = g + 2 * P, *restrict gd = g + 3 * P;
                for (q = 0; q < P; q++) {   /* A (.) down the columns, (.) A^T along the rows */
                    MC_T a = ga[q], b = gb[q], c = gc[q], d = gd[q];
                    MC_T h10 = a + c, h11 = b + d, h20 = a - c, h21 = b - d;
                    mm0[q] = a; mm1[q] = a + b; mm2[q] = a - b; mm3[q] = -b;
                    mm4[q] = h10; mm5[q] = h10 + h11; mm6[q] = h10 - h11; mm7[q] = -h11;
                    mm8[q] = h20; mm9[q] = h20 + h21; mm10[q] = h20 - h21; mm11[q] = -h21;
                    mm12[q] = -c; mm13[q] = -c - d; mm14[q] = d - c; mm15[q] = d;
                }
            }
        }
}

MC_VECTOR_CLONES(mc_wino_input,
                 (const MC_T *x, ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W, int ph, int pw,
                  MC_T *X, ptrdiff_t xs, ptrdiff_t T, MC_T *scratch),
                 (x, N, C, H, W, ph, pw, X, xs, T, scratch))
MC_VECTOR_CLONES(mc_wino_output_adjoint,
                 (const MC_T *dy, const MC_T *yr, ptrdiff_t N, ptrdiff_t O, ptrdiff_t OH, ptrdiff_t OW,
                  MC_T *X, ptrdiff_t xs, ptrdiff_t T, double *db, MC_T *scratch),
                 (dy, yr, N, O, OH, OW, X, xs, T, db, scratch))

/* X (dV) -> dx (N, C, H, W) = sum over patches of B dV B^T (overwritten). */
static void MC_NAME(mc_wino_input_adjoint)(const MC_T *X, ptrdiff_t xs, ptrdiff_t T, MC_T *dx,
                                        ptrdiff_t N, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                        int ph, int pw, MC_T *scratch)
{
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2, P = TH * TW;
    ptrdiff_t PC = 2 * TW + 2, n, c, q, th, tw, ih;
    MC_T *restrict F = scratch, *restrict pad = F + 16 * P;  /* 16 arrays of P; (2TH+2, PC) */
    int r, s;
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const MC_T *v = X + c * T + n * P;
            {
                MC_DECLARE16(const MC_T, vv, v, xs)
                MC_DECLARE16(MC_T, ff, F, P)
                for (q = 0; q < P; q++) {
                    /* (.) B^T along the rows: B v = (v0, v1 - v2 + v3, -v0 + v1 + v2, -v3) */
                    MC_T e0 = vv0[q], e1 = vv1[q] - vv2[q] + vv3[q], e2 = vv1[q] + vv2[q] - vv0[q], e3 = -vv3[q];
                    MC_T e4 = vv4[q], e5 = vv5[q] - vv6[q] + vv7[q], e6 = vv5[q] + vv6[q] - vv4[q], e7 = -vv7[q];
                    MC_T e8 = vv8[q], e9 = vv9[q] - vv10[q] + vv11[q], e10 = vv9[q] + vv10[q] - vv8[q], e11 = -vv11[q];
                    MC_T e12 = vv12[q], e13 = vv13[q] - vv14[q] + vv15[q], e14 = vv13[q] + vv14[q] - vv12[q];
                    MC_T e15 = -vv15[q];
                    /* B (.) down the columns */
                    ff0[q] = e0; ff1[q] = e1; ff2[q] = e2; ff3[q] = e3;
                    ff4[q] = e4 - e8 + e12; ff5[q] = e5 - e9 + e13; ff6[q] = e6 - e10 + e14; ff7[q] = e7 - e11 + e15;
                    ff8[q] = e4 + e8 - e0; ff9[q] = e5 + e9 - e1; ff10[q] = e6 + e10 - e2; ff11[q] = e7 + e11 - e3;
                    ff12[q] = -e12; ff13[q] = -e13; ff14[q] = -e14; ff15[q] = -e15;
                }
            }
            memset(pad, 0, (2 * TH + 2) * PC * sizeof(MC_T));
            for (r = 0; r < 4; r++)
                for (s = 0; s < 4; s++) {
                    const MC_T *f = F + (4 * r + s) * P;
                    for (th = 0; th < TH; th++) {
                        MC_T *row = pad + (2 * th + r) * PC + s;
                        for (tw = 0; tw < TW; tw++)
                            row[2 * tw] += f[th * TW + tw];
                    }
                }
            for (ih = 0; ih < H; ih++)
                memcpy(dx + ((n * C + c) * H + ih) * W, pad + (ih + ph) * PC + pw, W * sizeof(MC_T));
        }
}
