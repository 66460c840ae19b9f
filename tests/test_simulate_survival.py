"""Tests for the survival designs (itelib.simulate.survival) and their AFT helpers (aft.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from itelib.simulate import SurvivalTrial, available, outcome_kind, simulate
from itelib.simulate.aft import calibrate_censoring_rate, restricted_mean, survival_probability
from itelib.simulate.survival import survival_log_time_ratio, survival_prognosis

DESIGNS = ["survival_weibull", "survival_lognormal", "survival_multisite"]
FAMILY = {"survival_weibull": "weibull", "survival_lognormal": "lognormal"}


def _small(name: str, n: int, seed: object, **kwargs: object) -> SurvivalTrial:
    """A trial small enough for tiny n (the multi-site design gets few sites)."""
    if name == "survival_multisite":
        kwargs = {"n_sites": 4, **kwargs}
    return simulate(name, n, seed=seed, **kwargs)


def _scipy_law(family: str, location: float, sigma: float) -> stats.rv_continuous:
    """The frozen scipy.stats distribution of exp(location + sigma * error)."""
    if family == "weibull":
        return stats.weibull_min(c=1.0 / sigma, scale=np.exp(location))
    return stats.lognorm(s=sigma, scale=np.exp(location))


def test_designs_are_registered_as_survival_and_the_others_are_not() -> None:
    assert set(DESIGNS) <= set(available())
    assert {outcome_kind(name) for name in DESIGNS} == {"survival"}
    assert outcome_kind("multisite_rct") == "scalar"
    assert SurvivalTrial.outcome_kind == "survival"
    with pytest.raises(ValueError, match="unknown design 'nope'"):
        outcome_kind("nope")


@pytest.mark.parametrize("name", DESIGNS)
def test_data_truth_and_fit_kwargs_have_the_documented_shape(name: str) -> None:
    trial = _small(name, 120, 3)
    data = trial.data
    site = ["site"] if name == "survival_multisite" else []
    assert list(data.columns) == ["time", "event", "t", "x1", "x2", "x3", "x4", "x5", *site]
    assert data.index.name == "patient" and data.index[0] == "p0000"
    assert (data["time"] > 0).all() and np.isfinite(data["time"]).all()
    assert set(np.unique(data["event"])) <= {0, 1} and data["event"].dtype == np.int64
    assert set(np.unique(data["t"])) <= {0, 1} and data["t"].dtype == np.int64
    kw = trial.fit_kwargs()
    assert list(kw["Y"].columns) == ["time", "event"]
    assert kw["Y"].index.equals(data.index)
    assert list(kw["X"].columns) == list(trial.covariates)
    assert (kw["site"] is None) == (name != "survival_multisite")
    truth = trial.truth
    assert truth.index.equals(data.index) and np.isfinite(truth.to_numpy()).all()
    np.testing.assert_allclose(trial.tau, truth["rmst_difference"], rtol=0, atol=0)
    np.testing.assert_allclose(trial.tau, trial.mu1 - trial.mu0, atol=1e-12)
    np.testing.assert_allclose(truth["rmst0"], trial.mu0, atol=0)
    np.testing.assert_allclose(
        truth["survival_difference"], truth["survival1"] - truth["survival0"], atol=1e-15
    )
    horizon = trial.params["horizon"]
    assert ((trial.mu0 > 0) & (trial.mu0 <= horizon) & (trial.mu1 <= horizon)).all()
    assert trial.params["t_eval"] == horizon  # default: the horizon
    # A longer event time (time ratio > 1) is a larger RMST and survival: signs agree.
    ratio_sign = np.sign(np.log(truth["time_ratio"]))
    assert (np.sign(truth["rmst_difference"]) == ratio_sign).all()
    assert (np.sign(truth["survival_difference"]) == ratio_sign).all()


@settings(max_examples=20, deadline=None)
@given(
    name=st.sampled_from(DESIGNS),
    n=st.integers(min_value=20, max_value=150),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    censoring=st.floats(min_value=0.0, max_value=0.9),
    sigma=st.floats(min_value=0.2, max_value=2.0),
)
def test_any_valid_design_gives_positive_times_and_finite_bounded_truth(
    name: str, n: int, seed: int, censoring: float, sigma: float
) -> None:
    trial = _small(name, n, seed, censoring=censoring, sigma=sigma)
    data, truth, horizon = trial.data, trial.truth, trial.params["horizon"]
    assert trial.n == n and (data["time"] > 0).all() and np.isfinite(data["time"]).all()
    assert set(np.unique(data["event"])) <= {0, 1}
    assert np.isfinite(truth.to_numpy()).all() and horizon > 0
    rmst = truth[["rmst0", "rmst1"]].to_numpy()
    assert (rmst > 0).all() and (rmst <= horizon * (1 + 1e-12)).all()  # 1e-12: rounding
    assert (truth["rmst_difference"].abs() <= horizon).all()
    assert (truth["survival_difference"].abs() <= 1).all()
    np.testing.assert_allclose(truth["time_ratio"], np.exp(truth["log_time_ratio"]), rtol=1e-14)


@pytest.mark.parametrize("name", DESIGNS)
def test_a_seed_reproduces_the_trial_and_another_seed_changes_it(name: str) -> None:
    state = np.random.get_state()  # noqa: NPY002 - checking the global RNG is left alone
    first, again = _small(name, 80, 5), _small(name, 80, np.random.SeedSequence(5))
    pd.testing.assert_frame_equal(first.data, again.data)
    pd.testing.assert_frame_equal(first.truth, again.truth)
    assert first.params["horizon"] == again.params["horizon"]
    other = _small(name, 80, 6)
    assert not np.array_equal(first.data["time"], other.data["time"])
    after = np.random.get_state()  # noqa: NPY002
    assert np.array_equal(state[1], after[1])
    with pytest.raises(TypeError, match="seed"):
        _small(name, 40, "5")


@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("censoring", [0.2, 0.3, 0.5])
def test_the_realized_censored_share_is_near_the_target(name: str, censoring: float) -> None:
    # Five trials of n = 1000 pooled. Single site: the binomial sd of one trial's share is
    # sqrt(c (1 - c) / 1000) <= 0.0158; the calibration's own Monte Carlo error (2^17 draws)
    # is below 0.0014 (300 trials gave means within 0.0015 of 0.3 and 0.5). Multi-site: a
    # trial's 20 site draws add spread; 300 trials gave an sd of 0.020 (30 %) and 0.024 (50 %),
    # so 0.025 is used. 4 sd bounds a false alarm at 6e-5 per check.
    shares = [1 - simulate(name, 1000, seed=s, censoring=censoring).data["event"].mean()
              for s in range(5)]  # fmt: skip
    sd = 0.025 if name == "survival_multisite" else np.sqrt(censoring * (1 - censoring) / 1000)
    assert abs(np.mean(shares) - censoring) < 4 * sd / np.sqrt(5)
    assert max(abs(share - censoring) for share in shares) < 4 * sd


@pytest.mark.parametrize("name", DESIGNS)
def test_no_censoring_observes_every_event(name: str) -> None:
    trial = _small(name, 300, 2, censoring=0)
    assert (trial.data["event"] == 1).all()
    assert trial.params["censoring_rate"] == 0.0


@pytest.mark.parametrize("name", ["survival_weibull", "survival_lognormal"])
def test_event_times_follow_the_aft_model(name: str) -> None:
    # Without censoring, (log time - eta) / sigma must be the family's error law:
    # Kolmogorov-Smirnov at n = 4000, p > 1e-3 (a false alarm once in a thousand runs).
    trial = simulate(name, 4000, seed=8, censoring=0)
    params, data = trial.params, trial.data
    x = trial.X.to_numpy()
    eta = params["intercept"] + survival_prognosis(x) + data["t"] * survival_log_time_ratio(x)
    error = (np.log(data["time"]) - eta) / params["sigma"]
    law = stats.gumbel_l if name == "survival_weibull" else stats.norm
    assert stats.kstest(error, law.cdf).pvalue > 1e-3


@pytest.mark.parametrize("family", ["weibull", "lognormal"])
def test_survival_and_rmst_match_scipy(family: str) -> None:
    location, sigma = np.array([-0.5, 1.0, 2.7]), 0.75
    times = np.array([0.05, 1.0, 3.0, 20.0])
    for eta in location:
        law = _scipy_law(family, eta, sigma)
        np.testing.assert_allclose(
            survival_probability(times, eta, sigma, family), law.sf(times), rtol=1e-12, atol=1e-300
        )
        for horizon in (0.3, 5.0, 40.0):
            # adaptive quadrature of the scipy survival function; its error estimate < 1e-10
            exact, err = integrate.quad(law.sf, 0.0, horizon, epsabs=1e-12, epsrel=1e-12)
            assert err < 1e-10
            closed = restricted_mean(horizon, eta, sigma, family)
            np.testing.assert_allclose(closed, exact, rtol=1e-9)


@pytest.mark.parametrize("name", DESIGNS)
def test_true_rmst_difference_matches_monte_carlo(name: str) -> None:
    # For four fixed patients, draw 200,000 potential untreated event times from scipy.stats
    # (a sampler independent of the design's) and average min(T, L). Common random numbers make
    # T(1) = T(0) * time ratio, as in the AFT model, so the difference's Monte Carlo standard
    # error is sd(min(T1, L) - min(T0, L)) / sqrt(m); 5 SE bounds a false alarm at 6e-7 per check.
    trial = _small(name, 50, 4)
    params, x = trial.params, trial.X.to_numpy()
    family = params.get("family") or FAMILY[name]
    sigma, horizon = params["sigma"], params["horizon"]
    eta0 = params["intercept"] + survival_prognosis(x)
    if name == "survival_multisite":
        eta0 = eta0 + params["site_truth"].loc[trial.data["site"], "intercept"].to_numpy()
    rng = np.random.default_rng(99)
    m = 200_000
    for i in range(4):
        truth = trial.truth.iloc[i]
        t0 = _scipy_law(family, eta0[i], sigma).rvs(size=m, random_state=rng)
        t1 = t0 * truth["time_ratio"]
        diff = np.minimum(t1, horizon) - np.minimum(t0, horizon)
        se = diff.std(ddof=1) / np.sqrt(m)
        assert abs(diff.mean() - truth["rmst_difference"]) < 5 * se
        # the survival difference: hit is +-1 with probability |d|, so its SE is
        # sqrt(|d| (1 - |d|) / m) from the truth (a sample sd is 0 when d is ~1e-7)
        hit = (t1 > horizon).astype(float) - (t0 > horizon)
        d = truth["survival_difference"]
        assert abs(hit.mean() - d) < 5 * np.sqrt(abs(d) * (1 - abs(d)) / m) + 1e-12


def test_the_truth_follows_the_formulas_of_the_design() -> None:
    trial = simulate("survival_weibull", 400, seed=12, t_eval=7.5, horizon=15.0)
    p, x = trial.params, trial.X.to_numpy()
    gamma = survival_log_time_ratio(x)
    eta0 = p["intercept"] + survival_prognosis(x)
    np.testing.assert_allclose(trial.truth["time_ratio"], np.exp(gamma), rtol=1e-14)
    np.testing.assert_allclose(trial.truth["log_time_ratio"], gamma, rtol=1e-14)
    sf = stats.weibull_min(c=1 / p["sigma"], scale=np.exp(eta0 + gamma)).sf(7.5)
    np.testing.assert_allclose(trial.truth["survival1"], sf, rtol=1e-10)
    assert (p["horizon"], p["t_eval"]) == (15.0, 7.5)
    np.testing.assert_allclose(trial.mu0, restricted_mean(15.0, eta0, p["sigma"], "weibull"))


def test_confounding_selects_patients_with_a_worse_prognosis() -> None:
    rct = simulate("survival_weibull", 2000, seed=1)
    assert (rct.propensity == 0.5).all()
    cohort = simulate("survival_weibull", 2000, seed=1, confounding=1.5)
    x1 = cohort.data["x1"]
    assert cohort.propensity.min() >= 0.05 and cohort.propensity.max() <= 0.95
    # x1 shortens survival; treated patients have a higher x1: the gap was 0.99 with sd 0.03
    # over 20 seeds at n = 2000, so 0.5 is 16 sd below it and far above a randomized trial's 0
    gap = x1[cohort.data["t"] == 1].mean() - x1[cohort.data["t"] == 0].mean()
    assert gap > 0.5


def test_the_multisite_design_varies_the_effect_between_sites() -> None:
    trial = simulate("survival_multisite", 4000, seed=21, n_sites=40, site_effect_sd=0.3)
    sites = trial.params["site_truth"]
    assert list(sites.columns) == ["intercept", "log_time_ratio"] and len(sites) == 40
    assert sorted(trial.data["site"].unique()) == list(sites.index)
    b = sites["log_time_ratio"].to_numpy()
    # sd of 40 normal draws: (n - 1) s^2 / sigma^2 ~ chi2(39), whose 0.1 %-99.9 % range is
    # [17.9, 72.1], so s lies in [0.20, 0.41] for sigma = 0.3 but a fixed effect would give 0
    assert 0.2 < b.std(ddof=1) < 0.41
    # the log time ratio is the patient's modifier term plus the site's b_j, exactly
    offset = trial.truth["log_time_ratio"] - survival_log_time_ratio(trial.X.to_numpy())
    np.testing.assert_allclose(offset, sites.loc[trial.data["site"], "log_time_ratio"], atol=1e-12)
    lognormal = simulate("survival_multisite", 200, seed=1, family="lognormal", n_sites=5)
    assert lognormal.params["family"] == "lognormal"
    none = simulate("survival_multisite", 200, seed=1, n_sites=5, site_effect_sd=0.0)
    assert (none.params["site_truth"]["log_time_ratio"] == 0).all()


def test_censoring_calibration_hits_its_target_on_a_known_law() -> None:
    # Exponential T with rate 1 and censoring rate r: P(C < T) = r / (1 + r), so r = c / (1 - c).
    times = np.random.default_rng(0).standard_exponential(2**18)
    rate = calibrate_censoring_rate(times, 0.4)
    assert rate == pytest.approx(0.4 / 0.6, rel=0.01)  # MC error of the mean of 1 - e^{-rT}
    # tiny and large targets stay inside the root finder's bracket (r ~ c / E(T) for small c)
    assert calibrate_censoring_rate(times, 1e-30) == pytest.approx(1e-30, rel=0.01)
    assert calibrate_censoring_rate(times, 0.9) == pytest.approx(9.0, rel=0.01)


@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"censoring": -0.1}, "censoring"),
        ({"censoring": 0.95}, "censoring"),
        ({"censoring": float("nan")}, "censoring"),
        ({"horizon": 0.0}, "horizon"),
        ({"horizon": -3.0}, "horizon"),
        ({"horizon": float("inf")}, "horizon"),
        ({"t_eval": 0.0}, "t_eval"),
        ({"sigma": 0.0}, "sigma"),
        ({"p": 3}, "p"),
    ],
)
def test_bad_parameters_raise_naming_the_argument(
    name: str, kwargs: dict[str, float], argument: str
) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`"):
        _small(name, 50, 0, **kwargs)


def test_bad_design_specific_parameters_raise_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="`family`"):
        simulate("survival_multisite", 100, seed=0, n_sites=4, family="cox")
    with pytest.raises(ValueError, match="`site_effect_sd`"):
        simulate("survival_multisite", 100, seed=0, n_sites=4, site_effect_sd=-1.0)
    with pytest.raises(ValueError, match="`confounding`"):
        simulate("survival_weibull", 100, seed=0, confounding=-1.0)
    with pytest.raises(ValueError, match="`overlap`"):
        simulate("survival_lognormal", 100, seed=0, overlap=0.5)


def test_censoring_extremes_are_supported() -> None:
    trial = simulate("survival_lognormal", 1000, seed=3, censoring=0.9)
    assert abs((1 - trial.data["event"].mean()) - 0.9) < 4 * np.sqrt(0.09 / 1000)


def test_a_study_refuses_a_survival_design_that_none_of_its_estimators_fits(tmp_path) -> None:
    """CausalForest takes no survival outcome: the design would run no cell, so the file is
    refused, naming the estimators that fit it."""
    from itelib.calibration.study import load_config

    config = tmp_path / "surv.toml"
    config.write_text(
        'name = "x"\nseed = 1\nreplications = 1\n[[dgp]]\nname = "survival_weibull"\n'
        'n = [100]\n[[estimator]]\nname = "a"\nkind = "itelib:CausalForest"\n'
    )
    with pytest.raises(
        ValueError,
        match=r"'survival_weibull' has a survival outcome, which none of this study's "
        r"estimators fits.*itelib:HierarchicalITE, itelib:BayesianCausalForest, "
        r"peer:sksurv_cox, peer:sksurv_rsf",
    ):
        load_config(config)


@pytest.mark.parametrize("masked", ["missing_at_random", "missing_not_at_random"])
def test_designs_with_missing_covariates_refuse_a_survival_base(masked) -> None:
    """They are registered as one-outcome designs (studies fit them), so a [time, event] base
    must be refused at once, not fail later at the fit."""
    with pytest.raises(ValueError, match=r"design='survival_weibull' has a survival outcome"):
        simulate(masked, 100, seed=0, design="survival_weibull")
