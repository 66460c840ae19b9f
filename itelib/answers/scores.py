"""Cross-fitted doubly robust (AIPW) scores: each patient's noisy but unbiased effect.

``Gamma_i = mu1(x) - mu0(x) + t (y - mu1(x)) / e(x) - (1 - t) (y - mu0(x)) / (1 - e(x))``
(Robins, Rotnitzky & Zhao 1994): its mean over any set of patients chosen by their covariates
estimates that set's average effect, whichever of the outcome models or the propensity is right.
The outcome models ``mu0``, ``mu1`` are fitted per arm on the other folds, so a patient's own
outcome never enters their prediction (an in-sample fit would pull ``Gamma`` towards the model).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itelib._threads import one_thread
from itelib.prognostic_score import default_outcome_regressor
from itelib.propensity import estimate_propensity, validate_propensity

__all__ = ["PROPENSITY_CLIP", "default_outcome_model", "dr_scores", "score_propensity"]

PROPENSITY_CLIP = (0.01, 0.99)  # 1/e at most 100: one patient cannot carry a whole average


def default_outcome_model(random_state: int = 0) -> Any:
    """A stack of the lasso and gradient-boosted trees (3-fold stacking, non-negative weights):
    the lasso carries linear prognosis in few patients, the trees what is not linear."""
    from sklearn.ensemble import StackingRegressor
    from sklearn.linear_model import LassoCV, LinearRegression

    return StackingRegressor(
        estimators=[
            ("lasso", LassoCV(cv=3, max_iter=20_000, random_state=random_state)),
            ("trees", default_outcome_regressor(random_state)),
        ],
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
    from sklearn.base import clone

    if regressor is None:
        regressor = default_outcome_model(random_state)
    mu = np.empty((2, len(y)))
    with one_thread():  # small stacked fits; see itelib/_threads.py
        for k in np.unique(folds):
            test, train = folds == k, folds != k
            for arm in (0, 1):
                rows = train & (t == arm)
                model = clone(regressor).fit(X[rows], y[rows])
                mu[arm, test] = model.predict(X[test])
    if binary:
        mu = np.clip(mu, 0.0, 1.0)
    mu0, mu1 = mu
    return mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
