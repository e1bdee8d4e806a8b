/* The plane loops for one element type MC_T, named MC_NAME(f); see _random_pool.h. */

/* Fractional max pooling of one plane x (H, W) -> y, index (OH, OW), region
 * (oh, ow) covering rows rows[oh] .. + kh and columns cols[ow] .. + kw.
 * PyTorch scans a region in row-major order with ``v > best || isnan(v)``
 * from best = -inf: the result is the last NaN, else the first maximum.  The
 * same rule applied per row and then across rows gives the same element, so:
 * 1. run[j], run_at[j]: the rule over the kw elements of row i from column j,
 *    for every j (contiguous loops that vectorise; starting from the first
 *    element is starting from -inf, which only a NaN or a larger value beats);
 * 2. part[i, ow] = run[cols[ow]], for every row i of the plane;
 * 3. the rule over the kh rows of part for each output row.
 * Scratch: run, run_at of W; part, part_at of H * OW. */
static void MC_NAME(mc_fractional_plane)(
    const MC_T *restrict x, MC_T *restrict y, int32_t *restrict index,
    const ptrdiff_t *rows, const ptrdiff_t *cols,
    MC_T *restrict run, int32_t *restrict run_at, MC_T *restrict part, int32_t *restrict part_at,
    ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t kh, ptrdiff_t kw)
{
    ptrdiff_t R = W - kw + 1;
    for (ptrdiff_t i = 0; i < H; i++) {
        const MC_T *restrict row = x + i * W;
        int32_t base = (int32_t)(i * W);
        for (ptrdiff_t j = 0; j < R; j++) {
            run[j] = row[j];
            run_at[j] = base + (int32_t)j;
        }
        for (ptrdiff_t d = 1; d < kw; d++) {
            const MC_T *restrict r = row + d;
            for (ptrdiff_t j = 0; j < R; j++) {
                MC_T v = r[j], b = run[j];
                int32_t at = run_at[j];   /* loaded whatever wins is, so the select vectorises */
                int wins = (v > b) | (v != v);
                run[j] = wins ? v : b;
                run_at[j] = wins ? base + (int32_t)(j + d) : at;
            }
        }
        for (ptrdiff_t ow = 0; ow < OW; ow++) {
            part[i * OW + ow] = run[cols[ow]];
            part_at[i * OW + ow] = run_at[cols[ow]];
        }
    }
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        MC_T *restrict yr = y + oh * OW;
        int32_t *restrict ir = index + oh * OW;
        const MC_T *restrict p0 = part + rows[oh] * OW;
        const int32_t *restrict a0 = part_at + rows[oh] * OW;
        for (ptrdiff_t ow = 0; ow < OW; ow++) {
            yr[ow] = p0[ow];
            ir[ow] = a0[ow];
        }
        for (ptrdiff_t i = 1; i < kh; i++) {
            const MC_T *restrict pr = p0 + i * OW;
            const int32_t *restrict pa = a0 + i * OW;
            for (ptrdiff_t ow = 0; ow < OW; ow++) {
                MC_T v = pr[ow], b = yr[ow];
                int32_t a = pa[ow], at = ir[ow];
                int wins = (v > b) | (v != v);
                yr[ow] = wins ? v : b;
                ir[ow] = wins ? a : at;
            }
        }
    }
}

/* Stochastic pooling of one plane x (H, W) in training: for window (oh, ow) at
 * (oh * sh, ow * sw), weights w = a if a > 0 else 0, S their sum and c the
 * running sums in row-major order (double); the pick is the first element
 * with c > u * S, found without branches as the last one whose running sum
 * before it is <= u * S; the last positive element if rounding leaves none;
 * no pick (index -1, y 0) when S = 0. */
static void MC_NAME(mc_stochastic_plane)(
    const MC_T *restrict x, const double *restrict u, MC_T *restrict y, int32_t *restrict index,
    ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t sh, ptrdiff_t sw)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++)
        for (ptrdiff_t ow = 0; ow < OW; ow++) {
            ptrdiff_t corner = oh * sh * W + ow * sw, o = oh * OW + ow;
            double total = 0;
            ptrdiff_t last = -1;
            for (ptrdiff_t i = 0; i < kh; i++)
                for (ptrdiff_t j = 0; j < kw; j++) {
                    MC_T a = x[corner + i * W + j];
                    double w = MC_POSITIVE(a);
                    total += w;
                    last = w > 0 ? corner + i * W + j : last;
                }
            if (last < 0) {
                y[o] = 0;
                index[o] = -1;
                continue;
            }
            double threshold = u[o] * total, running = 0;
            ptrdiff_t pick = last;
            for (ptrdiff_t i = 0; i < kh; i++)
                for (ptrdiff_t j = 0; j < kw; j++) {
                    MC_T a = x[corner + i * W + j];
                    pick = running <= threshold ? corner + i * W + j : pick;
                    running += MC_POSITIVE(a);
                }
            if (running <= threshold)
                pick = last;
            y[o] = x[pick];
            index[o] = (int32_t)pick;
        }
}

