"""EffectPosterior: posterior draws of treatment effects in an ArviZ-style ``xarray.DataTree``.

Group ``posterior``, variable ``effect``, dims ``(chain, draw, patient)`` (``(chain, draw)`` for
a population average such as the ATE), coordinate ``patient`` = the user's ids; root attributes
say what the numbers mean (``scale``, ``outcome``) and how they were made (``inference``).
"""

from __future__ import annotations

import importlib.metadata
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import arviz_base
import arviz_stats  # noqa: F401  (registers the ``.azstats`` accessor)
import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from itelib._io import read_datatree, write_datatree
from itelib._validation import check_unique_ids, format_values, to_native
from itelib.exceptions import DataValidationError
from itelib.groups import GroupEffects, group_codes, is_boolean_mask, patient_mask
from itelib.inference.convergence import ess_bulk, rhat_rank
from itelib.posterior_layout import (
    GROUP,
    NORMAL_GROUP,
    PATIENT_DIM,
    SAMPLE_DIMS,
    VARIABLE,
    as_draws,
    as_patient_ids,
    canonical,
    check_attrs,
    check_finite,
    validate_tree,
)  # fmt: skip
from itelib.survival_outcome import no_effect

__all__ = ["EffectPosterior", "GroupEffects"]

_DIAGNOSTICS_CHUNK = 1024  # patients per vectorized R-hat/ESS call: ~0.5 GB of temporaries
INTERVAL_KINDS = ("eti", "hdi")


