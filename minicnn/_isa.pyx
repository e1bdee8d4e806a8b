# cython: language_level=3
"""The CPU's instruction-set level, for minicnn.isa (which owns the decision)."""


def cpu_level():
    """The highest level this CPU runs: 0 portable, 1 avx2 (AVX2 + FMA), 2 avx512 (AVX-512F)."""
    return mc_isa_cpu()
