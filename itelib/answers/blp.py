"""The best linear predictor of the effect from its estimate (Chernozhukov, Demirer, Duflo &
Fernández-Val 2018, sec. 3), in Robinson's residual form (grf's ``test_calibration``).

Regress ``y - m(x)`` on ``[t - e(x), (t - e(x)) (tau_hat - mean(tau_hat))]`` (the mean taken
within the patient's fold, whose fit made the estimate), with ``m = E[y | x]`` and ``e`` the
propensity, both cross-fitted. ``beta2`` is 0 when the estimates carry no information on
who benefits more, 1 when they are calibrated (a unit of estimated difference is a unit of true
difference). The reported intercept is ``y - m`` on ``t - e`` alone: the average effect
weighted by ``e (1 - e)`` (the average effect in a randomized trial). Standard errors are HC3
(MacKinnon & White 1985): the noise differs from patient to patient; the slope's is inflated
for cross-fitted estimates (:mod:`itelib.answers.crossfit`).

Why this form and not the BLP of doubly robust scores: in observational data an error in ``m``
and an error in ``e`` bias the slope only through their product here, as in the scores, but
without the scores' ``1 / e`` weights, whose tails let a few patients decide the test. With
the product-lasso outcome model it brought validate()'s false alarms on two constant-effect
observational designs to those of the true nuisances, on the same estimates (7 of 60 against
12; docs/decisions.md, issue 21).
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
        The average effect weighted by ``e (1 - e)`` (Robinson's estimate; the ATE in a
        randomized trial) and its HC3 standard error.
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


def blp(
    y: np.ndarray,
    t: np.ndarray,
    outcome_mean: np.ndarray,
    propensity: np.ndarray,
    tau_hat: np.ndarray,
    folds: np.ndarray | None = None,
    variance_inflation: float = 1.0,
) -> BLP:
    """Fit the best linear predictor of the effect from ``tau_hat`` (estimates).

    Parameters
    ----------
    y, t : (n,) outcome and 0/1 treatment.
    outcome_mean, propensity : (n,) cross-fitted ``E[y | x]`` (both arms) and ``P(t = 1 | x)``.
    tau_hat : (n,) estimates, each from a fit that did not see the patient.
    folds : (n,) int, optional
        Centre ``tau_hat`` within each fold (default: one fold).
    variance_inflation : float
        Multiplies the slope's variance: ``CROSS_FIT_VARIANCE_INFLATION`` for cross-fitted
        estimates (:mod:`itelib.answers.crossfit`), 1 for estimates that do not depend on
        ``y``.
    """
    t = np.asarray(t, dtype=float)
    folds = np.zeros(len(t), dtype=int) if folds is None else np.asarray(folds)
    d = t - np.asarray(propensity, dtype=float)
    resid = np.asarray(y, dtype=float) - np.asarray(outcome_mean, dtype=float)
    # the average effect from d alone (Robinson's estimate, weights e (1 - e)): with the
    # estimates beside it, d's coefficient would also carry sum d^2 (tau_hat - mean), which
    # is not 0 where the estimates follow the propensity
    ate, ate_cov = _hc3(d[:, None], resid)
    coef, cov = _hc3(np.column_stack([d, d * centre_within_folds(tau_hat, folds)]), resid)
    ate_se = float(np.sqrt(max(ate_cov[0, 0], 0.0)))
    se = float(np.sqrt(max(cov[1, 1], 0.0) * variance_inflation))
    if se == 0.0:  # estimates all equal: nothing to learn about who benefits more
        return BLP(float(ate[0]), ate_se, 0.0, float("inf"), 1.0, float("nan"))
    z0, z1 = coef[1] / se, (coef[1] - 1.0) / se
    return BLP(
        intercept=float(ate[0]),
        intercept_se=ate_se,
        slope=float(coef[1]),
        slope_se=se,
        p_heterogeneity=float(special.ndtr(-z0)),
        p_calibration=float(2.0 * special.ndtr(-abs(z1))),
    )
