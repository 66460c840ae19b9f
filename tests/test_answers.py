"""itelib.answers: cross-fitted DR scores, BLP, GATES, RATE and validate (checks without truth).

Statistical tolerances: a z of 4 on the method's own standard error fails a correct method
with probability 6e-5; rates over Monte Carlo replications use their binomial standard error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LinearRegression

import itelib
from itelib import EffectPosterior
from itelib.answers.blp import blp
from itelib.answers.checks import ESTIMATED_PROPENSITY_CAVEAT
from itelib.answers.gates import gates, quantile_groups, within_fold_ranks
from itelib.answers.rate import rate, rate_estimates, toc_values
from itelib.answers.scores import dr_scores, outcome_mean, score_propensity
from itelib.exceptions import DataValidationError


def _trial(n, rng, heterogeneous=True):
    X = rng.normal(size=(n, 3))
    tau = 1.0 + (X[:, 0] if heterogeneous else 0.0)
    t = rng.binomial(1, 0.5, n)
    y = X[:, 1] + np.sin(X[:, 2]) + t * tau + rng.normal(size=n)
    return X, t.astype(float), y, tau


class Oracle(BaseEstimator):
    """A stand-in estimator whose effect is ``scale * x0 + 1`` (``noise``: pure noise), so
    validate's logic is tested without a sampler."""

    def __init__(self, scale=1.0, noise=False, random_state=None):
        self.scale, self.noise, self.random_state = scale, noise, random_state

    def fit(self, Y, T, *, X, site=None, propensity=None, **kwargs):
        self.n_fit_ = len(Y)
        return self

    def effect(self, X=None, *, site=None):
        X = pd.DataFrame(X)
        if self.noise:
            rng = np.random.default_rng(len(X) + int(X.iloc[0, 0] * 1e6) % 1000)
            mean = rng.normal(size=len(X))
        else:
            mean = 1.0 + self.scale * X.iloc[:, 0].to_numpy()
        return EffectPosterior.from_draws(np.broadcast_to(mean, (1, 2, len(X))),
                                          patient_ids=X.index)  # fmt: skip


# --------------------------------------------------------------------------- BLP
def _randomized(tau, rng, noise=3.0, share=0.5):
    """y, t, m = E[y | x] and e of a randomized trial with effects ``tau`` (prognosis 0)."""
    t = rng.binomial(1, share, tau.size).astype(float)
    y = t * tau + rng.normal(0.0, noise, tau.size)
    return y, t, share * tau, np.full(tau.size, share)


def test_blp_slope_is_one_when_the_estimate_is_the_truth():
    rng = np.random.default_rng(0)
    tau = rng.normal(1.0, 1.0, 20_000)
    y, t, m, e = _randomized(tau, rng)
    fit = blp(y, t, m, e, tau)
    assert abs(fit.slope - 1.0) < 4 * fit.slope_se and fit.slope_se < 0.1
    assert abs(fit.intercept - tau.mean()) < 4 * fit.intercept_se  # the ATE in a trial
    assert fit.p_heterogeneity < 1e-10 and fit.p_calibration > 1e-4


def test_blp_halves_the_slope_when_the_estimates_are_doubled():
    rng = np.random.default_rng(1)
    tau = rng.normal(size=5000)
    y, t, m, e = _randomized(tau, rng, noise=1.0)
    assert blp(y, t, m, e, 2 * tau).slope == pytest.approx(blp(y, t, m, e, tau).slope / 2)


def test_blp_test_of_no_heterogeneity_holds_its_level():
    # 400 null data sets (estimates unrelated to the effects): one-sided 5 % test rejects
    # 0.05 +/- 0.011 (binomial SE); accept 0.05 +/- 4 SE
    rng = np.random.default_rng(2)
    p = []
    for _ in range(400):
        y, t, m, e = _randomized(np.ones(300), rng, noise=2.0)
        p.append(blp(y, t, m, e, rng.normal(size=300)).p_heterogeneity)
    assert abs(np.mean(np.array(p) < 0.05) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 400)


