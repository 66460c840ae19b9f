"""HierarchicalITE on right-censored survival outcomes (issue 25): inputs, effects, refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from itelib import CausalForest, HierarchicalITE
from itelib.answers import validate
from itelib.exceptions import DataValidationError
from itelib.simulate.survival import survival_lognormal, survival_weibull
from itelib.survival_outcome import parse_scale, read_survival, scale_key

FAST = dict(num_warmup=300, num_samples=300, num_chains=2, progress_bar=False)


def _quiet_fit(est, **kwargs):
    with warnings.catch_warnings():  # short chains: R-hat warnings are expected here
        warnings.simplefilter("ignore")
        return est.fit(**kwargs)


@pytest.fixture(scope="module")
def weibull_fit():
    """survival_weibull (n = 400, 30 % censoring, seed 3), the design's own RMST horizon."""
    trial = survival_weibull(n=400, seed=3)
    est = HierarchicalITE(outcome="survival", horizon=trial.params["horizon"], random_state=0,
                          **FAST)  # fmt: skip
    return trial, _quiet_fit(est, **trial.fit_kwargs())


def _small(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.normal(size=n), "bmi": rng.normal(size=n)})
    T = pd.Series(np.tile([0, 1], n // 2), name="arm")
    Y = pd.DataFrame({"futime": rng.exponential(10.0, n) + 0.1, "status": rng.integers(0, 2, n)})
    Y.loc[0, "status"] = 1
    return Y, T, X


# -- reading Y ------------------------------------------------------------------------------
def test_the_three_formats_give_the_same_outcome():
    Y, _, _ = _small()
    frame = read_survival(Y)
    assert (frame.time_name, frame.event_name) == ("futime", "status")
    structured = np.empty(len(Y), dtype=[("status", bool), ("futime", float)])
    structured["status"], structured["futime"] = Y["status"] == 1, Y["futime"]
    for other in (read_survival(structured), read_survival(Y.to_numpy())):
        np.testing.assert_array_equal(other.time.to_numpy(), frame.time.to_numpy())
        np.testing.assert_array_equal(other.event, frame.event)
    assert read_survival(structured).event_name == "status"


@pytest.mark.parametrize(
    "bad, message",
    [
        (-1.0, r"survival time 'futime' must be finite and > 0; 1 patients"),
        (0.0, r"survival time 'futime' must be finite and > 0"),
        (np.inf, r"survival time 'futime' must be finite and > 0"),
        (np.nan, r"survival time 'futime' must be finite and > 0"),
    ],
)
def test_a_bad_time_is_named_with_its_column(bad, message):
    Y, T, X = _small()
    Y.loc[3, "futime"] = bad
    with pytest.raises(DataValidationError, match=message):
        HierarchicalITE(outcome="survival").fit(Y, T, X=X)


def test_an_event_outside_0_1_is_named():
    Y, T, X = _small()
    Y.loc[2, "status"] = 2
    with pytest.raises(ValueError, match=r"event 'status' must be 0 \(censored\) or 1"):
        HierarchicalITE(outcome="survival").fit(Y, T, X=X)


def test_all_censored_is_refused():
    Y, T, X = _small()
    Y["status"] = 0
    with pytest.raises(ValueError, match=r"every patient is censored \(event 'status' is 0"):
        HierarchicalITE(outcome="survival").fit(Y, T, X=X)


def test_the_wrong_number_of_columns_is_refused():
    Y, T, X = _small()
    Y["extra"] = 1.0
    with pytest.raises(ValueError, match=r"two columns, the time then the event; received 3"):
        HierarchicalITE(outcome="survival").fit(Y, T, X=X)
    with pytest.raises(ValueError, match=r"two columns.*shape \(40,\)"):
        HierarchicalITE(outcome="survival").fit(Y["futime"].to_numpy(), T, X=X)


def test_a_two_column_outcome_without_outcome_survival_says_so():
    Y, T, X = _small()
    with pytest.raises(ValueError, match=r'a survival outcome \(time, event\)\? Fix: '
                                         r'HierarchicalITE\(outcome="survival"\)'):  # fmt: skip
        HierarchicalITE().fit(Y, T, X=X)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(survival_family="exponential"), "survival_family"),
        (dict(horizon=-1.0), "horizon"),
        (dict(horizon=0.0), r"horizon=\.\.\.\) must lie in \(0.0, inf\)"),
        (dict(backend="pymc"), r'backend=\'pymc\'\) is not supported.*backend="numpyro"'),
        (dict(inference="svi"), r'inference=\'svi\'\) is not supported.*inference="nuts"'),
        (dict(missing="impute"), r'missing="impute"\) is not supported.*complete rows'),
    ],
)
def test_options_survival_does_not_take_are_refused(options, message):
    Y, T, X = _small()
    with pytest.raises(ValueError, match=message):
        HierarchicalITE(outcome="survival", **options).fit(Y, T, X=X)


