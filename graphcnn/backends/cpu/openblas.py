"""The OpenBLAS that numpy ships, found without Numba.

`import graphcnn` reads `AVAILABLE` to choose how Numba's OpenMP threads wait between
kernels (GOMP_SPINCOUNT), which must be set before Numba's OpenMP runtime starts and is
cheapest to decide before Numba is even imported; blas.py declares the functions to Numba.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

# (cblas gemm name, openblas thread-function name, integer width) of the builds numpy ships:
# scipy-openblas (numpy >= 2), the ILP64 OpenBLAS of numpy 1.x wheels, a plain OpenBLAS.
NAMINGS = (("scipy_cblas_{}64_", "scipy_openblas_{}64_", 64),
           ("cblas_{}64_", "openblas_{}64_", 64),
           ("cblas_{}", "openblas_{}", 32))


def find_openblas() -> tuple[str, ctypes.CDLL, str, str, int] | None:
    """(path, library, gemm naming, thread-function naming, integer width) of numpy's
    OpenBLAS, or None when numpy uses another BLAS or a naming not known here."""
    package = os.path.dirname(np.__file__)
    for folder in (package + ".libs", os.path.join(package, ".dylibs")):
        for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for gemm, threads, bits in NAMINGS:
                names = (gemm.format("sgemm"), gemm.format("dgemm"),
                         threads.format("set_num_threads"), threads.format("get_num_threads"))
                if all(hasattr(lib, name) for name in names):
                    return path, lib, gemm, threads, bits
    return None


FOUND = find_openblas()
# GRAPHCNN_NUMPY_MATMUL=1 sends the GEMMs back to np.matmul; blas.py still declares the
# library, so an artifact whose kernels call it links in such a process too.
AVAILABLE = FOUND is not None and not os.environ.get("GRAPHCNN_NUMPY_MATMUL")
