"""The :class:`SimulatedTrial` container and helpers shared by the data-generating processes."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

__all__ = ["SeedLike", "SimulatedTrial", "SurvivalTrial"]

SeedLike = int | np.random.Generator | np.random.SeedSequence | None
"""Anything :func:`numpy.random.default_rng` accepts as a seed (None: fresh OS entropy)."""


@dataclass(frozen=True)
class SimulatedTrial:
    """A synthetic trial together with the truth that generated it.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient, indexed by patient id (index name ``"patient"``, ids such as
        ``"p0000"``). Columns: the outcome, the 0/1 integer treatment, the covariates and, for
        multi-site designs, the site label.
    tau : pandas.Series
        True individual effect ``E[Y(1) - Y(0) | x, site]`` per patient.
    mu0, mu1 : pandas.Series
        True conditional means ``E[Y(0) | x, site]`` and ``E[Y(1) | x, site]``;
        ``tau == mu1 - mu0``.
    propensity : pandas.Series
        True probability of treatment per patient, in (0, 1).
    name : str
        Registry name of the design that generated the trial.
    params : dict
        The generator's arguments, including ``n`` and ``seed`` (as passed).
    covariates : tuple of str
        Covariate columns of ``data``, in order.
    categorical : tuple of str, default ()
        The subset of ``covariates`` stored as pandas categoricals.
    outcome, treatment : str, default "y", "t"
        Outcome and treatment columns of ``data``.
    site : str or None, default None
        Site column of ``data`` for multi-site designs.

    Notes
    -----
    The frame and series are shared, not copied; treat them as read-only.
    """

    outcome_kind: ClassVar[str] = "scalar"
    """One outcome column (continuous or 0/1): what every estimator fits."""

    data: pd.DataFrame
    tau: pd.Series
    mu0: pd.Series
    mu1: pd.Series
    propensity: pd.Series
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    covariates: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    outcome: str = "y"
    treatment: str = "t"
    site: str | None = None

    def __post_init__(self) -> None:
        columns = [self.outcome, self.treatment, *self.covariates]
        if self.site is not None:
            columns.append(self.site)
        missing = [c for c in columns if c not in self.data.columns]
        if missing:
            raise ValueError(
                f"`data` lacks the columns {missing}; it has {list(self.data.columns)}"
            )
        extra = sorted(set(self.categorical) - set(self.covariates))
        if extra:
            raise ValueError(f"`categorical` names {extra}, which are not in `covariates`")
        for label in ("tau", "mu0", "mu1", "propensity"):
            series = getattr(self, label)
            if not series.index.equals(self.data.index):
                raise ValueError(f"`{label}` must be indexed like `data` (the patient ids)")

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.data)

    @property
    def ate(self) -> float:
        """Sample average treatment effect: the mean of ``tau`` over the patients."""
        return float(self.tau.mean())

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the conventional name for the covariate matrix
        """The covariate columns of ``data`` (categoricals kept as categoricals)."""
        return self.data.loc[:, list(self.covariates)]

    def fit_kwargs(self) -> dict[str, Any]:
        """Arguments for an estimator's ``fit(Y, T, *, X, site=None)``.

        Returns
        -------
        dict
            ``Y``, ``T``, ``X`` and ``site`` (None for single-site designs).
        """
        return {
            "Y": self.data[self.outcome],
            "T": self.data[self.treatment],
            "X": self.X,
            "site": None if self.site is None else self.data[self.site],
        }


@dataclass(frozen=True)
class SurvivalTrial(SimulatedTrial):
    """A synthetic trial with a right-censored time-to-event outcome and its known truth.

    Parameters
    ----------
    data, tau, mu0, mu1, propensity, name, params, covariates, categorical, treatment, site
        As for :class:`SimulatedTrial`, with ``tau`` the true difference in restricted mean
        survival time (RMST) up to ``params["horizon"]`` and ``mu0``, ``mu1`` the two RMSTs.
    outcome : str, default "time"
        Column of the observed time ``min(event time, censoring time)``, > 0.
    event : str, default "event"
        Column of the event indicator (int, 1: event observed at ``time``, 0: censored).
    truth : pandas.DataFrame
        Per-patient truth, indexed like ``data``: ``rmst_difference`` (``== tau``),
        ``survival_difference`` (:math:`S_1 - S_0` at ``params["t_eval"]``), ``time_ratio``
        (:math:`e^\\gamma`, the factor treatment multiplies the event time by),
        ``log_time_ratio``, and the arms' ``rmst0``, ``rmst1`` (``== mu0, mu1``) and
        ``survival0``, ``survival1`` (at ``t_eval``).

    Notes
    -----
    ``fit_kwargs()["Y"]`` is the two-column DataFrame ``[time, event]``: lifelines' duration and
    event columns, and one call from scikit-survival's structured array
    (``sksurv.util.Surv.from_dataframe("event", "time", Y)``).
    ``HierarchicalITE(outcome="survival")`` fits it; the forests do not, which
    ``outcome_kind = "survival"`` tells loops over designs.
    """

    outcome_kind: ClassVar[str] = "survival"

    outcome: str = "time"
    event: str = "event"
    truth: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.event not in self.data.columns:
            raise ValueError(f"`data` lacks the event column {self.event!r}")
        if self.truth is None or not self.truth.index.equals(self.data.index):
            raise ValueError("`truth` must be a DataFrame indexed like `data` (the patient ids)")

    def fit_kwargs(self) -> dict[str, Any]:
        """Arguments for a survival estimator's ``fit(Y, T, *, X, site=None)``.

        Returns
        -------
        dict
            ``Y`` (DataFrame with columns ``time, event``), ``T``, ``X`` and ``site`` (None for
            single-site designs).
        """
        return super().fit_kwargs() | {"Y": self.data[[self.outcome, self.event]]}


def _as_rng(seed: SeedLike) -> np.random.Generator:
    """Return a Generator for ``seed`` via :func:`numpy.random.default_rng` (never global)."""
    if isinstance(seed, bool) or not (
        seed is None
        or isinstance(seed, numbers.Integral | np.random.Generator | np.random.SeedSequence)
    ):
        raise TypeError(
            "`seed` must be an int, a numpy.random.Generator, a numpy.random.SeedSequence or "
            f"None; got {type(seed).__name__}"
        )
    return np.random.default_rng(seed)


def _check_int(value: object, name: str, minimum: int) -> int:
    """Return ``value`` as an int; raise naming ``name`` if not an int or below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}; got {value}")
    return int(value)