def _itelib_version() -> str:
    try:
        return importlib.metadata.version("itelib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class EffectPosterior:
    """Posterior draws of treatment effects, one column of draws per patient.

    Parameters
    ----------
    tree : xarray.DataTree
        Group ``posterior`` with variable ``effect`` of dims ``(chain, draw, patient)`` or
        ``(chain, draw)``, coordinate ``patient`` and root attributes ``scale``, ``outcome``,
        ``estimator``, ``inference`` and ``patient_index_name``. The tree is copied.

    Raises
    ------
    ValueError
        If the tree lacks a group, variable, dimension, coordinate or attribute
        (:class:`~itelib.exceptions.DataValidationError` for non-finite draws).
    """

    def __init__(self, tree: xr.DataTree) -> None:
        if not isinstance(tree, xr.DataTree):
            raise TypeError(f"expected an xarray.DataTree; got {type(tree).__name__}.")
        self._tree = canonical(tree.copy(deep=True))
        validate_tree(self._tree)

    @classmethod
    def _wrap(cls, tree: xr.DataTree) -> EffectPosterior:
        """Build from a tree nobody else holds (no copy)."""
        obj = cls.__new__(cls)
        obj._tree = canonical(tree)
        validate_tree(obj._tree)
        return obj

    @classmethod
    def from_draws(
        cls,
        draws: Any,
        *,
        patient_ids: Any = None,
        attrs: Mapping[str, Any] | None = None,
        groups: Mapping[str, Mapping[str, Any]] | None = None,
        dims: Mapping[str, Sequence[str]] | None = None,
    ) -> EffectPosterior:
        """Build a posterior from an array of draws with ``arviz_base.from_dict``.

        Parameters
        ----------
        draws : array_like
            Shape ``(chain, draw, patient)``, or ``(chain, draw)`` for a population average.
            Copied; integers are cast to float64, float32 is kept.
        patient_ids : array_like or pandas.Index, optional
            One int or str id per patient (default ``0..n-1``); an Index's name is kept.
        attrs : mapping, optional
            Root attributes, overriding the defaults ``scale="outcome"``,
            ``outcome="unknown"``, ``estimator="unknown"``, ``inference="mcmc"``.
        groups : mapping, optional
            Extra groups (e.g. ``sample_stats``, ``observed_data``): group name to a mapping of
            variable name to array, passed to ``from_dict`` (arrays are copied).
        dims : mapping, optional
            Dims of variables in ``groups`` (e.g. ``{"y": ["patient"]}``), for ``from_dict``.

        Returns
        -------
        EffectPosterior
        """
        values = as_draws(draws)
        has_patients = values.ndim == 3
        ids, index_name = as_patient_ids(patient_ids, values.shape[-1] if has_patients else 0)
        check_finite(values, ids if has_patients else None)
        root = {"scale": "outcome", "outcome": "unknown", "estimator": "unknown"}
        root |= {"inference": "mcmc", "patient_index_name": index_name}
        root |= {"itelib_version": _itelib_version(), **(attrs or {})}
        check_attrs(root)
        if GROUP in (groups or {}):
            raise ValueError(f"groups must not contain {GROUP!r}; pass the draws instead.")
        data = {k: {v: np.array(a) for v, a in g.items()} for k, g in (groups or {}).items()}
        data[GROUP] = {VARIABLE: values}
        tree = arviz_base.from_dict(
            data,
            dims={**(dims or {}), VARIABLE: [PATIENT_DIM] if has_patients else []},
            coords={PATIENT_DIM: ids} if has_patients else None,
            attrs={"/": root},
            # the axes are (chain, draw) by contract; skip ArviZ's guess that warns when there
            # are more chains than draws (legal, e.g. many short vectorized chains)
            check_conventions=False,
        )
        return cls._wrap(tree)

    @classmethod
    def from_normal(
        cls,
        mean: Any,
        sd: Any,
        *,
        num_draws: int,
        rng: np.random.Generator,
        patient_ids: Any = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> EffectPosterior:
        """A normal approximation N(mean, sd^2) whose intervals are exact.

        The draws sit at the normal's quantiles ``(i + 1/2) / num_draws`` (one chain, in an
        order shuffled by ``rng``, independently per patient), so their mean is ``mean`` and
        summaries carry no Monte Carlo noise; ``mean`` and ``sd`` are stored in the group
        ``normal_approximation`` and :meth:`interval` reads them, so it returns the normal's
        own quantiles (``eti`` and ``hdi`` coincide for a normal), not the draws'.

        Parameters
        ----------
        mean, sd : float or array_like of shape (patient,)
            A scalar makes a population-average posterior.
        num_draws : int
        rng : numpy.random.Generator
            Only orders the draws.
        patient_ids, attrs
            As in :meth:`from_draws`; ``inference`` is set to ``"normal_approximation"``.
        """
        mean, sd = np.asarray(mean, dtype=np.float64), np.asarray(sd, dtype=np.float64)
        if mean.shape != sd.shape or mean.ndim > 1:
            raise ValueError(f"mean and sd must be one scalar or one vector each; got "
                             f"shapes {mean.shape} and {sd.shape}.")  # fmt: skip
        if not (np.isfinite(mean).all() and np.isfinite(sd).all() and (sd >= 0).all()):
            raise DataValidationError("mean and sd must be finite, with sd >= 0.")
        z = special.ndtri((np.arange(num_draws) + 0.5) / num_draws)
        z = rng.permuted(np.broadcast_to(z, (max(mean.size, 1), num_draws)), axis=1)
        draws = mean[..., None] + sd[..., None] * z.reshape(*mean.shape, num_draws)
        draws = np.moveaxis(draws, -1, 0)[None]  # (chain=1, draw[, patient])
        post = cls.from_draws(
            draws,
            patient_ids=patient_ids,
            attrs={**(attrs or {}), "inference": "normal_approximation"},
        )
        dims = [PATIENT_DIM] if mean.ndim else []
        coords = {PATIENT_DIM: post._effect[PATIENT_DIM].to_numpy()} if mean.ndim else {}
        normal = xr.Dataset({"mean": (dims, mean), "sd": (dims, sd)}, coords=coords)
        tree = post._tree.copy()
        tree[NORMAL_GROUP] = xr.DataTree(normal)
        return cls._wrap(tree)

    # ----------------------------------------------------------------------- basic facts
    @property
    def _effect(self) -> xr.DataArray:
        return self._tree[GROUP][VARIABLE]

    @property
    def _has_patients(self) -> bool:
        return PATIENT_DIM in self._effect.dims

    @property
    def n_patients(self) -> int:
        """Number of patients (0 for a population-average posterior)."""
        return self._effect.sizes.get(PATIENT_DIM, 0)

    @property
    def patient_ids(self) -> pd.Index:
        """Patient ids (empty for a population-average posterior), named as the user's index."""
        values = self._effect[PATIENT_DIM].to_numpy() if self._has_patients else []
        return pd.Index(values, name=self._tree.attrs["patient_index_name"] or None, copy=True)

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of the root attributes, as plain Python values."""
        return {k: to_native(v) for k, v in self._tree.attrs.items()}

    def __len__(self) -> int:
        return self.n_patients

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        who = f"{self.n_patients} patients" if self._has_patients else "population average"
        a, size = self._tree.attrs, self._effect.sizes
        return (
            f"EffectPosterior({who}, {size['chain']} chains x {size['draw']} draws, "
            f"scale={a['scale']!r}, inference={a['inference']!r})"
        )

    def draws(self) -> np.ndarray:
        """Return a copy of the draws, shape ``(chain, draw, patient)`` or ``(chain, draw)``."""
        return self._effect.to_numpy().copy()

    # ----------------------------------------------------------------------- summaries
    def _per_patient(self, values: np.ndarray, name: str) -> pd.Series | float:
        if not self._has_patients:
            return float(values)
        return pd.Series(np.asarray(values, dtype=np.float64), index=self.patient_ids, name=name)

    def mean(self) -> pd.Series | float:
        """Posterior mean effect per patient (a float for a population average)."""
        return self._per_patient(self._effect.to_numpy().mean(axis=(0, 1), dtype=float), "mean")

    def sd(self) -> pd.Series | float:
        """Posterior standard deviation per patient (``ddof=0``, as ArviZ's summary)."""
        return self._per_patient(self._effect.to_numpy().std(axis=(0, 1), dtype=float), "sd")

    def _bounds(self, prob: float, kind: str) -> np.ndarray:
        if isinstance(prob, bool) or not isinstance(prob, numbers.Real) or not 0 < prob < 1:
            raise ValueError(f"prob must be a number strictly between 0 and 1; got {prob!r}.")
        if kind not in INTERVAL_KINDS:
            raise ValueError(f"kind must be one of {INTERVAL_KINDS}; got {kind!r}.")
        if NORMAL_GROUP in self._tree.children:  # exact: the normal's quantiles (eti = hdi)
            node, tail = self._tree[NORMAL_GROUP], (1 - float(prob)) / 2
            mean, sd = node["mean"].to_numpy()[..., None], node["sd"].to_numpy()[..., None]
            return mean + sd * special.ndtri([tail, 1 - tail])
        accessor = self._effect.azstats
        method = accessor.eti if kind == "eti" else accessor.hdi
        ci = method(prob=float(prob), dim=list(SAMPLE_DIMS))
        return np.stack([ci.sel(ci_bound="lower"), ci.sel(ci_bound="upper")], axis=-1)

    def interval(self, prob: float = 0.95, kind: str = "eti") -> pd.DataFrame | tuple[float, float]:
        """Credible interval per patient: equal-tailed (``"eti"``) or highest-density (``"hdi"``).

        A posterior built by :meth:`from_normal` returns its normal's exact quantiles (both
        kinds coincide); any other, the interval of its draws.

        Returns
        -------
        pandas.DataFrame or tuple of float
            Columns ``lower``, ``upper`` indexed by patient id; a tuple for a population average.
        """
        bounds = self._bounds(prob, kind).astype(np.float64)
        if not self._has_patients:
            return float(bounds[0]), float(bounds[1])
        return pd.DataFrame(bounds, index=self.patient_ids, columns=["lower", "upper"])

    def _share(self, threshold: float | None, above: bool) -> np.ndarray:
        if threshold is None:  # no effect: a ratio of 1 on the time-ratio scale, else 0
            threshold = no_effect(self.attrs)
        if not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number; got {threshold!r}.")
        values, limit = self._effect.to_numpy(), np.float64(threshold)  # compare in float64
        hits = values > limit if above else values < limit
        return hits.mean(axis=(0, 1))

    def prob_benefit(
        self, threshold: float | None = None, higher_is_better: bool = True
    ) -> pd.Series | float:
        """Share of draws with ``effect > threshold`` (``<`` if not ``higher_is_better``).

        ``threshold`` None: no effect, 0 (1 for a survival outcome's ``scale="time_ratio"``).

        Returns
        -------
        pandas.Series or float
            Per patient id (a float for a population average).
        """
        return self._per_patient(self._share(threshold, higher_is_better), "prob_benefit")

    def prob_harm(
        self, threshold: float | None = None, higher_is_better: bool = True
    ) -> pd.Series | float:
        """Posterior probability that the effect is strictly on the harm side of ``threshold``.

        The complement of :meth:`prob_benefit` except for draws exactly at ``threshold``.
        """
        return self._per_patient(self._share(threshold, not higher_is_better), "prob_harm")

    def _diagnostics(self) -> tuple[np.ndarray, np.ndarray]:
        """Bulk ESS and rank-normalized split R-hat per patient (arviz-stats' estimators,
        vectorized), computed for ``_DIAGNOSTICS_CHUNK`` patients at a time to bound memory."""
        values = self._effect.to_numpy()
        flat = values.reshape(*values.shape[:2], -1)
        starts = range(0, flat.shape[2], _DIAGNOSTICS_CHUNK)
        chunks = [flat[:, :, i : i + _DIAGNOSTICS_CHUNK] for i in starts]
        ess = np.concatenate([ess_bulk(c) for c in chunks])
        rhat = np.concatenate([rhat_rank(c) for c in chunks])
        return ess, rhat

    def summary(
        self,
        prob: float = 0.95,
        kind: str = "eti",
        higher_is_better: bool = True,
        threshold: float | None = None,
    ) -> pd.DataFrame:
        """Posterior summaries and convergence diagnostics (arguments as in :meth:`interval`
        and :meth:`prob_benefit`: ``prob_benefit`` is the share of draws beyond
        ``threshold``, e.g. a minimal clinically important difference).

        Returns
        -------
        pandas.DataFrame
            Columns ``mean, sd, lower, upper, prob_benefit, ess_bulk, r_hat``, indexed by
            patient id (one row named ``effect`` for a population average). ``r_hat`` is NaN
            with one chain or fewer than 4 draws, and where the draws are constant.
        """
        bounds = self._bounds(prob, kind).reshape(-1, 2)
        values = self._effect.to_numpy()
        ess, rhat = self._diagnostics()
        columns = {
            "mean": values.mean(axis=(0, 1), dtype=float),
            "sd": values.std(axis=(0, 1), dtype=float),
            "lower": bounds[:, 0],
            "upper": bounds[:, 1],
            "prob_benefit": self._share(threshold, higher_is_better),
            "ess_bulk": ess,
            "r_hat": rhat,
        }
        index = self.patient_ids if self._has_patients else pd.Index([VARIABLE])
        columns = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in columns.items()}
        return pd.DataFrame(columns, index=index)

    # ----------------------------------------------------------------------- subsets, groups
    def _require_patients(self, what: str) -> None:
        if not self._has_patients:
            raise ValueError(f"a population-average posterior has no patients to {what}.")

    def _require_joint_draws(self, what: str) -> None:
        """Averages need draws that are joint across patients; a per-patient normal
        approximation (EconML's forest) has independent draws, whose average's interval would
        ignore the correlation of the estimator's errors and be far too narrow (measured: a
        100-patient average (0.80, 0.92) where the doubly robust ATE gave (0.48, 1.57))."""
        if self.attrs.get("inference") == "normal_approximation":
            raise ValueError(
                f"cannot {what} a normal approximation: its draws are independent from patient "
                "to patient, so an average's interval would ignore the correlation of the "
                "estimator's errors and be too narrow. Fix: CausalForest.ate(), att() or atc() "
                "(EconML's doubly robust averages), or a Bayesian estimator (HierarchicalITE, "
                "BayesianCausalForest), whose draws are joint."
            )

    def sel(self, patients: Any) -> EffectPosterior:
        """Posterior of a subset of patients: ids in the order given, or a boolean mask.

        Parameters
        ----------
        patients : id, list of ids, or boolean mask
            A boolean array or list (one entry per patient, in the order of
            :attr:`patient_ids`) or a boolean pandas Series (aligned by patient id) keeps the
            patients where it is True, in the posterior's order.

        Raises
        ------
        KeyError
            If any id is unknown (the message lists them).
        DataValidationError
            A mask of the wrong length, with missing values, or selecting no patient.
        """
        self._require_patients("select")
        if is_boolean_mask(patients):
            mask = patient_mask(patients, self.patient_ids, argument="patients")
            return self._wrap(self._tree.isel({PATIENT_DIM: np.flatnonzero(mask)}))
        if isinstance(patients, str | bytes) or not pd.api.types.is_list_like(patients):
            patients = [patients]
        wanted = pd.Index(list(patients))
        unknown = wanted[~wanted.isin(self.patient_ids)]
        if len(unknown):
            raise KeyError(f"unknown patient ids {format_values(unknown)} ({len(unknown)} in all)")
        check_unique_ids(wanted, argument="patients")
        return self._wrap(self._tree.sel({PATIENT_DIM: wanted.to_numpy()}))

    def average(self, where: Any = None) -> EffectPosterior:
        """Posterior of the average effect over a set of patients.

        Draw by draw, the mean of the chosen patients' effects: the posterior of their sample
        average effect, with the correlation between patients kept. A normal approximation
        (``inference="normal_approximation"``, :class:`CausalForest`) is refused: its draws
        are independent between patients, so an average's interval would be too narrow;
        ``CausalForest.ate()``, ``att()`` and ``atc()`` give EconML's doubly robust averages.

        Parameters
        ----------
        where : None, boolean mask, or patient ids
            None: every patient. A boolean array or list: one entry per patient, in the order
            of :attr:`patient_ids`. A boolean pandas Series: aligned by patient id. Otherwise
            an id or a list of ids.

        Returns
        -------
        EffectPosterior
            Dims ``(chain, draw)``; attributes ``quantity="average_effect"`` and
            ``n_patients`` (the size of the set), the rest as this posterior's.

        Raises
        ------
        KeyError
            Unknown ids (the message names a few).
        DataValidationError
            A mask of the wrong length or with missing values, repeated ids, an empty set.
        """
        self._require_patients("average")
        self._require_joint_draws("average")
        mask = patient_mask(where, self.patient_ids)
        values = self._effect.to_numpy()
        draws = values.mean(axis=2) if mask.all() else values[:, :, mask].mean(axis=2)
        attrs = {**self._tree.attrs, "quantity": "average_effect", "n_patients": int(mask.sum())}
        return EffectPosterior.from_draws(draws, attrs=attrs)

    def groupby(self, labels: Any) -> GroupEffects:
        """Posterior of each group's average effect, and their differences.

        Parameters
        ----------
        labels : pandas.Series or 1-d array_like
            The group of each patient. A Series is aligned by its index (the patient ids;
            extra ids are ignored, a missing one is an error); an array has one label per
            patient, in the order of :attr:`patient_ids`. Groups keep the label values and
            come in the categories' order for a categorical (unused categories dropped), else
            in the order the labels first appear: pass a categorical to choose the order.

        Returns
        -------
        GroupEffects
            ``summary()`` (n, mean, sd, interval, P(average > 0) per group), ``contrasts()``
            (pairwise differences, with P(difference > 0)), ``draws()`` of shape
            ``(chain, draw, group)``; a normal approximation is refused, as in :meth:`average`.

        Raises
        ------
        DataValidationError
            Labels of the wrong length, missing for some patients, or not 1-d.
        """
        self._require_patients("group")
        self._require_joint_draws("group")
        codes, levels = group_codes(labels, self.patient_ids)
        values = self._effect.to_numpy()
        draws = np.stack(
            [values[:, :, codes == k].mean(axis=2) for k in range(len(levels))], axis=-1
        )
        counts = np.bincount(codes, minlength=len(levels))
        return GroupEffects(draws, levels, counts, attrs=dict(self._tree.attrs))

    def to_datatree(self) -> xr.DataTree:
        """Return a deep copy of the underlying ``xarray.DataTree``."""
        return self._tree.copy(deep=True)

    def to_inference_data(self) -> Any:
        """Convert to a legacy ``arviz.InferenceData`` (needs ``arviz<1``)."""
        try:
            from arviz import InferenceData  # absent from arviz >= 1.0
        except ImportError as err:
            raise ImportError(
                "to_inference_data() needs the legacy ArviZ package (InferenceData). "
                "Install it with: pip install 'arviz<1'"
            ) from err
        tree = self.to_datatree()
        groups = {name: node.to_dataset() for name, node in tree.children.items()}
        return InferenceData(attrs=dict(tree.attrs), **groups)

    # ----------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the posterior to a netCDF4 file (h5netcdf), atomically; never pickles.

        The file starts with a 512-byte header holding the SHA-256 of the rest (see
        :mod:`itelib._io`): :meth:`load` refuses a file changed in any byte. xarray, h5py and
        the HDF5 tools open it as an ordinary netCDF4 file.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        return write_datatree(path, self._tree, kind="posterior")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EffectPosterior:
        """Read a posterior written by :meth:`save`, fully into memory, and close the file.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            If the file is damaged (its SHA-256 differs), truncated, not a readable netCDF4
            file or not an itelib posterior. Files saved before the header existed are read
            without that check.
        """
        tree = read_datatree(path, what="posterior").tree
        try:
            return cls._wrap(tree)
        except ValueError as err:
            raise type(err)(f"{str(path)!r} is not an itelib EffectPosterior: {err}") from err
