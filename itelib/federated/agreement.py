"""The first round of a federated fit: what every site must encode identically.

Each site computes :func:`site_moments` on its own rows (counts, means, sums of squared
deviations, ranges, categorical levels: no row) and sends it to the coordinator;
:func:`agree` combines them into an :class:`Agreement` (the shared standardization, the
categorical levels, the outcome's scale, the treatment's centre and the smooth terms' boxes),
which goes back to every site for the second round (:func:`itelib.federated.site_summary`).

Every number is the one :meth:`HierarchicalITE.fit <itelib.HierarchicalITE.fit>` computes from
the pooled rows: means and variances combined exactly (Chan, Golub & LeVeque 1979), so they
differ from the pooled ones only in the last bits of rounding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from itelib import _validation as v
from itelib.data import CovariateEncoder, TrialData, constant_safe_scale
from itelib.exceptions import DataValidationError
from itelib.federated.disclosure import check_site_cells
from itelib.models.hierarchical.features import FeatureMap

__all__ = [
    "FORMAT_VERSION",
    "Agreement",
    "FederatedSpec",
    "SiteMoments",
    "agree",
    "combine_moments",
    "moments_of",
    "site_frame",
    "site_moments",
]

FORMAT_VERSION = 1  # of the spec, the agreement and the summary files
# the prognosis and modifier options whose columns are fixed once the standardization and the
# boxes are agreed; pairwise products need each product's mean and sd (fourth moments)
FEDERATED_OPTIONS = {"prognosis": ("linear", "additive"),
                     "effect_modifiers": ("linear", "additive")}  # fmt: skip


@dataclass(frozen=True)
class FederatedSpec:
    """What the sites agree to compute: the columns and the model's fixed options.

    Parameters
    ----------
    outcome, treatment : str
        Column names of the (continuous) outcome and the 0/1 treatment.
    covariates : sequence of str
        Covariate columns, in order.
    site : str
        Column of site labels (a site's file may hold one site or several).
    categorical : sequence of str
        Covariates to one-hot encode; their levels are agreed (the union, sorted).
    treatment_labels : (control, treated), optional
        When the treatment is not 0/1 or bool.
    prognosis, effect_modifiers : {"linear", "additive"}
        As in :class:`~itelib.HierarchicalITE`; ``"additive"``'s smooth bases are fixed by the
        agreed ranges. ``"interactions"`` needs the products' own standardization, which this
        protocol does not agree on.
    n_basis : int
        Basis functions per smooth term.
    treatment_coding : {"centered", "indicator"}
        As in :class:`~itelib.HierarchicalITE`; centred on the pooled share treated.
    """

    outcome: str
    treatment: str
    covariates: tuple[str, ...]
    site: str
    categorical: tuple[str, ...] = ()
    treatment_labels: tuple | None = None
    prognosis: str = "linear"
    effect_modifiers: str = "linear"
    n_basis: int = 10
    treatment_coding: str = "centered"

    def __post_init__(self) -> None:
        object.__setattr__(self, "covariates", tuple(str(c) for c in self.covariates))
        object.__setattr__(self, "categorical", tuple(str(c) for c in self.categorical))
        if self.treatment_labels is not None:
            object.__setattr__(self, "treatment_labels", tuple(self.treatment_labels))
        for name, allowed in FEDERATED_OPTIONS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"FederatedSpec({name}={getattr(self, name)!r}): a federated fit supports "
                    f"{list(allowed)}. Pairwise products ('interactions') are standardized by "
                    "their own mean and sd, fourth moments of the rows that this protocol does "
                    "not exchange, and 'piecewise' needs the pooled medians too; 'additive' "
                    "(smooth terms) is fixed by the agreed ranges."
                )
        if self.treatment_coding not in ("centered", "indicator"):
            raise ValueError(
                f"FederatedSpec(treatment_coding={self.treatment_coding!r}): choose 'centered' "
                "or 'indicator'."
            )
        if not isinstance(self.n_basis, int) or self.n_basis < 1:
            raise ValueError(f"FederatedSpec(n_basis={self.n_basis!r}) must be an int >= 1.")
        unknown = set(self.categorical) - set(self.covariates)
        if unknown:
            raise ValueError(f"FederatedSpec: categorical {sorted(unknown)} are not covariates.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["covariates"], d["categorical"] = list(self.covariates), list(self.categorical)
        if self.treatment_labels is not None:
            d["treatment_labels"] = [v.to_native(x) for x in self.treatment_labels]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FederatedSpec:
        return cls(**d)


def site_frame(data: Any, spec: FederatedSpec) -> pd.DataFrame:
    """A site's rows as a DataFrame with the spec's columns: ``data`` is a DataFrame, or a
    tuple ``(Y, T, X, site)`` (a DataFrame ``X``: its columns by name; an array: in
    ``spec.covariates`` order)."""
    if isinstance(data, pd.DataFrame):
        v.check_columns_exist(data.columns, _columns(spec), argument="the site's data")
        return data
    if not (isinstance(data, tuple) and len(data) == 4):
        raise TypeError(
            "a site's data must be a pandas DataFrame with the spec's columns, or a tuple "
            f"(Y, T, X, site) of arrays; received {type(data).__name__}."
        )
    Y, T, X, site = data
    frame, named = v.as_frame(X, argument="X")
    if named:  # a DataFrame: its columns by name, never by position
        missing = [c for c in spec.covariates if c not in frame.columns]
        extra = [c for c in frame.columns if c not in spec.covariates]
        if missing or extra:
            raise DataValidationError(
                f"X's columns {list(frame.columns)} are not the spec's covariates "
                f"{list(spec.covariates)} (missing {missing}, extra {extra}). Fix: pass X with "
                "exactly the spec's covariate columns (any order), or a NumPy array whose "
                "columns are in the spec's order."
            )
        return _with_columns(frame[list(spec.covariates)].copy(), Y, T, site, spec)
    if frame.shape[1] != len(spec.covariates):
        raise DataValidationError(
            f"X has {frame.shape[1]} columns; the spec names {len(spec.covariates)} covariates."
        )
    return _with_columns(frame.set_axis(list(spec.covariates), axis=1), Y, T, site, spec)


def _with_columns(frame: pd.DataFrame, Y: Any, T: Any, site: Any,
                  spec: FederatedSpec) -> pd.DataFrame:  # fmt: skip
    frame[spec.outcome] = np.asarray(Y)
    frame[spec.treatment] = np.asarray(T)
    frame[spec.site] = np.broadcast_to(np.asarray(site, dtype=object), (len(frame),))
    return frame


def _columns(spec: FederatedSpec) -> list[str]:
    return [spec.outcome, spec.treatment, spec.site, *spec.covariates]


def validated(frame: pd.DataFrame, spec: FederatedSpec) -> TrialData:
    """The site's rows through the same checks as :meth:`HierarchicalITE.fit`'s
    (:meth:`TrialData.from_arrays`): finite numbers, a 0/1 treatment, no missing cells."""
    return TrialData.from_arrays(
        frame[spec.outcome], frame[spec.treatment], X=frame[list(spec.covariates)],
        site=frame[spec.site], categorical=spec.categorical,
        treatment_labels=spec.treatment_labels,
    )  # fmt: skip


def check_cells(frame: pd.DataFrame, checked: TrialData, spec: FederatedSpec) -> None:
    """Every site's indicator cells, per arm (:mod:`itelib.federated.disclosure`)."""
    codes = checked.site if checked.site is not None else np.zeros(checked.n, np.int32)
    for s, label in enumerate(checked.site_index.levels):
        rows = codes == s
        for col in spec.covariates:
            check_site_cells(label, frame[col].to_numpy()[rows], checked.t[rows], col,
                             categorical=col in checked.encoder.categorical)  # fmt: skip


def _outward(low: float, high: float, step: float) -> tuple[float, float]:
    """``[low, high]`` widened to a grid of ``step``, strictly outside a patient's value."""
    lo, hi = float(np.floor(low / step) * step), float(np.ceil(high / step) * step)
    return (lo - step if lo == low else lo), (hi + step if hi == high else hi)


def _moments(values: np.ndarray, *, widen: bool = False) -> dict[str, Any]:
    """n, mean, sum of squared deviations, min, max, and up to 2 distinct values. ``widen``:
    the min and max rounded outward to a grid of a tenth of the site's sd, so that no
    patient's exact value leaves the site (a column with at most 2 values sends them)."""
    values = np.asarray(values, np.float64)
    mean = float(np.mean(values))
    distinct = np.unique(values)
    m2 = float(np.sum((values - mean) ** 2))
    low, high = float(distinct[0]), float(distinct[-1])
    step = np.sqrt(m2 / len(values)) / 10
    if widen and len(distinct) > 2 and step > 0:
        low, high = _outward(low, high, step)
    return {
        "n": len(values), "mean": mean, "m2": m2, "min": low, "max": high,
        # a column with 1 or 2 values (a 0/1 indicator) says which: a third value anywhere
        # makes it smooth-able; more than 2 are never listed
        "values": distinct.tolist() if len(distinct) <= 2 else None,
    }  # fmt: skip


@dataclass(frozen=True)
class SiteMoments:
    """One site's first-round message: no row, only counts and moments.

    Attributes
    ----------
    spec : FederatedSpec
    sites : dict
        Site label -> ``{"n": patients, "n_treated": treated}``.
    outcome : dict
        The outcome's n, mean, sum of squared deviations (``m2``), min, max.
    numeric : dict
        Numeric covariate -> the same, plus up to 2 distinct ``values``.
    levels : dict
        Categorical covariate -> {level: count}.
    treatment_labels : tuple
        ``(control, treated)`` as the site's data code them.
    """

    spec: FederatedSpec
    sites: dict[Any, dict[str, int]]
    outcome: dict[str, Any]
    numeric: dict[str, dict[str, Any]]
    levels: dict[str, dict[Any, int]]
    treatment_labels: tuple
    format_version: int = field(default=FORMAT_VERSION)

    def to_json(self) -> str:
        """The message as JSON (labels and levels as lists of pairs: JSON keys are text)."""
        d = {
            "format_version": self.format_version, "spec": self.spec.to_dict(),
            "sites": [[label, s["n"], s["n_treated"]] for label, s in self.sites.items()],
            "outcome": self.outcome, "numeric": self.numeric,
            "levels": {col: [[lv, c] for lv, c in counts.items()]
                       for col, counts in self.levels.items()},
            "treatment_labels": [v.to_native(x) for x in self.treatment_labels],
        }  # fmt: skip
        return json.dumps(d, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> SiteMoments:
        d = json.loads(text)
        return cls(
            FederatedSpec.from_dict(d["spec"]),
            {label: {"n": n, "n_treated": nt} for label, n, nt in d["sites"]},
            d["outcome"], d["numeric"],
            {col: {lv: c for lv, c in pairs} for col, pairs in d["levels"].items()},
            tuple(d["treatment_labels"]), d["format_version"],
        )  # fmt: skip


def site_moments(data: Any, spec: FederatedSpec) -> SiteMoments:
    """First round, at a site: the counts and moments :func:`agree` combines.

    Parameters
    ----------
    data : pandas.DataFrame or (Y, T, X, site)
        The site's own rows (never sent anywhere).
    spec : FederatedSpec

    Returns
    -------
    SiteMoments
    """
    frame = site_frame(data, spec)
    checked = validated(frame, spec)
    check_cells(frame, checked, spec)
    # without smooth terms the ranges only name far-away new patients: widened; a smooth
    # term's box must equal the pooled fit's, which reads the exact extremes (not widened)
    widen = spec.prognosis == "linear" and spec.effect_modifiers == "linear"
    return moments_of(frame, checked, spec, widen=widen)


def moments_of(frame: pd.DataFrame, checked: TrialData, spec: FederatedSpec, *,
               widen: bool) -> SiteMoments:  # fmt: skip
    """:func:`site_moments` of rows already validated, without the small-cell checks (a Dask
    partition is a piece of one data set, not a site: its cells are checked on the sums)."""
    codes = checked.site if checked.site is not None else np.zeros(checked.n, np.int32)
    sites = {
        v.to_native(label): {
            "n": int(np.sum(codes == s)),
            "n_treated": int(np.sum(checked.t[codes == s])),
        }  # fmt: skip
        for s, label in enumerate(checked.site_index.levels)
    }
    numeric, levels = {}, {}
    for col in spec.covariates:
        if col in checked.encoder.categorical:
            counts = frame[col].value_counts()
            levels[col] = {v.to_native(k): int(c) for k, c in counts.items() if c > 0}
        else:
            numeric[col] = _moments(v.as_float(frame[col], label=col, fix=""), widen=widen)
    outcome = _moments(checked.y)
    del outcome["min"], outcome["max"]  # unused by agree(): the outcome's extremes stay here
    return SiteMoments(spec, sites, outcome, numeric, levels, checked.treatment_labels)


@dataclass(frozen=True)
class Agreement:
    """What every site encodes identically (the coordinator's answer to the first round).

    Attributes
    ----------
    spec : FederatedSpec
    encoder : CovariateEncoder
        The pooled standardization and categorical levels.
    sites : dict
        Site label -> ``{"n", "n_treated"}`` (sorted labels: the fit's site codes).
    outcome_center, outcome_scale : float
        The pooled outcome mean and sd.
    treatment_centre : float
        Subtracted from the 0/1 treatment (the pooled share treated; 0 with the indicator).
    features : FeatureMap
        The smooth terms' columns and boxes.
    covariate_range : numpy.ndarray
        (2, p) the standardized covariates' minimum and maximum (new patients far outside are
        named in a warning, as after a fit on rows).
    treatment_labels : tuple
    """

    spec: FederatedSpec
    encoder: CovariateEncoder
    sites: dict[Any, dict[str, int]]
    outcome_center: float
    outcome_scale: float
    treatment_centre: float
    features: FeatureMap
    covariate_range: np.ndarray
    treatment_labels: tuple
    outcome_values: tuple | None = None  # the pooled outcome's values when 2 (a 0/1 outcome)

    @property
    def n(self) -> int:
        return sum(s["n"] for s in self.sites.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "encoder": self.encoder.to_dict(),
            "sites": [[label, s["n"], s["n_treated"]] for label, s in self.sites.items()],
            "outcome_center": self.outcome_center,
            "outcome_scale": self.outcome_scale,
            "treatment_centre": self.treatment_centre,
            "features": self.features.to_dict(),
            "covariate_range": np.asarray(self.covariate_range).tolist(),
            "treatment_labels": [v.to_native(x) for x in self.treatment_labels],
            "outcome_values": None if self.outcome_values is None else list(self.outcome_values),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agreement:
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"this agreement has format version {d.get('format_version')!r}; this itelib "
                f"reads version {FORMAT_VERSION}. Fix: rerun the first round with one itelib."
            )
        return cls(
            FederatedSpec.from_dict(d["spec"]), CovariateEncoder.from_dict(d["encoder"]),
            {label: {"n": n, "n_treated": nt} for label, n, nt in d["sites"]},
            d["outcome_center"], d["outcome_scale"], d["treatment_centre"],
            FeatureMap.from_dict(d["features"]),
            np.asarray(d["covariate_range"], np.float64).reshape(2, -1),
            tuple(d["treatment_labels"]),
            None if d.get("outcome_values") is None else tuple(d["outcome_values"]),
        )  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @property
    def id(self) -> str:
        """SHA-256 of the agreement's JSON: summaries computed under it carry it."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def _pooled(parts: list[dict[str, Any]]) -> tuple[int, float, float]:
    """n, mean and variance (divisor n, as ``np.std``) of the union of the parts."""
    n = sum(p["n"] for p in parts)
    mean = sum(p["n"] * p["mean"] for p in parts) / n
    m2 = sum(p["m2"] + p["n"] * (p["mean"] - mean) ** 2 for p in parts)
    return n, mean, m2 / n


def _combined(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One column's :func:`_moments` of the union of disjoint pieces of rows."""
    n, mean, var = _pooled(parts)
    out = {"n": n, "mean": mean, "m2": var * n}
    if "min" in parts[0]:
        out["min"], out["max"] = min(p["min"] for p in parts), max(p["max"] for p in parts)
    values = [p.get("values") for p in parts]
    union = None if any(x is None for x in values) else sorted(set().union(*values))
    out["values"] = union if union is not None and len(union) <= 2 else None
    return out


def combine_moments(parts: list[SiteMoments]) -> SiteMoments:
    """The first-round message of the union of disjoint pieces of one data set (Dask
    partitions), in which a site may recur: counts summed per site, moments combined exactly."""
    if not parts:
        raise ValueError("combine_moments() needs at least one piece's moments.")
    first = parts[0]
    sites: dict[Any, dict[str, int]] = {}
    for part in parts:
        if part.spec != first.spec or part.treatment_labels != first.treatment_labels:
            raise ValueError("the pieces were summarized under different specs or treatments.")
        for label, counts in part.sites.items():
            total = sites.setdefault(label, {"n": 0, "n_treated": 0})
            total["n"] += counts["n"]
            total["n_treated"] += counts["n_treated"]
    levels: dict[str, dict[Any, int]] = {}
    for col in first.levels:
        for part in parts:
            for level, count in part.levels[col].items():
                levels.setdefault(col, {})[level] = levels.get(col, {}).get(level, 0) + count
    numeric = {col: _combined([p.numeric[col] for p in parts]) for col in first.numeric}
    outcome = _combined([p.outcome for p in parts])
    return SiteMoments(first.spec, sites, outcome, numeric, levels, first.treatment_labels)


def _outcome_values(spec: FederatedSpec, moments: list[SiteMoments], y_var: float) -> tuple | None:
    """The pooled outcome's distinct values when at most 2; a constant outcome is refused (as
    :func:`itelib.data.outcome_kind` refuses it in a fit on rows)."""
    parts = [m.outcome.get("values") for m in moments]
    values = None if any(p is None for p in parts) else sorted(set().union(*parts))
    if y_var == 0 or (values is not None and len(values) == 1):
        raise DataValidationError(
            f"outcome '{spec.outcome}' is constant across every site: there is no variation to "
            "model. Fix: check the outcome column."
        )
    return None if values is None or len(values) > 2 else tuple(values)


def agree(moments: list[SiteMoments]) -> Agreement:
    """Combine the sites' first-round messages into the shared encoding.

    Parameters
    ----------
    moments : list of SiteMoments
        One per site file, all computed under one :class:`FederatedSpec`.

    Returns
    -------
    Agreement
    """
    if not moments:
        raise ValueError("agree() needs the first-round moments of at least one site.")
    spec = moments[0].spec
    for m in moments:
        if m.spec != spec:
            raise ValueError(f"the sites used different specs: {m.spec} and {spec}.")
        if m.format_version != FORMAT_VERSION:
            raise ValueError(f"site moments of format version {m.format_version}; expected 1.")
    labels = [m.treatment_labels for m in moments]
    if len(set(labels)) > 1:
        raise ValueError(f"the sites code the treatment differently: {labels}.")
    sites: dict[Any, dict[str, int]] = {}
    for m in moments:
        for label, counts in m.sites.items():
            if label in sites:
                raise ValueError(f"site {label!r} sent first-round moments twice.")
            sites[label] = dict(counts)
    sites = {label: sites[label] for label in v.sorted_levels(sites)}
    n = sum(s["n"] for s in sites.values())
    n_treated = sum(s["n_treated"] for s in sites.values())
    _, y_mean, y_var = _pooled([m.outcome for m in moments])
    outcome_values = _outcome_values(spec, moments, y_var)
    levels = {
        col: v.sorted_levels(set().union(*(m.levels[col] for m in moments)))
        for col in spec.covariates
        if col in moments[0].levels
    }
    names, center, scale, low, high, many = [], [], [], [], [], []
    for col in spec.covariates:
        if col in levels:
            counts = [sum(m.levels[col].get(lv, 0) for m in moments) for lv in levels[col][1:]]
            for lv, count in zip(levels[col][1:], counts, strict=True):
                names.append(f"{col}[{lv}]")
                share = count / n
                center.append(share)
                scale.append(np.sqrt(share * (1 - share)))
                low.append(0.0 if count < n else 1.0)
                high.append(1.0 if count > 0 else 0.0)
                many.append(False)
        else:
            parts = [m.numeric[col] for m in moments]
            _, mean, var = _pooled(parts)
            names.append(col)
            center.append(mean)
            scale.append(np.sqrt(var))
            low.append(min(p["min"] for p in parts))
            high.append(max(p["max"] for p in parts))
            values = [p["values"] for p in parts]
            many.append(any(x is None for x in values) or len(set().union(*values)) > 2)
    center, scale = np.asarray(center), np.asarray(scale)
    max_abs = np.maximum(np.abs(low), np.abs(high))
    scale = constant_safe_scale(scale, max_abs)  # itelib.data's rule
    encoder = CovariateEncoder(tuple(spec.covariates), levels, tuple(names), center, scale)
    std_range = np.stack([(np.asarray(low) - center) / scale, (np.asarray(high) - center) / scale])
    features = FeatureMap.from_ranges(
        many, [float(x) for x in np.max(np.abs(std_range), axis=0)],
        prognosis=spec.prognosis, modifiers=spec.effect_modifiers, n_basis=spec.n_basis,
        n_modifier_columns=len(names),
    )  # fmt: skip
    centre = n_treated / n if spec.treatment_coding == "centered" else 0.0
    return Agreement(spec, encoder, sites, y_mean, float(np.sqrt(y_var)), centre, features,
                     std_range, labels[0], outcome_values)  # fmt: skip
