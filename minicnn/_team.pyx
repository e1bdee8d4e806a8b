# cython: language_level=3
"""The team of worker threads that runs a layer's parts in C, without the GIL.

Other kernel modules ``cimport team_run`` from here, so that the process has
one team whichever module calls it (see _team.h for how it works and why),
and ``largest_chunk``, which checks the chunk bounds their parts will trust.
``fill`` and ``handoff_seconds`` are for tests and benchmarks.
"""
import time

cdef extern from "_team.h" nogil:
    ctypedef void (*mc_task_t)(void* ctx, int part, int parts) noexcept nogil
    void mc_team_run(mc_task_t fn, void* ctx, int parts)


cdef void team_run(task_t fn, void* ctx, int parts) noexcept nogil:
    """fn(ctx, part, parts) for part in 0..parts-1, part 0 on the calling
    thread; returns when all are done.  Call without the GIL."""
    mc_team_run(fn, ctx, parts)


cdef Py_ssize_t largest_chunk(const Py_ssize_t[::1] bounds, Py_ssize_t n) except -1:
    """Items in the largest chunk of a layer's work, chunk i holding items
    bounds[i]..bounds[i+1]-1; checks the bounds run from 0 to n, rising (the
    parts trust them)."""
    cdef Py_ssize_t i, largest = 0
    if bounds.shape[0] < 1 or bounds[0] != 0 or bounds[bounds.shape[0] - 1] != n:
        raise ValueError(f"chunk bounds must run from 0 to {n}")
    for i in range(bounds.shape[0] - 1):
        if bounds[i + 1] <= bounds[i]:
            raise ValueError("chunk bounds must rise")
        largest = max(largest, bounds[i + 1] - bounds[i])
    return largest


cdef struct FillTask:
    long* out
    Py_ssize_t n
    long spin


cdef void _fill_part(void* ctx, int part, int parts) noexcept nogil:
    """out[i] = part for i = part, part + parts, ..., after spinning ``spin`` steps each."""
    cdef FillTask* task = <FillTask*>ctx
    cdef Py_ssize_t i
    cdef long k
    cdef volatile long sink = 0
    i = part
    while i < task.n:
        for k in range(task.spin):
            sink += k
        task.out[i] = part
        i += parts


def fill(long[::1] out, int parts, long spin=0):
    """out[i] = i % parts, each element written by the part that owns it
    (tests: every part runs once, on its own share)."""
    cdef FillTask task
    task.out = &out[0] if out.shape[0] else NULL
    task.n = out.shape[0]
    task.spin = spin
    with nogil:
        team_run(_fill_part, &task, parts)


def handoff_seconds(int parts, int repeats=1000):
    """Median seconds of one team_run of an empty task over ``parts`` parts."""
    cdef FillTask task
    cdef int r
    task.out = NULL
    task.n = 0
    task.spin = 0
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        with nogil:
            team_run(_fill_part, &task, parts)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
