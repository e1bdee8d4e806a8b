"""Which BLAS library and kernel did the matrix products: recorded in summary.json.

Two machines of the same kind can pick different OpenBLAS kernels (its CPU
detection, or OPENBLAS_CORETYPE), and a different kernel or thread count sums
in another order: results then differ in the last bits, and after a few epochs
by tenths of a point. ``blas_info()`` names what this process uses.
"""
from __future__ import annotations

KEYS = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "prefix")


def blas_info() -> list[dict]:
    """One dict per BLAS library loaded in this process (normally one, NumPy's):
    internal_api ("openblas", "mkl", ...), version, architecture (the kernel, e.g.
    "Haswell", "SkylakeX"; None where the library does not say), num_threads,
    threading_layer and prefix (the library file's name).

    num_threads is the count in effect now: call it where the work runs (inside
    ``threads.one_blas_thread()`` during training) to record what the run used.
    """
    import numpy  # noqa: F401  (loads NumPy's BLAS, if nothing has yet)
    from threadpoolctl import threadpool_info

    return [{k: lib.get(k) for k in KEYS} for lib in threadpool_info() if lib.get("user_api") == "blas"]


def describe(info: list[dict]) -> str:
    """One line for a report: "openblas 0.3.27 Haswell, 1 thread" (several joined by "; ")."""
    if not info:
        return "no BLAS library loaded"
    parts = []
    for lib in info:
        threads = lib.get("num_threads")
        parts.append(" ".join(str(lib[k]) for k in ("internal_api", "version", "architecture") if lib.get(k))
                     + (f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""))
    return "; ".join(parts)
