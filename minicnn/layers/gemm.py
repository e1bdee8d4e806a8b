"""Matrix products for Conv2D and Dense: minicnn's own float32 kernel, else NumPy's BLAS.

Float32 products run on minicnn._conv.sgemm (register-blocked FMA micro-kernels
picked by the instruction-set level, minicnn.isa), so their speed does not depend on which
kernel OpenBLAS chose (OPENBLAS_CORETYPE); float64 ones, used for checking,
go through NumPy.
"""
from __future__ import annotations

import numpy as np

from minicnn import _conv

F32 = np.dtype(np.float32)


def pack(a):
    """``a`` (M, K) or (nb, M, K) packed for matmul's ``packed``, when the
    float32 kernel will multiply it; else None.  Pack once what many products
    share (Winograd's transformed filters, across chunks of images)."""
    if a.dtype != F32:
        return None
    return _conv.pack_a(a if a.ndim == 3 else a[None])


def matmul(a, b, out, accumulate=False, packed=None):
    """out = a @ b, or out += a @ b: 2-D, or stacks of matrices (3-D).

    ``out``'s rows must be contiguous for the float32 kernel; a and b may be
    any strided views.  ``packed``: pack(a), or None."""
    if a.dtype == F32 and b.dtype == F32 and out.dtype == F32 and out.strides[-1] == 4:
        if out.ndim == 2:
            _conv.sgemm(a, b, out, accumulate, -1, packed)
        else:
            _conv.sgemm_batch(a, b, out, accumulate, -1, packed)
    elif accumulate:
        out += np.matmul(a, b)
    else:
        np.matmul(a, b, out=out)


def matmul_parts(products, parts):
    """``matmul(a, b, out, accumulate)`` for every (a, b, out, accumulate) in
    ``products`` (2-D, writing disjoint memory), float32 ones shared out over
    ``parts`` threads of minicnn's team (product i on part i % parts), others
    one after another through NumPy."""
    if all(a.dtype == F32 and b.dtype == F32 and out.dtype == F32 and out.strides[-1] == 4
           for a, b, out, _ in products):
        _conv.sgemm_parts(list(products), parts)
        return
    for a, b, out, accumulate in products:
        matmul(a, b, out, accumulate)
