"""Propensity scores: cross-fitted estimates, the randomization check and the overlap check."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from itelib import _validation as v
from itelib._threads import one_thread
from itelib.exceptions import DataValidationError, OverlapWarning, RandomizationWarning

__all__ = [
    "PropensityFeature",
    "check_overlap",
    "check_propensity_option",
    "default_propensity_classifier",
    "check_randomized",
    "estimate_propensity",
    "propensity_for_fit",
    "CANDIDATE_CLASSIFIERS",
    "validate_propensity",
]

OVERLAP_BOUNDS = (0.05, 0.95)  # Crump et al. (2009) trim at 0.1/0.9; we warn earlier, at 0.05
SEPARATION_AUC = 0.98  # AUC of the scores above this: no overlap to speak of
RANDOMIZED_AUC = 0.6  # cross-validated AUC above this: treatment is predictable from covariates


def default_propensity_classifier(random_state: int = 0) -> Any:
    """Shallow, slowly learning gradient-boosted trees: the default propensity model.

    The lowest mean KL(true || estimated) of the candidates on the six observational designs
    (``benchmarks/propensity_models.py``; the numbers are in ``docs/decisions.md``).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_depth=2, learning_rate=0.03, max_iter=150, min_samples_leaf=20,
        random_state=random_state,
    )  # fmt: skip


def _hgb_deep(random_state: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_depth=3, learning_rate=0.05, max_iter=200, random_state=random_state
    )


def _logistic(random_state: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000)


def _spline_logistic(random_state: int) -> Any:
    # An additive logistic model (a GAM): cubic splines per covariate, ridge chosen by CV.
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer

    return make_pipeline(
        SplineTransformer(n_knots=5, degree=3, extrapolation="linear"),
        LogisticRegressionCV(Cs=10, cv=5, max_iter=2000),
    )


def _random_forest(random_state: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=300, min_samples_leaf=10, random_state=random_state, n_jobs=1
    )


CANDIDATE_CLASSIFIERS = {
    "hgb_shallow (default)": default_propensity_classifier,
    "hgb_deep": _hgb_deep,
    "logistic": _logistic,
    "spline_logistic": _spline_logistic,
    "random_forest": _random_forest,
}
"""Propensity classifiers compared in ``benchmarks/propensity_models.py``, by name."""