/* mc_stochastic_plane for 2x2 windows with stride 2, the same sums in the same
 * order and the same pick: with c0..c3 the running sums, the pick is the
 * number of c0, c1, c2 that are <= u * S, counted without branches. */
static void MC_NAME(mc_stochastic_plane_2x2)(
    const MC_T *restrict x, const double *restrict u, MC_T *restrict y, int32_t *restrict index,
    ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        const MC_T *restrict r0 = x + 2 * oh * W, *restrict r1 = r0 + W;
        for (ptrdiff_t ow = 0; ow < OW; ow++) {
            ptrdiff_t o = oh * OW + ow, corner = 2 * oh * W + 2 * ow;
            MC_T a0 = r0[2 * ow], a1 = r0[2 * ow + 1], a2 = r1[2 * ow], a3 = r1[2 * ow + 1];
            double w0 = MC_POSITIVE(a0), w1 = MC_POSITIVE(a1), w2 = MC_POSITIVE(a2), w3 = MC_POSITIVE(a3);
            double c0 = w0, c1 = c0 + w1, c2 = c1 + w2, total = c2 + w3, t = u[o] * total;
            /* the pick: the count of c0, c1, c2 <= u * S; the last positive element when
             * rounding left c3 = S <= u * S too (or S = 0: then no pick) */
            ptrdiff_t k = (c0 <= t) + (c1 <= t) + (c2 <= t);
            ptrdiff_t p1 = w1 > 0, p2 = w2 > 0, p3 = w3 > 0, ok = total > t, some = total > 0;
            ptrdiff_t last = p3 * 3 + (1 - p3) * (p2 * 2 + (1 - p2) * p1);   /* arithmetic: no branches */
            k = ok * k + (1 - ok) * last;
            ptrdiff_t at = corner + (k >> 1) * W + (k & 1);
            MC_T v = x[at];
            y[o] = MC_POSITIVE(v);   /* the pick is positive; without one, v <= 0 or NaN gives 0 */
            index[o] = (int32_t)(some * (at + 1) - 1);
        }
    }
}

/* mc_stochastic_eval_plane for 2x2 windows with stride 2 (same sums, same order). */
static void MC_NAME(mc_stochastic_eval_plane_2x2)(
    const MC_T *restrict x, MC_T *restrict y, ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        const MC_T *restrict r0 = x + 2 * oh * W, *restrict r1 = r0 + W;
        for (ptrdiff_t ow = 0; ow < OW; ow++) {
            MC_T a0 = r0[2 * ow], a1 = r0[2 * ow + 1], a2 = r1[2 * ow], a3 = r1[2 * ow + 1];
            double w0 = MC_POSITIVE(a0), w1 = MC_POSITIVE(a1), w2 = MC_POSITIVE(a2), w3 = MC_POSITIVE(a3);
            double total = ((w0 + w1) + w2) + w3, squares = ((w0 * w0 + w1 * w1) + w2 * w2) + w3 * w3;
            y[oh * OW + ow] = (MC_T)(squares / (total + (total == 0)));   /* squares = 0 when total = 0 */
        }
    }
}

/* Stochastic pooling of one plane in evaluation: sum w^2 / sum w per window, 0 when sum w = 0. */
static void MC_NAME(mc_stochastic_eval_plane)(
    const MC_T *restrict x, MC_T *restrict y,
    ptrdiff_t W, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t sh, ptrdiff_t sw)
{
    for (ptrdiff_t oh = 0; oh < OH; oh++)
        for (ptrdiff_t ow = 0; ow < OW; ow++) {
            const MC_T *restrict corner = x + oh * sh * W + ow * sw;
            double total = 0, squares = 0;
            for (ptrdiff_t i = 0; i < kh; i++)
                for (ptrdiff_t j = 0; j < kw; j++) {
                    MC_T a = corner[i * W + j];
                    double w = MC_POSITIVE(a);
                    total += w;
                    squares += w * w;
                }
            y[oh * OW + ow] = (MC_T)(squares / (total + (total == 0)));   /* squares = 0 when total = 0 */
        }
}

/* dx (H, W) of a plane, zeroed here, += dy at each output's position (none where index < 0). */
static void MC_NAME(mc_scatter_plane)(
    const MC_T *restrict dy, const int32_t *restrict index, MC_T *restrict dx, ptrdiff_t HW, ptrdiff_t L)
{
    for (ptrdiff_t k = 0; k < HW; k++)
        dx[k] = 0;
    for (ptrdiff_t o = 0; o < L; o++)
        if (index[o] >= 0)
            dx[index[o]] += dy[o];
}
