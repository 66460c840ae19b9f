"""The nuisances validate() needs, all cross-fitted: the propensity, the outcome mean
``m(x) = E[y | x]`` over both arms (for the BLP test in Robinson's form), and doubly robust
(AIPW) scores, each patient's noisy but unbiased effect (for GATES and RATE).

``Gamma_i = mu1(x) - mu0(x) + t (y - mu1(x)) / e(x) - (1 - t) (y - mu0(x)) / (1 - e(x))``
(Robins, Rotnitzky & Zhao 1994): its mean over any set of patients chosen by their covariates
estimates that set's average effect, whichever of the outcome models or the propensity is right.
The outcome models ``mu0``, ``mu1`` are fitted per arm on the other folds, so a patient's own
outcome never enters their prediction (an in-sample fit would pull ``Gamma`` towards the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from itelib._threads import one_thread
from itelib.models.hierarchical.features import FLEXIBLE_MAX_COVARIATES
from itelib.prognostic_score import default_outcome_regressor
from itelib.propensity import estimate_propensity, validate_propensity

__all__ = [
    "PROPENSITY_CLIP",
    "Nuisances",
    "default_outcome_model",
    "dr_scores",
    "fit_nuisances",
    "outcome_mean",
    "score_propensity",
]

PROPENSITY_CLIP = (0.01, 0.99)  # 1/e at most 100: one patient cannot carry a whole average


def default_outcome_model(random_state: int = 0, n_covariates: int | None = None) -> Any:
    """A stack of the lasso and gradient-boosted trees (3-fold stacking, non-negative weights):
    the lasso carries smooth prognosis in few patients, the trees what is not smooth.

    Up to ``FLEXIBLE_MAX_COVARIATES`` covariates (as HierarchicalITE's flexible default) the
    lasso also sees every pairwise product and square, standardized: products and curvature
    are what boosted trees with few patients approximate worst, and in observational data the
    test of no heterogeneity is biased by the outcome model's error times the propensity's
    (on the Hahn et al. targeted-selection design the products took false alarms from 4, 3, 0
    in 10 per estimator to 1, 2, 0; docs/decisions.md). Beyond that the p^2 products would
    outnumber the patients; the lasso sees the covariates alone.
    """
    from sklearn.ensemble import StackingRegressor
    from sklearn.linear_model import LassoCV, LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    lasso = LassoCV(cv=3, max_iter=20_000, random_state=random_state)
    if n_covariates is not None and n_covariates <= FLEXIBLE_MAX_COVARIATES:
        lasso = make_pipeline(PolynomialFeatures(2, include_bias=False), StandardScaler(), lasso)
    return StackingRegressor(
        estimators=[("lasso", lasso), ("trees", default_outcome_regressor(random_state))],
        final_estimator=LinearRegression(positive=True),
        cv=3,
    )


def score_propensity(
    propensity: Any, X: np.ndarray, t: np.ndarray, patient_ids: Any, random_state: int
) -> np.ndarray:
    """The propensity the scores use: None, a randomized trial (the share treated);
    ``"estimate"``, cross-fitted scores (:func:`itelib.propensity.estimate_propensity`); an
    array, known scores. Clipped to ``PROPENSITY_CLIP``."""
    if propensity is None:
        e = np.full(len(t), t.mean())
    elif isinstance(propensity, str):
        if propensity != "estimate":
            raise ValueError(
                f"propensity must be None (a randomized trial), 'estimate' or one score per "
                f"patient; got {propensity!r}."
            )
        e = estimate_propensity(X, t, random_state=random_state)
    else:
        e = validate_propensity(propensity, len(t), patient_ids)
    return np.clip(e, *PROPENSITY_CLIP)


def _cross_fit(
    regressor: Any, X: np.ndarray, y: np.ndarray, folds: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Predictions for every patient, each from ``regressor`` fitted on the ``rows`` of the
    other folds."""
    from sklearn.base import clone

    out = np.empty(len(y))
    with one_thread():  # small stacked fits; see itelib/_threads.py
        for k in np.unique(folds):
            test = folds == k
            train = ~test & rows
            out[test] = clone(regressor).fit(X[train], y[train]).predict(X[test])
    return out


def outcome_mean(
    y: np.ndarray,
    X: np.ndarray,
    folds: np.ndarray,
    *,
    regressor: Any = None,
    binary: bool = False,
    random_state: int = 0,
) -> np.ndarray:
    """Cross-fitted ``m(x) = E[y | x]`` over both arms ``(n,)`` (Robinson's form of the BLP).

    ``regressor`` defaults to :func:`default_outcome_model`; ``binary`` clips to [0, 1]."""
    if regressor is None:
        regressor = default_outcome_model(random_state, X.shape[1])
    m = _cross_fit(regressor, X, y, folds, np.ones(len(y), dtype=bool))
    return np.clip(m, 0.0, 1.0) if binary else m


def dr_scores(
    y: np.ndarray,
    t: np.ndarray,
    X: np.ndarray,
    e: np.ndarray,
    folds: np.ndarray,
    *,
    regressor: Any = None,
    binary: bool = False,
    random_state: int = 0,
) -> np.ndarray:
    """Cross-fitted AIPW scores ``(n,)``.

    Parameters
    ----------
    y, t : (n,) outcome and 0/1 treatment.
    X : (n, p) encoded covariates.
    e : (n,) propensity, inside (0, 1).
    folds : (n,) int fold of each patient; the outcome models for a fold are fitted per arm on
        the patients of the other folds.
    regressor : scikit-learn regressor, optional
        Default :func:`default_outcome_model`.
    binary : bool
        Binary outcome: the predictions are clipped to [0, 1] (risk-difference scores).
    """
    if regressor is None:
        regressor = default_outcome_model(random_state, X.shape[1])
    mu0, mu1 = (_cross_fit(regressor, X, y, folds, t == arm) for arm in (0, 1))
    if binary:
        mu0, mu1 = np.clip(mu0, 0.0, 1.0), np.clip(mu1, 0.0, 1.0)
    return mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)


@dataclass(frozen=True)
class Nuisances:
    """Cross-fitted per patient: ``propensity`` (clipped to ``PROPENSITY_CLIP``),
    ``outcome_mean`` (``E[y | x]``, both arms) and ``scores`` (AIPW)."""

    propensity: np.ndarray
    outcome_mean: np.ndarray
    scores: np.ndarray


def fit_nuisances(
    y: np.ndarray,
    t: np.ndarray,
    X: np.ndarray,
    folds: np.ndarray,
    *,
    propensity: Any = None,
    patient_ids: Any = None,
    regressor: Any = None,
    binary: bool = False,
    random_state: int = 0,
) -> Nuisances:
    """Every nuisance validate() uses, on the estimates' folds (``propensity`` as in
    :func:`score_propensity`)."""
    e = score_propensity(propensity, X, t, patient_ids, random_state)
    kwargs = {"regressor": regressor, "binary": binary, "random_state": random_state}
    return Nuisances(
        propensity=e,
        outcome_mean=outcome_mean(y, X, folds, **kwargs),
        scores=dr_scores(y, t, X, e, folds, **kwargs),
    )
