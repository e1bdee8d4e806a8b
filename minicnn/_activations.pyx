# cython: language_level=3
"""Element-wise activations, forward and backward, in one pass each: ReLU,
LeakyReLU, GELU (exact and tanh forms), and the backward of Tanh and Sigmoid
(their forward is NumPy's np.tanh / np.exp, vectorised already).

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
from libc.math cimport M_2_SQRTPI, M_SQRT1_2, M_SQRT2, erf, exp, tanh


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


def leaky_relu_forward(const floating[::1] x, floating[::1] y, double negative_slope):
    """y = x if x > 0 else x * negative_slope (PyTorch's rule; NaN stays NaN)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v, s = <floating>negative_slope
    with nogil:
        for i in range(n):
            v = x[i]
            y[i] = v if v > 0 else v * s


def leaky_relu_backward(const floating[::1] x, const floating[::1] dy, floating[::1] dx, double negative_slope):
    """dx = dy if x > 0 else dy * negative_slope."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating s = <floating>negative_slope
    with nogil:
        for i in range(n):
            dx[i] = dy[i] if x[i] > 0 else dy[i] * s


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


# GELU's constants, PyTorch's names: sqrt(2 / pi), the cubic term's factor, 1 / sqrt(2 pi).
cdef double K_BETA = M_SQRT2 * M_2_SQRTPI * 0.5
cdef double K_KAPPA = 0.044715
cdef double K_PDF = M_2_SQRTPI * M_SQRT1_2 * 0.5


def gelu_forward(const floating[::1] x, floating[::1] y, bint tanh_approximation):
    """y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); or, approximated,
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).  Computed in double."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef double v
    with nogil:
        if tanh_approximation:
            for i in range(n):
                v = x[i]
                y[i] = <floating>(0.5 * v * (1 + tanh(K_BETA * (v + K_KAPPA * v * v * v))))
        else:
            for i in range(n):
                v = x[i]
                y[i] = <floating>(0.5 * v * (1 + erf(v * M_SQRT1_2)))


def gelu_backward(const floating[::1] x, const floating[::1] dy, floating[::1] dx, bint tanh_approximation):
    """dx = dy * d gelu(x) / dx, of the exact or the tanh form (as gelu_forward)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef double v, t
    with nogil:
        if tanh_approximation:
            for i in range(n):
                v = x[i]
                t = tanh(K_BETA * (v + K_KAPPA * v * v * v))
                dx[i] = <floating>(dy[i] * (0.5 * (1 + t)
                                            + 0.5 * v * (1 - t * t) * K_BETA * (1 + 3 * K_KAPPA * v * v)))
        else:
            for i in range(n):
                v = x[i]
                dx[i] = <floating>(dy[i] * (0.5 * (1 + erf(v * M_SQRT1_2)) + v * K_PDF * exp(-0.5 * v * v)))
