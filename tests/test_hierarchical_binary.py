"""HierarchicalITE on binary outcomes: risk differences, log odds ratios, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from itelib import ConvergenceWarning, DataValidationError, HierarchicalITE
from itelib.calibration import coverage, sqrt_pehe
from itelib.simulate import binary_multisite_rct

FAST = dict(num_warmup=200, num_samples=150, num_chains=2, progress_bar=False)


@pytest.fixture(scope="module")
def calibrated_fit():
    """NUTS at the defaults on binary_multisite_rct (n = 2000, seed 31)."""
    trial = binary_multisite_rct(n=2000, seed=31)
    est = HierarchicalITE(progress_bar=False, random_state=0).fit(**trial.fit_kwargs())
    return trial, est


def test_binary_trial_risk_differences_are_calibrated(calibrated_fit):
    """The must-show test on binary_multisite_rct (n = 2000), default sampler settings.

    Band for the coverage of 95% intervals of the true risk differences: [0.90, 1.0].
    Independent patients would give a binomial sd of sqrt(0.95 * 0.05 / 2000) = 0.005, but
    patients share the site and modifier errors (20 sites, 6 covariates), so the effective
    number of independent indicators is in the tens: on the continuous multi-site trial the
    90% coverage varied with sd 0.05 between seeds. The lower edge, 0.95 - 0.05, guards the
    failure that misleads a clinician (intervals too narrow). There is no upper edge below 1:
    measured with benchmarks/hierarchical_coverage.py-style runs (seeds 31, 1, 2) the 95%
    coverage is 0.995, 0.980, 0.984 -- the intervals are conservative (see the issue note);
    the sqrt-PEHE bound (measured 0.047-0.053; 0.08 is the best peer's figure on the binary
    trial of REFERENCES.md) keeps a uselessly wide or biased posterior from passing.
    """
    trial, est = calibrated_fit
    assert est.outcome_ == "binary"
    post = est.effect()
    assert post.attrs["scale"] == "risk_difference"
    assert np.all(np.abs(post.draws()) <= 1)
    cov95 = coverage(post.draws(), trial.tau.to_numpy(), levels=(0.95,))[0.95]
    assert 0.90 <= cov95 <= 1.0, cov95
    assert sqrt_pehe(post.draws(), trial.tau.to_numpy()) < 0.08
    lo, hi = est.ate().interval(0.95)
    assert lo <= trial.ate <= hi
    assert est.diagnostics_.n_divergent == 0


@pytest.mark.parametrize("batch_size", [None, 500])
def test_svi_agrees_with_nuts_on_the_same_trial(calibrated_fit, batch_size):
    """inference="svi" (full-rank guide, 5,000 steps) against the NUTS fit above.

    Bands: the median over patients of SVI's posterior sd over NUTS's in [0.7, 1.3], and of
    |mean difference| in NUTS sds below 0.5. Measured with benchmarks/svi_vs_nuts.py on the
    same design with seed 0 (n = 2000): 0.94 and 0.28 (a low-rank guide: 0.74 and 0.33). A wrong
    minibatch scale breaks the first: with the likelihood down-weighted by batch / n = 1/4 the
    sds would double; a guide that ignores the data breaks both. The loss levels off within
    5,000 steps at this n (its mean moved 0.04 nats of ~1095 from 5,000 to 20,000 steps).
    """
    trial, nuts = calibrated_fit
    svi = HierarchicalITE(
        inference="svi", svi_steps=5000, batch_size=batch_size, progress_bar=False,
        random_state=0,
    ).fit(**trial.fit_kwargs())  # fmt: skip
    assert svi.diagnostics_.converged
    post = svi.effect()
    assert post.attrs["inference"] == "variational"
    a, b = post.draws().reshape(-1, trial.n), nuts.effect().draws().reshape(-1, trial.n)
    ratio = np.median(a.std(axis=0) / b.std(axis=0))
    shift = np.median(np.abs(a.mean(axis=0) - b.mean(axis=0)) / b.std(axis=0))
    assert 0.7 <= ratio <= 1.3, ratio
    assert shift < 0.5, shift


@pytest.fixture(scope="module")
def small_binary_fit():
    trial = binary_multisite_rct(n=300, seed=5, n_sites=6)
    est = HierarchicalITE(**FAST, random_state=2)
    with pytest.warns(ConvergenceWarning):  # 300 draws cannot reach ESS 400
        est.fit(**trial.fit_kwargs())
    return trial, est


def test_log_odds_ratio_scale_and_risk_difference_agree_in_sign(small_binary_fit):
    trial, est = small_binary_fit
    rd = est.effect(scale="risk_difference").draws()
    log_or = est.effect(scale="log_odds_ratio").draws()
    # A risk difference and a log odds ratio from the same draw always share their sign.
    assert np.all(np.sign(rd) == np.sign(log_or))
    assert est.effect(scale="log_odds_ratio").attrs["scale"] == "log_odds_ratio"
    with pytest.raises(ValueError, match="scale"):
        est.effect(scale="outcome")


def test_unseen_site_risk_differences_stay_probabilities(small_binary_fit):
    trial, est = small_binary_fit
    X = trial.X.iloc[:4]
    post = est.effect(X, site=pd.Series(["elsewhere"] * 4, index=X.index))
    assert np.all(np.abs(post.draws()) <= 1)
    assert np.all(np.isfinite(post.draws()))


def test_explicit_binary_on_non_binary_outcome_names_the_column():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.normal(size=40)})
    Y = pd.Series(rng.normal(size=40), name="score")
    T = pd.Series(np.tile([0, 1], 20), name="arm")
    with pytest.raises(DataValidationError, match="score"):
        HierarchicalITE(outcome="binary", **FAST).fit(Y, T, X=X)


def test_zero_one_outcome_can_be_forced_continuous(small_binary_fit):
    trial, _ = small_binary_fit
    est = HierarchicalITE(outcome="continuous", **FAST, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(**trial.fit_kwargs())
    assert est.outcome_ == "continuous"
    assert est.effect().attrs["scale"] == "outcome"
