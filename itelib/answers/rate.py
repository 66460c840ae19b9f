"""The rank-weighted average treatment effect (RATE; Yadlowsky, Fleming, Shah, Brunskill &
Wager 2021), as grf's ``rank_average_treatment_effect`` computes it.

Patients are sorted by a priority (highest first). The targeting operator characteristic at
``q`` is the average effect among the top ``q`` share minus the average effect of all:
``TOC(q) = mean(Gamma | top q) - mean(Gamma)``, with patients tied on priority sharing the
mean of their scores. AUTOC is the area under it (``mean_k TOC(k/n)``); Qini weights it by the
share treated (``mean_k (k/n) TOC(k/n)``). A random priority gives 0; one that finds who
benefits more, a positive value. Standard errors are grf's half-sample bootstrap: each
replicate recomputes the statistic on half the patients drawn without replacement, whose
spread is the full sample's standard error (the finite-population correction of sampling half
without replacement, 1 - 1/2, undoes the halving of n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

__all__ = ["RATE", "rate", "rate_estimates", "toc_values"]

N_BOOTSTRAP = 200  # grf's default number of half-samples
TOC_GRID = 100  # points of the TOC curve returned for plotting


@dataclass(frozen=True, eq=False)
class RATE:
    """AUTOC and Qini with their half-sample bootstrap standard errors, and the TOC curve.

    Attributes
    ----------
    autoc, autoc_se, qini, qini_se : float
    toc : pandas.DataFrame
        Columns ``q`` (share treated, highest priority first), ``estimate``, ``se``,
        ``lower``, ``upper`` (normal interval at ``prob``).
    prob : float
    """

    autoc: float
    autoc_se: float
    qini: float
    qini_se: float
    toc: pd.DataFrame
    prob: float


def toc_values(values: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """``TOC(k/n)`` for ``k = 1..n``: patients sorted by ``priority`` (highest first), tied
    patients sharing the mean of their ``values``."""
    order = np.argsort(-priority, kind="stable")
    v, p = np.asarray(values, dtype=float)[order], np.asarray(priority)[order]
    _, start, counts = np.unique(-p, return_index=True, return_counts=True)
    if len(start) < len(v):  # ties: each tied block gets its mean
        v = np.repeat(np.add.reduceat(v, start) / counts, counts)
    k = np.arange(1, len(v) + 1)
    return np.cumsum(v) / k - v.mean()


def rate_estimates(values: np.ndarray, priority: np.ndarray) -> tuple[float, float]:
    """(AUTOC, Qini) of ``values`` (scores, or true effects for the true RATE)."""
    toc = toc_values(values, priority)
    share = np.arange(1, len(toc) + 1) / len(toc)
    return float(toc.mean()), float((share * toc).mean())


def _on_grid(toc: np.ndarray, grid: np.ndarray) -> np.ndarray:
    index = np.clip(np.ceil(grid * len(toc)).astype(int) - 1, 0, len(toc) - 1)
    return toc[index]


def rate(
    gamma: np.ndarray,
    priority: np.ndarray,
    *,
    rng: np.random.Generator,
    prob: float = 0.95,
    n_bootstrap: int = N_BOOTSTRAP,
    variance_inflation: float = 1.0,
) -> RATE:
    """AUTOC, Qini and the TOC curve of ``priority`` evaluated on scores ``gamma``;
    ``variance_inflation`` multiplies the bootstrap variances (a priority cross-fitted from
    the same outcomes: :data:`itelib.answers.crossfit.CROSS_FIT_VARIANCE_INFLATION`)."""
    gamma, priority = np.asarray(gamma, dtype=float), np.asarray(priority, dtype=float)
    n = len(gamma)
    grid = np.arange(1, TOC_GRID + 1) / TOC_GRID
    toc = toc_values(gamma, priority)
    autoc, qini = rate_estimates(gamma, priority)
    boot = np.empty((n_bootstrap, 2 + len(grid)))
    for b in range(n_bootstrap):
        rows = rng.choice(n, size=n // 2, replace=False)
        boot[b, :2] = rate_estimates(gamma[rows], priority[rows])
        boot[b, 2:] = _on_grid(toc_values(gamma[rows], priority[rows]), grid)
    se = np.sqrt(variance_inflation) * boot.std(axis=0, ddof=1)
    z = special.ndtri(0.5 + prob / 2)
    curve = pd.DataFrame({"q": grid, "estimate": _on_grid(toc, grid), "se": se[2:]})
    curve["lower"] = curve["estimate"] - z * curve["se"]
    curve["upper"] = curve["estimate"] + z * curve["se"]
    return RATE(autoc, float(se[0]), qini, float(se[1]), curve, prob)
