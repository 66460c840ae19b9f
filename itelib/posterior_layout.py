"""The layout of an effect posterior's DataTree, and the checks every posterior passes.

Group ``posterior``, variable ``effect``, dims ``(chain, draw, patient)`` (``(chain, draw)`` for a
population average), coordinate ``patient`` = the user's ids, and the root attributes that say what
the numbers mean. :class:`~itelib.posterior.EffectPosterior` builds, loads and wraps trees only
through :func:`validate_tree`, so a tree from a file or from a user is held to the same rules.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from itelib._validation import check_id_kind, check_unique_ids, format_ids, format_values
from itelib.exceptions import DataValidationError

__all__ = [
    "GROUP", "INFERENCE_KINDS", "NORMAL_GROUP", "PATIENT_DIM", "REQUIRED_ATTRS", "SAMPLE_DIMS",
    "SCALES", "VARIABLE", "as_draws", "as_patient_ids", "canonical", "check_attrs",
    "check_finite", "validate_tree",
]  # fmt: skip

GROUP = "posterior"
VARIABLE = "effect"
NORMAL_GROUP = "normal_approximation"  # mean and sd of a normal posterior: exact intervals
PATIENT_DIM = "patient"
SAMPLE_DIMS = ("chain", "draw")
SCALES = ("outcome", "risk_difference", "log_odds_ratio", "rmst", "survival", "time_ratio")
INFERENCE_KINDS = ("mcmc", "variational", "normal_approximation")
REQUIRED_ATTRS = ("scale", "outcome", "estimator", "inference", "patient_index_name")


def as_draws(draws: Any) -> np.ndarray:
    """Copy draws into a float32/float64 array of shape (chain, draw[, patient])."""
    values = np.array(draws, copy=True)
    if values.dtype.kind not in "biuf":
        raise DataValidationError(f"draws must be real numbers; got dtype {values.dtype}.")
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    if values.ndim not in (2, 3) or 0 in values.shape:
        raise DataValidationError(
            f"draws must have shape (chain, draw, patient) or (chain, draw) with no empty axis; "
            f"got shape {values.shape}. Fix: keep the chain axis, e.g. draws[None] for one chain."
        )
    return values


def as_patient_ids(patient_ids: Any, n: int) -> tuple[np.ndarray, str]:
    """Validate patient ids; return them as a NumPy array (int, float or <U) and the index name."""
    if patient_ids is None:
        return np.arange(n), ""
    if n == 0:
        raise DataValidationError("patient_ids was given but draws have no patient axis.")
    index = pd.Index(patient_ids)
    if len(index) != n:
        raise DataValidationError(
            f"patient_ids has {len(index)} ids but draws has {n} patients (its last axis). "
            "Fix: pass one id per patient, in the order of the draws' last axis."
        )
    if index.isna().any():
        raise DataValidationError(f"patient_ids has {int(index.isna().sum())} missing ids.")
    check_unique_ids(index, argument="patient_ids")
    kind = check_id_kind(index, label="patient_ids")  # the rule fit and effect apply
    if kind == "string":
        values = np.array(index.tolist(), dtype=str)
    else:
        values = index.to_numpy()
        if values.dtype == object:
            values = values.astype(np.int64 if kind == "integer" else np.float64)
    name = "" if index.name is None else str(index.name)
    return values, name


def check_finite(values: np.ndarray, ids: np.ndarray | None) -> None:
    """Raise DataValidationError when any draw is NaN or infinite."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    where = "the population-average effect"
    if values.ndim == 3 and ids is not None:
        where = format_ids(pd.Index(ids), bad.any(axis=(0, 1)))
    raise DataValidationError(
        f"effect draws contain {int(bad.sum())} non-finite value(s) (NaN or inf) for {where}. "
        "itelib never lets NaN through. Fix: check the model's output (divergences, overflow, "
        "an extreme covariate) before building a posterior."
    )


