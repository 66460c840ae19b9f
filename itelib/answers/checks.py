"""``validate``: does an estimator find real differences between patients? Checks that need no
true effects, on cross-fitted estimates and cross-fitted nuisances.

- the best linear predictor (BLP) of the effect from the estimates, in Robinson's residual form
  (grf's ``test_calibration``): its slope tests "no heterogeneity" (slope 0) and "calibrated"
  (slope 1);
- sorted group average effects (GATES): the average doubly robust score in each quantile
  group of the estimates;
- the rank-weighted average treatment effect (RATE: AUTOC and Qini) of the estimates' ranking,
  with the TOC curve.

Estimates and scores are ranked and centred within folds: each fold's estimates come from one
fit, and fits on different folds need not share a scale. Every standard error whose weights come
from the estimates is inflated for cross-fitting's dependence
(:data:`itelib.answers.crossfit.CROSS_FIT_VARIANCE_INFLATION`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from itelib._params import check_int
from itelib.answers.blp import BLP, blp
from itelib.answers.crossfit import (
    CROSS_FIT_VARIANCE_INFLATION,
    check_estimator,
    cross_fitted_effects,
    make_folds,
)
from itelib.answers.gates import gates, within_fold_ranks
from itelib.answers.rate import RATE, rate
from itelib.answers.scores import Nuisances, fit_nuisances
from itelib.data import TrialData, outcome_kind
from itelib.estimators.imputed import has_missing
from itelib.exceptions import DataValidationError
from itelib.survival_outcome import looks_like_survival

__all__ = ["HeterogeneityCheck", "checks_from_estimates", "validate"]

ALPHA = 0.05  # one-sided level of the BLP test of no heterogeneity
# With an estimated propensity the test leans on two nuisance models whose errors multiply into
# its bias, where an observational estimator's own confounding bias lies. Measured on two
# constant-effect observational designs at n = 500 (benchmarks/heterogeneity_checks.py,
# results/heterogeneity_checks/n500.csv, 20 seeds each): 0-1 false alarms in 20 per estimator
# and design (before Robinson's form and the cross-fitting inflation: up to 4 in 10). The
# verdict says so.
ESTIMATED_PROPENSITY_CAVEAT = (
    " The propensity was estimated: in observational data this test depends on the outcome and "
    "propensity models (measured: at most 1 false alarm in 20 constant-effect trials per "
    "estimator at n = 500), so confirm with known propensity scores, a larger cohort or a "
    "randomized trial before acting on the differences."
)
MIN_PER_FOLD_ARM = 5  # patients of each arm in each fold, at least (outcome models per arm)


@dataclass(frozen=True, eq=False)  # DataFrame fields: compare tables, not checks
class HeterogeneityCheck:
    """The result of :func:`validate`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per statistic (``BLP slope``, ``BLP intercept (weighted ATE)``: the average
        effect weighted by ``e (1 - e)``, the ATE in a randomized trial; ``AUTOC``, ``Qini``,
        ``GATES top - bottom``), columns ``estimate``, ``se``, ``lower``, ``upper`` (normal
        interval at ``prob``), ``null`` (the value tested), ``p_value`` (one-sided for the
        slope against 0, the RATEs against 0 and GATES' difference; the intercept untested).
    verdict : str
        One sentence in words: heterogeneity detected or not, and whether the estimates are
        on the right scale.
    heterogeneity : bool
        Whether the BLP test rejects "no heterogeneity" at ``alpha`` (one-sided).
    calibrated : bool
        Whether the slope is consistent with 1 (two-sided test at ``alpha``).
    blp : BLP
    gates : pandas.DataFrame
        Quantile groups of the estimates (see :func:`itelib.answers.gates.gates`).
    rate : RATE
    toc : pandas.DataFrame
        The TOC curve with its band (``q``, ``estimate``, ``se``, ``lower``, ``upper``).
    patients : pandas.DataFrame
        Per patient id: ``fold``, ``estimate`` (cross-fitted posterior-mean effect),
        ``score`` (doubly robust), ``rank`` (within the fold, in (0, 1]), ``propensity``,
        ``outcome_mean`` (cross-fitted ``E[y | x]``).
    alpha, prob : float
    estimator : str
    """

    table: pd.DataFrame
    verdict: str
    heterogeneity: bool
    calibrated: bool
    blp: BLP
    gates: pd.DataFrame
    rate: RATE
    patients: pd.DataFrame
    alpha: float
    prob: float
    estimator: str

    @property
    def toc(self) -> pd.DataFrame:
        return self.rate.toc

    def __repr__(self) -> str:
        table = self.table.round(4).to_string()
        return (
            f"HeterogeneityCheck({self.estimator}, n={len(self.patients)})\n{table}\n{self.verdict}"
        )

    def to_datatree(self) -> xr.DataTree:
        """The tables as an ``xarray.DataTree`` (groups ``table``, ``gates``, ``toc``,
        ``patients``; the verdict and settings in the root attributes)."""
        tables = {"table": self.table, "gates": self.gates, "toc": self.toc.set_index("q"),
                  "patients": self.patients}  # fmt: skip
        children = {name: xr.DataTree(xr.Dataset.from_dataframe(df)) for name, df in tables.items()}
        attrs = {"verdict": self.verdict, "heterogeneity": int(self.heterogeneity),
                 "calibrated": int(self.calibrated), "alpha": self.alpha, "prob": self.prob,
                 "estimator": self.estimator}  # fmt: skip
        return xr.DataTree(dataset=xr.Dataset(attrs=attrs), children=children)


def _verdict(
    fit: BLP, r: RATE, alpha: float, estimated_propensity: bool = False
) -> tuple[str, bool, bool]:
    text, het, calibrated = _verdict_text(fit, r, alpha)
    if het and estimated_propensity:
        text += ESTIMATED_PROPENSITY_CAVEAT
    return text, het, calibrated


def _verdict_text(fit: BLP, r: RATE, alpha: float) -> tuple[str, bool, bool]:
    het = fit.p_heterogeneity < alpha
    calibrated = not fit.p_calibration < alpha
    slope = (
        f"BLP slope {fit.slope:.2f} (SE {fit.slope_se:.2f}), "
        f"AUTOC {r.autoc:.3g} (SE {r.autoc_se:.2g})"
    )
    if not het:
        return (
            f"No heterogeneity detected: held-out outcomes do not bear out the estimated "
            f"differences between patients ({slope}; one-sided p = {fit.p_heterogeneity:.3f}). "
            "Report the average effect; per-patient differences are not supported.",
            False,
            calibrated,
        )
    if calibrated:
        return (
            f"Heterogeneity detected, and the estimates are on the right scale ({slope}; "
            f"p = {fit.p_heterogeneity:.3g} against no heterogeneity, p = "
            f"{fit.p_calibration:.2f} against slope 1).",
            True,
            True,
        )
    how = ("exaggerate the differences between patients (slope < 1)" if fit.slope < 1
           else "understate the differences between patients (slope > 1)")  # fmt: skip
    return (
        f"Heterogeneity detected, but the estimates are mis-scaled: they {how} ({slope}; "
        f"p = {fit.p_calibration:.3g} against slope 1). Trust their ranking more than their "
        "spread.",
        True,
        False,
    )


def checks_from_estimates(
    y: np.ndarray,
    t: np.ndarray,
    nuisances: Nuisances,
    tau_hat: np.ndarray,
    fold_ids: np.ndarray,
    *,
    rng: np.random.Generator,
    n_groups: int = 5,
    prob: float = 0.95,
) -> tuple[pd.DataFrame, BLP, pd.DataFrame, RATE, np.ndarray]:
    """BLP, GATES and RATE from cross-fitted nuisances and estimates: (table, blp, gates, rate,
    within-fold ranks). The part of :func:`validate` that needs no estimator."""
    from scipy import special

    gamma, inflation = nuisances.scores, CROSS_FIT_VARIANCE_INFLATION
    fit = blp(y, t, nuisances.outcome_mean, nuisances.propensity, tau_hat, fold_ids, inflation)
    ranks = within_fold_ranks(tau_hat, fold_ids)
    groups = gates(gamma, tau_hat, ranks, n_groups, prob, inflation)
    r = rate(gamma, ranks, rng=rng, prob=prob, variance_inflation=inflation)
    z = special.ndtri(0.5 + prob / 2)

    def row(est: float, se: float, null: float, one_sided: bool = True) -> list[float]:
        p = float(special.ndtr(-(est - null) / se)) if one_sided and se > 0 else np.nan
        return [est, se, est - z * se, est + z * se, null, p]

    diff = groups.loc["top - bottom"]
    table = pd.DataFrame(
        {
            "BLP slope": row(fit.slope, fit.slope_se, 0.0),
            "BLP intercept (weighted ATE)": row(fit.intercept, fit.intercept_se, np.nan, False),
            "AUTOC": row(r.autoc, r.autoc_se, 0.0),
            "Qini": row(r.qini, r.qini_se, 0.0),
            "GATES top - bottom": row(float(diff["estimate"]), float(diff["se"]), 0.0),
        },
        index=["estimate", "se", "lower", "upper", "null", "p_value"],
    ).T
    table.index.name = "statistic"
    return table, fit, groups, r, ranks


def _check_options(folds: Any, n_groups: Any, alpha: Any, prob: Any) -> None:
    check_int("validate", "folds", folds, minimum=2)
    check_int("validate", "n_groups", n_groups, minimum=2)
    for name, value in (("alpha", alpha), ("prob", prob)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise ValueError(f"validate({name}=...) must lie in (0, 1); got {value!r}.")


def validate(
    est: Any,
    X: Any,
    Y: Any,
    T: Any,
    *,
    site: Any = None,
    propensity: Any = None,
    folds: int = 5,
    n_groups: int = 5,
    alpha: float = ALPHA,
    prob: float = 0.95,
    outcome_model: Any = None,
    categorical: tuple[str, ...] | list[str] = (),
    treatment_labels: tuple[Any, Any] | None = None,
    random_state: int | None = None,
    progress_bar: bool | None = None,
) -> HeterogeneityCheck:
    """Do ``est``'s estimated differences between patients hold up on outcomes it never saw?

    Refits a clone of ``est`` ``folds`` times, each time on all folds but one, and takes the
    held-out patients' posterior-mean effects; fits outcome models per arm the same way for
    doubly robust scores; then runs the BLP test, GATES and RATE on them (see the module).

    Parameters
    ----------
    est : estimator
        Fitted or not; only its parameters are used (``sklearn.base.clone``).
    X, Y, T, site, categorical, treatment_labels
        As in the estimator's ``fit``.
    propensity : None, "estimate" or array
        None: a randomized trial (the scores use the share treated); ``"estimate"``:
        cross-fitted scores (and ``est`` is fitted with ``propensity="estimate"``); an array:
        known scores. Clipped to [0.01, 0.99]. With an estimated propensity the test of no
        heterogeneity leans on the outcome and propensity models (see
        ``ESTIMATED_PROPENSITY_CAVEAT`` for its measured false-alarm rate; the verdict then says
        so).
    folds : int
        Cross-fitting folds (``folds`` fits of ``est``), stratified by arm.
    n_groups : int
        GATES groups.
    alpha : float
        One-sided level of the test of no heterogeneity (two-sided for calibration).
    prob : float
        Level of the intervals in the tables.
    outcome_model : scikit-learn regressor, optional
        The outcome model, fitted over both arms for the BLP test's ``E[y | x]`` and per arm for
        the doubly robust scores; default a stack of the lasso (on pairwise products too, up to
        10 covariates) and gradient-boosted trees
        (:func:`itelib.answers.scores.default_outcome_model`).
    random_state : int, optional
        Folds, outcome models and bootstrap (None: 0, as the estimators).
    progress_bar : bool, optional
        A bar over the folds (None: when a person is probably watching).

    Returns
    -------
    HeterogeneityCheck
        ``table``, ``verdict``, ``gates``, ``toc``, ``patients``; ``plot.toc`` and
        ``plot.calibration`` draw it.
    """
    check_estimator(est)
    if getattr(est, "outcome", None) == "survival" or looks_like_survival(Y):
        raise ValueError(
            "validate() scores effects on one outcome column with doubly robust scores; it has "
            "none for censored survival times yet. The survival fit's own intervals "
            f'({type(est).__name__}(outcome="survival").effect()) are what it gives; check them '
            "against held-out Kaplan-Meier curves by group."
        )
    _check_options(folds, n_groups, alpha, prob)
    seed = 0 if random_state is None else check_int("validate", "random_state", random_state,
                                                    minimum=0)  # fmt: skip
    if X is not None and has_missing(X):
        # the scores' outcome models need every covariate; an estimator's missing="impute"
        # would impute inside its own refits only, so this is the user's choice to make
        raise DataValidationError(
            "validate needs complete covariates: X has missing cells, and the doubly robust "
            "scores' outcome models cannot use them (missing='impute' on the estimator does "
            "not reach them). Fix: drop the incomplete patients, or pass one completed data "
            "set (e.g. from sklearn.impute.IterativeImputer)."
        )
    data = TrialData.from_arrays(Y, T, X=X, site=site, categorical=categorical,
                                 treatment_labels=treatment_labels)  # fmt: skip
    kind = outcome_kind(getattr(est, "outcome", "auto"), data)
    arm_size = min(data.t.sum(), data.n - data.t.sum())
    if arm_size < folds * MIN_PER_FOLD_ARM:
        raise ValueError(
            f"folds={folds} leaves fewer than {MIN_PER_FOLD_ARM} patients of the smaller arm "
            f"({int(arm_size)} patients) in each fold. Fix: fewer folds, or more patients."
        )
    fold_ids = make_folds(data.t, folds, seed)
    nuisances = fit_nuisances(data.y, data.t, data.X, fold_ids, propensity=propensity,
                              patient_ids=data.patient_ids, regressor=outcome_model,
                              binary=kind == "binary", random_state=seed)  # fmt: skip
    fit_kwargs = {"categorical": categorical, "treatment_labels": treatment_labels}
    tau_hat = cross_fitted_effects(
        est, fold_ids, Y=Y, T=T, X=X, site=site, propensity=propensity,
        fit_kwargs=fit_kwargs, progress_bar=progress_bar,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    table, fit, groups, r, ranks = checks_from_estimates(
        data.y, data.t, nuisances, tau_hat, fold_ids, rng=rng, n_groups=n_groups, prob=prob
    )
    estimated = isinstance(propensity, str)  # "estimate" (score_propensity refused the rest)
    verdict, het, calibrated = _verdict(fit, r, alpha, estimated)
    patients = pd.DataFrame(
        {"fold": fold_ids, "estimate": tau_hat, "score": nuisances.scores, "rank": ranks,
         "propensity": nuisances.propensity, "outcome_mean": nuisances.outcome_mean},
        index=data.patient_ids,
    )
    return HeterogeneityCheck(
        table=table, verdict=verdict, heterogeneity=het, calibrated=calibrated, blp=fit,
        gates=groups, rate=r, patients=patients, alpha=float(alpha), prob=float(prob),
        estimator=type(est).__name__,
    )  # fmt: skip
