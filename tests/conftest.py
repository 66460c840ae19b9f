"""Shared test set-up.

Four XLA CPU devices let the default 4 chains run in parallel, as the CLI does; this must happen
before JAX initializes, hence here and not in a fixture. The library itself never sets it.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

# JAX's persistent compilation cache goes to a fresh directory per test session: tests never
# write into the user's ~/.cache, and a test that counts compilations is not fooled by programs
# cached by an earlier run.
if "ITELIB_JAX_CACHE" not in os.environ:
    import tempfile

    os.environ["ITELIB_JAX_CACHE"] = tempfile.mkdtemp(prefix="itelib-test-jax-cache-")


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop the compiled programs of each test module when it ends.

    XLA keeps every program a process compiles; after the fuzz and bad-input modules added a
    few hundred, the suite segfaulted inside XLA while compiling a later PyMC test
    (2026-11-29). Later modules that need a program again load it from the persistent cache.
    """
    yield
    import jax

    jax.clear_caches()


# The longest modules first (by `--durations` on 2 cores, 2026-11-29), so that the two xdist
# workers finish together instead of one waiting on a long module picked up last. Only the
# order changes; a module not listed runs after these, in pytest's order.
LONGEST_FIRST = (
    "test_fuzz.py",
    "test_marginal_scaling.py",  # ~160 s: fits at p = 50, 150 and 5,000 sites
    "test_file_integrity.py",
    "test_examples.py",  # the real-trial example
    "test_federated.py",  # ~60 s: pooled and federated fits, linear and smooth
    "test_dask_fit.py",  # ~30-50 s: LocalClusters and fits
    "test_aft_likelihood.py",  # ~40 s: two small NUTS fits
    "test_cli_faults.py",
    "test_imputation.py",  # M fits per test (measured ~10 min on a loaded machine)
    "test_modifiers.py",
    "test_treatment_coding.py",
    "test_bcf.py",
    "test_sbc.py",
    "test_cli.py",
    "test_pymc_backend.py",
    "test_bcf_stochtree.py",
    "test_hierarchical_binary.py",
    "test_reproducibility.py",
    "test_compile.py",
    "test_persistence.py",
    "test_hierarchical.py",
    "test_bad_inputs.py",
    "test_causal_forest.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps the rest


@pytest.fixture(scope="session")
def linear_aft_trial():
    """``build(family, n, seed)``: an AFT trial every survival model can represent (linear
    prognosis and effect, 30 % censored); returns (Y, t, X, horizon, true RMST differences,
    true log time ratios)."""
    return _linear_aft_trial


def _linear_aft_trial(family: str, n: int, seed: int):
    """An AFT trial the model can represent: linear prognosis and effect, 30 % censored."""
    from itelib.simulate import aft

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    t = rng.integers(0, 2, n)
    loc0, log_ratio = 2.5 - 0.5 * X[:, 0] + 0.3 * X[:, 1], 0.3 + 0.4 * X[:, 1]
    T = aft.draw_event_times(rng, loc0 + t * log_ratio, 0.7, family)
    C = rng.exponential(1 / aft.calibrate_censoring_rate(T, 0.3), n)
    Y = pd.DataFrame({"time": np.minimum(T, C), "event": (T <= C).astype(int)})
    horizon = float(np.quantile(T, 0.75))
    rmst = [aft.restricted_mean(horizon, loc, 0.7, family) for loc in (loc0, loc0 + log_ratio)]
    X = pd.DataFrame(X, columns=["a", "b", "c"])
    return Y, t, X, horizon, rmst[1] - rmst[0], log_ratio
