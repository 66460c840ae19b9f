"""Optional differential privacy for a site's cross-products (experimental).

With a :class:`PrivacyBudget`, :func:`~itelib.federated.site_summary` clips the standardized
covariates and outcome to ``[-clip, clip]``, so that every row ``d`` of ``[D, y]`` has
``|d|^2 <= B`` (:func:`row_bound`), and adds Gaussian noise to each distinct entry of each
site's ``[D, y]'[D, y]``: adding or removing one patient changes that matrix by ``d d'``,
of Frobenius norm ``|d|^2 <= B``, so noise of sd :func:`gaussian_sigma` (the analytic Gaussian
mechanism, Balle & Wang 2018, Theorem 8, exact for any epsilon) makes the matrix
(epsilon, delta)-differentially private. The noisy matrix is then projected onto the positive
semi-definite ones (its negative eigenvalues set to 0: post-processing, no privacy cost).

What it does **not** cover: the counts (``n``, ``n_treated``) and the first round's moments
are exact aggregates; and the fit treats the noisy matrices as exact, so its intervals do not
include the noise (``benchmarks/federated_privacy.py`` measures what that costs in coverage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

__all__ = ["PrivacyBudget", "gaussian_sigma", "privatize", "row_bound"]


@dataclass(frozen=True)
class PrivacyBudget:
    """(epsilon, delta) for one site's summary, and the clipping bound.

    Parameters
    ----------
    epsilon : float
        Privacy loss, > 0.
    delta : float
        Failure probability, in (0, 1); take it below 1 / n.
    clip : float
        Standardized covariates and outcome are clipped to ``[-clip, clip]``.
    """

    epsilon: float
    delta: float = 1e-6
    clip: float = 3.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"PrivacyBudget(epsilon={self.epsilon!r}) must be finite and > 0.")
        if not 0 < self.delta < 1:
            raise ValueError(f"PrivacyBudget(delta={self.delta!r}) must be in (0, 1).")
        if not (np.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"PrivacyBudget(clip={self.clip!r}) must be finite and > 0.")


def _delta_of(sigma: float, sensitivity: float, epsilon: float) -> float:
    """The smallest delta the Gaussian mechanism with sd ``sigma`` achieves at ``epsilon``."""
    a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
    return float(np.exp(log_ndtr(a - b)) - np.exp(epsilon + log_ndtr(-a - b)))


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The smallest noise sd giving (epsilon, delta)-DP for an L2 ``sensitivity`` (the analytic
    Gaussian mechanism: bisection on its exact condition, to a relative 1e-10)."""
    low, high = 1e-6 * sensitivity, sensitivity
    while _delta_of(high, sensitivity, epsilon) > delta:
        high *= 2
    for _ in range(200):
        mid = np.sqrt(low * high)
        low, high = (mid, high) if _delta_of(mid, sensitivity, epsilon) > delta else (low, mid)
        if high / low < 1 + 1e-10:
            break
    return float(high)


def row_bound(columns: np.ndarray) -> float:
    """``B = |d|^2``'s bound from each column's bound ``|d_j| <= columns[j]``."""
    return float(np.sum(np.asarray(columns, np.float64) ** 2))


def privatize(grams: np.ndarray, bound: float, budget: PrivacyBudget,
              rng: np.random.Generator) -> tuple[np.ndarray, float]:  # fmt: skip
    """Noisy, positive semi-definite copies of each site's (K + 1)-square cross-products, and
    the noise sd used."""
    sigma = gaussian_sigma(bound, budget.epsilon, budget.delta)
    out = np.empty_like(grams)
    upper = np.triu_indices(grams.shape[1])
    for s, gram in enumerate(grams):
        noise = np.zeros_like(gram)
        noise[upper] = rng.normal(0.0, sigma, len(upper[0]))
        noisy = gram + np.triu(noise) + np.triu(noise, 1).T
        values, vectors = np.linalg.eigh(noisy)
        out[s] = (vectors * np.maximum(values, 0.0)) @ vectors.T
    return out, sigma
