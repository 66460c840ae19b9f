"""A cross-fitted prognostic score: each patient's expected outcome ``E[y | x]`` from a flexible
model that never saw them, a covariate of the hierarchical model's prognostic part.

With the treatment centred on its propensity (``t - e(x)``), the prognostic part of the
hierarchical model is ``E[y | x]`` (Robinson 1988). A parametric prognosis misses most of a
nonlinear one; the score carries what gradient-boosted trees can learn of it, so the model's
own terms only correct it, and the residual noise, which sets every interval's width, shrinks.
Cross-fitting keeps a patient's own outcome out of their score (an in-sample fit would pass
the noise on to the prognosis and shrink sigma below the truth).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itelib._threads import one_thread

__all__ = ["default_outcome_regressor", "estimate_prognostic_score"]


def default_outcome_regressor(random_state: int = 0) -> Any:
    """Gradient-boosted trees with early stopping on a held-out tenth of each training fold."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        max_depth=3, learning_rate=0.05, max_iter=500, min_samples_leaf=20,
        early_stopping=True, validation_fraction=0.1, n_iter_no_change=20,
        random_state=random_state,
    )  # fmt: skip


def estimate_prognostic_score(
    X: np.ndarray,
    y: np.ndarray,
    *,
    regressor: Any = None,
    n_folds: int = 5,
    random_state: int = 0,
) -> np.ndarray:
    """Cross-fitted ``E[y | x]`` for every patient (``(n,)``), in the outcome's units."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_predict

    if regressor is None:
        regressor = default_outcome_regressor(random_state)
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    with one_thread():
        return cross_val_predict(clone(regressor), X, y, cv=folds)
