"""Tests for the binary multi-site trial and the observational cohort designs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit

import itelib.simulate as sim
from itelib.simulate import SimulatedTrial, available, simulate
from itelib.simulate.cohort import cohort_mu0, cohort_propensity, cohort_tau

DESIGNS = ["binary_multisite_rct", "observational_cohort"]


def _small(name: str, n: int, seed: object, **kwargs: object) -> SimulatedTrial:
    """A small trial; the binary design gets few sites so that tiny n is allowed."""
    if name == "binary_multisite_rct":
        kwargs.setdefault("n_sites", 4)
    return simulate(name, n, seed=seed, **kwargs)


def _site_design(trial: SimulatedTrial) -> np.ndarray:
    """Site dummies next to the covariates: the design of a hierarchical linear predictor."""
    sites = pd.get_dummies(trial.data["site"]).to_numpy(dtype=float)
    return np.column_stack([sites, trial.X.to_numpy()])


def test_registered_and_exported() -> None:
    assert set(DESIGNS) <= set(available())
    assert {"binary_multisite_rct", "observational_cohort"} <= set(sim.__all__)
    assert simulate("binary_multisite_rct", 100, seed=0).name == "binary_multisite_rct"
    trial = simulate("observational_cohort", 50, seed=0, p=7)
    assert trial.name == "observational_cohort" and trial.params["p"] == 7
    assert trial.site is None and trial.fit_kwargs()["site"] is None


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(DESIGNS),
    n=st.integers(min_value=20, max_value=200),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_designs_have_consistent_shapes_and_truth(name: str, n: int, seed: int) -> None:
    trial = _small(name, n, seed)
    data = trial.data
    assert data.shape[0] == n == trial.n
    assert data.index.name == "patient" and data.index.is_unique
    expected = ["y", "t", *trial.covariates] + (["site"] if trial.site else [])
    assert list(data.columns) == expected
    assert set(np.unique(data["t"])) <= {0, 1} and data["t"].dtype == np.int64
    assert np.isfinite(data[["y", *trial.covariates]].to_numpy(dtype=float)).all()
    for series in (trial.tau, trial.mu0, trial.mu1, trial.propensity):
        assert series.index.equals(data.index)
        assert np.isfinite(series.to_numpy()).all()
    assert ((trial.propensity > 0) & (trial.propensity < 1)).all()
    np.testing.assert_allclose(trial.tau, trial.mu1 - trial.mu0, atol=1e-12)
    if name == "binary_multisite_rct":
        assert data["y"].dtype == np.int64 and set(np.unique(data["y"])) <= {0, 1}
        for risk in (trial.mu0, trial.mu1):
            assert ((risk > 0) & (risk < 1)).all()
        assert ((trial.tau > -1) & (trial.tau < 1)).all()


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(DESIGNS), seed=st.integers(min_value=0, max_value=2**32 - 2))
def test_designs_are_reproducible_and_seed_dependent(name: str, seed: int) -> None:
    first, again = _small(name, 60, seed), _small(name, 60, seed)
    pd.testing.assert_frame_equal(first.data, again.data)
    pd.testing.assert_series_equal(first.tau, again.tau)
    pd.testing.assert_series_equal(first.propensity, again.propensity)
    other = _small(name, 60, seed + 1)
    assert not np.array_equal(first.data["x1"].to_numpy(), other.data["x1"].to_numpy())


@pytest.mark.parametrize("name", DESIGNS)
def test_seed_kinds_and_no_global_rng(name: str) -> None:
    state = np.random.get_state()  # noqa: NPY002 - checking the global RNG is left alone
    by_int = _small(name, 40, 7)
    by_sequence = _small(name, 40, np.random.SeedSequence(7))
    by_generator = _small(name, 40, np.random.default_rng(7))
    pd.testing.assert_frame_equal(by_int.data, by_sequence.data)
    pd.testing.assert_frame_equal(by_int.data, by_generator.data)
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1])
    with pytest.raises(TypeError, match="seed"):
        _small(name, 40, "7")


def test_binary_follows_its_formula() -> None:
    trial = sim.binary_multisite_rct(3000, seed=3)
    data, truth = trial.data, trial.params["site_truth"]
    assert trial.site == "site" and trial.covariates == tuple(f"x{k}" for k in range(1, 7))
    assert list(truth.columns) == ["intercept", "log_odds_ratio"] and len(truth) == 20
    assert (trial.propensity == 0.5).all()
    x = trial.X.to_numpy()
    a = truth["intercept"].reindex(data["site"]).to_numpy()
    b = truth["log_odds_ratio"].reindex(data["site"]).to_numpy()
    eta0 = -1.2 + a + x[:, :3] @ [0.4, -0.3, 0.2]
    theta = -0.5 + b + x[:, :2] @ [0.5, -0.4]
    np.testing.assert_allclose(trial.params["log_odds_ratio"], theta, atol=1e-12)
    assert trial.params["log_odds_ratio"].index.equals(data.index)
    np.testing.assert_allclose(trial.mu0, expit(eta0), atol=1e-12)
    np.testing.assert_allclose(trial.mu1, expit(eta0 + theta), atol=1e-12)
    # The truth is the risk difference, not the log odds ratio.
    np.testing.assert_allclose(trial.tau, expit(eta0 + theta) - expit(eta0), atol=1e-12)
    # A hierarchical logistic model linear in x is correctly specified: both the baseline log
    # odds and the log odds ratio are exactly site intercepts + linear terms in x.
    design = _site_design(trial)
    for target, coefs in (
        (logit(trial.mu0.to_numpy()), [0.4, -0.3, 0.2, 0, 0, 0]),
        (logit(trial.mu1.to_numpy()) - logit(trial.mu0.to_numpy()), [0.5, -0.4, 0, 0, 0, 0]),
    ):
        fitted, *_ = np.linalg.lstsq(design, target, rcond=None)
        np.testing.assert_allclose(design @ fitted, target, atol=1e-8)
        np.testing.assert_allclose(fitted[20:], coefs, atol=1e-8)


def test_binary_outcomes_match_their_risks() -> None:
    trial = sim.binary_multisite_rct(20000, seed=4)
    y, t = trial.data["y"].to_numpy(), trial.data["t"].to_numpy()
    risk = np.where(t == 1, trial.mu1, trial.mu0)
    # Given the risks, the events in an arm are a sum of independent Bernoullis: the event rate
    # has sd sqrt(sum r (1 - r)) / m (about 0.004 per arm here); allow 4 sd.
    for arm in (0, 1):
        r = risk[t == arm]
        sd = np.sqrt(np.sum(r * (1 - r))) / r.size
        assert abs(y[t == arm].mean() - r.mean()) < 4 * sd
    # Baseline risk of an adverse outcome in the 10-50 % range; protective on average
    # (population: mean baseline 0.25, mean risk difference -0.05; one trial's 20 sites vary).
    assert 0.15 < trial.mu0.mean() < 0.4
    assert -0.1 < trial.ate < 0
    assert 0.05 < trial.tau.std() < 0.12


def test_binary_arguments() -> None:
    trial = sim.binary_multisite_rct(300, seed=1, n_sites=6, p=3, site_effect_sd=0.0)
    assert trial.data["site"].nunique() == 6 and trial.covariates == ("x1", "x2", "x3")
    assert trial.params["site_truth"]["log_odds_ratio"].eq(0).all()
    with pytest.raises(ValueError, match="`n` must be at least 100"):
        sim.binary_multisite_rct(99, seed=0)
    with pytest.raises(ValueError, match="`prognostic`"):
        sim.binary_multisite_rct(200, seed=0, p=2)
    with pytest.raises(ValueError, match="`modifiers`"):
        sim.binary_multisite_rct(200, seed=0, modifiers=(np.nan,))
    with pytest.raises(ValueError, match="`rho`"):
        sim.binary_multisite_rct(200, seed=0, rho=-1.0)
    with pytest.raises(ValueError, match="`site_intercept_sd`"):
        sim.binary_multisite_rct(200, seed=0, site_intercept_sd=-0.1)
    with pytest.raises(ValueError, match="`tau0`"):
        sim.binary_multisite_rct(200, seed=0, tau0=np.inf)


def test_cohort_follows_its_formula() -> None:
    trial = sim.observational_cohort(2000, seed=5)
    x1, x2, x3, x4, x5 = (trial.data[f"x{k}"].to_numpy() for k in range(1, 6))
    mu0 = 1 + 2 * np.tanh(x1) + 0.5 * (x2**2 - 1) - 0.5 * x3 + 0.5 * x4 * x5
    tau = 1 + 0.5 * x1 + 0.5 * (x2 > 0)
    pi = np.clip(expit(x1 - 0.5 * x3), 0.05, 0.95)
    np.testing.assert_allclose(trial.mu0, mu0, atol=1e-12)
    np.testing.assert_allclose(trial.tau, tau, atol=1e-12)
    np.testing.assert_allclose(trial.propensity, pi, atol=1e-12)
    np.testing.assert_allclose(cohort_mu0(trial.X), mu0, atol=1e-12)
    np.testing.assert_allclose(cohort_tau(trial.X), tau, atol=1e-12)
    # y - mu0 - tau * t is the N(0, 1) noise: its sd over 2000 patients is 1 +- 0.016; 5 sd.
    residual = trial.data["y"] - mu0 - tau * trial.data["t"]
    assert abs(residual.std() - 1.0) < 5 / np.sqrt(2 * 2000)


def _naive_and_se(trial: SimulatedTrial) -> tuple[float, float]:
    """Difference in means between the arms and its (Neyman) standard error."""
    y, t = trial.data["y"].to_numpy(), trial.data["t"].to_numpy()
    y1, y0 = y[t == 1], y[t == 0]
    return y1.mean() - y0.mean(), np.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size)


def test_cohort_is_confounded_and_the_propensity_corrects_it() -> None:
    trial = sim.observational_cohort(20000, seed=6)
    naive, se = _naive_and_se(trial)
    # Monte Carlo error of the naive difference at n = 20000 is about 0.03; the selection on
    # x1 and x3 biases it upwards by about 1.4, far beyond 10 standard errors.
    assert naive - trial.ate > 10 * se
    # Inverse-probability weighting with the true propensity removes the bias: each term
    # t y / pi - (1 - t) y / (1 - pi) - tau has mean zero given x, so their average is within
    # 4 of its standard errors of 0.
    y, t = trial.data["y"].to_numpy(), trial.data["t"].to_numpy()
    pi = trial.propensity.to_numpy()
    terms = t * y / pi - (1 - t) * y / (1 - pi) - trial.tau.to_numpy()
    assert abs(terms.mean()) < 4 * terms.std(ddof=1) / np.sqrt(terms.size)
    # Without confounding the same naive difference is unbiased (within 4 standard errors).
    randomized = sim.observational_cohort(20000, seed=6, confounding=0.0)
    assert (randomized.propensity == 0.5).all()
    naive, se = _naive_and_se(randomized)
    assert abs(naive - randomized.ate) < 4 * se


@settings(max_examples=15, deadline=None)
@given(
    overlap=st.floats(min_value=1e-9, max_value=0.49),
    confounding=st.floats(min_value=0.0, max_value=20.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_cohort_propensity_respects_the_overlap_bound(
    overlap: float, confounding: float, seed: int
) -> None:
    trial = sim.observational_cohort(100, seed, overlap=overlap, confounding=confounding)
    pi = trial.propensity.to_numpy()
    assert (pi >= overlap).all() and (pi <= 1 - overlap).all()
    assert ((pi > 0) & (pi < 1)).all()
    expected = cohort_propensity(trial.X, overlap=overlap, confounding=confounding)
    np.testing.assert_array_equal(pi, expected)


def test_cohort_arguments() -> None:
    with pytest.raises(ValueError, match="`p` must be at least 5"):
        sim.observational_cohort(50, seed=0, p=4)
    for overlap in (0.0, 1e-17, 0.5):
        with pytest.raises(ValueError, match="`overlap`"):
            sim.observational_cohort(50, seed=0, overlap=overlap)
    with pytest.raises(ValueError, match="`overlap`"):
        sim.observational_cohort(50, seed=0, overlap=float("nan"))
    with pytest.raises(ValueError, match="`confounding`"):
        sim.observational_cohort(50, seed=0, confounding=-1.0)
    with pytest.raises(ValueError, match="`noise_sd`"):
        sim.observational_cohort(50, seed=0, noise_sd=np.inf)
    with pytest.raises(TypeError, match="`n`"):
        sim.observational_cohort(50.0, seed=0)  # type: ignore[arg-type]


def test_nie_wager_setups_follow_the_papers_formulas():
    from scipy.special import expit

    for setup in "ABCD":
        trial = simulate(f"nie_wager_{setup.lower()}", n=400, seed=3)
        x = trial.X.to_numpy()
        if setup == "A":
            assert np.allclose(trial.tau, (x[:, 0] + x[:, 1]) / 2)
            assert trial.propensity.between(0.1, 0.9).all()
        elif setup == "B":
            assert np.allclose(trial.tau, x[:, 0] + np.log1p(np.exp(x[:, 1])))
        elif setup == "C":
            assert np.allclose(trial.tau, 1.0)
            assert np.allclose(trial.propensity, expit(-(x[:, 1] + x[:, 2])))
        else:
            relu = np.maximum
            assert np.allclose(trial.tau, relu(0, x[:, :3].sum(1)) - relu(0, x[:, 3] + x[:, 4]))
        # y = b + (w - 1/2) tau + noise, with b the average of the two potential means
        b = trial.mu0 + 0.5 * trial.tau
        resid = trial.data["y"] - b - (trial.data["t"] - 0.5) * trial.tau
        assert abs(resid.std() - 1.0) < 0.1  # sigma = 1; sd of 400 draws is within 0.1


def test_ihdp_b_uses_econmls_covariates_and_hills_effect_on_the_treated():
    trial = simulate("ihdp_b", n=747, seed=0)
    assert trial.n == 747 and len(trial.covariates) == 25
    treated = trial.data["t"] == 1
    assert abs(trial.tau[treated].mean() - 4.0) < 1e-9  # omega makes the ATT exactly 4
    assert trial.propensity.isna().all()  # real assignment: unknown
    assert simulate("ihdp_b", n=300, seed=0).n == 300


def test_high_dimensional_trial_has_correlated_blocks_and_three_modifiers():
    trial = simulate("high_dimensional_rct", n=3000, seed=0)
    x = trial.X.to_numpy()
    assert x.shape[1] == 200
    corr = np.corrcoef(x[:, :12].T)
    assert abs(corr[0, 1] - 0.6) < 0.05 and abs(corr[0, 11]) < 0.05  # within / across blocks
    expected = 1 + 0.6 * x[:, 0] - 0.5 * x[:, 10] + 0.5 * (x[:, 20] > 0) - 0.25
    assert np.allclose(trial.tau, expected)
