"""Build the Cython kernels.

OpenMP is used when the compiler accepts ``-fopenmp``; otherwise the kernels
build serially and stay correct (``prange`` degrades to ``range``).
Set ``MINICNN_DEBUG=1`` to build with bounds and wraparound checks on.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def _compiler_accepts_openmp() -> bool:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 0;}\n")
        result = subprocess.run(
            cc.split() + ["-fopenmp", src, "-o", os.path.join(tmp, "t")],
            capture_output=True,
        )
    return result.returncode == 0


DEBUG = os.environ.get("MINICNN_DEBUG") == "1"
OPENMP = sys.platform != "win32" and _compiler_accepts_openmp()

compile_args = ["-O3", "-ffp-contract=off"]
link_args = []
if OPENMP:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

extensions = [
    Extension(
        f"minicnn.{name}",
        [f"minicnn/{name}.pyx"],
        include_dirs=[np.get_include(), "minicnn"],
        depends={"_pool": ["minicnn/_pool_simd.h"], "_conv": ["minicnn/_gemm.h", "minicnn/_winograd.h", "minicnn/_winograd_impl.h"]}.get(name, []),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in ("_pool", "_im2col", "_activations", "_conv")
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