@pytest.mark.parametrize("design", ["nie_wager_c", "hahn_linear_homogeneous"])
def test_blp_level_holds_with_the_true_nuisances(design):
    # The constant-effect observational designs whose validate() false alarms exceeded 5 %
    # with estimated nuisances (docs/decisions.md). With the true m = E[y | x] and propensity
    # (1/e up to 20 on the Hahn design), estimates along the propensity (where an estimator's
    # confounding leak lies), either sign, 400 null sets each: the one-sided 5 % test rejects
    # 0.05 +/- 0.011 (binomial SE); accept +/- 4 SE. So any excess comes from the nuisances'
    # errors, not from the test's normal approximation.
    from itelib.simulate import simulate

    rejected = {1: [], -1: []}
    for seed in range(400):
        trial = simulate(design, 500, seed=seed)
        kw = trial.fit_kwargs()
        y, t = np.asarray(kw["Y"], dtype=float), np.asarray(kw["T"], dtype=float)
        e, mu0, mu1 = (trial.propensity.to_numpy(), trial.mu0.to_numpy(), trial.mu1.to_numpy())
        m = mu0 + e * (mu1 - mu0)
        for sign in rejected:
            p = blp(y, t, m, e, sign * e, np.arange(500) % 5).p_heterogeneity
            rejected[sign].append(p < 0.05)
    for sign, flags in rejected.items():
        assert abs(np.mean(flags) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 400), (sign, np.mean(flags))


def _cross_fitted_effects(learner, X, t, y, folds):
    """A cross-fitted T-learner: ``least_squares`` (treatment x covariate interactions; the
    estimates of each fold are linear in the other folds' outcomes) or ``neighbours`` (10
    nearest neighbours per arm; local and nonlinear in the outcomes, like a forest's leaves)."""
    from sklearn.neighbors import KNeighborsRegressor

    n, p = X.shape
    Z = np.column_stack([np.ones(n), X, t[:, None] * np.column_stack([np.ones(n), X])])
    tau = np.empty(n)
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        if learner == "least_squares":
            coef = np.linalg.lstsq(Z[train], y[train], rcond=None)[0]
            tau[test] = coef[p + 1] + X[test] @ coef[p + 2 :]
        else:
            mu = [KNeighborsRegressor(10).fit(X[train & (t == a)], y[train & (t == a)])
                  .predict(X[test]) for a in (0, 1)]  # fmt: skip
            tau[test] = mu[1] - mu[0]
    return tau


@pytest.mark.parametrize(("learner", "p", "min_plain_sd"), [("least_squares", 10, 1.25),
                                                          ("neighbours", 5, 1.07)])  # fmt: skip
def test_cross_fitting_spreads_the_null_z_and_the_inflation_takes_it_back(learner, p,
                                                                         min_plain_sd):  # fmt: skip
    # Constant effect, true nuisances, 400 trials (n = 500, 5 folds): with fixed estimates the
    # slope's z has sd 1 (tests above); cross-fitted, each patient's estimate depends on the
    # other folds' noise and theirs on this patient's, which HC3 does not see. Measured here
    # (seed 12): plain z sd 1.37 (least squares) and 1.14 (neighbours), rejection at 5 %
    # 0.095 and 0.060; with the inflation 0.030 and 0.025. The sd of 400 normal z has SE
    # 0.035: the plain sd must exceed 1 by 7 SE for least squares and 2 SE for neighbours
    # (weaker dependence: each estimate leans on 10 of the other folds' patients), and the
    # inflated one stay under 1 + 4 SE, with a one-sided rejection under 5 %.
    from itelib.answers.crossfit import CROSS_FIT_VARIANCE_INFLATION

    rng = np.random.default_rng(12)
    n = 500
    z_plain, z_inflated = [], []
    for _ in range(400):
        X = rng.normal(size=(n, p))
        t = rng.binomial(1, 0.5, n).astype(float)
        y = 0.5 * X.sum(axis=1) + t + rng.normal(size=n)
        folds = np.arange(n) % 5
        tau = _cross_fitted_effects(learner, X, t, y, folds)
        m, e = 0.5 * X.sum(axis=1) + 0.5, np.full(n, 0.5)
        for z, inflation in ((z_plain, 1.0), (z_inflated, CROSS_FIT_VARIANCE_INFLATION)):
            fit = blp(y, t, m, e, tau, folds, inflation)
            z.append(fit.slope / fit.slope_se)
    assert np.std(z_plain) > min_plain_sd, np.std(z_plain)
    assert np.std(z_inflated) < 1.0 + 4 * 0.035
    assert np.mean(np.array(z_inflated) > 1.645) < 0.05


