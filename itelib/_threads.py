"""One thread for the small scikit-learn fits (gradient-boosted trees, logistic regressions).

scikit-learn's histogram gradient boosting asks OpenMP for one thread per core for every split
of every tree, however few the rows. When anything else keeps the cores busy (JAX's own thread
pool, chains on several XLA devices, a second worker process, a notebook's kernel), those
threads spin against each other. Measured on the project's 2-core machine under load
(5-fold cross-fitted prognostic score, p = 10): n = 120 1.6 s on one thread vs 20 s on the
default; n = 1,000 1.9 s vs 48 s; n = 20,000 5.7 s vs 215 s. On an idle many-core machine more
threads would win only at tens of thousands of rows, where sampling dominates the fit anyway.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["one_thread"]


def one_thread() -> threadpool_limits:
    """Context manager: OpenMP and BLAS run on one thread inside; restored on exit."""
    return threadpool_limits(limits=1)
