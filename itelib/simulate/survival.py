r"""Survival trials with known truth: accelerated-failure-time designs with random censoring.

Patient :math:`i` (in site :math:`j` for the multi-site design), covariates
:math:`x_1, \dots, x_p \sim N(0, 1)` independent (:math:`x_5, \dots` are noise), treatment
:math:`t \in \{0, 1\}`:

.. math::

    \log T &= \alpha + a_j + m(x) + t\, \{\gamma(x) + b_j\} + \sigma \varepsilon \\
    m(x) &= -0.5 x_1 - 0.3 (x_2^2 - 1) + 0.4 \tanh(2 x_3) - 0.25 x_1 x_4 \\
    \gamma(x) &= 0.4 + 0.3 x_2 - 0.4 \cdot 1(x_1 > 0) \\
    C &\sim \text{Exp}(r), \quad \text{time} = \min(T, C), \quad \text{event} = 1(T \le C),

with :math:`\varepsilon` minimum extreme value (Weibull event times) or standard normal
(log-normal), see :mod:`itelib.simulate.aft`. :math:`m` is a nonlinear prognosis (a high
:math:`x_1` shortens survival), :math:`\gamma` the heterogeneous treatment effect on log time:
treatment multiplies the patient's event time by the **time ratio** :math:`e^{\gamma + b_j}`
(mean :math:`\gamma` 0.2, sd 0.36; about 30 % of patients are harmed, :math:`\gamma < 0`).
Single-site designs have :math:`a_j = b_j = 0`.

The censoring rate :math:`r` is solved so that the expected share censored equals
``censoring`` (:func:`~itelib.simulate.aft.calibrate_censoring_rate`), on a draw of
:math:`2^{17}` patients from the design's population with a fixed internal seed; its Monte Carlo
error on the share is below 0.0014, far under the binomial sd of a trial (0.0145 at
:math:`n = 1000`, 30 %). Exponential censoring has no end of follow-up, so the RMST at any
horizon stays identified from the data.

The truth per patient, in closed form (:func:`~itelib.simulate.aft.restricted_mean`):
``mu0``, ``mu1`` are the restricted mean survival times (RMST) up to the horizon :math:`L`
untreated and treated, ``tau`` their difference; ``truth`` adds the difference in survival
probability at ``t_eval`` and the time ratio. Source: written for itelib; AFT models as in
Kalbfleisch & Prentice (2002, section 2.3), RMST as the causal contrast as in Royston & Parmar
(2013, BMC Med Res Methodol 13:152); individualized effects on an AFT scale as in Henderson,
Louis, Rosner & Varadhan (2020, Biostatistics, "Individualized treatment effects with censored
data via fully nonparametric Bayesian accelerated failure time models").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from itelib.simulate import aft
from itelib.simulate.multisite import _allocate_sites
from itelib.simulate.registry import register
from itelib.simulate.trial import SeedLike, SurvivalTrial, _as_rng, _check_int, _patient_index

__all__ = [
    "survival_log_time_ratio",
    "survival_lognormal",
    "survival_multisite",
    "survival_prognosis",
    "survival_weibull",
]

_CALIBRATION_SEED = 20251206  # fixed: the same design always gets the same rate and horizon
_CALIBRATION_DRAWS = 2**17
_HORIZON_QUANTILE = 0.75  # default horizon: 3/4 of the population's events happen before it


def survival_prognosis(x: np.ndarray) -> np.ndarray:
    """Prognosis on log time, ``-0.5 x1 - 0.3 (x2**2 - 1) + 0.4 tanh(2 x3) - 0.25 x1 x4``.

    Parameters
    ----------
    x : numpy.ndarray or pandas.DataFrame
        Covariates, shape (n, p) with p >= 4; the first four columns are ``x1 .. x4``.

    Returns
    -------
    numpy.ndarray
    """
    x = np.asarray(x, dtype=np.float64)
    x1, x2, x3, x4 = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    return -0.5 * x1 - 0.3 * (x2**2 - 1.0) + 0.4 * np.tanh(2.0 * x3) - 0.25 * x1 * x4


def survival_log_time_ratio(x: np.ndarray) -> np.ndarray:
    """Treatment effect on log time (single site), ``0.4 + 0.3 x2 - 0.4 * (x1 > 0)``.

    Parameters
    ----------
    x : numpy.ndarray or pandas.DataFrame
        Covariates, shape (n, p) with p >= 2.

    Returns
    -------
    numpy.ndarray
    """
    x = np.asarray(x, dtype=np.float64)
    return 0.4 + 0.3 * x[:, 1] - 0.4 * (x[:, 0] > 0.0)


@dataclass(frozen=True)
class _Cohort:
    """One draw of patients before their event times: what the population generators return."""

    x: np.ndarray
    t: np.ndarray
    propensity: np.ndarray
    location0: np.ndarray  # eta when untreated: alpha + a_j + m(x)
    log_ratio: np.ndarray  # gamma(x) + b_j
    site: np.ndarray | None = None
    site_truth: tuple[np.ndarray, np.ndarray] | None = None  # (a_j, b_j)


Population = Callable[[np.random.Generator, int, bool], _Cohort]
"""``population(rng, n, calibration)``; ``calibration=True``: one site per patient."""


@register("survival_weibull", outcome_kind="survival")
def survival_weibull(
    n: int = 1000,
    seed: SeedLike = None,
    *,
    p: int = 5,
    censoring: float = 0.3,
    horizon: float | None = None,
    t_eval: float | None = None,
    confounding: float = 0.0,
    overlap: float = 0.05,
    sigma: float = 0.7,
    intercept: float = 2.5,
) -> SurvivalTrial:
    r"""Simulate a single-site survival trial with Weibull event times (itelib's own design).

    :math:`\log T = \alpha + m(x) + t\,\gamma(x) + \sigma \varepsilon`, :math:`\varepsilon`
    minimum extreme value, so given :math:`x` and :math:`t` the event time is Weibull with shape
    :math:`1/\sigma` (default 1.43: a rising hazard) and scale
    :math:`e^{\alpha + m(x) + t\gamma(x)}`; :math:`m`, :math:`\gamma` and the censoring are in
    the module docstring. Treatment: :math:`t \sim \text{Bernoulli}(\pi(x))` with
    :math:`\pi(x) = \mathrm{clip}\{\mathrm{expit}(\kappa (x_1 - 0.5 x_3)), c, 1 - c\}`,
    :math:`\kappa` = ``confounding`` (default 0: a randomized trial, :math:`\pi = 0.5`); with
    :math:`\kappa > 0` patients with a worse prognosis (high :math:`x_1`) and a smaller
    effect are treated more often, as in :func:`~itelib.simulate.observational_cohort`.
    With the defaults the median untreated event time of a patient with :math:`m(x) = 0` is
    about 9.4 (:math:`e^{2.5} (\log 2)^{0.7}`), months say.

    Parameters
    ----------
    n : int, default 1000
        Number of patients; at least 2.
    seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
        Seed for :func:`numpy.random.default_rng`.
    p : int, default 5
        Number of covariates ``x1 .. xp``; at least 4.
    censoring : float, default 0.3
        Expected share of patients censored, in [0, 0.9]; 0: every event observed.
    horizon : float or None, default None
        Horizon :math:`L > 0` of the RMST; None: the 0.75 quantile of the population's event
        times (treatment as assigned), computed on the internal calibration draw.
    t_eval : float or None, default None
        Time :math:`> 0` of the survival-probability difference; None: the horizon.
    confounding : float, default 0.0
        Strength :math:`\kappa \ge 0` of the selection on prognosis.
    overlap : float, default 0.05
        Clip level :math:`c` of the propensity, in (0, 0.5).
    sigma : float, default 0.7
        Scale :math:`\sigma > 0` of the log-time error.
    intercept : float, default 2.5
        :math:`\alpha`, the log-time location at :math:`x = 0` untreated.

    Returns
    -------
    SurvivalTrial
        ``data`` columns ``time, event, t, x1..xp``; ``params`` holds the resolved
        ``horizon`` and ``t_eval`` and the ``censoring_rate`` :math:`r`.
    """
    return _single_site("survival_weibull", "weibull", dict(locals()))


@register("survival_lognormal", outcome_kind="survival")
def survival_lognormal(
    n: int = 1000,
    seed: SeedLike = None,
    *,
    p: int = 5,
    censoring: float = 0.3,
    horizon: float | None = None,
    t_eval: float | None = None,
    confounding: float = 0.0,
    overlap: float = 0.05,
    sigma: float = 0.8,
    intercept: float = 2.5,
) -> SurvivalTrial:
    r"""Simulate a single-site survival trial with log-normal event times (itelib's own design).

    As :func:`survival_weibull` but with a standard normal :math:`\varepsilon`: given :math:`x`
    and :math:`t`, :math:`\log T \sim N(\alpha + m(x) + t\,\gamma(x), \sigma^2)`, whose hazard
    rises and then falls (no proportional hazards between the arms). With the defaults the
    median untreated event time of a patient with :math:`m(x) = 0` is
    :math:`e^{2.5} \approx 12.2`.

    Parameters
    ----------
    n, seed, p, censoring, horizon, t_eval, confounding, overlap, intercept
        As for :func:`survival_weibull`.
    sigma : float, default 0.8
        Sd :math:`\sigma > 0` of log time given :math:`x` and :math:`t`.

    Returns
    -------
    SurvivalTrial
        As for :func:`survival_weibull`.
    """
    return _single_site("survival_lognormal", "lognormal", dict(locals()))


@register("survival_multisite", outcome_kind="survival")
def survival_multisite(
    n: int = 2000,
    seed: SeedLike = None,
    *,
    family: str = "weibull",
    n_sites: int = 20,
    p: int = 5,
    censoring: float = 0.3,
    horizon: float | None = None,
    t_eval: float | None = None,
    sigma: float = 0.7,
    intercept: float = 2.5,
    site_intercept_sd: float = 0.3,
    site_effect_sd: float = 0.2,
    site_concentration: float = 2.0,
    min_site_size: int = 5,
) -> SurvivalTrial:
    r"""Simulate a randomized multi-site survival trial (itelib's own design).

    :math:`\log T = \alpha + a_j + m(x) + t\,\{\gamma(x) + b_j\} + \sigma\varepsilon` with
    :math:`a_j \sim N(0, \sigma_a^2)` (site prognosis) and :math:`b_j \sim N(0, \sigma_b^2)`
    (site effect on log time, so the site multiplies the time ratio by :math:`e^{b_j}`);
    :math:`t \sim \text{Bernoulli}(0.5)`. Sites are allocated as in
    :func:`~itelib.simulate.multisite_rct` (``min_site_size`` each plus a Dirichlet-multinomial
    remainder). The censoring rate and the default horizon are calibrated on the population
    marginal over sites (an independent :math:`a_j, b_j` per calibration patient), so a trial's
    realized censored share also varies with its own sites' draws: over 300 trials with the
    defaults at :math:`n = 1000` its sd was 0.020 at 30 % (0.0145 binomial alone).

    Parameters
    ----------
    n : int, default 2000
        Number of patients; at least ``n_sites * min_site_size``.
    seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
        Seed for :func:`numpy.random.default_rng`.
    family : {"weibull", "lognormal"}, default "weibull"
        Law of the log-time error.
    n_sites : int, default 20
        Number of sites (labels ``s00``, ``s01``, ...).
    p, censoring, horizon, t_eval, sigma, intercept
        As for :func:`survival_weibull`.
    site_intercept_sd, site_effect_sd : float, default 0.3, 0.2
        :math:`\sigma_a` and :math:`\sigma_b`, between-site sds on the log-time scale.
    site_concentration : float, default 2.0
        Dirichlet concentration of the site shares.
    min_site_size : int, default 5
        Minimum patients per site.

    Returns
    -------
    SurvivalTrial
        ``data`` columns ``time, event, t, x1..xp, site``; ``params`` as for
        :func:`survival_weibull` plus ``"site_truth"``, a DataFrame indexed by site label with
        columns ``intercept`` (:math:`a_j`) and ``log_time_ratio`` (:math:`b_j`).
    """
    params = dict(locals())
    family = aft.check_family(family)
    n_sites = _check_int(n_sites, "n_sites", 1)
    min_site_size = _check_int(min_site_size, "min_site_size", 1)
    n = _check_int(n, "n", n_sites * min_site_size)
    p = _check_int(p, "p", 4)
    _check_common(params)
    for name in ("site_intercept_sd", "site_effect_sd"):
        if not 0.0 <= params[name] < np.inf:
            raise ValueError(f"`{name}` must be a finite number >= 0; got {params[name]}")
    if not 0.0 < site_concentration < np.inf:
        raise ValueError(f"`site_concentration` must be > 0; got {site_concentration}")

    def population(rng: np.random.Generator, size: int, calibration: bool) -> _Cohort:
        sites, minimum = (size, 1) if calibration else (n_sites, min_site_size)
        site = _allocate_sites(rng, size, sites, minimum, site_concentration)
        x = rng.standard_normal((size, p))
        a = rng.normal(0.0, site_intercept_sd, size=sites)
        b = rng.normal(0.0, site_effect_sd, size=sites)
        propensity = np.full(size, 0.5)
        t = (rng.uniform(size=size) < propensity).astype(np.int64)
        return _Cohort(
            x=x, t=t, propensity=propensity, site=site, site_truth=(a, b),
            location0=intercept + a[site] + survival_prognosis(x),
            log_ratio=survival_log_time_ratio(x) + b[site],
        )  # fmt: skip

    trial, cohort = _assemble("survival_multisite", family, params, population)
    a, b = cohort.site_truth
    width = max(2, len(str(n_sites - 1)))
    labels = pd.Index([f"s{j:0{width}d}" for j in range(n_sites)], name="site")
    trial.data["site"] = labels.to_numpy(dtype=object)[trial.data["site"].to_numpy()]
    trial.params["site_truth"] = pd.DataFrame({"intercept": a, "log_time_ratio": b}, index=labels)
    return trial


def _single_site(name: str, family: str, params: dict[str, Any]) -> SurvivalTrial:
    """Validate the arguments of a single-site design and simulate it."""
    _check_int(params["n"], "n", 2)
    p = _check_int(params["p"], "p", 4)
    _check_common(params)
    overlap, confounding = params["overlap"], params["confounding"]
    if not 0.0 < overlap < 0.5:  # also rejects NaN
        raise ValueError(f"`overlap` must lie in (0, 0.5); got {overlap}")
    if not 0.0 <= confounding < np.inf:
        raise ValueError(f"`confounding` must be a finite number >= 0; got {confounding}")

    def population(rng: np.random.Generator, size: int, calibration: bool) -> _Cohort:
        x = rng.standard_normal((size, p))
        score = expit(confounding * (x[:, 0] - 0.5 * x[:, 2]))
        propensity = np.clip(score, overlap, 1.0 - overlap)
        t = (rng.uniform(size=size) < propensity).astype(np.int64)
        return _Cohort(
            x=x, t=t, propensity=propensity,
            location0=params["intercept"] + survival_prognosis(x),
            log_ratio=survival_log_time_ratio(x),
        )  # fmt: skip

    return _assemble(name, family, params, population)[0]


def _check_common(params: dict[str, Any]) -> None:
    """Raise a ValueError naming the first bad censoring, horizon, t_eval, sigma or intercept."""
    censoring = params["censoring"]
    if not 0.0 <= censoring <= 0.9:  # also rejects NaN
        raise ValueError(
            "`censoring` must lie in [0, 0.9] (the expected share of patients censored; 0: every "
            f"event observed); got {censoring}"
        )
    for name in ("horizon", "t_eval"):
        value = params[name]
        if value is not None and not 0.0 < value < np.inf:
            raise ValueError(
                f"`{name}` must be a positive finite time, or None for the default; got {value}"
            )
    if not 0.0 < params["sigma"] < np.inf:
        raise ValueError(f"`sigma` must be a positive finite number; got {params['sigma']}")
    if not np.isfinite(params["intercept"]):
        raise ValueError(f"`intercept` must be a finite number; got {params['intercept']}")


def _assemble(
    name: str, family: str, params: dict[str, Any], population: Population
) -> tuple[SurvivalTrial, _Cohort]:
    """Draw the trial, calibrate censoring and horizon, and compute the truth per patient."""
    sigma, censoring = params["sigma"], params["censoring"]
    rng = _as_rng(params["seed"])
    cohort = population(rng, params["n"], False)
    event_time = aft.draw_event_times(rng, cohort.location0 + cohort.t * cohort.log_ratio,
                                      sigma, family)  # fmt: skip

    horizon, rate = params["horizon"], 0.0
    if horizon is None or censoring > 0:
        reference = np.random.default_rng(_CALIBRATION_SEED)
        pop = population(reference, _CALIBRATION_DRAWS, True)
        pop_times = aft.draw_event_times(reference, pop.location0 + pop.t * pop.log_ratio,
                                         sigma, family)  # fmt: skip
        if horizon is None:
            horizon = float(np.quantile(pop_times, _HORIZON_QUANTILE))
        if censoring > 0:
            rate = aft.calibrate_censoring_rate(pop_times, censoring)
    t_eval = horizon if params["t_eval"] is None else float(params["t_eval"])
    censor_time = rng.exponential(1.0 / rate, size=params["n"]) if rate > 0 else np.inf
    time = np.minimum(event_time, censor_time)
    event = (event_time <= censor_time).astype(np.int64)

    index = _patient_index(params["n"])
    loc0, loc1 = cohort.location0, cohort.location0 + cohort.log_ratio
    rmst0, rmst1 = (aft.restricted_mean(horizon, loc, sigma, family) for loc in (loc0, loc1))
    surv0, surv1 = (aft.survival_probability(t_eval, loc, sigma, family) for loc in (loc0, loc1))
    truth = pd.DataFrame(
        {"rmst_difference": rmst1 - rmst0, "survival_difference": surv1 - surv0,
         "time_ratio": np.exp(cohort.log_ratio), "log_time_ratio": cohort.log_ratio,
         "rmst0": rmst0, "rmst1": rmst1, "survival0": surv0, "survival1": surv1},
        index=index,
    )  # fmt: skip
    covariates = [f"x{k + 1}" for k in range(cohort.x.shape[1])]
    data = pd.DataFrame({"time": time, "event": event, "t": cohort.t}, index=index)
    data[covariates] = cohort.x
    if cohort.site is not None:
        data["site"] = cohort.site
    params.update(horizon=float(horizon), t_eval=t_eval, censoring_rate=rate)
    series = {
        key: pd.Series(value, index=index, name=key)
        for key, value in (("tau", rmst1 - rmst0), ("mu0", rmst0), ("mu1", rmst1),
                           ("propensity", cohort.propensity))
    }  # fmt: skip
    trial = SurvivalTrial(
        data=data, name=name, params=params, covariates=tuple(covariates),
        site=None if cohort.site is None else "site", truth=truth, **series,
    )  # fmt: skip
    return trial, cohort
