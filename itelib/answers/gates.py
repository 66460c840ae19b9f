"""Sorted group average effects (GATES; Chernozhukov, Demirer, Duflo & Fernández-Val 2018):
patients cut into groups by the quantiles of their estimated effect, within each fold (each
fold's estimates come from one fit), and each group's average doubly robust score with its
normal interval. Rising averages from the lowest group to the highest: the ranking finds real
differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

__all__ = ["gates", "quantile_groups", "within_fold_ranks"]


def within_fold_ranks(tau_hat: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each patient's rank of ``tau_hat`` within their fold, scaled into (0, 1]."""
    ranks = np.empty(len(tau_hat))
    for k in np.unique(folds):
        rows = np.flatnonzero(folds == k)
        order = pd.Series(tau_hat[rows]).rank(method="average").to_numpy()
        ranks[rows] = order / len(rows)
    return ranks


def quantile_groups(ranks: np.ndarray, n_groups: int) -> np.ndarray:
    """Group 0 (lowest estimates) .. ``n_groups - 1`` from ranks in (0, 1]."""
    return np.minimum((np.ceil(ranks * n_groups) - 1).astype(int), n_groups - 1).clip(0)


def gates(
    gamma: np.ndarray,
    tau_hat: np.ndarray,
    ranks: np.ndarray,
    n_groups: int,
    prob: float,
    variance_inflation: float = 1.0,
) -> pd.DataFrame:
    """One row per group: ``n``, ``mean_estimate`` (of ``tau_hat``), ``estimate`` (mean
    score), ``se``, ``lower``, ``upper`` (normal ``prob`` interval); and a last row
    ``top - bottom``, the difference between the highest and the lowest group.
    ``variance_inflation`` multiplies each variance (groups made from cross-fitted estimates:
    :data:`itelib.answers.crossfit.CROSS_FIT_VARIANCE_INFLATION`)."""
    groups = quantile_groups(ranks, n_groups)
    z = special.ndtri(0.5 + prob / 2)
    rows = []
    for g in range(n_groups):
        x = gamma[groups == g]
        se = np.sqrt(variance_inflation * x.var(ddof=1) / len(x)) if len(x) > 1 else np.nan
        rows.append((f"G{g + 1}", len(x), tau_hat[groups == g].mean(), x.mean(), se))
    top, bottom = rows[-1], rows[0]
    diff_se = float(np.hypot(top[4], bottom[4]))
    rows.append(("top - bottom", top[1] + bottom[1], top[2] - bottom[2], top[3] - bottom[3],
                 diff_se))  # fmt: skip
    table = pd.DataFrame(rows, columns=["group", "n", "mean_estimate", "estimate", "se"])
    table["lower"] = table["estimate"] - z * table["se"]
    table["upper"] = table["estimate"] + z * table["se"]
    return table.set_index("group")
