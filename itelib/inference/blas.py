"""One BLAS thread while JAX samples on the CPU.

JAX's CPU kernels for Cholesky factors and triangular solves call LAPACK from SciPy's OpenBLAS,
which by default wakes one thread per core for every call, however small the matrix. A NUTS
gradient makes such calls on K x K matrices (K ~ 30-60) tens of thousands of times a second; with
chains on several XLA devices, or fits in several worker processes, those threads oversubscribe
the cores. Measured on the project's 2-core machine (``benchmarks/speed/chain_methods.py``;
n = 500, 20 sites, p = 20, 4 chains x 2,000 iterations): 100 s on 4 host devices with OpenBLAS's
default, 6.5 s with one BLAS thread; one chain after another 23 s and 13 s.
"""

from __future__ import annotations

import scipy.linalg  # noqa: F401 (loads the OpenBLAS that JAX's LAPACK kernels call; see below)
from threadpoolctl import threadpool_limits

__all__ = ["single_threaded_blas"]


def single_threaded_blas() -> threadpool_limits:
    """Context manager: every loaded BLAS library runs on one thread; restored on exit.

    threadpoolctl limits only libraries already loaded, and SciPy's OpenBLAS is not loaded by
    ``import jax``: JAX loads it at its first Cholesky factorization. Without the import above,
    the first fit in a fresh process (the CLI, a benchmark, a study worker) ran its LAPACK calls
    on every core: under load a 403 x 403 Cholesky took 267 ms instead of 0.8 ms.
    """
    return threadpool_limits(limits=1, user_api="blas")
