"""blas_info names the BLAS NumPy uses, its kernel and the thread count in effect."""
from __future__ import annotations

import json

import numpy as np
import threadpoolctl

from minicnn.blas import blas_info, describe


def test_blas_info_names_numpys_library_and_follows_thread_limits():
    np.ones((8, 8)) @ np.ones((8, 8))  # BLAS loaded
    info = blas_info()
    assert info, "NumPy always links a BLAS"
    lib = info[0]
    assert lib["internal_api"] in ("openblas", "mkl", "blis", "accelerate", "flexiblas", "netlib")
    assert isinstance(lib["version"], (str, type(None))) and lib["num_threads"] >= 1
    json.dumps(info)  # goes into summary.json as is
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert {lib["num_threads"] for lib in blas_info()} == {1}
        assert describe(blas_info()).count("1 thread") == len(info)


def test_describe_on_known_values():
    info = [{"internal_api": "openblas", "version": "0.3.27", "architecture": "Haswell", "num_threads": 1},
            {"internal_api": "mkl", "version": "2024.1", "architecture": None, "num_threads": 4}]
    assert describe(info) == "openblas 0.3.27 Haswell, 1 thread; mkl 2024.1, 4 threads"
    assert describe([]) == "no BLAS library loaded"
