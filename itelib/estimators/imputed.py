"""``missing="impute"``: one fit per imputed data set, the draws pooled (written once for every
estimator; :class:`~itelib.estimators.base.ITEEstimator` calls it).

A fit on data with missing covariates imputes M completed data sets
(:mod:`itelib.imputation`), fits a clone of the estimator (``missing="refuse"``, its seed
spawned from the user's) to each, and keeps the M fits in ``imputations_``. Effects are the
M fits' draws concatenated along ``chain`` (chain ``k`` belongs to imputation
``k // chains``): mixing the completed-data posteriors approximates the posterior under
multiple imputation (Zhou & Reiter 2010); an estimator whose draws are a normal approximation
(EconML's forest) pools with Rubin's rules instead (its ``_pool_draws``). Convergence is
diagnosed within each imputation (different imputations legitimately differ, so an R-hat
across them would flag the imputation uncertainty itself); ``diagnostics_`` holds every
imputation's rows, so its ``max_rhat`` is the worst within-imputation R-hat.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.base import clone

from itelib import _validation as v
from itelib.data import TrialData
from itelib.estimators.fitted import Fit, record_fit
from itelib.imputation import NewPatientImputer, imputation_seeds, impute_training, missing_share
from itelib.missing import missing_cells

__all__ = [
    "ImputationInfo", "fit_imputed", "has_missing", "new_patient_draws", "pool", "pooled_terms",
    "with_completed_covariates",
]  # fmt: skip


@dataclass(frozen=True)
class ImputationInfo:
    """What a fit with ``missing="impute"`` recorded (``imputation_``)."""

    n_imputations: int
    missing_share: float  # share of covariate cells missing
    n_incomplete: int  # training patients with at least one missing covariate
    seeds: tuple[tuple[int, int], ...]  # (imputer, fit) seed of each imputation

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_imputations": self.n_imputations,
            "missing_share": self.missing_share,
            "n_incomplete": self.n_incomplete,
            "seeds": [list(s) for s in self.seeds],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImputationInfo:
        seeds = tuple(tuple(int(x) for x in s) for s in d["seeds"])
        return cls(
            int(d["n_imputations"]), float(d["missing_share"]), int(d["n_incomplete"]), seeds
        )


def has_missing(X: Any, columns: Any = None) -> bool:
    """Whether covariates ``X`` (frame or array) have a missing or infinite cell."""
    frame, _ = v.as_frame(X, argument="X", columns=columns)
    return bool(missing_cells(frame, list(frame.columns)))


def fit_imputed(est: Any, n_imputations: int, seed: int, kwargs: dict[str, Any]) -> None:
    """Fit ``est`` by multiple imputation; ``kwargs`` are ``fit``'s arguments."""
    X = kwargs.pop("X")
    observed = TrialData.from_arrays(
        kwargs["Y"], kwargs["T"], X=X, site=kwargs["site"], categorical=kwargs["categorical"],
        treatment_labels=kwargs["treatment_labels"], pooled_sites=est._POOLS_SITES,
        allow_missing=True,
    )  # fmt: skip
    frame, _ = v.as_frame(X, argument="X")
    frame = frame.set_axis(observed.patient_ids)
    seeds = imputation_seeds(seed, n_imputations)
    subs = []
    for k, (frame_k, (_, fit_seed)) in enumerate(
        zip(impute_training(frame, observed, seeds), seeds, strict=True)
    ):
        sub = clone(est).set_params(missing="refuse", random_state=fit_seed)
        X_k = frame_k if isinstance(X, pd.DataFrame) else frame_k.to_numpy()
        with _tagged_warnings(k, n_imputations):
            sub.fit(X=X_k, **kwargs)
        subs.append(sub)
    info = ImputationInfo(
        n_imputations, missing_share(frame, frame.columns),
        int(np.isnan(observed.X).any(axis=1).sum()), tuple(seeds),
    )  # fmt: skip
    record_fit(
        est, data=observed, outcome=subs[0].outcome_, random_state=seed, propensity=None,
        fit=Fit(outcome_center=subs[0].outcome_center_, outcome_scale=subs[0].outcome_scale_),
    )  # fmt: skip
    pool(est, subs, info)


def pool(est: Any, subs: list[Any], info: ImputationInfo) -> None:
    """Set the pooled fitted state from the per-imputation fits (``fit`` and ``load``)."""
    est.imputations_ = subs
    est.imputation_ = info
    est.new_patient_imputer_ = NewPatientImputer(est.data_, list(info.seeds))
    if all(hasattr(s, "posterior_") for s in subs):
        est.posterior_ = _concat_posteriors([s.posterior_ for s in subs])
    est.diagnostics_ = _merge_diagnostics([getattr(s, "diagnostics_", None) for s in subs])
    est.model_check_ = None  # each imputation's fit has its own: imputations_[k].model_check_