@pytest.mark.parametrize("cls", [CausalForest])
def test_the_forests_refuse_survival_and_name_the_estimator_that_takes_it(cls):
    Y, T, X = _small()
    fix = r'use HierarchicalITE or BayesianCausalForest with outcome="survival"'
    with pytest.raises(ValueError, match=f"{cls.__name__} does not take survival.*{fix}"):
        cls(outcome="survival").fit(Y, T, X=X)
    with pytest.raises(ValueError, match=f"{cls.__name__} does not take survival.*{fix}"):
        cls().fit(Y, T, X=X)  # a [time, event] outcome with outcome="auto"


def test_site_summaries_refuse_survival():
    with pytest.raises(ValueError, match=r'outcome="survival"\) fits patient rows'):
        HierarchicalITE(outcome="survival").fit_summaries([])


def test_validate_refuses_survival():
    Y, T, X = _small()
    with pytest.raises(ValueError, match=r"validate\(\).*censored survival times"):
        validate(HierarchicalITE(outcome="survival"), X, Y, T)


def test_scale_keys_round_trip():
    assert parse_scale(scale_key("survival", 12, "f")) == ("survival", 12.0)
    assert parse_scale(scale_key("rmst", None, "f")) == ("rmst", None)
    with pytest.raises(ValueError, match=r'scale="survival" compares .* pass it, e.g. time='):
        scale_key("survival", None, "f")
    with pytest.raises(ValueError, match=r"time= is for scale=\"survival\""):
        scale_key("time_ratio", 3.0, "f")


# -- a fit ---------------------------------------------------------------------------------
def test_the_ate_interval_covers_the_true_average_rmst_difference(weibull_fit):
    """survival_weibull, n = 400, 30 % censoring, seed 3: the 95 % interval of the ATE on the
    RMST scale covers the sample's true average RMST difference.

    Tolerance: one nominal 95 % interval, so this fails for 1 seed in 20 of a calibrated model;
    seed 3 is not chosen to pass (docs/decisions.md gives the coverage measured over seeds).
    """
    trial, est = weibull_fit
    ate = est.ate()
    assert ate.attrs["scale"] == "rmst"
    assert ate.attrs["horizon"] == pytest.approx(trial.params["horizon"])
    lo, hi = ate.interval(0.95)
    assert lo <= trial.tau.mean() <= hi, (lo, trial.tau.mean(), hi)
    # the per-patient RMST differences lie within (-horizon, horizon)
    draws = est.effect().draws()
    assert np.all(np.abs(draws) < est.horizon_)


def test_the_three_scales_and_the_time_ratio_threshold(weibull_fit):
    trial, est = weibull_fit
    ratio = est.effect(scale="time_ratio")
    assert ratio.attrs["scale"] == "time_ratio"
    draws = ratio.draws()
    assert np.all(draws > 0)
    expected = (draws > 1.0).mean(axis=(0, 1))
    np.testing.assert_allclose(ratio.prob_benefit().to_numpy(), expected)
    np.testing.assert_allclose(ratio.summary()["prob_benefit"].to_numpy(), expected)
    np.testing.assert_allclose(ratio.prob_harm().to_numpy(), (draws < 1.0).mean(axis=(0, 1)))
    arm = trial.data["t"].to_numpy()
    labels = pd.Categorical(np.where(arm == 1, "treated", "control"), ["treated", "control"])
    groups = ratio.groupby(labels)
    group_means = np.stack([draws[:, :, arm == 1].mean(axis=2), draws[:, :, arm == 0].mean(axis=2)])
    np.testing.assert_allclose(groups.prob_benefit().to_numpy(),
                               (group_means > 1.0).mean(axis=(1, 2)))  # fmt: skip
    # the RMST scale keeps 0
    rmst = est.effect()
    np.testing.assert_allclose(rmst.prob_benefit().to_numpy(),
                               (rmst.draws() > 0).mean(axis=(0, 1)))  # fmt: skip
    surv = est.ate(scale="survival", time=trial.params["t_eval"])
    assert surv.attrs["time"] == pytest.approx(trial.params["t_eval"])
    lo, hi = surv.interval(0.99)
    assert -1 < lo <= hi < 1
    with pytest.raises(ValueError, match=r'scale="survival" compares'):
        est.effect(scale="survival")
    with pytest.raises(ValueError, match=r"scale='outcome' is not available"):
        est.effect(scale="outcome")