def test_blp_is_robust_to_the_outcome_model_in_a_randomized_trial():
    # Robinson's form with the known propensity: a wrong m (here 0, against a prognosis of
    # sd 2) leaves the slope unbiased, only noisier (the point of the form in a trial)
    rng = np.random.default_rng(5)
    x = rng.normal(size=20_000)
    tau = 1.0 + x
    y, t, _, e = _randomized(tau, rng, noise=1.0)
    y = y + 2.0 * np.sin(3 * x)
    fit = blp(y, t, np.zeros_like(y), e, tau)
    assert abs(fit.slope - 1.0) < 4 * fit.slope_se


def test_blp_centres_within_folds():
    rng = np.random.default_rng(3)
    tau = rng.normal(size=1000)
    folds = np.repeat([0, 1], 500)
    y, t, m, e = _randomized(tau, rng, noise=1.0)
    shifted = tau + 10.0 * folds  # a fold-level shift carries no information on who benefits
    assert blp(y, t, m, e, shifted, folds).slope == pytest.approx(blp(y, t, m, e, tau, folds).slope)


# --------------------------------------------------------------------------- RATE
def test_toc_and_rates_by_hand():
    toc = toc_values(np.array([3.0, 1.0, 2.0]), np.array([3.0, 1.0, 2.0]))
    np.testing.assert_allclose(toc, [1.0, 0.5, 0.0])
    autoc, qini = rate_estimates(np.array([3.0, 1.0, 2.0]), np.array([3.0, 1.0, 2.0]))
    assert autoc == pytest.approx(0.5) and qini == pytest.approx(2 / 9)
    # tied priorities share their mean: no ranking among them, no gain
    np.testing.assert_allclose(toc_values(np.array([2.0, 0.0, 1.0]), np.array([1, 1, 0.0])), 0.0)


def test_rate_of_a_random_ranking_is_zero_and_its_se_is_right():
    # 60 replications: RATE of a random priority centres on 0 and the half-sample bootstrap SE
    # matches the replications' SD (SD of an SD from 60 draws: ~9 %; accept 35 %)
    rng = np.random.default_rng(4)
    est, se = [], []
    for _ in range(60):
        tau = rng.normal(1.0, 1.0, 400)
        r = rate(tau + rng.normal(0, 2, 400), rng.random(400), rng=rng, n_bootstrap=100)
        est.append(r.autoc), se.append(r.autoc_se)
    est = np.array(est)
    assert abs(est.mean()) < 4 * est.std() / np.sqrt(60)
    assert np.mean(se) == pytest.approx(est.std(ddof=1), rel=0.35)


def test_rate_finds_a_good_ranking_and_its_toc_band():
    rng = np.random.default_rng(5)
    tau = rng.normal(1.0, 1.0, 2000)
    r = rate(tau + rng.normal(0, 1, 2000), tau, rng=rng)
    true_autoc, true_qini = rate_estimates(tau, tau)
    assert abs(r.autoc - true_autoc) < 4 * r.autoc_se and r.autoc / r.autoc_se > 10
    assert abs(r.qini - true_qini) < 4 * r.qini_se
    curve = r.toc
    assert list(curve.columns) == ["q", "estimate", "se", "lower", "upper"]
    assert curve["estimate"].iloc[-1] == pytest.approx(0.0, abs=1e-12)  # q = 1: everyone
    assert (curve["lower"] <= curve["estimate"]).all() and (
        curve["estimate"] <= curve["upper"]
    ).all()


