"""A randomized multi-site trial with a binary outcome from a hierarchical logistic model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

from itelib.simulate.multisite import _allocate_sites, _correlated_normals
from itelib.simulate.registry import register
from itelib.simulate.trial import SeedLike, SimulatedTrial, _as_rng, _build_trial, _check_int

__all__ = ["binary_multisite_rct"]


@register("binary_multisite_rct")
def binary_multisite_rct(
    n: int = 2000,
    seed: SeedLike = None,
    *,
    n_sites: int = 20,
    p: int = 6,
    baseline: float = -1.2,
    prognostic: Sequence[float] = (0.4, -0.3, 0.2),
    tau0: float = -0.5,
    modifiers: Sequence[float] = (0.5, -0.4),
    site_intercept_sd: float = 0.5,
    site_effect_sd: float = 0.3,
    rho: float = 0.3,
    site_concentration: float = 2.0,
    min_site_size: int = 5,
) -> SimulatedTrial:
    r"""Simulate a randomized multi-site trial with a binary outcome (itelib's own design).

    Patient :math:`i` in site :math:`j = s(i)`, covariates :math:`x \in \mathbb{R}^p`,
    treatment :math:`t \in \{0, 1\}`:

    .. math::

        x &\sim N(0, \Sigma), \quad \Sigma_{kl} = \rho^{|k - l|} \\
        \eta_0(x, j) &= \alpha + a_j + x^\top \beta
            \quad (\beta = \text{prognostic}, \text{ default } 0.4 x_1 - 0.3 x_2 + 0.2 x_3) \\
        \theta(x, j) &= \tau_0 + b_j + x^\top \gamma
            \quad (\gamma = \text{modifiers}, \text{ default } 0.5 x_1 - 0.4 x_2) \\
        a_j &\sim N(0, \sigma_a^2), \quad b_j \sim N(0, \sigma_b^2) \\
        \mathrm{logit}\, P(y = 1 \mid x, j, t) &= \eta_0(x, j) + t\, \theta(x, j),
            \quad t \sim \text{Bernoulli}(0.5).

    :math:`\theta` is the patient's true log odds ratio. The true individual effect is the
    **risk difference** ``tau`` :math:`= \mathrm{expit}(\eta_0 + \theta) -
    \mathrm{expit}(\eta_0)`, with ``mu0`` and ``mu1`` the two risks.

    The outcome is adverse (say, an event within a year) and the treatment protective on
    average: with the defaults the mean baseline risk is about 0.25 (80 % of patients between
    0.12 and 0.40), the odds ratio at :math:`x = 0` is :math:`e^{-0.5} = 0.61`, the risk
    difference has mean about -0.05 and sd about 0.08, and
    :math:`\mathrm{sd}(\theta) \approx 0.62` (0.54 from the modifiers, 0.3 between sites), so
    about a fifth of patients are harmed (:math:`\theta > 0`). A hierarchical logistic model
    with linear-in-:math:`x` prognostic and effect terms and site-varying intercepts of both is
    *correctly specified*. Sites are allocated as in :func:`multisite_rct` (``min_site_size``
    each plus a Dirichlet-multinomial remainder). Source: written for itelib; it mimics the
    binary-outcome trial of REFERENCES.md.

    Parameters
    ----------
    n : int, default 2000
        Number of patients; at least ``n_sites * min_site_size``.
    seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
        Seed for :func:`numpy.random.default_rng`.
    n_sites : int, default 20
        Number of sites (labels ``s00``, ``s01``, ...).
    p : int, default 6
        Number of continuous covariates ``x1 .. xp``.
    baseline : float, default -1.2
        Log odds :math:`\alpha` of the outcome for an untreated patient at :math:`x = 0`.
    prognostic : sequence of float, default (0.4, -0.3, 0.2)
        Prognostic log-odds coefficients :math:`\beta` of ``x1, x2, ...`` (at most ``p``).
    tau0 : float, default -0.5
        Population log odds ratio of treatment at :math:`x = 0`.
    modifiers : sequence of float, default (0.5, -0.4)
        Effect-modifier coefficients :math:`\gamma` on the log-odds-ratio scale (at most ``p``).
    site_intercept_sd, site_effect_sd : float, default 0.5, 0.3
        Between-site sd :math:`\sigma_a` of the log-odds intercept and :math:`\sigma_b` of the
        log odds ratio.
    rho : float, default 0.3
        AR(1) correlation of the covariates, in (-1, 1).
    site_concentration : float, default 2.0
        Dirichlet concentration of the site shares (smaller: more unequal sites).
    min_site_size : int, default 5
        Minimum patients per site.

    Returns
    -------
    SimulatedTrial
        ``data`` columns ``y`` (int 0/1), ``t, x1..xp, site``; propensity 0.5 for everyone.
        Beyond the arguments, ``params`` holds the log-odds truth: ``"log_odds_ratio"``
        (:math:`\theta` per patient, a Series indexed like ``data``) and ``"site_truth"``
        (a DataFrame indexed by site label with columns ``intercept`` :math:`a_j` and
        ``log_odds_ratio`` :math:`b_j`).
    """
    params = dict(locals())
    params["prognostic"], params["modifiers"] = tuple(prognostic), tuple(modifiers)
    n_sites = _check_int(n_sites, "n_sites", 1)
    min_site_size = _check_int(min_site_size, "min_site_size", 1)
    n = _check_int(n, "n", n_sites * min_site_size)
    p = _check_int(p, "p", 1)
    beta = _coefficients(prognostic, p, "prognostic")
    gamma = _coefficients(modifiers, p, "modifiers")
    _check_numbers(params)

    rng = _as_rng(seed)
    site = _allocate_sites(rng, n, n_sites, min_site_size, site_concentration)
    x = _correlated_normals(rng, n, p, rho)
    intercepts = rng.normal(0.0, site_intercept_sd, size=n_sites)
    effects = rng.normal(0.0, site_effect_sd, size=n_sites)
    eta0 = baseline + intercepts[site] + x @ beta
    theta = tau0 + effects[site] + x @ gamma
    mu0, mu1 = expit(eta0), expit(eta0 + theta)
    propensity = np.full(n, 0.5)
    t = (rng.uniform(size=n) < propensity).astype(np.int64)
    y = (rng.uniform(size=n) < np.where(t == 1, mu1, mu0)).astype(np.int64)

    width = max(2, len(str(n_sites - 1)))
    labels = np.array([f"s{j:0{width}d}" for j in range(n_sites)], dtype=object)
    covariates = pd.DataFrame(x, columns=[f"x{k + 1}" for k in range(p)])
    trial = _build_trial(
        name="binary_multisite_rct",
        params=params,
        covariates=covariates,
        t=t,
        y=y,
        mu0=mu0,
        tau=mu1 - mu0,
        propensity=propensity,
        site=labels[site],
    )
    trial.data["y"] = y  # _build_trial stores float outcomes; this design's is int 0/1
    params["log_odds_ratio"] = pd.Series(theta, index=trial.data.index, name="log_odds_ratio")
    params["site_truth"] = pd.DataFrame(
        {"intercept": intercepts, "log_odds_ratio": effects},
        index=pd.Index(labels, name="site"),
    )
    return trial


def _coefficients(values: Sequence[float], p: int, name: str) -> np.ndarray:
    """Length-``p`` vector: ``values`` on the first covariates, zeros after."""
    coefs = np.asarray(values, dtype=np.float64).ravel()
    if coefs.size > p or not np.all(np.isfinite(coefs)):
        raise ValueError(f"`{name}` must be at most p={p} finite coefficients; got {list(coefs)}")
    beta = np.zeros(p)
    beta[: coefs.size] = coefs
    return beta


def _check_numbers(params: dict[str, object]) -> None:
    """Raise a ValueError naming the first out-of-range numeric argument."""
    for name in ("baseline", "tau0"):
        if not np.isfinite(params[name]):
            raise ValueError(f"`{name}` must be a finite number; got {params[name]}")
    for name in ("site_intercept_sd", "site_effect_sd"):
        if not params[name] >= 0:  # also rejects NaN
            raise ValueError(f"`{name}` must be a number >= 0; got {params[name]}")
    if not params["site_concentration"] > 0:
        raise ValueError(f"`site_concentration` must be > 0; got {params['site_concentration']}")
    if not -1.0 < params["rho"] < 1.0:
        raise ValueError(f"`rho` must lie in (-1, 1); got {params['rho']}")