def test_new_patients_get_the_training_patients_effects(weibull_fit):
    trial, est = weibull_fit
    X = trial.data[list(trial.covariates)].iloc[:5]
    for scale, time in (("rmst", None), ("survival", 5.0), ("time_ratio", None)):
        new = est.effect(X, scale=scale, time=time).draws()
        old = est.effect(scale=scale, time=time).draws()[:, :, :5]
        np.testing.assert_allclose(new, old, rtol=1e-4, atol=1e-4)  # float32, other padding


def test_check_refuses_and_predictive_draws_times(weibull_fit):
    _, est = weibull_fit
    with pytest.raises(NotImplementedError, match="censored survival times"):
        est.check()
    y = est.posterior_predictive().posterior_predictive["y"].values
    assert y.shape[-1] == est.data_.n and np.all(y > 0)


def test_save_load_round_trip(weibull_fit, tmp_path):
    _, est = weibull_fit
    path = est.save(tmp_path / "surv.nc")
    back = HierarchicalITE.load(path)
    assert back.outcome_ == "survival" and back.horizon_ == est.horizon_
    assert back.survival_names_ == ("time", "event")
    assert back.model_spec_.survival_family == "weibull"
    np.testing.assert_array_equal(back.survival_event_, est.survival_event_)
    for scale, time in (("rmst", None), ("survival", 4.0), ("time_ratio", None)):
        np.testing.assert_array_equal(back.ate(scale=scale, time=time).draws(),
                                      est.ate(scale=scale, time=time).draws())  # fmt: skip


def test_the_treatment_is_centred_on_the_share_treated_and_only_the_locations_use_it(weibull_fit):
    """The model's eta is ``prognosis + (t - k) * effect``, k the share treated: the time
    ratio reads the effect alone, an RMST difference both locations (``prognosis - k *
    effect`` untreated). Read with k = 0, the same draws give other RMSTs and the same ratios,
    so the fitted k is what the RMSTs use (their coverage is tested above and in the study)."""
    import copy

    trial, est = weibull_fit
    assert est.survival_centre_ == pytest.approx(np.mean(est.data_.t))
    assert 0 < est.survival_centre_ < 1
    wrong = copy.copy(est)
    wrong.survival_centre_ = 0.0
    np.testing.assert_array_equal(
        wrong.effect(scale="time_ratio").draws(), est.effect(scale="time_ratio").draws()
    )
    gap = np.abs(wrong.effect().draws().mean(axis=(0, 1)) - est.effect().draws().mean(axis=(0, 1)))
    assert np.median(gap) > 0.05 * np.std(trial.tau), (np.median(gap), np.std(trial.tau))
    from itelib.models.hierarchical.design import treatment_centre

    t, scores = est.data_.t, np.linspace(0.2, 0.8, est.data_.n)
    assert treatment_centre(t, "survival", "centered", scores) == pytest.approx(np.mean(t))
    assert treatment_centre(t, "survival", "indicator", None) == 0.0


def test_a_survival_file_saved_before_centring_reads_its_treatment_as_the_indicator():
    from itelib.estimators.survival_state import restore_survival

    class Est:
        pass

    est = Est()
    fitted = {"survival": {"horizon": 5.0, "names": ["time", "event"]}}  # no treatment_centre
    restore_survival(est, fitted, {"survival": {"event": pd.Series([1, 0]).to_xarray()}})
    assert est.survival_centre_ == 0.0


def test_the_default_horizon_is_the_09_quantile_of_the_observed_times():
    trial = survival_weibull(n=60, seed=1)
    kw = trial.fit_kwargs()
    est = HierarchicalITE(
        outcome="survival", num_warmup=20, num_samples=20, num_chains=1, progress_bar=False,
        prognosis="linear", effect_modifiers="linear",
    )  # fmt: skip
    _quiet_fit(est, **kw)
    assert est.horizon_ == pytest.approx(np.quantile(trial.data["time"], 0.9))


