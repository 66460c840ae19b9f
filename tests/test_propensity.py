"""Propensity scores: estimation, checks, and their use by HierarchicalITE."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from itelib import (
    ConvergenceWarning,
    DataValidationError,
    HierarchicalITE,
    ModelCheckWarning,
    OverlapWarning,
    RandomizationWarning,
)
from itelib.propensity import (
    PropensityFeature,
    check_overlap,
    check_randomized,
    estimate_propensity,
    validate_propensity,
)
from itelib.simulate import binary_multisite_rct, simulate


@pytest.fixture(scope="module")
def cohort():
    return simulate("observational_cohort", n=2000, seed=4)


def test_cross_fitted_scores_track_the_true_propensity(cohort):
    X = cohort.X.to_numpy()
    t = cohort.data["t"].to_numpy()
    scores = estimate_propensity(X, t, random_state=0)
    assert scores.shape == (cohort.n,) and np.all((scores > 0) & (scores < 1))
    # Scores from held-out folds of boosted trees, n = 2000: the true logistic propensity
    # explains most of their variation (measured r ~ 0.9; 0.8 leaves room for the fold noise).
    assert np.corrcoef(scores, cohort.propensity.to_numpy())[0, 1] > 0.8


def test_in_sample_scores_are_the_full_fit_and_cross_fitted_ones_are_not(cohort):
    from sklearn.base import clone

    from itelib.propensity import default_propensity_classifier

    X, t = cohort.X.to_numpy()[:400], cohort.data["t"].to_numpy()[:400]
    ids = np.arange(400)
    full = clone(default_propensity_classifier(0)).fit(X, t.astype(int))
    in_sample = PropensityFeature.fit("estimate", X, t, ids, cross_fit=False)
    expected = np.clip(full.predict_proba(X)[:, 1], 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(in_sample.scores, expected)
    crossed = PropensityFeature.fit("estimate", X, t, ids, cross_fit=True)
    np.testing.assert_array_equal(crossed.scores, estimate_propensity(X, t, random_state=0))
    assert not np.allclose(crossed.scores, in_sample.scores)
    # either way, new patients are scored by the classifier fit to everyone
    np.testing.assert_array_equal(
        in_sample.model.predict_proba(X[:5]), crossed.model.predict_proba(X[:5])
    )


def test_randomization_check_flags_observational_data_only(cohort):
    X, t = cohort.X.to_numpy(), cohort.data["t"].to_numpy()
    with pytest.warns(RandomizationWarning, match="AUC"):
        assert check_randomized(X, t) > 0.6
    rng = np.random.default_rng(0)
    assert check_randomized(X, rng.integers(0, 2, len(t))) < 0.6  # no warning: error filter


def test_overlap_warning_names_count_and_drivers():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    scores = np.where(X[:, 1] > 1.5, 0.99, 0.5)
    with pytest.warns(OverlapWarning, match=r"(?s)\d+ of 500 patients.*'b'"):
        check_overlap(scores, X, rng.integers(0, 2, 500), ["a", "b", "c"])


@pytest.mark.parametrize("bad", [[0.5, 1.0, 0.5], [0.5, np.nan, 0.2], [0.5, 0.5]])
def test_bad_known_scores_are_rejected(bad):
    with pytest.raises(DataValidationError, match="propensity"):
        validate_propensity(bad, 3, ["a", "b", "c"])


def test_known_scores_line_up_by_patient_id_like_every_other_input():
    """A Series of scores was read by position, its index ignored: a reversed Series gave the
    first patient the last one's score (issue 23, case 4)."""
    ids = pd.Index(["p0", "p1", "p2"])
    scores = pd.Series([0.2, 0.5, 0.7], index=ids)
    np.testing.assert_array_equal(validate_propensity(scores, 3, ids), [0.2, 0.5, 0.7])
    np.testing.assert_array_equal(validate_propensity(scores.to_frame(), 3, ids), scores)
    with pytest.raises(DataValidationError, match=r"same ids in a different order.*reindex"):
        validate_propensity(scores.iloc[::-1], 3, ids)
    with pytest.raises(DataValidationError, match=r"'p9'.* not in the index of Y"):
        validate_propensity(scores.set_axis(["p0", "p1", "p9"]), 3, ids)


def test_a_table_of_scores_is_not_flattened_into_one_per_patient():
    with pytest.raises(DataValidationError, match=r"propensity must be 1-d.*\(2, 2\)"):
        validate_propensity(np.full((2, 2), 0.5), 4, range(4))
    with pytest.raises(DataValidationError, match="propensity must be numbers"):
        validate_propensity(["low", "high"], 2, range(2))


def test_known_scores_cannot_score_new_patients():
    feature = PropensityFeature(np.array([0.2, 0.5, 0.7]))
    np.testing.assert_allclose(feature.feature().mean(), 0, atol=1e-12)
    with pytest.raises(DataValidationError, match="propensity='estimate'"):
        feature.feature(np.zeros((2, 1)))


def test_estimator_uses_estimated_scores_on_a_cohort(cohort):
    # poor overlap by design: 55 of 300 true scores (54 estimated) lie outside [0.05, 0.95]
    small = simulate("observational_cohort", n=300, seed=2, overlap=0.01, confounding=2.0)
    est = HierarchicalITE(num_warmup=200, num_samples=150, num_chains=2, random_state=0)
    # 300 draws < ESS 400; and the cohort's prognosis has a 0.5 (x2^2 - 1) term, which the
    # linear prognostic part leaves in the residuals: the model check rightly names x2
    with (
        pytest.warns(OverlapWarning),
        pytest.warns(ConvergenceWarning),
        pytest.warns(ModelCheckWarning, match="'x2'"),
    ):
        est.fit(**small.fit_kwargs(), propensity="estimate")
    # the prognostic columns: covariates, the score's logit, the prognostic score, products
    features = list(est.posterior_["posterior"]["feature"].values)
    p = small.X.shape[1]
    assert len(features) == p + 2 + len(est.features_.pairs) and est.prognosis_ == "interactions"
    assert features[p : p + 2] == ["propensity_logit", "prognostic_score"]
    assert est.effect(small.X.iloc[:3]).draws().shape[-1] == 3


def test_binary_risk_differences_for_new_patients_need_an_estimated_score():
    trial = binary_multisite_rct(n=300, seed=1, n_sites=4)
    est = HierarchicalITE(num_warmup=150, num_samples=100, num_chains=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(**trial.fit_kwargs(), propensity=np.full(trial.n, 0.5))
    assert est.effect().draws().shape[-1] == trial.n  # training patients: scores known
    with pytest.raises(DataValidationError, match="propensity='estimate'"):
        est.effect(trial.X.iloc[:2], site=trial.data["site"].iloc[:2])
    log_or = est.effect(trial.X.iloc[:2], site=trial.data["site"].iloc[:2], scale="log_odds_ratio")
    assert np.all(np.isfinite(log_or.draws()))
