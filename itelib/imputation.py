"""Multiple imputation of missing numeric covariates (``missing="impute"`` on an estimator).

Training patients: M completed data sets from chained equations with posterior draws
(scikit-learn's ``IterativeImputer(sample_posterior=True)`` with ``BayesianRidge``, one
``random_state`` per imputation), within each arm, each covariate imputed from the other
covariates, *the outcome* and the site, so that the imputations keep the covariates'
relation to the outcome in each arm (imputing from covariates alone would pull the
imputed patients' effects towards the average, i.e. erase effect modification). New patients
have no outcome: their covariates are imputed from a model on the covariates only, fitted on
the training covariates (observed cells). Categorical covariates with missing cells are
refused (:func:`itelib.missing.refuse_missing_categorical`); complete ones are predictors.

Everything here works on the encoded, standardized covariates of
:class:`~itelib.data.TrialData` built with ``allow_missing=True`` (NaN where a cell is
missing); imputed values go back to the user's scale for the per-imputation fits.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from itelib._threads import one_thread
from itelib.data import TrialData
from itelib.missing import missing_cells

__all__ = [
    "DEFAULT_N_IMPUTATIONS",
    "MISSING_OPTIONS",
    "NewPatientImputer",
    "imputation_seeds",
    "impute_training",
    "missing_share",
    "rubin",
]

MISSING_OPTIONS = ("refuse", "impute")
# M = 5: the 5 completed-data fits cost 5 fits; Rubin's relative efficiency 1/(1 + gamma/M) is
# 0.94 at a fraction of missing information gamma = 0.3 (docs/decisions.md, "Missing covariates").
DEFAULT_N_IMPUTATIONS = 5
_MAX_ITER = 10  # chained-equation rounds (scikit-learn's default; posterior draws never stop early)


def imputation_seeds(seed: int, n_imputations: int) -> list[tuple[int, int]]:
    """(imputer seed, fit seed) of each imputation, spawned from the user's seed: the same seed
    gives the same imputations and the same draws."""
    children = np.random.SeedSequence(seed).spawn(n_imputations)
    return [tuple(int(s) for s in child.generate_state(2)) for child in children]


def missing_share(frame: pd.DataFrame, columns: Any) -> float:
    """Share of the covariate cells (patients x raw columns) that are missing."""
    masks = missing_cells(frame, list(columns))
    cells = len(frame) * max(1, len(columns))
    return float(sum(int(m.sum()) for m in masks.values()) / cells)


def _imputer(seed: int, low: np.ndarray, high: np.ndarray) -> Any:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401 (enables it)
    from sklearn.impute import IterativeImputer
    from sklearn.linear_model import BayesianRidge

    return IterativeImputer(
        estimator=BayesianRidge(),
        sample_posterior=True,
        max_iter=_MAX_ITER,
        min_value=low,
        max_value=high,
        random_state=seed,
    )


def _bounds(E: np.ndarray, extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Imputations stay within each feature's observed range (no impossible ages)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
        low, high = np.nanmin(E, axis=0), np.nanmax(E, axis=0)
    low = np.concatenate([np.where(np.isfinite(low), low, -np.inf), np.full(extra, -np.inf)])
    high = np.concatenate([np.where(np.isfinite(high), high, np.inf), np.full(extra, np.inf)])
    return low, high


def _fill(frame: pd.DataFrame, observed: TrialData, imputed: np.ndarray) -> pd.DataFrame:
    """The user's frame with each numeric column's missing cells replaced by ``imputed``
    (standardized features, back on the column's scale); a 0/1 column stays 0/1."""
    out = frame.copy()
    enc = observed.encoder
    for col, gaps in missing_cells(frame, enc.columns).items():
        j = enc.feature_names.index(col)
        values = imputed[gaps, j] * enc.scale[j] + enc.center[j]
        seen = observed.X[~np.isnan(observed.X[:, j]), j] * enc.scale[j] + enc.center[j]
        if np.isin(np.round(seen, 12), (0.0, 1.0)).all():
            values = np.clip(np.round(values), 0.0, 1.0)
        column = frame[col].mask(gaps, 0).astype(np.float64)
        column[gaps] = values
        out[col] = column
    return out


def impute_training(
    frame: pd.DataFrame, observed: TrialData, seeds: list[tuple[int, int]]
) -> list[pd.DataFrame]:
    """One completed copy of ``frame`` per seed, imputed within each arm from the covariates,
    the outcome and the site.

    Imputing each arm separately (Sullivan et al. 2018, "Should multiple imputation be
    stratified by exposure group?") keeps every covariate-outcome relation that differs
    between the arms, which is what effect modification is; one pooled model with ``y x t``
    as a predictor keeps only its linear part and pulled the imputed patients' effects
    towards the average (coverage 0.73 against 0.81 on the MAR multi-site design, seed 0).
    The site enters as indicators (up to 50 sites; above, each site's mean outcome in the
    arm) because the outcome carries the site's intercept: without it, an outcome high
    because of its site reads as a covariate high. An arm too small for its own model (or a
    covariate missing in all of an arm's patients) falls back to one model for both arms.

    Parameters
    ----------
    frame : pandas.DataFrame
        The training covariates as the user gave them, indexed by patient id.
    observed : TrialData
        Built with ``allow_missing=True`` from the same patients (NaN where missing).
    seeds : list of (int, int)
        From :func:`imputation_seeds`; the first of each pair seeds the imputer.
    """
    y = observed.y
    y_std = (y - y.mean()) / (y.std() or 1.0)
    X = observed.X
    p = X.shape[1]
    arms = [observed.t == arm for arm in (0, 1)]
    per_arm = all(_own_model_fits(X[rows]) for rows in arms)
    groups = arms if per_arm else [np.ones(len(y), bool)]
    out = []
    for imputer_seed, _ in seeds:
        completed = np.empty_like(X)
        for g, rows in enumerate(groups):
            extra = [y_std[rows], *_site_predictors(observed.site, y_std, rows)]
            if not per_arm:
                extra += [observed.t, y_std * observed.t]
            E = np.column_stack([X[rows], *extra])
            low, high = _bounds(X[rows], extra=E.shape[1] - p)
            imputer = _imputer((imputer_seed + g) % 2**32, low, high)  # a valid numpy seed
            with one_thread():  # small BayesianRidge fits; see itelib/_threads.py
                completed[rows] = imputer.fit_transform(E)[:, :p]
        out.append(_fill(frame, observed, completed))
    return out


_MAX_SITE_INDICATORS = 50


def _own_model_fits(X_arm: np.ndarray) -> bool:
    """Whether an arm has enough patients for its own imputation model: every covariate
    observed somewhere in it and 10 patients per covariate."""
    observed_somewhere = (~np.isnan(X_arm)).any(axis=0).all()
    return bool(observed_somewhere and len(X_arm) >= 10 * max(1, X_arm.shape[1]))


def _site_predictors(site: np.ndarray | None, y_std: np.ndarray, rows: np.ndarray) -> list:
    """The site as imputation predictors for ``rows``: indicators of the sites present
    (dropping one), or with many sites each site's mean outcome among ``rows``."""
    if site is None:
        return []
    codes = site[rows]
    present = np.unique(codes)
    if len(present) < 2:
        return []
    if len(present) <= _MAX_SITE_INDICATORS:
        return [(codes == s).astype(float) for s in present[1:]]
    totals = np.bincount(codes, weights=y_std[rows], minlength=site.max() + 1)
    counts = np.bincount(codes, minlength=site.max() + 1)
    return [totals[codes] / counts[codes]]


@dataclass
class NewPatientImputer:
    """Imputes new patients' covariates from a model on the covariates alone (they have no
    outcome), fitted on the training patients' observed covariates; one imputer per
    imputation, each copied before use so that the same patients get the same values."""

    observed: TrialData
    seeds: list[tuple[int, int]]
    _fitted: list[Any] = field(default_factory=list, repr=False)

    def impute(self, frame: pd.DataFrame) -> list[pd.DataFrame]:
        """One completed copy of ``frame`` (every training column) per imputation."""
        if not self._fitted:
            low, high = _bounds(self.observed.X)
            with one_thread():
                self._fitted = [_imputer(s, low, high).fit(self.observed.X) for s, _ in self.seeds]
        E = self.observed.encoder.transform(frame, allow_missing=True)
        return [
            _fill(frame, self.observed, copy.deepcopy(imp).transform(E)) for imp in self._fitted
        ]


def rubin(means: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rubin's rules over the first axis (imputations): the pooled estimate and its total
    variance ``W + (1 + 1/M) B`` (within- plus between-imputation variance)."""
    means, variances = np.asarray(means, float), np.asarray(variances, float)
    m = means.shape[0]
    between = means.var(axis=0, ddof=1) if m > 1 else np.zeros_like(means[0])
    return means.mean(axis=0), variances.mean(axis=0) + (1.0 + 1.0 / m) * between
