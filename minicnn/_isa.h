/* The instruction-set level every kernel of this module may use: the one
 * place the fast paths ask (mc_isa() >= MC_ISA_AVX512, ...), instead of the
 * CPU.  minicnn/isa.py decides the level once per process from the CPU
 * (mc_isa_cpu) and MINICNN_ISA, and sets it in every kernel module at import
 * (mc_isa_set, through the module's _set_isa); until then it is portable.
 *
 *   MC_ISA_PORTABLE  plain C loops, built for baseline x86-64 (SSE2) or any other CPU
 *   MC_ISA_AVX2      + AVX, AVX2 and FMA
 *   MC_ISA_AVX512    + AVX-512F
 *
 * The wider paths are compiled with function-level target attributes, so the
 * modules themselves need no -march flag and run on any x86-64 CPU. */
#ifndef MINICNN_ISA_H
#define MINICNN_ISA_H

enum { MC_ISA_PORTABLE = 0, MC_ISA_AVX2 = 1, MC_ISA_AVX512 = 2 };

/* The highest level this CPU runs. */
static int mc_isa_cpu(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return __builtin_cpu_supports("avx512f") ? MC_ISA_AVX512 : MC_ISA_AVX2;
#endif
    return MC_ISA_PORTABLE;
}

static int mc_isa_level = MC_ISA_PORTABLE;

/* Cap this module at level; a level the CPU cannot run (or unknown) is refused:
 * returns 0 then, 1 when set. */
static int mc_isa_set(int level)
{
    if (level < MC_ISA_PORTABLE || level > mc_isa_cpu())
        return 0;
    mc_isa_level = level;
    return 1;
}

static inline int mc_isa(void)
{
    return mc_isa_level;
}

#endif
