# cython: language_level=3
"""Element-wise activations, forward and backward, in one pass each: ReLU,
LeakyReLU, the exact GELU (libm's erf, scalar), and the backward of Tanh and
Sigmoid (their forward, and GELU's tanh form, are NumPy's vectorised np.tanh
and np.exp: see minicnn/layers/activations.py).

For ReLU, NumPy needs two passes and a temporary mask for the backward
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
from libc.math cimport M_2_SQRTPI, M_SQRT1_2, erf, erff, exp, expf


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


# LeakyReLU multiplies by a factor picked between two constants, x * (1 or slope):
# bit for bit PyTorch's ``x > 0 ? x : x * slope`` (x * 1 is x), and loops that
# compile to vector blends, where picking between x and x * slope became a
# branch, mispredicted on every other element (30x slower).  Forward picks a
# block of factors first: with the pick and the product in one loop, GCC folds
# them back into that branch.
DEF BLOCK = 256


def leaky_relu_forward(const floating[::1] x, floating[::1] y, double negative_slope):
    """y = x if x > 0 else x * negative_slope (PyTorch's rule; NaN stays NaN)."""
    cdef Py_ssize_t i, k, count, n = x.shape[0]
    cdef floating s = <floating>negative_slope
    cdef floating factor[BLOCK]
    with nogil:
        for i in range(0, n, BLOCK):
            count = min(BLOCK, n - i)
            for k in range(count):
                factor[k] = <floating>1 if x[i + k] > 0 else s
            for k in range(count):
                y[i + k] = x[i + k] * factor[k]


def leaky_relu_backward(const floating[::1] x, const floating[::1] dy, floating[::1] dx, double negative_slope):
    """dx = dy if x > 0 else dy * negative_slope."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating s = <floating>negative_slope
    with nogil:
        for i in range(n):
            dx[i] = dy[i] * (<floating>1 if x[i] > 0 else s)


def tanh_backward(const floating[::1] y, const floating[::1] dy, floating[::1] dx):
    """dx = dy * (1 - y * y), y = tanh(x)."""
    cdef Py_ssize_t i, n = y.shape[0]
    with nogil:
        for i in range(n):
            dx[i] = dy[i] * (1 - y[i] * y[i])


def sigmoid_backward(const floating[::1] y, const floating[::1] dy, floating[::1] dx):
    """dx = dy * (1 - y) * y, y = sigmoid(x)."""
    cdef Py_ssize_t i, n = y.shape[0]
    with nogil:
        for i in range(n):
            dx[i] = dy[i] * (1 - y[i]) * y[i]


# GELU's constants, PyTorch's names: 1 / sqrt(2 pi).
cdef double K_PDF = M_2_SQRTPI * M_SQRT1_2 * 0.5


# erf and exp in the array's own precision (libm's erff, expf for float32, 3-4x
# faster than the double ones), as PyTorch computes GELU.
cdef inline floating _erf(floating v) noexcept nogil:
    return erff(v) if floating is float else erf(v)


cdef inline floating _exp(floating v) noexcept nogil:
    return expf(v) if floating is float else exp(v)


def gelu_forward(const floating[::1] x, floating[::1] y):
    """y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact GELU."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v, root_half = M_SQRT1_2
    with nogil:
        for i in range(n):
            v = x[i]
            y[i] = <floating>0.5 * v * (1 + _erf(v * root_half))


def gelu_backward(const floating[::1] x, const floating[::1] dy, floating[::1] dx):
    """dx = dy * (Phi(x) + x phi(x)), phi the standard normal density."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v, root_half = M_SQRT1_2, pdf = K_PDF
    with nogil:
        for i in range(n):
            v = x[i]
            dx[i] = dy[i] * (<floating>0.5 * (1 + _erf(v * root_half)) + v * pdf * _exp(<floating>-0.5 * v * v))