def _patient_index(n: int) -> pd.Index:
    """Patient ids ``p0000, p0001, ...`` (zero-padded to at least four digits)."""
    width = max(4, len(str(n - 1)))
    return pd.Index([f"p{i:0{width}d}" for i in range(n)], name="patient")


def _build_trial(
    *,
    name: str,
    params: dict[str, Any],
    covariates: pd.DataFrame,
    t: np.ndarray,
    y: np.ndarray,
    mu0: np.ndarray,
    tau: np.ndarray,
    propensity: np.ndarray,
    categorical: tuple[str, ...] = (),
    site: np.ndarray | None = None,
) -> SimulatedTrial:
    """Assemble a :class:`SimulatedTrial` from arrays of one length (``covariates`` re-indexed)."""
    index = _patient_index(len(y))
    outcome = pd.DataFrame(
        {"y": np.asarray(y, dtype=np.float64), "t": np.asarray(t, dtype=np.int64)}, index=index
    )
    data = pd.concat([outcome, covariates.set_axis(index, axis=0)], axis=1)
    if site is not None:
        data["site"] = site
    truth = {"tau": tau, "mu0": mu0, "mu1": mu0 + tau, "propensity": propensity}
    series = {
        key: pd.Series(np.asarray(value, dtype=np.float64), index=index, name=key)
        for key, value in truth.items()
    }
    return SimulatedTrial(
        data=data,
        name=name,
        params=params,
        covariates=tuple(covariates.columns),
        categorical=categorical,
        site=None if site is None else "site",
        **series,
    )
