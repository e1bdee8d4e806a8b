# cython: language_level=3
# The team of worker threads that runs a layer's parts in C (see _team.h).
ctypedef void (*task_t)(void* ctx, int part, int parts) noexcept nogil

cdef void team_run(task_t fn, void* ctx, int parts) noexcept nogil

cdef Py_ssize_t largest_chunk(const Py_ssize_t[::1] bounds, Py_ssize_t n) except -1
