"""The data contract: validated, encoded and standardized trial data.

:class:`TrialData` holds the outcome, a 0/1 treatment, standardized covariates and optional
site codes, together with everything learned from the training data (the
:class:`CovariateEncoder` and the :class:`SiteIndex`) so that new patients can be encoded
the same way with :meth:`TrialData.transform`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from itelib import _validation as v
from itelib.data_checks import check_binary_arms, check_covariates, check_site_arms
from itelib.exceptions import DataValidationError
from itelib.missing import missing_cells, refuse_missing, refuse_missing_categorical
from itelib.site_index import SiteIndex

__all__ = ["CovariateEncoder", "SiteIndex", "TrialData", "outcome_kind"]

_CONSTANT_RTOL = 1e-12  # a feature whose sd is below this fraction of its max |x| is constant


def _frozen_array(values: Any) -> np.ndarray:
    arr = np.array(values, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def _numeric_fix(col: str) -> str:
    return (
        f"convert it to numbers (e.g. pd.to_numeric(df['{col}'])) or, if it is a category, "
        f"pass categorical=['{col}'] to one-hot encode it."
    )


@dataclass(frozen=True, eq=False)
class CovariateEncoder:
    """Encoding and standardization of covariates, learned from the training patients.

    Numeric and bool columns become one feature each; categorical columns are one-hot
    encoded with the first level (the reference) dropped, named ``"col[level]"``. Levels come
    in the declared order of a pandas ``category`` column (as in formulaic and Bambi), else
    sorted. Every feature is
    then centred and scaled with the training mean and standard deviation (scale 1 for a
    constant feature).

    Attributes
    ----------
    columns : tuple of str
        Raw covariate column names, in order.
    categorical : dict
        Raw column -> its category levels seen in training, the reference first.
    feature_names : tuple of str
        Encoded feature names.
    center, scale : numpy.ndarray
        Per-feature training mean and standard deviation (read-only).
    """

    columns: tuple[str, ...]
    categorical: dict[str, tuple]
    feature_names: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "feature_names", tuple(str(c) for c in self.feature_names))
        levels = {str(k): tuple(v.to_native(x) for x in lv) for k, lv in self.categorical.items()}
        object.__setattr__(self, "categorical", levels)
        object.__setattr__(self, "center", _frozen_array(self.center).reshape(-1))
        object.__setattr__(self, "scale", _frozen_array(self.scale).reshape(-1))
        p = len(self.feature_names)
        if self.center.shape != (p,) or self.scale.shape != (p,):
            raise DataValidationError(
                f"CovariateEncoder: center {self.center.shape} and scale {self.scale.shape} "
                f"must have one entry per feature ({p}). Fix: build it with "
                "CovariateEncoder.fit or from_dict."
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CovariateEncoder):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_features(self) -> int:
        """Number of encoded features."""
        return len(self.feature_names)

    @classmethod
    def fit(
        cls, X: pd.DataFrame, categorical: Sequence[str] = (), *, allow_missing: bool = False
    ) -> CovariateEncoder:
        """Learn the encoding from training covariates.

        Parameters
        ----------
        X : pandas.DataFrame or 2-d array
            Training covariates (arrays get the names ``x0 .. x{p-1}``).
        categorical : sequence of str
            Columns to one-hot encode; pandas ``category`` columns are added automatically,
            with their declared category order (the first used category is the reference).
        allow_missing : bool
            Let numeric columns have missing cells (``missing="impute"``): the centre and scale
            come from the observed cells. A categorical column with missing cells is refused.

        Returns
        -------
        CovariateEncoder
        """
        frame, _ = v.as_frame(X, argument="X")
        v.check_nonempty(len(frame), argument="X")
        declared = [categorical] if isinstance(categorical, str) else list(categorical)
        v.check_columns_exist(frame.columns, declared, argument="categorical (covariates of X)")
        levels = {}
        for col in frame.columns:
            series = frame[col]
            if isinstance(series.dtype, pd.CategoricalDtype):
                levels[col] = _declared_levels(series)
            elif col in declared:
                levels[col] = v.sorted_levels(series.dropna().drop_duplicates())
        if allow_missing:
            refuse_missing_categorical(frame, list(levels))
        else:
            refuse_missing(frame, list(frame.columns))
        columns = tuple(frame.columns)
        features, names = _encode(frame, columns, levels, allow_missing=allow_missing)
        center, scale = _standardization(features, names, observed_only=allow_missing)
        return cls(columns, levels, names, center, scale)

    def transform(self, X: Any, *, allow_missing: bool = False) -> np.ndarray:
        """Encode and standardize covariates with the training statistics.

        Parameters
        ----------
        X : pandas.DataFrame or 2-d array
            Covariates; a DataFrame must hold every training column (extra columns are
            ignored), an array must have the training columns in training order.
        allow_missing : bool
            Keep missing cells of numeric columns as NaN (for imputation) instead of refusing.

        Returns
        -------
        numpy.ndarray
            float64, shape ``(n, n_features)``.
        """
        frame, _ = v.as_frame(X, argument="X", columns=self.columns)
        fix = "add these columns, with the same names and coding as in training."
        v.check_columns_exist(frame.columns, self.columns, argument="X (covariates)", fix=fix)
        if allow_missing:
            refuse_missing_categorical(frame, list(self.categorical))
        else:
            refuse_missing(frame, self.columns)
        features, _ = _encode(frame, self.columns, self.categorical, allow_missing=allow_missing)
        with np.errstate(all="ignore"):
            out = (features - self.center) / self.scale
        # the observed cells must be finite; missing ones are NaN on purpose
        checked = np.where(np.isnan(out), 0.0, out) if allow_missing else out
        v.check_finite_features(checked, self.feature_names, when="after standardization")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description; :meth:`from_dict` rebuilds an equal encoder."""
        return {
            "columns": list(self.columns),
            "categorical": {k: list(lv) for k, lv in self.categorical.items()},
            "feature_names": list(self.feature_names),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CovariateEncoder:
        """Rebuild an encoder from :meth:`to_dict` output."""
        keys = ("columns", "categorical", "feature_names", "center", "scale")
        v.require_keys(d, keys, what="CovariateEncoder")
        return cls(*(d[k] for k in keys))


def _encode(
    frame: pd.DataFrame,
    columns: Sequence[str],
    levels: Mapping[str, tuple],
    *,
    allow_missing: bool = False,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Numeric columns as floats, categorical ones one-hot (first level dropped);
    ``allow_missing``: a numeric column's missing cells stay NaN."""
    blocks, names = [np.empty((len(frame), 0))], []
    for col in columns:
        series, label = frame[col], f"covariate '{col}'"
        if col in levels:
            blocks.append(_one_hot(series, levels[col], label=label))
            names.extend(f"{col}[{level}]" for level in levels[col][1:])
        else:
            gaps = missing_cells(frame, [col]).get(col) if allow_missing else None
            if gaps is not None:
                series = series.mask(gaps, 0)
            values = v.as_float(series, label=label, fix=_numeric_fix(col)).copy()
            if gaps is not None:
                values[gaps] = np.nan
            blocks.append(values[:, None])
            names.append(col)
    dup = pd.Index(names).duplicated(keep=False)
    if dup.any():
        raise DataValidationError(
            f"encoded feature names {v.format_values(set(np.array(names)[dup]))} collide. "
            "Fix: rename the columns so that no numeric column is named like 'col[level]'."
        )
    return np.hstack(blocks).astype(np.float64, copy=False), tuple(names)


def _declared_levels(series: pd.Series) -> tuple:
    """A ``category`` column's levels in its declared order, unused categories left out (they
    would be all-zero features)."""
    used = set(series.cat.codes[series.cat.codes >= 0].unique())
    return tuple(v.to_native(c) for i, c in enumerate(series.cat.categories) if i in used)


def _one_hot(series: pd.Series, levels: tuple, *, label: str) -> np.ndarray:
    fix = "map them to a training level or drop these patients; the model has no coefficient "
    codes = v.check_known_levels(series, levels, label=label, fix=fix + "for an unseen level.")
    return (codes[:, None] == np.arange(1, len(levels))[None, :]).astype(np.float64)


def _standardization(
    features: np.ndarray, names: tuple[str, ...], *, observed_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: NaN, refused
        if observed_only:  # missing cells (NaN) left out
            center, scale = np.nanmean(features, axis=0), np.nanstd(features, axis=0)
            max_abs = np.nanmax(np.abs(features), axis=0, initial=0.0)
        else:
            center = features.mean(axis=0)
            scale = features.std(axis=0)
            max_abs = np.abs(features).max(axis=0, initial=0.0)
    v.check_finite_features(np.stack([center, scale]), names, when="when standardized")
    return center, constant_safe_scale(scale, max_abs)


def constant_safe_scale(scale: np.ndarray, max_abs: np.ndarray) -> np.ndarray:
    """The standardization's scale with 1 for a constant feature (sd at most
    :data:`_CONSTANT_RTOL` of its largest ``|x|``): the one rule, shared by the federated
    agreement (:func:`itelib.federated.agree`)."""
    scale = np.asarray(scale, np.float64)
    return np.where(scale <= _CONSTANT_RTOL * np.asarray(max_abs, np.float64), 1.0, scale)


@dataclass(frozen=True, eq=False)
class TrialData:
    """Validated trial data; build it with :meth:`from_frame` or :meth:`from_arrays`.

    Attributes
    ----------
    y, t : numpy.ndarray
        ``(n,)`` float64 outcome as given, and treatment (1 for ``treatment_labels[1]``).
    X : numpy.ndarray
        ``(n, p)`` float64 covariates, standardized with the training statistics.
    site : numpy.ndarray or None
        ``(n,)`` int32 site codes ``0 .. n_sites - 1``.
    patient_ids : pandas.Index
        The user's index (a RangeIndex for arrays).
    encoder : CovariateEncoder
    site_index : SiteIndex or None
    outcome_name, treatment_name : str
    treatment_labels : tuple
        ``(control_label, treated_label)`` as given.
    """

    y: np.ndarray
    t: np.ndarray
    X: np.ndarray
    site: np.ndarray | None
    patient_ids: pd.Index
    encoder: CovariateEncoder
    site_index: SiteIndex | None
    outcome_name: str
    treatment_name: str
    treatment_labels: tuple

    def __post_init__(self) -> None:
        for name in ("y", "t", "X", "site"):
            if getattr(self, name) is not None:
                dtype = np.int32 if name == "site" else np.float64
                arr = np.array(getattr(self, name), dtype=dtype)
                arr.setflags(write=False)
                object.__setattr__(self, name, arr)

    def __repr__(self) -> str:
        return (
            f"TrialData(n={self.n}, p={self.p}, n_sites={self.n_sites}, "
            f"outcome={self.outcome_name!r}, treatment={self.treatment_name!r})"
        )

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.patient_ids)

    @property
    def p(self) -> int:
        """Number of encoded covariate features."""
        return self.X.shape[1]

    @property
    def n_sites(self) -> int:
        """Number of training sites (0 without sites)."""
        return 0 if self.site_index is None else self.site_index.n_sites

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Encoded feature names (``encoder.feature_names``)."""
        return self.encoder.feature_names

    @classmethod
    def from_arrays(
        cls,
        Y: Any,
        T: Any,
        *,
        X: Any,
        site: Any = None,
        categorical: Sequence[str] = (),
        treatment_labels: Sequence[Any] | None = None,
        pooled_sites: bool = True,
        allow_missing: bool = False,
    ) -> TrialData:
        """Validate and encode trial data given as pandas objects or NumPy arrays.

        Parameters
        ----------
        Y : pandas.Series, 1-d array or one-column DataFrame
            Numeric outcome.
        T : pandas.Series, 1-d array or one-column DataFrame
            Treatment: 0/1, bool, or two labels named in ``treatment_labels``.
        X : pandas.DataFrame or 2-d array
            Covariates (arrays get the names ``x0 .. x{p-1}``).
        site : pandas.Series or 1-d array, optional
            Site labels.
        categorical : sequence of str
            Covariates to one-hot encode (``category`` columns are detected).
        treatment_labels : (control, treated), optional
            Needed when the treatment is not 0/1 or bool.
        pooled_sites : bool
            Whether the model gives each site its own, partially pooled, effect; only the
            wording of the warning about sites with one arm depends on it.
        allow_missing : bool
            Keep patients with missing numeric covariates, their missing cells NaN in ``X``
            (standardized with the observed cells' statistics): the starting point of
            ``missing="impute"``, never a model's input.

        Returns
        -------
        TrialData

        Raises
        ------
        DataValidationError
            Different lengths or indexes, duplicate ids, no patients, missing or non-finite
            values, non-numeric outcome or covariates, a bad treatment.
        """
        (y_s, y_name, y_pd), (t_s, t_name, t_pd) = (
            v.as_series(Y, argument="Y"),
            v.as_series(T, argument="T"),
        )
        x_frame, x_pd = v.as_frame(X, argument="X")
        inputs = {"Y": (y_s, y_pd), "T": (t_s, t_pd), "X": (x_frame, x_pd)}
        if site is not None:
            site_s, site_name, site_pd = v.as_series(site, argument="site")
            inputs["site"] = (site_s, site_pd)
        ids = v.align_ids(inputs)
        fix = "pass a numeric outcome (a binary outcome as 0/1)."
        y = v.as_float(y_s.set_axis(ids), label=f"outcome '{y_name}'", fix=fix)
        t_label = f"treatment '{t_name}'"
        t, labels = v.encode_treatment(t_s.set_axis(ids), label=t_label, labels=treatment_labels)
        x_frame = x_frame.set_axis(ids)
        encoder = CovariateEncoder.fit(x_frame, categorical, allow_missing=allow_missing)
        site_index = codes = None
        if site is not None:
            site_index = SiteIndex.fit(site_s.set_axis(ids), name=site_name)
            codes = site_index.codes(site_s.set_axis(ids), allow_new=False)
        Xs = encoder.transform(x_frame, allow_missing=allow_missing)
        if not np.isnan(Xs).any():  # with gaps, each imputed data set is checked when fitted
            check_covariates(Xs * encoder.scale + encoder.center, Xs, encoder.feature_names)
        if site_index is not None:
            check_site_arms(t, codes, site_index.levels, pooled=pooled_sites)
        return cls(y, t, Xs, codes, ids, encoder, site_index, y_name, t_name, labels)

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        outcome: str,
        treatment: str,
        covariates: Sequence[str] | None = None,
        site: str | None = None,
        categorical: Sequence[str] = (),
        treatment_labels: Sequence[Any] | None = None,
    ) -> TrialData:
        """Validate and encode trial data from one DataFrame (which is never modified).

        Parameters
        ----------
        df : pandas.DataFrame
            One row per patient; the index holds the patient ids.
        outcome, treatment : str
            Column names of the outcome and the treatment.
        covariates : sequence of str, optional
            Covariate columns; ``None`` takes every column except outcome, treatment, site.
        site : str, optional
            Column of site labels.
        categorical, treatment_labels
            As in :meth:`from_arrays`.

        Returns
        -------
        TrialData
        """
        if not isinstance(df, pd.DataFrame):
            raise DataValidationError(
                f"df must be a pandas DataFrame; received {type(df).__name__}. Fix: use "
                "TrialData.from_arrays for arrays."
            )
        v.check_nonempty(len(df), argument="df")
        v.check_unique_ids(df.index, argument="df")
        roles = {"outcome": outcome, "treatment": treatment, "site": site}
        roles = {k: c for k, c in roles.items() if c is not None}
        for argument, col in roles.items():
            v.check_columns_exist(df.columns, [col], argument=f"df ({argument}={col!r})")
        covs = _covariate_columns(df, roles, covariates)
        return cls.from_arrays(
            df[outcome],
            df[treatment],
            X=df[covs],
            site=None if site is None else df[site],
            categorical=categorical,
            treatment_labels=treatment_labels,
        )

    def transform(
        self, X: Any, site: Any = None, *, allow_new_sites: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, pd.Index]:
        """Encode new patients with what was learned from the training data.

        Parameters
        ----------
        X : pandas.DataFrame or 2-d array
            New patients' covariates: every training column (extra columns are ignored), or
            an array with the training columns in order.
        site : pandas.Series, 1-d array or one label, optional
            Their site labels (one label: every patient at that site). When the data have
            sites and this is None, every patient is coded ``-1`` (population level). An
            unseen label that matches a training site but for case or spaces gets a
            :class:`~itelib.DataWarning` naming the match.
        allow_new_sites : bool
            Code unseen sites as ``-1`` instead of raising.

        Returns
        -------
        X : numpy.ndarray
            ``(m, p)`` float64, standardized with the training statistics.
        site : numpy.ndarray or None
            int32 codes (``-1`` for unseen); None when the data have no sites.
        patient_ids : pandas.Index
            The new patients' ids (a RangeIndex for arrays).
        """
        frame, x_pd = v.as_frame(X, argument="X", columns=self.encoder.columns)
        inputs: dict[str, tuple[Any, bool]] = {"X": (frame, x_pd)}
        if site is not None and not pd.api.types.is_list_like(site):
            # one label for every patient: "all at clinic_A"
            site = pd.Series([site] * len(frame), index=frame.index if x_pd else None)
        if site is not None:
            if self.site_index is None:
                raise DataValidationError(
                    "site was given, but the training data have no site. Fix: pass site=None."
                )
            site_s, _, site_pd = v.as_series(site, argument="site")
            inputs["site"] = (site_s, site_pd)
        ids = v.align_ids(inputs)
        Xs = self.encoder.transform(frame.set_axis(ids))
        if self.site_index is None:
            return Xs, None, ids
        if site is not None:
            return Xs, self.site_index.codes(site_s.set_axis(ids), allow_new=allow_new_sites), ids
        if not allow_new_sites:
            raise DataValidationError(
                f"site is missing for {v.format_ids(ids)}: the training data have sites and "
                "allow_new_sites=False. Fix: pass site=..., or set allow_new_sites=True."
            )
        return Xs, np.full(len(ids), -1, dtype=np.int32), ids


def _covariate_columns(
    df: pd.DataFrame, roles: Mapping[str, Any], covariates: Sequence[str] | None
) -> list[Any]:
    """Covariate column names for ``from_frame``, checked against the other roles."""
    names = list(roles.values())
    clash = [c for c in set(names) if names.count(c) > 1]
    covs = [c for c in df.columns if c not in set(names)] if covariates is None else covariates
    covs = [covs] if isinstance(covs, str) else list(covs)
    v.check_columns_exist(df.columns, covs, argument="df (covariates)")
    clash += [c for c in covs if c in set(names)]
    if clash:
        raise DataValidationError(
            f"column(s) {v.format_values(clash)} have two roles (outcome, treatment, site, "
            f"covariates; roles given: {dict(roles)}). Fix: give each column one role."
        )
    return covs


def require_covariates(data: TrialData, estimator: str) -> None:
    """The estimators model effects as functions of covariates: X needs a column."""
    if data.X.shape[1] == 0:
        raise DataValidationError(
            f"X has no columns, but {estimator} models effects as functions of covariates. "
            "Fix: pass at least one covariate (for the average effect alone, a constant column:"
            " every patient then gets the population effect)."
        )


def outcome_kind(requested: str, data: TrialData) -> str:
    """``outcome="auto"|"continuous"|"binary"`` resolved against the data (0/1 means binary).

    Every estimator calls this first, so a constant outcome is refused here, once."""
    if np.ptp(data.y) == 0:
        raise DataValidationError(
            f"outcome '{data.outcome_name}' is constant ({v.to_native(data.y[0])!r} for all "
            f"{data.n} patients): there is no variation to model. Fix: check the outcome column."
        )
    is_binary = bool(np.isin(data.y, (0.0, 1.0)).all())
    if requested == "auto":
        requested = "binary" if is_binary else "continuous"
    if requested == "binary" and not is_binary:
        bad = ~np.isin(data.y, (0.0, 1.0))
        raise DataValidationError(
            f"outcome='binary' but '{data.outcome_name}' has {int(bad.sum())} values other "
            f"than 0/1 (first at {list(data.patient_ids[bad][:5])}). Fix: code events as 1 and "
            "non-events as 0, or use outcome='continuous'."
        )
    if requested == "binary":
        check_binary_arms(data.y, data.t, data.outcome_name)
    return requested
