"""Prior and posterior predictive checks of HierarchicalITE."""

from __future__ import annotations

import numpy as np
import pytest

from itelib import ConvergenceWarning, HierarchicalITE, NotFittedError
from itelib.simulate import binary_multisite_rct, multisite_rct

FAST = dict(num_warmup=200, num_samples=150, num_chains=2, progress_bar=False)


@pytest.fixture(scope="module")
def continuous_fit():
    trial = multisite_rct(n=300, seed=11, n_sites=8)
    est = HierarchicalITE(**FAST, random_state=5)
    with pytest.warns(ConvergenceWarning):
        est.fit(**trial.fit_kwargs())
    return trial, est


def test_posterior_predictive_reproduces_the_observed_outcomes(continuous_fit):
    trial, est = continuous_fit
    tree = est.posterior_predictive()
    y_rep = tree["posterior_predictive"]["y"]
    assert y_rep.dims == ("chain", "draw", "patient")
    assert y_rep.shape == (2, 150, trial.n)
    assert list(tree["observed_data"]["y"]["patient"].values[:3]) == list(trial.data.index[:3])
    y = trial.data["y"].to_numpy()
    # The model fits mean and spread by construction: replicated means sit within 4 Monte
    # Carlo-plus-sampling sd of the observed mean (sd of a mean of n draws ~ sd(y)/sqrt(n)).
    rep_means = y_rep.values.mean(axis=2).ravel()
    assert abs(rep_means.mean() - y.mean()) < 4 * y.std() / np.sqrt(trial.n)
    # Per patient, the observed outcome lies inside the central 99% of its replicates for
    # nearly everyone (expected 0.99; 0.95 allows for the linear model's misfit of mu).
    lo, hi = np.quantile(y_rep.values.reshape(-1, trial.n), [0.005, 0.995], axis=0)
    assert np.mean((y >= lo) & (y <= hi)) > 0.95


def test_prior_predictive_has_the_prior_group(continuous_fit):
    trial, est = continuous_fit
    tree = est.prior_predictive(num_samples=100)
    assert tree["prior_predictive"]["y"].shape == (1, 100, trial.n)
    assert {"tau0", "sigma", "gamma"} <= set(tree["prior"].data_vars)
    assert np.all(np.isfinite(tree["prior_predictive"]["y"].values))
    # The priors are weakly informative on the standardized scale: prior outcomes spread
    # wider than the data, never narrower.
    assert tree["prior_predictive"]["y"].values.std() > trial.data["y"].std()


def test_binary_predictive_outcomes_are_zero_or_one():
    trial = binary_multisite_rct(n=300, seed=2, n_sites=4)
    est = HierarchicalITE(**FAST, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(**trial.fit_kwargs())
    y_rep = est.posterior_predictive()["posterior_predictive"]["y"].values
    assert set(np.unique(y_rep)) <= {0.0, 1.0}
    # replicated event rate within 4 binomial sd of the observed rate
    rate = trial.data["y"].mean()
    assert abs(y_rep.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / trial.n)


def test_predictive_before_fit_raises():
    with pytest.raises(NotFittedError):
        HierarchicalITE().posterior_predictive()