def check_attrs(attrs: Mapping[str, Any]) -> None:
    """Check root attributes: required keys, known values, netCDF-storable types."""
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"root attributes {format_values(missing)} are missing.")
    for key, allowed in (("scale", SCALES), ("inference", INFERENCE_KINDS)):
        if attrs[key] not in allowed:
            raise ValueError(f"attribute {key}={attrs[key]!r} is not one of {allowed}.")
    for key, value in attrs.items():
        ok = isinstance(value, str | numbers.Real) and not isinstance(value, bool | np.bool_)
        if not isinstance(key, str) or not ok:
            raise DataValidationError(
                f"attribute {key!r} = {value!r} ({type(value).__name__}) cannot be stored "
                "losslessly in netCDF. Fix: use str keys and str, int or float values."
            )


def canonical(tree: xr.DataTree) -> xr.DataTree:
    """Drop file encodings; store string ids as the shortest ``<U`` dtype, as netCDF reads them
    back, so that a save/load round trip keeps the dtype exactly."""

    def fix(ds: xr.Dataset) -> xr.Dataset:
        ds = ds.drop_encoding()
        if PATIENT_DIM in ds.coords and ds[PATIENT_DIM].dtype.kind in "UO":
            ids = np.array(ds[PATIENT_DIM].to_numpy().tolist(), dtype=str)
            ds = ds.assign_coords({PATIENT_DIM: ids})
        return ds

    return tree.map_over_datasets(fix)


def validate_tree(tree: xr.DataTree) -> None:
    """Raise ValueError naming what a tree lacks to be an EffectPosterior."""
    if GROUP not in tree.children:
        raise ValueError(f"missing group {GROUP!r} (groups found: {list(tree.children)}).")
    node = tree[GROUP]
    if VARIABLE not in node.data_vars:
        raise ValueError(
            f"group {GROUP!r} has no variable {VARIABLE!r} (variables: {list(node.data_vars)})."
        )
    da = node[VARIABLE]
    if da.dims not in (SAMPLE_DIMS, (*SAMPLE_DIMS, PATIENT_DIM)) or 0 in da.shape:
        raise ValueError(
            f"variable {VARIABLE!r} has dims {da.dims} and shape {da.shape}; expected non-empty "
            f"dims {(*SAMPLE_DIMS, PATIENT_DIM)} or {SAMPLE_DIMS}."
        )
    if da.dtype not in (np.float32, np.float64):
        raise ValueError(f"variable {VARIABLE!r} has dtype {da.dtype}; expected float32/64.")
    ids = None
    if PATIENT_DIM in da.dims:
        if PATIENT_DIM not in da.indexes or da[PATIENT_DIM].dtype.kind not in "iufU":
            raise ValueError(f"missing int or str coordinate {PATIENT_DIM!r} (the patient ids).")
        ids = da[PATIENT_DIM].to_numpy()
        check_unique_ids(pd.Index(ids), argument=f"coordinate {PATIENT_DIM!r}")
    check_attrs(tree.attrs)
    check_finite(da.to_numpy(), ids)
    if NORMAL_GROUP in tree.children:
        validate_normal(tree, da.dims[len(SAMPLE_DIMS) :])


def validate_normal(tree: xr.DataTree, dims: tuple[str, ...]) -> None:
    """The normal group: ``mean`` and ``sd`` shaped like one draw, finite, sd >= 0."""
    node = tree[NORMAL_GROUP]
    if tree.attrs["inference"] != "normal_approximation":
        raise ValueError(
            f"group {NORMAL_GROUP!r} belongs to inference='normal_approximation' posteriors; "
            f"this one says inference={tree.attrs['inference']!r}."
        )
    for name in ("mean", "sd"):
        if name not in node.data_vars or node[name].dims != dims:
            raise ValueError(f"group {NORMAL_GROUP!r} needs variable {name!r} with dims {dims}.")
        values = node[name].to_numpy()
        if not np.isfinite(values).all() or (name == "sd" and (values < 0).any()):
            raise ValueError(f"{NORMAL_GROUP}/{name} must be finite (and sd >= 0).")