# --------------------------------------------------------------------------- GATES
def test_gates_groups_are_within_fold_quantiles_and_rise_with_a_true_ranking():
    rng = np.random.default_rng(6)
    tau = rng.normal(size=1000)
    folds = np.arange(1000) % 5
    ranks = within_fold_ranks(tau, folds)
    groups = quantile_groups(ranks, 4)
    for k in range(5):  # each fold split evenly into the 4 groups
        assert np.bincount(groups[folds == k], minlength=4).tolist() == [50, 50, 50, 50]
    table = gates(tau + rng.normal(size=1000), tau, ranks, 4, 0.95)
    assert list(table.index) == ["G1", "G2", "G3", "G4", "top - bottom"]
    assert np.all(np.diff(table["estimate"].iloc[:4]) > 0)
    assert table.loc["top - bottom", "lower"] > 0


# --------------------------------------------------------------------------- DR scores
def test_dr_scores_are_the_aipw_formula_with_cross_fitted_arm_models():
    rng = np.random.default_rng(7)
    X, t, y, _ = _trial(300, rng)
    folds, e = np.arange(300) % 3, np.full(300, 0.4)
    gamma = dr_scores(y, t, X, e, folds, regressor=LinearRegression())
    mu0, mu1 = np.empty(300), np.empty(300)
    for k in range(3):  # by hand: each fold's arm models fitted on the other folds
        train, test = folds != k, folds == k
        mu0[test] = (
            LinearRegression().fit(X[train & (t == 0)], y[train & (t == 0)]).predict(X[test])
        )
        mu1[test] = (
            LinearRegression().fit(X[train & (t == 1)], y[train & (t == 1)]).predict(X[test])
        )
    aipw = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
    np.testing.assert_allclose(gamma, aipw)
    assert gamma.mean() == pytest.approx(aipw.mean())  # the AIPW ATE


def test_dr_scores_average_to_the_true_effect_with_the_default_model():
    rng = np.random.default_rng(8)
    X, t, y, tau = _trial(1500, rng)
    gamma = dr_scores(y, t, X, score_propensity(None, X, t, None, 0), np.arange(1500) % 5)
    se = gamma.std() / np.sqrt(len(gamma))
    assert abs(gamma.mean() - tau.mean()) < 4 * se


def test_outcome_mean_is_cross_fitted_over_both_arms():
    rng = np.random.default_rng(10)
    X, t, y, _ = _trial(300, rng)
    folds = np.arange(300) % 3
    m = outcome_mean(y, X, folds, regressor=LinearRegression())
    by_hand = np.empty(300)
    for k in range(3):  # each fold predicted by a fit on the other folds, both arms together
        by_hand[folds == k] = LinearRegression().fit(X[folds != k], y[folds != k]).predict(
            X[folds == k]
        )
    np.testing.assert_allclose(m, by_hand)
    binary = outcome_mean((y > 1).astype(float), X, folds, regressor=LinearRegression(),
                          binary=True)  # fmt: skip
    assert binary.min() >= 0.0 and binary.max() <= 1.0


def test_default_outcome_model_sees_products_up_to_ten_covariates():
    # a product prognosis (Hahn et al.'s x1 x3): with products in the lasso the held-out
    # error is near the noise (variance 0.25); the stack without them (lasso on the
    # covariates + boosted trees) at n = 600 leaves more than twice it
    from sklearn.model_selection import cross_val_predict

    from itelib.answers.scores import default_outcome_model

    rng = np.random.default_rng(11)
    X = rng.normal(size=(600, 4))
    y = 2.0 * X[:, 0] * X[:, 1] + rng.normal(0.0, 0.5, 600)
    err = {p: np.mean((cross_val_predict(default_outcome_model(0, p), X, y, cv=3) - y) ** 2)
           for p in (4, None)}  # fmt: skip
    assert err[4] < 0.4 < 2 * 0.25 < err[None]
    assert "polynomialfeatures" not in str(default_outcome_model(0, 11).get_params())


