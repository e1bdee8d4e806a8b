/* Plane loops of the random pooling kernels (minicnn/_random_pool.pyx), in C
 * so that the selects are conditional moves and blends the compiler can
 * vectorise (Cython writes a conditional expression as an if statement).
 * _random_pool_impl.h holds them for one element type; it is included once
 * for float and once for double.  Positions are flat within a plane, int32. */
#ifndef MINICNN_RANDOM_POOL_H
#define MINICNN_RANDOM_POOL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* a if a > 0, else 0 (NaN too): SSE2's max (maxss(a, 0) is exactly a > 0 ? a : 0),
 * where GCC compiles the conditional to a branch that random signs mispredict. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline float mc_positive_f32(float a) { return _mm_cvtss_f32(_mm_max_ss(_mm_set_ss(a), _mm_setzero_ps())); }
static inline double mc_positive_f64(double a) { return _mm_cvtsd_f64(_mm_max_sd(_mm_set_sd(a), _mm_setzero_pd())); }
#else
static inline float mc_positive_f32(float a) { return a > 0 ? a : 0; }
static inline double mc_positive_f64(double a) { return a > 0 ? a : 0; }
#endif
#define MC_POSITIVE(a) MC_NAME(mc_positive)(a)

#define MC_IMPL "_random_pool_impl.h"
#include "_each_type.h"

#endif
