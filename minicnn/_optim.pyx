# cython: language_level=3
"""The SGD-with-momentum update in one pass over each parameter.

NumPy takes four passes and a temporary (``v *= m; v += g; p -= lr * v``);
this loop reads p, g and v once and writes p and v once.  The arithmetic is
NumPy's, operation by operation, in the arrays' type (the build turns off
FMA contraction, -ffp-contract=off), so the results are bit for bit the same.

Shapes: flat, contiguous arrays of equal length; the caller
(``minicnn/optim.py``) validates them.
"""
from cython cimport floating


def sgd_momentum(floating[::1] p, const floating[::1] g, floating[::1] v, double lr, double momentum):
    """v = momentum * v + g;  p -= lr * v  (lr and momentum rounded to p's type first, as NumPy does)."""
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating m = <floating>momentum, rate = <floating>lr, vi
    with nogil:
        for i in range(n):
            vi = v[i] * m
            vi = vi + g[i]
            v[i] = vi
            p[i] = p[i] - rate * vi
