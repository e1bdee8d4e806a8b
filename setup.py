"""Build the Cython kernels.

The kernels are serial C loops that release the GIL; minicnn.threads runs
them on several threads.  Set ``MINICNN_DEBUG=1`` to build with bounds and wraparound checks on.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


DEBUG = os.environ.get("MINICNN_DEBUG") == "1"
compile_args = ["-O3", "-ffp-contract=off"]

# headers and .pxd files each kernel module includes, so that editing one rebuilds it
DEPENDS = {
    "_isa": ["minicnn/_isa.h"],
    "_pool": ["minicnn/_pool_simd.h", "minicnn/_pool_avx512.h", "minicnn/_isa.h", "minicnn/_isa.pxd"],
    "_im2col": ["minicnn/_isa.h", "minicnn/_isa.pxd", "minicnn/_im2col_avx2.h", "minicnn/_im2col_avx512.h", "minicnn/_channels_last.h", "minicnn/_gemm.h", "minicnn/_gemm.pxd", "minicnn/_team.pxd"],
    "_team": ["minicnn/_team.h", "minicnn/_team.pxd"],
    "_optim": ["minicnn/_team.pxd"],
    "_batchnorm": ["minicnn/_team.pxd"],
    "_conv": ["minicnn/_isa.h", "minicnn/_isa.pxd", "minicnn/_gemm.h", "minicnn/_gemm.pxd", "minicnn/_team.pxd", "minicnn/_winograd.h", "minicnn/_winograd_impl.h", "minicnn/_each_type.h", "minicnn/_winograd_avx512.h"],
    "_adaptive_pool": ["minicnn/_adaptive_pool.h"],
    "_blurpool": ["minicnn/_poolrows.h", "minicnn/_poolrows.pxd"],
    "_mixpool": ["minicnn/_poolrows.h", "minicnn/_poolrows.pxd"],
    "_random_pool": ["minicnn/_random_pool.h", "minicnn/_random_pool_impl.h", "minicnn/_each_type.h"],
}

extensions = [
    Extension(
        f"minicnn.{name}",
        [f"minicnn/{name}.pyx"],
        include_dirs=[np.get_include(), "minicnn"],
        depends=DEPENDS.get(name, []),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=compile_args,
    )
    for name in (
        "_team",
        "_isa",
        "_pool",
        "_im2col",
        "_activations",
        "_conv",
        "_optim",
        "_random_pool",
        "_batchnorm",
        "_dropout",
        "_lp_pool",
        "_adaptive_pool",
        "_blurpool",
        "_mixpool",
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "cdivision": not DEBUG,
            "initializedcheck": DEBUG,
        },
    ),
)
