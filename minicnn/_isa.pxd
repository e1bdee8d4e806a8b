# cython: language_level=3
# Declarations of _isa.h for the kernel modules that dispatch on the instruction set.

cdef extern from "_isa.h" nogil:
    int mc_isa_cpu()
    int mc_isa_set(int level)
    int mc_isa()
