r"""Accelerated-failure-time (AFT) event times: survival, restricted mean, sampling, censoring.

An AFT model writes the log event time as a location plus a scaled error,

.. math::

    \log T = \eta + \sigma \varepsilon,

so a treatment that shifts :math:`\eta` by :math:`\gamma` multiplies every quantile of
:math:`T` by the **time ratio** :math:`e^\gamma` (Kalbfleisch & Prentice 2002, *The Statistical
Analysis of Failure Time Data*, 2nd ed., section 2.3.4). Two error laws are supported:

- ``"weibull"``: :math:`\varepsilon` standard minimum extreme value, so :math:`T` is Weibull
  with shape :math:`k = 1/\sigma` and scale :math:`\lambda = e^\eta`,
  :math:`S(u) = \exp\{-(u/\lambda)^k\}` (``scipy.stats.weibull_min(c=k, scale=lambda)``);
- ``"lognormal"``: :math:`\varepsilon \sim N(0, 1)`,
  :math:`S(u) = 1 - \Phi\{(\log u - \eta)/\sigma\}` (``scipy.stats.lognorm(s=sigma,
  scale=e^eta)``).

The restricted mean survival time up to a horizon :math:`L`,
:math:`\mathrm{RMST}(L) = \int_0^L S(u)\,du = E\{\min(T, L)\}` (Royston & Parmar 2013, BMC Med
Res Methodol 13:152), has closed forms for both (see :func:`restricted_mean`), exact up to
floating point: no quadrature error.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import gamma, gammainc, ndtr

__all__ = [
    "FAMILIES",
    "calibrate_censoring_rate",
    "draw_event_times",
    "restricted_mean",
    "survival_probability",
]

Family = Literal["weibull", "lognormal"]
FAMILIES: tuple[str, ...] = ("weibull", "lognormal")


def check_family(family: object) -> str:
    """Return ``family`` if it is one of :data:`FAMILIES`; else raise naming the argument."""
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}; got {family!r}")
    return str(family)


def survival_probability(
    time: np.ndarray | float, location: np.ndarray | float, sigma: float, family: Family
) -> np.ndarray:
    r"""Survival function :math:`S(u) = P(T > u)` of the AFT event time.

    Parameters
    ----------
    time : array_like
        Times :math:`u > 0`.
    location : array_like
        Locations :math:`\eta` of :math:`\log T` (broadcast against ``time``).
    sigma : float
        Scale :math:`\sigma > 0` of the log-time error.
    family : {"weibull", "lognormal"}
        Error law (see the module docstring).

    Returns
    -------
    numpy.ndarray
    """
    z = (np.log(time) - np.asarray(location, dtype=np.float64)) / sigma
    if check_family(family) == "weibull":
        return np.exp(-np.exp(z))
    return ndtr(-z)


def restricted_mean(
    horizon: float, location: np.ndarray | float, sigma: float, family: Family
) -> np.ndarray:
    r"""Restricted mean survival time :math:`\int_0^L S(u)\,du` in closed form.

    Weibull (:math:`k = 1/\sigma`, :math:`\lambda = e^\eta`; substitute
    :math:`v = (u/\lambda)^k`):

    .. math::

        \mathrm{RMST}(L) = \lambda\, \Gamma(1 + 1/k)\, P\{1/k, (L/\lambda)^k\},

    with :math:`P` the regularized lower incomplete gamma function. Log-normal (split
    :math:`E\min(T, L)` at :math:`L`, using the partial mean of a log-normal):

    .. math::

        \mathrm{RMST}(L) = e^{\eta + \sigma^2/2}\, \Phi\{(\log L - \eta - \sigma^2)/\sigma\}
            + L\, [1 - \Phi\{(\log L - \eta)/\sigma\}].

    Parameters
    ----------
    horizon : float
        Horizon :math:`L > 0`.
    location : array_like
        Locations :math:`\eta` of :math:`\log T`.
    sigma : float
        Scale :math:`\sigma > 0` of the log-time error.
    family : {"weibull", "lognormal"}

    Returns
    -------
    numpy.ndarray
        One RMST per location, in (0, L].
    """
    eta = np.asarray(location, dtype=np.float64)
    if check_family(family) == "weibull":
        scaled = np.exp((np.log(horizon) - eta) / sigma)  # (L / lambda)^k with k = 1 / sigma
        return np.exp(eta) * gamma(1.0 + sigma) * gammainc(sigma, scaled)
    z = (np.log(horizon) - eta) / sigma
    return np.exp(eta + 0.5 * sigma**2) * ndtr(z - sigma) + horizon * ndtr(-z)


def draw_event_times(
    rng: np.random.Generator, location: np.ndarray, sigma: float, family: Family
) -> np.ndarray:
    r"""Draw :math:`T = \exp(\eta + \sigma \varepsilon)`, one per location.

    The Weibull error is :math:`\varepsilon = \log E`, :math:`E \sim \text{Exp}(1)`, which is
    the standard minimum extreme-value law (so :math:`T = \lambda E^{1/k}`).

    Parameters
    ----------
    rng : numpy.random.Generator
    location : numpy.ndarray
        Locations :math:`\eta`.
    sigma : float
    family : {"weibull", "lognormal"}

    Returns
    -------
    numpy.ndarray
    """
    size = np.shape(location)
    if check_family(family) == "weibull":
        error = np.log(rng.standard_exponential(size))
    else:
        error = rng.standard_normal(size)
    return np.exp(np.asarray(location, dtype=np.float64) + sigma * error)


def calibrate_censoring_rate(event_times: np.ndarray, censoring: float) -> float:
    r"""Rate :math:`r` of exponential censoring times giving the censored share ``censoring``.

    With :math:`C \sim \text{Exp}(r)` independent of :math:`T`, a patient is censored when
    :math:`C < T`, with probability :math:`E\{1 - e^{-rT}\}`; this rises from 0 to 1 in
    :math:`r`, so a root find on the average of :math:`1 - e^{-r T_i}` over a large draw of
    event times solves it. Averaging the conditional probability rather than censoring
    indicators leaves only the Monte Carlo error of the event times (sd below
    :math:`0.5/\sqrt{m}` for :math:`m` draws).

    Parameters
    ----------
    event_times : numpy.ndarray
        A large draw of event times from the trial's population (treatment as assigned).
    censoring : float
        Target share censored, in (0, 1).

    Returns
    -------
    float
        The censoring rate :math:`r > 0` (the censoring times have mean :math:`1/r`).
    """
    scaled = np.log(event_times) - np.log(np.median(event_times))  # log(r) near 0: well scaled

    def excess(log_rate: float) -> float:
        return float(np.mean(-np.expm1(-np.exp(log_rate + scaled)))) - censoring

    # A bracket that always holds: 1 - e^{-x} <= x makes the share at most r E(T), below c at
    # r = c / (2 E T); at r = -log(1 - c) / min(T) every patient's chance is at least c.
    low = np.log(censoring) - np.log(2.0 * np.mean(np.exp(scaled)))  # apart: c may be subnormal
    high = np.log(-np.log1p(-censoring)) - scaled.min() + 1.0
    log_rate = brentq(excess, low, high, xtol=1e-12, rtol=1e-12)
    return float(np.exp(log_rate - np.log(np.median(event_times))))
