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
#include "_isa.h"
#include <string.h>


/* Elements of scratch any of the functions below needs for one plane. */
static ptrdiff_t mc_wino_scratch(ptrdiff_t H, ptrdiff_t W, int ph, int pw)
{
    ptrdiff_t TH = (H + 2 * ph - 1) / 2, TW = (W + 2 * pw - 1) / 2;
    ptrdiff_t P = TH * TW, PR = 2 * TH + 2, PWE = TW + 1, PC = 2 * TW + 2;
    ptrdiff_t in = 6 * (PR * PWE + 1), adj = 16 * P + PR * PC;  /* also >= 4 P + OH OW (output adjoint) */
    ptrdiff_t in_avx512 = 4 * PR * 16 + 16;  /* mc_wino_input_avx512: 4 x PR rows of 16, 64-byte aligned */
    if (in < in_avx512) in = in_avx512;
    return (in > adj ? in : adj) + 16;
}

/* The portable input transform and output-transform adjoint are also built
 * for AVX-512 and AVX2, picked at run time by the instruction-set level
 * (mc_isa(), _isa.h; the module itself is compiled for baseline x86-64):
 * 15-20% faster on 14x14 planes, measured; the other two transforms ran no
 * faster or slower that way.  They serve levels below AVX-512 and planes
 * wider than the hand-written AVX-512 paths of _winograd_avx512.h take.  Only
 * adds, subtractions, products by 0 or 1 and copies, in the same order in
 * every build (and no FMA contraction, -ffp-contract=off): the same bits.
 *
 * MC_VECTOR_CLONES(f, params, args) defines MC_NAME(f) from the body
 * MC_NAME(f##_any): one wrapper per target into which the body is inlined
 * (compiled for that target), and the dispatch. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#define MC_VECTOR_BODY inline __attribute__((always_inline))
#define MC_VECTOR_CLONES(f, params, args) \
    __attribute__((target("avx512f"))) static void MC_NAME(f##_avx512f) params { MC_NAME(f##_any) args; } \
    __attribute__((target("avx2"))) static void MC_NAME(f##_avx2) params { MC_NAME(f##_any) args; } \
    static void MC_NAME(f) params \
    { \
        if (mc_isa() >= MC_ISA_AVX512) MC_NAME(f##_avx512f) args; \
        else if (mc_isa() >= MC_ISA_AVX2) MC_NAME(f##_avx2) args; \
        else MC_NAME(f##_any) args; \
    }
#else
#define MC_VECTOR_BODY inline
#define MC_VECTOR_CLONES(f, params, args) static void MC_NAME(f) params { MC_NAME(f##_any) args; }
#endif

/* 16 restrict pointers name0..name15 = base + k * stride. */
#define MC_DECLARE16(T, name, base, stride) \
    T *restrict name##0 = (base), *restrict name##1 = (base) + (stride), \
      *restrict name##2 = (base) + 2 * (stride), *restrict name##3 = (base) + 3 * (stride), \
      *restrict name##4 = (base) + 4 * (stride), *restrict name##5 = (base) + 5 * (stride), \
      *restrict name##6 = (base) + 6 * (stride), *restrict name##7 = (base) + 7 * (stride), \
      *restrict name##8 = (base) + 8 * (stride), *restrict name##9 = (base) + 9 * (stride), \
      *restrict name##10 = (base) + 10 * (stride), *restrict name##11 = (base) + 11 * (stride), \
      *restrict name##12 = (base) + 12 * (stride), *restrict name##13 = (base) + 13 * (stride), \
      *restrict name##14 = (base) + 14 * (stride), *restrict name##15 = (base) + 15 * (stride);

#define MC_IMPL "_winograd_impl.h"
#include "_each_type.h"

#include "_winograd_avx512.h"

#endif