def estimate_propensity(
    X: np.ndarray,
    t: np.ndarray,
    *,
    classifier: Any = None,
    n_folds: int = 5,
    random_state: int = 0,
) -> np.ndarray:
    """Cross-fitted P(t = 1 | x): each patient's score comes from a model that never saw them.

    Parameters
    ----------
    X : (n, p) covariates (standardized is fine).
    t : (n,) 0/1 treatment.
    classifier : scikit-learn classifier, optional
        Anything with ``fit`` and ``predict_proba``; default
        :func:`default_propensity_classifier` (shallow gradient-boosted trees, which follow
        nonlinear assignment rules such as the Hahn et al. (2020) designs').
    n_folds : int
        Stratified folds (treated share kept in each fold).
    random_state : int
        Seed of the fold split and of the classifier.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if classifier is None:
        classifier = default_propensity_classifier(random_state)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    with one_thread():
        proba = cross_val_predict(
            clone(classifier), X, t.astype(int), cv=folds, method="predict_proba"
        )
    return _clip(proba[:, 1])


def validate_propensity(values: Any, n: int, patient_ids: Sequence[Any]) -> np.ndarray:
    """A user-supplied propensity: n finite numbers strictly between 0 and 1, one per patient.

    Held to the rule of Y, T, X and site: one value per patient (a 1-d or (n, 1) input, never
    a flattened table), and a pandas input's index must be the patients' ids in their order,
    so that no score is read by position from a Series indexed otherwise.
    """
    series, _, is_pandas = v.as_series(values, argument="propensity")
    if is_pandas and len(series) == n:
        v.check_same_index({"Y": pd.Index(patient_ids), "propensity": series.index})
    try:
        arr = series.to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise DataValidationError(
            f"propensity must be numbers (probabilities of treatment), or 'estimate' ({err})."
            " Fix: pass one probability per patient, or propensity='estimate'."
        ) from err
    if arr.shape[0] != n:
        raise DataValidationError(
            f"propensity has {arr.shape[0]} values for {n} patients. Fix: pass one "
            "probability per patient, in the order of Y."
        )
    bad = ~np.isfinite(arr) | (arr <= 0) | (arr >= 1)
    if bad.any():
        ids = list(np.asarray(patient_ids, dtype=object)[bad][:5])
        raise DataValidationError(
            f"propensity must lie strictly between 0 and 1; {int(bad.sum())} values do not "
            f"(first at patients {ids}). Fix: clip or re-estimate, or pass propensity='estimate'."
        )
    return arr


def check_overlap(
    propensity: np.ndarray, X: np.ndarray, t: np.ndarray, names: Sequence[str]
) -> None:
    """Warn when patients have propensities outside ``OVERLAP_BOUNDS``, naming the drivers.

    The covariates named are those with the largest standardized mean difference between the
    patients outside the bounds and the rest.
    """
    lo, hi = OVERLAP_BOUNDS
    outside = (propensity < lo) | (propensity > hi)
    auc = _auc(propensity, t)
    if auc > SEPARATION_AUC:
        # Regularized classifiers keep scores inside the bounds even when treatment follows
        # the covariates exactly (n = 80, treated iff age > median: AUC 1.0, scores in
        # [0.1, 0.9]); the ranking still shows it.
        warnings.warn(
            f"treatment is almost perfectly predicted by the covariates (cross-fitted AUC "
            f"{auc:.3f} > {SEPARATION_AUC}): treated and control patients do not overlap, so "
            "every effect rests on extrapolation, and the scores' own values understate it. "
            "Consider restricting the population to where both arms occur.",
            OverlapWarning,
            stacklevel=4,
        )
        return
    if not outside.any():
        return
    drivers = ""
    if X.shape[1] and not outside.all():  # with every patient outside there is no contrast
        smd = np.abs(X[outside].mean(0) - X[~outside].mean(0)) / (X.std(0) + 1e-12)
        drivers = f"; most different in {[names[j] for j in np.argsort(-smd)[:3]]}"
    warnings.warn(
        f"{int(outside.sum())} of {len(t)} patients have a propensity outside [{lo}, {hi}] "
        f"(treated and control barely overlap there){drivers}. Their "
        "effects rest on extrapolation: consider restricting the population.",
        OverlapWarning,
        stacklevel=4,
    )


def _clip(scores: np.ndarray) -> np.ndarray:
    """Keep scores off 0 and 1, where their logit (the model's feature) is infinite."""
    return np.clip(scores, 1e-6, 1 - 1e-6)


def _auc(score: np.ndarray, t: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(t, score)) if 0 < t.sum() < len(t) else 0.5


def check_randomized(X: np.ndarray, t: np.ndarray, *, random_state: int = 0) -> float:
    """Cross-validated AUC of treatment on covariates; warns above ``RANDOMIZED_AUC``.

    In a randomized trial the AUC is about 0.5; well above it, the data look observational and
    ``propensity=None`` (which assumes randomization) would leave confounding in.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if X.shape[1] == 0 or min(t.sum(), len(t) - t.sum()) < 5:
        return 0.5
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=random_state)
    with one_thread():
        proba = cross_val_predict(
            LogisticRegression(max_iter=1000), X, t.astype(int), cv=folds, method="predict_proba"
        )[:, 1]
    auc = float(roc_auc_score(t, proba))
    if auc > RANDOMIZED_AUC:
        warnings.warn(
            f"treatment is predictable from the covariates (cross-validated AUC {auc:.2f} > "
            f"{RANDOMIZED_AUC}), but propensity=None assumes a randomized trial. If these are "
            "observational data, pass propensity='estimate' or the known propensities.",
            RandomizationWarning,
            stacklevel=4,
        )
    return auc


class PropensityFeature:
    """The propensity score as a prognostic covariate (Hahn, Murray & Carvalho 2020, sec. 5).

    Holds the training scores and the standardization of their logits, and, when the scores
    were estimated, a classifier refit on all training patients to score new ones.
    """

    def __init__(
        self, scores: np.ndarray, model: Any = None, *, missing_model_reason: str | None = None
    ) -> None:
        self.scores = scores
        logit = np.log(scores / (1 - scores))
        self.center, self.scale = float(logit.mean()), float(logit.std() or 1.0)
        self.model = model
        self.missing_model_reason = missing_model_reason  # why model is None, for the error

    @classmethod
    def fit(
        cls,
        propensity: Any,
        X: np.ndarray,
        t: np.ndarray,
        patient_ids: Sequence[Any],
        *,
        classifier: Any = None,
        random_state: int = 0,
        cross_fit: bool = True,
    ) -> PropensityFeature:
        """``propensity``: known scores (array) or ``"estimate"``.

        Estimated scores are cross-fitted (``cross_fit=True``) or the in-sample predictions of
        the classifier fit to all patients (``cross_fit=False``, which the Bayesian causal
        forest uses; see :class:`~itelib.BayesianCausalForest`). Either way the classifier fit
        to all patients scores new ones.
        """
        if isinstance(propensity, str):
            check_propensity_option(propensity)
            from sklearn.base import clone

            full = clone(
                classifier
                if classifier is not None
                else default_propensity_classifier(random_state)
            ).fit(X, t.astype(int))
            if cross_fit:
                scores = estimate_propensity(X, t, classifier=classifier, random_state=random_state)
            else:
                scores = _clip(full.predict_proba(X)[:, 1])
            return cls(scores, full)
        return cls(validate_propensity(propensity, len(t), patient_ids))

    def feature(self, X: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """Standardized logit score of training ``rows`` or of new patients ``X``."""
        if X is None:
            scores = self.scores if rows is None else self.scores[rows]
        elif self.model is None:
            reason = self.missing_model_reason or (
                "this model was fit with known propensity scores, so it cannot score new "
                "patients' prognosis (needed for risk differences). Fix: fit with "
                "propensity='estimate'"
            )
            raise DataValidationError(f"{reason}, or ask for scale='log_odds_ratio'.")
        else:
            scores = _clip(self.model.predict_proba(X)[:, 1])
        return ((np.log(scores / (1 - scores)) - self.center) / self.scale)[:, None]


def check_propensity_option(propensity: Any, owner: str = "fit") -> None:
    """A string ``propensity`` must be ``"estimate"`` (a typo such as 'estimated' is refused
    before any data are touched, naming the options)."""
    if isinstance(propensity, str) and propensity != "estimate":
        raise DataValidationError(
            f"{owner}(propensity={propensity!r}) is not an option; propensity is None (a "
            "randomized trial, checked), 'estimate' (scores from the propensity model) or one "
            "known score per patient. Fix: propensity='estimate'."
        )


def propensity_for_fit(
    propensity: Any,
    data: Any,
    *,
    classifier: Any = None,
    random_state: int = 0,
    cross_fit: bool = True,
) -> PropensityFeature | None:
    """What every estimator's ``fit(propensity=...)`` means, for a :class:`~itelib.TrialData`.

    None: a randomized trial, checked (a warning when treatment is predictable from the
    covariates). ``"estimate"``: cross-fitted scores, or in-sample ones with
    ``cross_fit=False``. An array: known scores. Scores outside [0.05, 0.95] get an
    :class:`~itelib.OverlapWarning`.
    """
    if propensity is None:
        check_randomized(data.X, data.t, random_state=random_state)
        return None
    score = PropensityFeature.fit(
        propensity, data.X, data.t, data.patient_ids,
        classifier=classifier, random_state=random_state, cross_fit=cross_fit,
    )  # fmt: skip
    check_overlap(score.scores, data.X, data.t, data.feature_names)
    return score