def _concat_posteriors(trees: list[Any]) -> Any:
    """The imputations' groups concatenated along ``chain`` (renumbered 0..M*C-1)."""
    groups = {}
    for name in ("posterior", "sample_stats"):
        if all(name in t for t in trees):
            ds = xr.concat([t[name].to_dataset() for t in trees], dim="chain", join="outer")
            groups[name] = xr.DataTree(ds.assign_coords(chain=np.arange(ds.sizes["chain"])))
    return xr.DataTree(children=groups)


def _merge_diagnostics(diagnostics: list[Any]) -> Any:
    """Every imputation's diagnostics table, rows prefixed ``imputation k:``; divergences
    summed; chains and draws per imputation."""
    from itelib.inference.diagnostics import Diagnostics

    if any(d is None for d in diagnostics):
        return None
    if not all(isinstance(d, Diagnostics) for d in diagnostics):
        return diagnostics[0]  # a variational fit: the first imputation's loss summary
    tables = [
        d.table.set_axis([f"imputation {k}: {i}" for i in d.table.index])
        for k, d in enumerate(diagnostics)
    ]
    first = diagnostics[0]
    return Diagnostics(
        pd.concat(tables), sum(d.n_divergent for d in diagnostics), first.n_chains, first.n_draws
    )


class _tagged_warnings:  # noqa: N801 (a context manager used like a function)
    """Re-issue each warning of one imputation's fit once, saying which imputation it is."""

    def __init__(self, k: int, m: int) -> None:
        self.k, self.m = k, m

    def __enter__(self) -> None:
        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc: Any) -> None:
        self._catcher.__exit__(*exc)
        for w in self._caught:
            message = f"imputation {self.k + 1} of {self.m} (missing='impute'): {w.message}"
            warnings.warn(message, w.category, stacklevel=4)


def new_patient_draws(
    est: Any, X: Any, site: Any, scale: str
) -> tuple[list[np.ndarray], pd.Index, list[np.ndarray]]:
    """Each imputation's effect draws for new patients (their missing covariates imputed from
    the covariates-only model); also the ids and each imputation's standardized covariates."""
    frame, x_pd = v.as_frame(X, argument="X", columns=est.data_.encoder.columns)
    subs = getattr(est, "imputations_", None)
    if has_missing(frame):
        imputer = getattr(est, "new_patient_imputer_", None)
        if imputer is None:  # a complete training set: its covariates are the model
            seeds = imputation_seeds(est.random_state_, est.n_imputations)
            imputer = est.new_patient_imputer_ = NewPatientImputer(est.data_, seeds)
        frames = imputer.impute(frame)
    else:
        frames = [frame] * (len(subs) if subs else 1)
    subs = subs or [est] * len(frames)
    draws, covariates, ids = [], [], None
    for sub, frame_k in zip(subs, frames, strict=True):
        X_k = frame_k if x_pd else frame_k.to_numpy()
        Xs, codes, ids = sub.data_.transform(X_k, site)
        covariates.append(Xs)
        draws.append(sub._new_effect_draws(Xs, codes, site, scale))
    return draws, ids, covariates


def pooled_terms(terms: list[Any]) -> Any:
    """The imputations' exact modifier or site terms (``ExactTerms`` / ``SiteTerms``), draws
    concatenated along ``chain`` as the effects are; None where any imputation has none or
    they name different terms (e.g. a piecewise column one imputation dropped as a duplicate):
    the projection still summarizes the pooled effects then."""
    if not terms or any(t is None for t in terms):
        return None
    first = terms[0]
    if any(type(t) is not type(first) for t in terms):
        return None
    fields = {}
    for name, value in first._asdict().items():
        if isinstance(value, np.ndarray) and value.ndim == 3:  # (chain, draw, term)
            fields[name] = np.concatenate([getattr(t, name) for t in terms], axis=0)
        elif isinstance(value, np.ndarray):  # a site's patient count: the same data each time
            fields[name] = value
        elif any(getattr(t, name) != value for t in terms):
            return None
        else:
            fields[name] = value
    return type(first)(**fields)


def with_completed_covariates(est: Any) -> TrialData:
    """A pooled fit's training data with each missing cell replaced by its mean over the
    imputations (on the pooled data's own standardization), for summaries that need one
    covariate table beside the pooled draws (the modifier projection and its tree)."""
    data = est.data_
    enc = data.encoder
    completed = [
        (s.data_.X * s.data_.encoder.scale + s.data_.encoder.center - enc.center) / enc.scale
        for s in est.imputations_
    ]
    X = np.where(np.isnan(data.X), np.mean(completed, axis=0), data.X)
    return dataclasses.replace(data, X=X)
