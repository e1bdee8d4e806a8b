# cython: language_level=3
"""The SGD-with-momentum update in one pass over each parameter.

NumPy takes four passes and a temporary (``v *= m; v += g; p -= lr * v``);
this loop reads p, g and v once and writes p and v once.  The arithmetic is
NumPy's, operation by operation, in the arrays' type (the build turns off
FMA contraction, -ffp-contract=off), so the results are bit for bit the same.

``sgd_momentum_all`` updates every parameter of a model on minicnn's team of
threads: part j of `parts` takes rows n * j // parts .. n * (j + 1) // parts
of each (n = its first axis), the same rows Dense's backward gives part j,
so each core updates what it has just written and keeps its share of the
velocity in its own cache.

Shapes: contiguous arrays of equal shape per parameter; the caller
(``minicnn/optim.py``) validates them.
"""
from cython cimport floating
from libc.stdlib cimport malloc, free

from minicnn._team cimport team_run


cdef void _update(floating* p, const floating* g, floating* v, Py_ssize_t n,
                  floating rate, floating m) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating vi
    for i in range(n):
        vi = v[i] * m
        vi = vi + g[i]
        v[i] = vi
        p[i] = p[i] - rate * vi


def sgd_momentum(floating[::1] p, const floating[::1] g, floating[::1] v, double lr, double momentum):
    """v = momentum * v + g;  p -= lr * v  (lr and momentum rounded to p's type first, as NumPy does)."""
    with nogil:
        _update(&p[0], &g[0], &v[0], p.shape[0], <floating>lr, <floating>momentum)


cdef struct Param:
    void* p
    const void* g
    void* v
    Py_ssize_t rows, row_size
    bint is_double


cdef struct UpdateTask:
    Param* params
    Py_ssize_t count
    double lr, momentum


cdef void _update_part(void* ctx, int part, int parts) noexcept nogil:
    cdef UpdateTask* t = <UpdateTask*>ctx
    cdef Param* a
    cdef Py_ssize_t i, lo, hi
    for i in range(t.count):
        a = &t.params[i]
        lo = a.rows * part // parts * a.row_size
        hi = a.rows * (part + 1) // parts * a.row_size
        if a.is_double:
            _update(<double*>a.p + lo, <const double*>a.g + lo, <double*>a.v + lo, hi - lo,
                    t.lr, t.momentum)
        else:
            _update(<float*>a.p + lo, <const float*>a.g + lo, <float*>a.v + lo, hi - lo,
                    <float>t.lr, <float>t.momentum)


def sgd_momentum_all(list params, double lr, double momentum, int parts):
    """sgd_momentum on every (p, g, v) in ``params`` (C-contiguous NumPy arrays
    of one shape and float type per triple, at least 1-D), over ``parts``
    threads of the team."""
    cdef UpdateTask task
    cdef Py_ssize_t i = 0
    task.params = <Param*>malloc(max(1, len(params)) * sizeof(Param))
    if task.params == NULL:
        raise MemoryError()
    task.lr, task.momentum = lr, momentum
    try:
        for p, g, v in params:
            if not (p.shape == g.shape == v.shape and p.dtype == g.dtype == v.dtype and p.ndim >= 1
                    and p.dtype.char in "fd" and p.flags.c_contiguous and g.flags.c_contiguous
                    and v.flags.c_contiguous and p.flags.writeable and v.flags.writeable):
                raise ValueError("sgd_momentum_all: p, g, v must be writable contiguous float arrays of one shape")
            if p.size == 0:
                continue
            task.params[i].p = <void*><size_t>p.ctypes.data
            task.params[i].g = <void*><size_t>g.ctypes.data
            task.params[i].v = <void*><size_t>v.ctypes.data
            task.params[i].rows = p.shape[0]
            task.params[i].row_size = p.size // p.shape[0]
            task.params[i].is_double = p.dtype.char == "d"
            i += 1
        task.count = i
        with nogil:
            team_run(_update_part, &task, max(1, parts))
    finally:
        free(task.params)
