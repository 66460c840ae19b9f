"""The best linear predictor of the effect from its estimate (Chernozhukov, Demirer, Duflo &
Fernández-Val 2018, sec. 3), on doubly robust scores.

Regress each patient's score ``Gamma_i`` on ``[1, tau_hat_i - mean(tau_hat)]`` (the mean taken
within the patient's fold, whose fit made the estimate). ``beta1`` is the average effect;
``beta2`` is 0 when the estimates carry no information on who benefits more, 1 when they are
calibrated (a unit of estimated difference is a unit of true difference). Standard errors are
HC3 (MacKinnon & White 1985): the scores' variance differs from patient to patient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["BLP", "blp", "centre_within_folds"]


@dataclass(frozen=True)
class BLP:
    """Coefficients of the best linear predictor and their tests.

    Attributes
    ----------
    intercept, intercept_se : float
        ``beta1`` (the average effect) and its HC3 standard error.
    slope, slope_se : float
        ``beta2`` and its HC3 standard error.
    p_heterogeneity : float
        One-sided p-value of ``beta2 <= 0`` (no heterogeneity the estimates can find).
    p_calibration : float
        Two-sided p-value of ``beta2 = 1`` (calibrated estimates).
    """

    intercept: float
    intercept_se: float
    slope: float
    slope_se: float
    p_heterogeneity: float
    p_calibration: float


def centre_within_folds(tau_hat: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """``tau_hat`` minus its mean in each fold (each fold's estimates come from one fit)."""
    out = np.asarray(tau_hat, dtype=float).copy()
    for k in np.unique(folds):
        out[folds == k] -= out[folds == k].mean()
    return out


def _hc3(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and their HC3 covariance."""
    bread = np.linalg.pinv(design.T @ design)
    coef = bread @ design.T @ y
    resid = y - design @ coef
    leverage = np.einsum("ij,jk,ik->i", design, bread, design)
    weights = resid**2 / np.maximum(1.0 - leverage, 1e-12) ** 2
    meat = design.T @ (design * weights[:, None])
    return coef, bread @ meat @ bread


def blp(gamma: np.ndarray, tau_hat: np.ndarray, folds: np.ndarray | None = None) -> BLP:
    """Fit the best linear predictor of ``gamma`` (scores) from ``tau_hat`` (estimates).

    Parameters
    ----------
    gamma, tau_hat : (n,) arrays.
    folds : (n,) int, optional
        Centre ``tau_hat`` within each fold (default: one fold).
    """
    folds = np.zeros(len(gamma), dtype=int) if folds is None else np.asarray(folds)
    centred = centre_within_folds(tau_hat, folds)
    design = np.column_stack([np.ones(len(gamma)), centred])
    coef, cov = _hc3(design, np.asarray(gamma, dtype=float))
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    if se[1] == 0.0:  # estimates all equal: nothing to learn about who benefits more
        return BLP(float(coef[0]), float(se[0]), 0.0, float("inf"), 1.0, float("nan"))
    z0, z1 = coef[1] / se[1], (coef[1] - 1.0) / se[1]
    return BLP(
        intercept=float(coef[0]),
        intercept_se=float(se[0]),
        slope=float(coef[1]),
        slope_se=float(se[1]),
        p_heterogeneity=float(special.ndtr(-z0)),
        p_calibration=float(2.0 * special.ndtr(-abs(z1))),
    )
