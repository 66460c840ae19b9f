"""The vectorized R-hat and ESS equal arviz-stats' column-by-column estimators."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from arviz_stats import ess, rhat

from itelib.inference.convergence import ess_bulk, ess_tail, rhat_rank


def _ar1(rng, chains: int, draws: int, phi: float, shift: float = 0.0) -> np.ndarray:
    e = rng.standard_normal((chains, draws))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for i in range(1, draws):
        x[:, i] = phi * x[:, i - 1] + e[:, i]
    return x + shift * np.arange(chains)[:, None]


def _columns(chains: int, draws: int) -> np.ndarray:
    """Draws that take every branch: iid, sticky (the monotone sequence), antithetic (the
    1/log10 floor on tau), a stuck chain (R-hat far above 1), heavy tails, ties, a constant."""
    rng = np.random.default_rng(0)
    cols = [
        rng.standard_normal((chains, draws)),
        _ar1(rng, chains, draws, 0.95),
        _ar1(rng, chains, draws, 0.6),
        _ar1(rng, chains, draws, -0.7),
        _ar1(rng, chains, draws, 0.3, shift=1.5),
        rng.standard_cauchy((chains, draws)),
        rng.integers(0, 4, (chains, draws)).astype(float),
        np.full((chains, draws), 2.5),
        np.cumsum(rng.standard_normal((chains, draws)), axis=1),  # a random walk
    ]
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize(("chains", "draws"), [(4, 1000), (2, 37), (1, 200), (8, 9)])
def test_equal_to_arviz_stats_to_rounding(chains, draws):
    x = _columns(chains, draws)
    ds = xr.Dataset({"x": (("chain", "draw", "k"), x)})
    dims = ["chain", "draw"]
    with np.errstate(divide="ignore", invalid="ignore"):  # arviz's R-hat of the constant
        expected = {
            "rhat": rhat(ds, sample_dims=dims)["x"].values,
            "bulk": ess(ds, sample_dims=dims, method="bulk")["x"].values,
            "tail": ess(ds, sample_dims=dims, method="tail")["x"].values,
        }
    got = {"rhat": rhat_rank(x), "bulk": ess_bulk(x), "tail": ess_tail(x, 0.89)}
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, err_msg=name)


def test_a_nan_gives_nan_for_its_quantity_only():
    x = _columns(4, 100)
    x[2, 5, 1] = np.nan
    for values in (rhat_rank(x), ess_bulk(x), ess_tail(x, 0.89)):
        assert np.isnan(values[1]) and np.isfinite(np.delete(values, [1, 7])).all()


def test_average_ranks_equal_scipys():
    from scipy.stats import rankdata

    from itelib.inference.convergence import _average_ranks

    rng = np.random.default_rng(1)
    x = np.stack([rng.normal(size=500), rng.integers(0, 5, 500), np.zeros(500)])
    np.testing.assert_array_equal(_average_ranks(x), rankdata(x, method="average", axis=1))