@pytest.mark.parametrize("coding", ["indicator", "centered"])
def test_without_censoring_lognormal_agrees_with_the_continuous_model_on_log_time(coding):
    """Censoring-only check: with every event observed the log-normal AFT likelihood is the
    Gaussian likelihood of log time, so the survival fit's effects on log time (log time
    ratios) and the continuous fit's on log(time) share one posterior; only Monte Carlo error
    separates them. Same options (indicator coding, no prognostic score; the continuous fit
    samples the marginal model). Band: the median over patients of |mean difference| / the
    continuous posterior sd below 0.35. With about 300 effective draws per fit each mean has a
    Monte Carlo error near 0.06 posterior sd, so their difference ~0.08 sd, median |.| ~0.06;
    the previous implementation measured 0.13 at n = 300. A wrong scale (sigma or
    un-standardizing) or a likelihood that is not the Gaussian moves it by whole sds. Both
    codings: centred, both models subtract the share treated (no propensity model here).
    """
    trial = survival_lognormal(n=300, seed=7, censoring=0.0)
    kw = trial.fit_kwargs()
    assert kw["Y"]["event"].all()
    options = dict(treatment_coding=coding, prognostic_score=False, random_state=1, **FAST)
    surv = _quiet_fit(HierarchicalITE(outcome="survival", survival_family="lognormal", **options),
                      **kw)  # fmt: skip
    cont = _quiet_fit(HierarchicalITE(outcome="continuous", **options),
                      **(kw | {"Y": np.log(kw["Y"]["time"])}))  # fmt: skip
    a = np.log(surv.effect(scale="time_ratio").draws()).reshape(-1, trial.n)
    b = cont.effect().draws().reshape(-1, trial.n)
    gap = np.median(np.abs(a.mean(axis=0) - b.mean(axis=0)) / b.std(axis=0))
    sd_ratio = np.median(a.std(axis=0) / b.std(axis=0))
    print(f"median |mean gap| / sd = {gap:.3f}, median sd ratio = {sd_ratio:.3f}")
    assert gap < 0.35, gap
    assert 0.8 < sd_ratio < 1.25, sd_ratio


@pytest.mark.parametrize("family", ["weibull", "lognormal"])
def test_per_patient_rmst_differences_are_covered_when_the_model_is_right(family, linear_aft_trial):
    """On an AFT trial inside the model (linear prognosis and effect, 30 % censored, n = 300)
    the 95 % intervals of the per-patient RMST differences cover the truth.

    Band: coverage >= 0.85. Measured with the same generator at n = 500 (seeds 1-5, 2 chains x
    400 draws): 0.93-1.0, mean 0.98 (Weibull), mean 0.995 (log-normal): conservative, as the
    horseshoe over pairs makes it. Patients share the model's few coefficients, so the
    coverage of one trial varies by far more than a binomial sd; 0.85 fails a model whose
    RMSTs are mis-scaled (the horizon, sigma or the un-standardized locations wrong), which the
    censoring-only check (log time only) cannot see. Seed 11 here: coverage 1.0 for both
    families, sqrt-PEHE 0.17 (Weibull) and 0.24 (log-normal) of the true differences' sd; the
    bound 0.5 fails a posterior too flat or too wide to say who benefits.
    """
    Y, t, X, horizon, tau, log_ratio = linear_aft_trial(family, 300, seed=11)
    est = HierarchicalITE(outcome="survival", survival_family=family, horizon=horizon,
                          random_state=0, **FAST)  # fmt: skip
    _quiet_fit(est, Y=Y, T=t, X=X)
    from itelib.calibration import coverage, sqrt_pehe

    cov = coverage(est.effect().draws(), tau, levels=(0.95,))[0.95]
    cov_ratio = coverage(np.log(est.effect(scale="time_ratio").draws()), log_ratio,
                         levels=(0.95,))[0.95]  # fmt: skip
    pehe = sqrt_pehe(est.effect().draws(), tau)
    print(f"{family}: RMST coverage {cov:.3f}, log time ratio coverage {cov_ratio:.3f}, "
          f"sqrt-PEHE {pehe:.3f}, sd of the true differences {tau.std():.3f}")  # fmt: skip
    assert cov >= 0.85, cov
    assert cov_ratio >= 0.85, cov_ratio
    assert pehe < 0.5 * tau.std(), (pehe, tau.std())  # not uselessly wide or flat


def test_modifiers_project_the_survival_effects(weibull_fit):
    """modifiers() on a survival scale: the projection of the draws; the model's own
    coefficients (log time ratios) are not reported as if on that scale."""
    trial, est = weibull_fit
    summary = est.modifiers(scale="time_ratio", max_draws=50)
    assert summary.exact is None and summary.sites is None
    assert set(trial.covariates) <= set(summary.table["covariate"])


def test_sites_pool_and_an_unseen_site_is_wider():
    """survival_multisite: site terms enter the AFT model; a known site's new patients get the
    training patients' effects, an unseen site's the population's, with wider intervals."""
    from itelib.simulate.survival import survival_multisite

    trial = survival_multisite(n=300, seed=1, n_sites=6)
    kw = trial.fit_kwargs()
    est = HierarchicalITE(outcome="survival", num_warmup=150, num_samples=100, num_chains=2,
                          progress_bar=False, random_state=0)  # fmt: skip
    _quiet_fit(est, **kw)
    assert "site_effect_z" in est.posterior_["posterior"]
    X, site = kw["X"].iloc[:3], kw["site"].iloc[:3]
    known = est.effect(X, site=site)
    np.testing.assert_allclose(known.mean().to_numpy(), est.effect().mean().to_numpy()[:3],
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    assert np.all(est.effect(X, site="unseen").sd().to_numpy() > known.sd().to_numpy())