def test_score_propensity_refuses_a_bad_value():
    t = np.array([0, 1, 0, 1.0])
    with pytest.raises(ValueError, match="propensity"):
        score_propensity("known", np.zeros((4, 1)), t, None, 0)
    with pytest.raises(ValueError, match="propensity"):
        score_propensity([0.5, 1.2, 0.5, 0.5], np.zeros((4, 1)), t, range(4), 0)


# --------------------------------------------------------------------------- validate
@pytest.fixture(scope="module")
def trial():
    rng = np.random.default_rng(9)
    X, t, y, tau = _trial(1000, rng)
    ids = pd.Index([f"id{i}" for i in range(1000)], name="pid")
    return (
        pd.DataFrame(X, index=ids, columns=["a", "b", "c"]),
        pd.Series(y, ids),
        pd.Series(t, ids),
        tau,
    )


def test_validate_detects_heterogeneity_an_oracle_finds(trial):
    X, y, t, tau = trial
    res = itelib.validate(Oracle(), X, y, t, random_state=0, progress_bar=False)
    assert res.heterogeneity and res.calibrated
    assert res.verdict.startswith("Heterogeneity detected, and the estimates are on the right")
    assert list(res.table.index) == ["BLP slope", "BLP intercept (weighted ATE)", "AUTOC", "Qini",
                                     "GATES top - bottom"]  # fmt: skip
    assert res.patients.index.equals(X.index)  # the patient ids are kept
    np.testing.assert_allclose(res.patients["estimate"], 1.0 + X["a"])
    assert sorted(res.patients["fold"].unique()) == [0, 1, 2, 3, 4]
    assert {"score", "propensity", "outcome_mean"} <= set(res.patients.columns)
    assert "BLP slope" in repr(res)
    tree = res.to_datatree()
    assert set(tree.children) == {"table", "gates", "toc", "patients"}
    assert tree.attrs["verdict"] == res.verdict


def test_validate_inflates_the_standard_errors_for_cross_fitting(trial):
    from itelib.answers.crossfit import CROSS_FIT_VARIANCE_INFLATION

    X, y, t, _ = trial
    res = itelib.validate(Oracle(), X, y, t, random_state=0, progress_bar=False)
    pt = res.patients
    plain = blp(y.to_numpy(), t.to_numpy(), pt["outcome_mean"], pt["propensity"],
                pt["estimate"], pt["fold"])  # fmt: skip
    root = np.sqrt(CROSS_FIT_VARIANCE_INFLATION)
    assert res.blp.slope == pytest.approx(plain.slope)
    assert res.blp.slope_se == pytest.approx(root * plain.slope_se)
    assert res.blp.intercept_se == pytest.approx(plain.intercept_se)  # its weights are fixed
    g1 = pt["score"][pt["rank"] <= 0.2]
    assert res.gates.loc["G1", "se"] == pytest.approx(root * g1.std() / np.sqrt(len(g1)))
    # RATE: the same half-samples (validate's generator, seeded by random_state, first drawn
    # here), the bootstrap SE times the root
    plain_rate = rate(pt["score"].to_numpy(), pt["rank"].to_numpy(), rng=np.random.default_rng(0))
    assert res.rate.autoc_se == pytest.approx(root * plain_rate.autoc_se)
    assert res.rate.qini_se == pytest.approx(root * plain_rate.qini_se)


def test_validate_calls_mis_scaled_estimates_mis_scaled(trial):
    X, y, t, _ = trial
    res = itelib.validate(Oracle(scale=4.0), X, y, t, random_state=0, progress_bar=False)
    assert res.heterogeneity and not res.calibrated and "mis-scaled" in res.verdict
    assert "exaggerate" in res.verdict


def test_validate_finds_nothing_in_noise(trial):
    # pure-noise estimates: the slope is 0 up to its own SE (a one-sided 5 % test would still
    # reject on 1 seed in 20, so the test asserts the slope, and the wording below)
    X, y, t, _ = trial
    res = itelib.validate(Oracle(noise=True), X, y, t, random_state=0, progress_bar=False)
    assert abs(res.blp.slope) < 4 * res.blp.slope_se
    assert abs(res.rate.autoc) < 4 * res.rate.autoc_se


