# cython: language_level=3
"""Dropout's masking, one pass: out = x * (scale if u >= threshold else 0).

``u`` holds uniform 32-bit draws, so an element (or, per row, a whole
channel) is kept with probability (2^32 - threshold) / 2^32 = 1 - p, to
within 2^-32.  The threshold is a 32-bit value like the draws: compared in
one type, the loop compiles to vector compares and blends (with a 64-bit
threshold GCC made it a branch, mispredicted on every other element: 25x
slower).  The same kernel serves forward (x the input) and backward (x
the gradient), from the same draws.  Multiplying (rather than writing 0)
keeps NaN and inf in dropped places NaN, as PyTorch's ``x * mask`` does.

The loops run serially without the GIL; ``minicnn.threads`` hands ranges of
rows to several threads.  Shapes: flat x, out and u of one length
(``apply``), or x, out (R, S) with u (R,) (``apply_rows``), C-contiguous;
the caller (``minicnn/layers/regularization.py``) validates them.
"""
from cython cimport floating
from libc.stdint cimport uint32_t


def apply(const floating[::1] x, const uint32_t[::1] u, floating[::1] out, uint32_t threshold, double scale):
    """out[i] = x[i] * (scale if u[i] >= threshold else 0)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating s = <floating>scale
    with nogil:
        for i in range(n):
            out[i] = x[i] * (s if u[i] >= threshold else <floating>0)


def apply_rows(const floating[:, ::1] x, const uint32_t[::1] u, floating[:, ::1] out, uint32_t threshold,
               double scale):
    """out[r, :] = x[r, :] * (scale if u[r] >= threshold else 0)."""
    cdef Py_ssize_t r, i, rows = x.shape[0], n = x.shape[1]
    cdef floating s = <floating>scale, k
    with nogil:
        for r in range(rows):
            k = s if u[r] >= threshold else <floating>0
            for i in range(n):
                out[r, i] = x[r, i] * k
