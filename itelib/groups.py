"""Sets and groups of patients: which patients a mask, a list of ids or group labels pick, and
:class:`GroupEffects`, the posterior of each group's average effect.

:meth:`EffectPosterior.average <itelib.posterior.EffectPosterior.average>`,
:meth:`~itelib.posterior.EffectPosterior.groupby` and
:meth:`~itelib.posterior.EffectPosterior.sel` read their arguments here; this module sits below
:mod:`itelib.posterior` and never imports it.
"""

from __future__ import annotations

import numbers
from typing import Any

import arviz_stats  # noqa: F401  (registers the ``.azstats`` accessor)
import numpy as np
import pandas as pd
import xarray as xr

from itelib._validation import check_unique_ids, format_ids, format_values, to_native
from itelib.exceptions import DataValidationError
from itelib.survival_outcome import no_effect

__all__ = ["GroupEffects", "group_codes", "is_boolean_mask", "patient_mask"]

GROUP_DIM = "group"
SAMPLE_DIMS = ("chain", "draw")
INTERVAL_KINDS = ("eti", "hdi")


# --------------------------------------------------------------------------- which patients
def is_boolean_mask(where: Any) -> bool:
    """Whether ``where`` is a boolean mask (bool array, list of bools, bool Series)."""
    if isinstance(where, pd.Series | pd.Index):
        return pd.api.types.is_bool_dtype(where.dtype) or (
            len(where) > 0 and where.dtype == object and pd.Index(where).inferred_type == "boolean"
        )
    if isinstance(where, np.ndarray):
        return where.dtype == bool
    if isinstance(where, str | bytes) or not pd.api.types.is_list_like(where):
        return False
    values = list(where)
    return len(values) > 0 and all(isinstance(v, bool | np.bool_) for v in values)


def patient_mask(where: Any, ids: pd.Index, *, argument: str = "where") -> np.ndarray:
    """The patients ``where`` picks, as a boolean array over ``ids`` (in their order).

    Parameters
    ----------
    where : None, boolean mask, or patient ids
        None: every patient. A boolean pandas Series: aligned by its index (the patient ids;
        extra ids are ignored, a missing one is an error). A boolean array or list: one entry
        per patient, in the order of ``ids``. Anything else: patient ids (one id or a list).
    ids : pandas.Index
        The patient ids.

    Raises
    ------
    DataValidationError
        A mask of the wrong length, with missing values or missing ids; repeated ids; a set
        with no patient.
    KeyError
        Ids that are not patients of the posterior (the message names a few).
    """
    n = len(ids)
    if where is None:
        return np.ones(n, dtype=bool)
    if is_boolean_mask(where):
        mask = _aligned_mask(where, ids, argument)
    else:
        if isinstance(where, str | bytes) or not pd.api.types.is_list_like(where):
            where = [where]
        wanted = pd.Index(list(where))
        unknown = wanted[~wanted.isin(ids)]
        if len(unknown):
            raise KeyError(
                f"{argument}: unknown patient ids {format_values(unknown, limit=5)} "
                f"({len(unknown)} of {len(wanted)} not in the posterior). Fix: pass ids from "
                "post.patient_ids, or a boolean mask."
            )
        check_unique_ids(wanted, argument=argument)
        mask = np.asarray(ids.isin(wanted), dtype=bool)
    if not mask.any():
        raise DataValidationError(
            f"{argument} selects no patient: an average over an empty set is undefined. "
            "Fix: check the condition (e.g. its threshold) that built the mask."
        )
    return mask


