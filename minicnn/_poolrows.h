/* Branch-free row loops shared by _blurpool.pyx and _mixpool.pyx.
 *
 * Each function does one window offset (i, j) for a whole row of windows:
 * n windows whose elements at that offset are src[0], src[s], src[2 s], ...
 * Written in C for ``restrict`` (Cython cannot say it), which lets the
 * compiler vectorise them (SSE2 at least); the selects keep max pooling's
 * rule, a larger value or a NaN replaces the best (first maximum in
 * row-major order when the offsets come in that order).  Same arithmetic,
 * in the same order per element, as the obvious scalar loop.
 */
#ifndef MINICNN_POOLROWS_H
#define MINICNN_POOLROWS_H

#include <stddef.h>
#include <stdint.h>

#define MC_POOLROWS(T, S)                                                                          \
/* best, at: the running max and its offset k; total += the element (when total != NULL) */      \
static inline void mc_max_step_##S(const T* restrict src, ptrdiff_t s, T* restrict best,          \
                                   int32_t* restrict at, T* restrict total, ptrdiff_t n, int32_t k) \
{                                                                                                  \
    ptrdiff_t i;                                                                                   \
    if (total != NULL)                                                                             \
        for (i = 0; i < n; i++)                                                                    \
            total[i] = total[i] + src[i * s];                                                      \
    for (i = 0; i < n; i++) {                                                                      \
        T v = src[i * s], b = best[i];                                                             \
        int wins = (v > b) | (v != v);                                                             \
        best[i] = wins ? v : b;                                                                    \
        at[i] = wins ? k : at[i];                                                                  \
    }                                                                                              \
}                                                                                                  \
/* acc += w * element */                                                                           \
static inline void mc_axpy_step_##S(const T* restrict src, ptrdiff_t s, T* restrict acc,          \
                                    ptrdiff_t n, T w)                                              \
{                                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++)                                                              \
        acc[i] = acc[i] + w * src[i * s];                                                          \
}                                                                                                  \
/* dst (the gradient at one offset) += share */                                                    \
static inline void mc_spread_step_##S(T* restrict dst, ptrdiff_t s, const T* restrict share,      \
                                      ptrdiff_t n)                                                 \
{                                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++)                                                              \
        dst[i * s] += share[i];                                                                    \
}                                                                                                  \
/* gated: dst += share + dz * w; lane += dz * element, in double */                               \
static inline void mc_gate_step_##S(T* restrict dst, const T* restrict src, ptrdiff_t s,          \
                                    const T* restrict share, const T* restrict dz,                \
                                    double* restrict lane, ptrdiff_t n, T w)                       \
{                                                                                                  \
    ptrdiff_t i;                                                                                   \
    for (i = 0; i < n; i++)                                                                        \
        dst[i * s] += share[i] + dz[i] * w;                                                        \
    for (i = 0; i < n; i++)                                                                        \
        lane[i] = lane[i] + (double)dz[i] * (double)src[i * s];                                    \
}                                                                                                  \
/* g = sigmoid(z) from e = exp(-|z|) <= 1, so that neither sign overflows */                      \
static inline void mc_sigmoid_row_##S(const T* restrict z, const T* restrict e, T* restrict g,    \
                                      ptrdiff_t n)                                                 \
{                                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                            \
        T r = (T)1 / ((T)1 + e[i]);                                                                \
        g[i] = z[i] >= 0 ? r : e[i] * r;                                                           \
    }                                                                                              \
}

MC_POOLROWS(float, f32)
MC_POOLROWS(double, f64)

#undef MC_POOLROWS
#endif
