"""Cross-fitted effect estimates: each patient's estimate from a fit that never saw them.

The user's estimator is cloned (``sklearn.base.clone``: its parameters, none of its fitted
state) and refitted on all folds but one; the held-out fold's posterior-mean effects come from
``effect(X_fold, site=...)``. An estimator that memorised its training outcomes gains nothing
here, so an over-fitted model cannot pass the checks built on these estimates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itelib.inference.progress import show_progress

__all__ = ["check_estimator", "cross_fitted_effects", "make_folds", "take"]


def check_estimator(est: Any) -> None:
    """An itelib estimator, or anything with ``get_params``, ``fit`` and ``effect``."""
    missing = [m for m in ("get_params", "fit", "effect") if not callable(getattr(est, m, None))]
    if missing:
        raise TypeError(
            f"est must be an itelib estimator (HierarchicalITE, BayesianCausalForest, "
            f"CausalForest, or one with get_params, fit and effect); got "
            f"{type(est).__name__}, which lacks {missing}. Fix: pass e.g. itelib.CausalForest()."
        )


def make_folds(t: np.ndarray, folds: int, random_state: int) -> np.ndarray:
    """Fold of each patient, stratified by arm (each fold keeps the share treated)."""
    from sklearn.model_selection import StratifiedKFold

    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    out = np.empty(len(t), dtype=int)
    for k, (_, test) in enumerate(split.split(np.zeros(len(t)), t.astype(int))):
        out[test] = k
    return out


def take(obj: Any, rows: np.ndarray) -> Any:
    """Rows (positions) of a pandas object or an array; None and scalars pass through."""
    if obj is None or np.ndim(obj) == 0 or isinstance(obj, str):
        return obj
    if hasattr(obj, "iloc"):
        return obj.iloc[rows]
    return np.asarray(obj)[rows]


def cross_fitted_effects(
    est: Any,
    fold_ids: np.ndarray,
    *,
    Y: Any,
    T: Any,
    X: Any,
    site: Any,
    propensity: Any,
    fit_kwargs: dict[str, Any],
    progress_bar: bool | None,
) -> np.ndarray:
    """Posterior-mean effect of each patient ``(n,)`` from the fit without their fold."""
    from sklearn.base import clone

    k_values = np.unique(fold_ids)
    tau_hat = np.empty(len(fold_ids))
    bar = None
    if show_progress(progress_bar):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(k_values), desc="cross-fitting", unit="fold")
    try:
        for k in k_values:
            train, test = np.flatnonzero(fold_ids != k), np.flatnonzero(fold_ids == k)
            model = clone(est)
            score = propensity if isinstance(propensity, str) else take(propensity, train)
            model.fit(take(Y, train), take(T, train), X=take(X, train),
                      site=take(site, train), propensity=score, **fit_kwargs)  # fmt: skip
            post = model.effect(take(X, test), site=take(site, test))
            tau_hat[test] = np.asarray(post.mean(), dtype=float)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return tau_hat