def _aligned_mask(where: Any, ids: pd.Index, argument: str) -> np.ndarray:
    if isinstance(where, pd.Series):
        check_unique_ids(where.index, argument=argument)
        missing = ~ids.isin(where.index)
        if missing.any():
            raise DataValidationError(
                f"{argument} is a boolean Series aligned by patient id, and it has no value for "
                f"{format_ids(ids, missing)}. Fix: index it by the posterior's patient ids "
                "(post.patient_ids), or pass a plain array in the posterior's order."
            )
        values = where.reindex(ids)
    else:
        values = pd.Series(np.asarray(list(where) if not isinstance(where, np.ndarray) else where))
        if len(values) != len(ids):
            raise DataValidationError(
                f"{argument} is a boolean mask of length {len(values)}, but the posterior has "
                f"{len(ids)} patients. Fix: one entry per patient, in the order of "
                "post.patient_ids, or a boolean pandas Series indexed by patient id."
            )
        values.index = ids
    if values.isna().any():
        raise DataValidationError(
            f"{argument} has missing values for {format_ids(ids, values.isna().to_numpy())}. "
            "Fix: fill them with True or False."
        )
    return values.to_numpy(dtype=bool)


def group_codes(labels: Any, ids: pd.Index) -> tuple[np.ndarray, pd.Index]:
    """Each patient's group code (``0 .. k-1``) and the group labels, in the user's order.

    Parameters
    ----------
    labels : pandas.Series or 1-d array_like
        A Series is aligned by its index (the patient ids; extra ids are ignored); an array
        has one label per patient, in the order of ``ids``.
    ids : pandas.Index

    Returns
    -------
    codes : numpy.ndarray
        int64, one per patient.
    levels : pandas.Index
        The groups: the categories' order for a categorical (unused categories dropped), else
        the order in which the labels first appear; named as the Series (``"group"`` if not).
    """
    if isinstance(labels, pd.DataFrame):
        raise DataValidationError(
            "labels must be one column; got a DataFrame. Fix: pass df['column'], or combine "
            "columns first (e.g. df['a'].astype(str) + '/' + df['b'].astype(str))."
        )
    if isinstance(labels, pd.Series):
        check_unique_ids(labels.index, argument="labels")
        missing = ~ids.isin(labels.index)
        if missing.any():
            raise DataValidationError(
                f"labels is a Series aligned by patient id, and it has no label for "
                f"{format_ids(ids, missing)}. Fix: give every patient of the posterior a label "
                "(its index must hold post.patient_ids), or select those patients first with "
                "post.sel(...)."
            )
        source = labels[labels.index.isin(ids)]  # the user's order, restricted to these patients
        aligned = labels.reindex(ids)
        name = labels.name
    else:
        source = labels if isinstance(labels, pd.Categorical) else np.asarray(labels)
        if np.ndim(source) != 1:
            raise DataValidationError(
                f"labels must be 1-d, one label per patient; got shape {np.shape(source)}."
            )
        if len(source) != len(ids):
            raise DataValidationError(
                f"labels has {len(source)} entries, but the posterior has {len(ids)} patients. "
                "Fix: one label per patient in the order of post.patient_ids, or a pandas "
                "Series indexed by patient id."
            )
        source = aligned = pd.Series(source, index=ids)
        name = None
    missing_label = aligned.isna().to_numpy()
    if missing_label.any():
        raise DataValidationError(
            f"labels are missing for {format_ids(ids, missing_label)}. Fix: give them a label "
            "(e.g. labels.fillna('unknown')) or leave those patients out with post.sel(...)."
        )
    if isinstance(aligned.dtype, pd.CategoricalDtype):
        present = set(aligned.cat.codes.unique())
        categories = aligned.cat.categories
        levels = pd.Index([c for i, c in enumerate(categories) if i in present])
    else:
        levels = pd.Index(pd.unique(source.to_numpy()).tolist())
    levels = levels.rename(GROUP_DIM if name is None else name)
    codes = levels.get_indexer(pd.Index(aligned.astype(object).to_numpy().tolist()))
    return codes.astype(np.int64), levels


# --------------------------------------------------------------------------- summaries
def check_prob_kind(prob: Any, kind: Any) -> None:
    """``prob`` strictly between 0 and 1; ``kind`` one of ``eti``, ``hdi``."""
    if isinstance(prob, bool) or not isinstance(prob, numbers.Real) or not 0 < prob < 1:
        raise ValueError(f"prob must be a number strictly between 0 and 1; got {prob!r}.")
    if kind not in INTERVAL_KINDS:
        raise ValueError(f"kind must be one of {INTERVAL_KINDS}; got {kind!r}.")


