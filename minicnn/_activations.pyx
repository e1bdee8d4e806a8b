# cython: language_level=3
"""Element-wise ReLU, forward and backward, in one pass each.

NumPy needs two passes and a temporary mask for the backward
(``dy * (y > 0)``); these loops read their inputs once and write the output
once, and compile to vector compares and blends.  Results are bit for bit
NumPy's: ``np.maximum(x, 0)`` (NaN propagates, -0.0 gives +0.0) and
``dy * (y > 0)`` (a NaN or inf in dy where y <= 0 gives NaN, as 0 * inf does).

The loops run serially without the GIL; ``minicnn.threads`` hands ranges
of elements to several threads.

Shapes: flat, contiguous arrays of equal length; the caller
(``minicnn/layers/activations.py``) validates them.
"""
from cython cimport floating


def relu_forward(const floating[::1] x, floating[::1] y):
    """y = max(x, 0), NaN kept."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v
    with nogil:
        for i in range(n):
            v = x[i]
            y[i] = v if (v > 0 or v != v) else 0


def relu_backward(const floating[::1] y, const floating[::1] dy, floating[::1] dx):
    """dx = dy * (y > 0)."""
    cdef Py_ssize_t i, n = y.shape[0]
    with nogil:
        for i in range(n):
            dx[i] = dy[i] * (<floating>1 if y[i] > 0 else <floating>0)