def test_the_verdict_in_words():
    from itelib.answers.blp import BLP
    from itelib.answers.checks import _verdict

    r = rate(np.arange(10.0), np.arange(10.0), rng=np.random.default_rng(0), n_bootstrap=10)
    text, het, calibrated = _verdict(BLP(1.0, 0.1, 0.1, 0.2, 0.31, 1e-4), r, 0.05)
    assert not het and text.startswith("No heterogeneity detected") and "p = 0.310" in text
    text, het, calibrated = _verdict(BLP(1.0, 0.1, 2.5, 0.2, 1e-6, 1e-9), r, 0.05)
    assert het and not calibrated and "understate" in text
    assert "propensity was estimated" not in text


def test_the_verdict_warns_of_false_alarms_with_an_estimated_propensity():
    # the verdict names the dependence on the nuisance models and the measured rate
    # (benchmarks/heterogeneity_checks.py: 0-1 in 20 per estimator and design)
    from itelib.answers.blp import BLP
    from itelib.answers.checks import _verdict

    r = rate(np.arange(10.0), np.arange(10.0), rng=np.random.default_rng(0), n_bootstrap=10)
    found = BLP(1.0, 0.1, 1.0, 0.2, 1e-6, 0.9)
    text, het, _ = _verdict(found, r, 0.05, estimated_propensity=True)
    assert het and text.endswith(ESTIMATED_PROPENSITY_CAVEAT)
    nothing = BLP(1.0, 0.1, 0.1, 0.2, 0.31, 1e-4)  # no finding: nothing to caveat
    assert ESTIMATED_PROPENSITY_CAVEAT not in _verdict(nothing, r, 0.05, True)[0]


def test_validate_refits_a_clone_per_fold_and_never_on_the_held_out_patients(trial):
    X, y, t, _ = trial
    est = Oracle()
    itelib.validate(est, X, y, t, folds=4, random_state=0, progress_bar=False)
    assert not hasattr(est, "n_fit_")  # the user's estimator is left alone


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"est": object()}, TypeError, "est must be an itelib estimator"),
        ({"folds": 1}, ValueError, "folds"),
        ({"folds": 2.5}, TypeError, "folds"),
        ({"n_groups": 1}, ValueError, "n_groups"),
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"propensity": "known"}, ValueError, "propensity"),
        ({"folds": 150}, ValueError, "folds=150"),
    ],
)
def test_validate_bad_inputs_name_the_argument(trial, kwargs, error, match):
    X, y, t, _ = trial
    args = {"est": Oracle(), "X": X, "Y": y, "T": t, "progress_bar": False} | kwargs
    with pytest.raises(error, match=match):
        itelib.validate(**args)


def test_validate_refuses_missing_covariates_with_a_fix_that_applies(trial):
    # found on a real trial: the generic refusal advised missing='impute', which the user had
    # passed to the estimator and which cannot reach the scores' outcome models
    X, y, t, _ = trial
    X = X.copy()
    X.iloc[3, 1] = np.nan
    est = Oracle()
    with pytest.raises(DataValidationError, match="validate needs complete covariates") as err:
        itelib.validate(est, X, y, t, progress_bar=False)
    assert "drop the incomplete patients" in str(err.value)


def test_validate_runs_a_real_estimator_end_to_end():
    trial = itelib.simulate.simulate("hahn_linear_heterogeneous", 300, seed=0)
    est = itelib.CausalForest(n_estimators=48, n_jobs=1, random_state=0)
    res = itelib.validate(est, **trial.fit_kwargs(), propensity="estimate", folds=3,
                          random_state=0, progress_bar=False)  # fmt: skip
    assert res.estimator == "CausalForest" and len(res.patients) == 300
    assert np.isfinite(res.table[["estimate", "se"]].to_numpy()).all()