def draw_bounds(values: np.ndarray, prob: float, kind: str) -> np.ndarray:
    """(k, 2) lower and upper bounds of draws shaped (chain, draw, k), by arviz-stats."""
    check_prob_kind(prob, kind)
    da = xr.DataArray(values, dims=(*SAMPLE_DIMS, GROUP_DIM))
    accessor = da.azstats
    ci = (accessor.eti if kind == "eti" else accessor.hdi)(prob=float(prob), dim=list(SAMPLE_DIMS))
    lower, upper = ci.sel(ci_bound="lower").to_numpy(), ci.sel(ci_bound="upper").to_numpy()
    return np.stack([lower, upper], axis=-1).astype(np.float64)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a finite number; got {threshold!r}.")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number; got {threshold!r}.")
    return float(threshold)


class GroupEffects:
    """Posterior of each group's average effect (from :meth:`EffectPosterior.groupby`).

    Group ``g``'s draws are, draw by draw, the mean of its patients' effect draws, so they
    carry the posterior's correlation between patients, and differences between groups
    (:meth:`contrasts`) are computed draw by draw as well.

    Parameters
    ----------
    draws : array_like
        Shape ``(chain, draw, group)``.
    groups : pandas.Index
        The group labels, in order.
    counts : array_like of int
        Number of patients in each group.
    attrs : dict
        Attributes of the source posterior (``scale``, ``estimator``, ``inference``, ...).
    """

    def __init__(self, draws: Any, groups: pd.Index, counts: Any, attrs: dict[str, Any]) -> None:
        values = np.array(draws, dtype=np.float64)
        groups, counts = pd.Index(groups), np.asarray(counts, dtype=np.int64)
        if values.ndim != 3 or values.shape[2] != len(groups) or counts.shape != groups.shape:
            raise ValueError(
                f"draws {values.shape}, groups ({len(groups)}) and counts {counts.shape} "
                "disagree; expected draws (chain, draw, group) with one count per group."
            )
        self._values, self._groups, self._counts = values, groups.copy(), counts
        self._attrs = {**attrs, "quantity": "group_average_effect"}

    @property
    def groups(self) -> pd.Index:
        """The group labels, in order."""
        return self._groups.copy()

    @property
    def n(self) -> pd.Series:
        """Number of patients per group."""
        return pd.Series(self._counts.copy(), index=self.groups, name="n")

    @property
    def attrs(self) -> dict[str, Any]:
        """Attributes: the source posterior's, with ``quantity="group_average_effect"``."""
        return {k: to_native(v) for k, v in self._attrs.items()}

    def __len__(self) -> int:
        return len(self._groups)

    def __repr__(self) -> str:
        c, d, k = self._values.shape
        return (
            f"GroupEffects({k} groups {format_values(self._groups, limit=5)}, {c} chains x "
            f"{d} draws, scale={self._attrs.get('scale')!r})"
        )

    def draws(self) -> np.ndarray:
        """A copy of the draws, shape ``(chain, draw, group)``."""
        return self._values.copy()

    def mean(self) -> pd.Series:
        """Posterior mean of each group's average effect."""
        return pd.Series(self._values.mean(axis=(0, 1)), index=self.groups, name="mean")

    def sd(self) -> pd.Series:
        """Posterior sd of each group's average effect (``ddof=0``)."""
        return pd.Series(self._values.std(axis=(0, 1)), index=self.groups, name="sd")

    def interval(self, prob: float = 0.95, kind: str = "eti") -> pd.DataFrame:
        """Credible interval of each group's average effect (columns ``lower``, ``upper``)."""
        bounds = draw_bounds(self._values, prob, kind)
        return pd.DataFrame(bounds, index=self.groups, columns=["lower", "upper"])

    def prob_benefit(
        self, threshold: float | None = None, higher_is_better: bool = True
    ) -> pd.Series:
        """Share of draws with the group average ``> threshold`` (``<`` if not higher);
        ``threshold`` None: no effect (1 on the time-ratio scale, else 0)."""
        limit = _check_threshold(no_effect(self._attrs) if threshold is None else threshold)
        hits = self._values > limit if higher_is_better else self._values < limit
        return pd.Series(hits.mean(axis=(0, 1)), index=self.groups, name="prob_benefit")

    def summary(
        self, prob: float = 0.95, kind: str = "eti", higher_is_better: bool = True
    ) -> pd.DataFrame:
        """One row per group: ``n, mean, sd, lower, upper, prob_benefit`` (P(average > 0), or
        > 1 for a time ratio; ``<`` if not ``higher_is_better``), indexed by the group labels."""
        table = pd.concat(
            [self.n, self.mean(), self.sd(), self.interval(prob, kind),
             self.prob_benefit(None, higher_is_better)], axis=1,
        )  # fmt: skip
        return table

    def contrasts(
        self, reference: Any = None, *, prob: float = 0.95, kind: str = "eti"
    ) -> pd.DataFrame:
        """Differences between group averages, draw by draw.

        Parameters
        ----------
        reference : group label, optional
            Compare every other group with this one. None: every pair, each later group
            minus each earlier one (in the order of :attr:`groups`).
        prob, kind
            As in :meth:`interval`.

        Returns
        -------
        pandas.DataFrame
            One row per pair: ``group``, ``versus`` (the difference is
            ``average(group) - average(versus)``), ``mean``, ``sd``, ``lower``, ``upper`` and
            ``prob_positive`` = P(difference > 0).
        """
        check_prob_kind(prob, kind)
        k = len(self._groups)
        if reference is None:
            pairs = [(j, i) for i in range(k) for j in range(i + 1, k)]
        else:
            where = [i for i, g in enumerate(self._groups) if g == reference]
            if not where:
                raise KeyError(
                    f"reference={reference!r} is not a group; groups are "
                    f"{format_values(self._groups)}."
                )
            pairs = [(j, where[0]) for j in range(k) if j != where[0]]
        if not pairs:
            raise ValueError("contrasts need at least two groups; there is one.")
        diff = np.stack([self._values[..., a] - self._values[..., b] for a, b in pairs], axis=-1)
        bounds = draw_bounds(diff, prob, kind)
        return pd.DataFrame({
            "group": [self._groups[a] for a, _ in pairs],
            "versus": [self._groups[b] for _, b in pairs],
            "mean": diff.mean(axis=(0, 1)),
            "sd": diff.std(axis=(0, 1)),
            "lower": bounds[:, 0],
            "upper": bounds[:, 1],
            "prob_positive": (diff > 0).mean(axis=(0, 1)),
        })  # fmt: skip

    def to_datatree(self) -> xr.DataTree:
        """An ArviZ-style tree: ``posterior/effect`` with dims ``(chain, draw, group)`` and
        ``constant_data/n``, labels as the ``group`` coordinate (e.g. for
        ``arviz_stats.summary``)."""
        coords = {GROUP_DIM: np.asarray(self._groups.tolist(), dtype=object)}
        if self._groups.inferred_type in ("string", "integer", "floating", "boolean"):
            coords = {GROUP_DIM: np.asarray(self._groups.tolist())}
        posterior = xr.Dataset(
            {"effect": ((*SAMPLE_DIMS, GROUP_DIM), self._values.copy())},
            coords={
                "chain": np.arange(self._values.shape[0]),
                "draw": np.arange(self._values.shape[1]),
                **coords,
            },
        )
        constant = xr.Dataset({"n": ((GROUP_DIM,), self._counts.copy())}, coords=coords)
        tree = xr.DataTree.from_dict({"posterior": posterior, "constant_data": constant})
        tree.attrs = {k: v for k, v in self._attrs.items()}
        return tree
