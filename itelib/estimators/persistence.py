"""Saving and loading fitted estimators: netCDF4 for the arrays, JSON for the rest, never pickle.

One file per estimator, an ``xarray.DataTree`` written with h5netcdf:

- root attributes ``itelib_format`` (``"estimator"``), ``format_version``, ``itelib_version``,
  ``estimator`` (the class name), ``warning`` (:data:`PATIENT_ROWS`: the file holds patient
  rows) and ``metadata``, a JSON document: the estimator's parameters,
  the preprocessing learned from the training data (covariate encoding, site labels, outcome
  and treatment names) and the estimator's own fitted settings;
- group ``training``: the training patients as the model saw them (standardized covariates,
  outcome, treatment, site codes, propensity scores) with their ids, so that ``effect()``,
  ``ate()`` and the predictive checks work after loading;
- the posterior's groups (``posterior``, ``sample_stats``) and any estimator-specific arrays
  (the Bayesian causal forest's trees and cut points). EconML's ``CausalForest`` has no draws
  of its own: its file holds a ``fingerprint`` group instead, and loading refits the forest
  from the training group (:mod:`itelib.models.forest.econml_persistence`).

The file has a 512-byte header in front of the netCDF4 content holding the SHA-256 of every
byte after it (see :mod:`itelib._io`): a file damaged after it was written (a bit flip in an
array or in the JSON metadata, a bad copy, a truncation) is refused with a ``ValueError``
before any parser reads it, rather than read as wrong numbers. Every array's SHA-256 is also
part of the metadata and is checked on loading (all of them: an array missing, added or
changed, or an empty list of checksums, is refused); for files written before the header
existed (still loaded) these array checksums are the only check, and they do not cover the
metadata. Files are written atomically (see :mod:`itelib._io`). A fitted propensity
*classifier* is not saved (scikit-learn models can only be pickled): a loaded model keeps the
training patients' scores, and says so if asked to score new patients' prognosis.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from itelib._io import read_datatree, write_datatree
from itelib._validation import to_native
from itelib.data import CovariateEncoder, SiteIndex, TrialData
from itelib.estimators import model_recipe, registry
from itelib.estimators.fitted import Fit, record_fit
from itelib.exceptions import DataValidationError, RefitMismatchError
from itelib.propensity import PropensityFeature

__all__ = ["FORMAT_VERSION", "PATIENT_ROWS", "load_estimator", "save_estimator"]

FORMAT = "estimator"
FORMAT_VERSION = 1
PATIENT_ROWS = (
    "WARNING: this file holds patient-level rows, the training data (covariates, treatment, "
    "outcome, site and patient ids, in group 'training'). Share it only as you would share "
    "the data set."
)
_PROPENSITY_NOT_SAVED = (
    "this model was loaded from a file, and its propensity classifier was not saved (a "
    "scikit-learn model can only be pickled), so it cannot score new patients' propensity "
    "(needed for their prognosis). Fix: refit with propensity='estimate'"
)


# ----------------------------------------------------------------------------- saving
def save_estimator(est: Any, path: str | os.PathLike[str]) -> Path:
    """Write a fitted estimator to ``path`` atomically (see the module docstring).

    A fit with ``missing="impute"`` is one tree per imputation's fit (groups ``imputation_k``,
    each laid out as a file of its own) beside the training patients as observed (missing
    cells NaN, from which the new-patient imputer is refitted on loading)."""
    est._check_fitted()
    tree = _estimator_tree(est)
    return write_datatree(path, tree, kind="estimator")


def _estimator_tree(est: Any) -> xr.DataTree:
    training, data_meta = _training_group(est.data_, est.propensity_)
    fitted = {
        "outcome": est.outcome_,
        "random_state": est.random_state_,
        "outcome_center": est.outcome_center_,
        "outcome_scale": est.outcome_scale_,
    }
    children = {"training": xr.DataTree(training)}
    if est._pooled:
        fitted["imputation"] = est.imputation_.to_dict()
        for k, sub in enumerate(est.imputations_):
            children[f"imputation_{k}"] = _estimator_tree(sub)
    else:
        own, groups = est._saved_state()
        fitted = own | fitted
        posterior = getattr(est, "posterior_", None)  # None: EconML's forest (refit on load)
        for name, node in ({} if posterior is None else posterior.children).items():
            children[name] = xr.DataTree(node.to_dataset())
        children |= {name: xr.DataTree(ds) for name, ds in groups.items()}
    metadata = {"params": _params_to_json(est), "data": data_meta, "fitted": fitted}
    tree = xr.DataTree(children=children)
    metadata["checksums"] = _checksums(tree)
    tree.attrs = {
        "itelib_format": FORMAT,
        "format_version": FORMAT_VERSION,
        "itelib_version": _version(),
        "estimator": type(est).__name__,
        "warning": PATIENT_ROWS,
        "metadata": json.dumps(metadata, allow_nan=False),
    }
    return tree


def _params_to_json(est: Any) -> dict[str, Any]:
    """Constructor parameters as JSON; priors as their fields; a propensity classifier is not
    kept; another scikit-learn model (CausalForest's ``model_y``) as its class and parameters."""
    out = {}
    for name, value in est.get_params(deep=False).items():
        if name == "propensity_classifier":
            out[name] = None if value is None else {"not_saved": repr(value)}
        elif hasattr(value, "to_dict"):
            out[name] = {"priors": value.to_dict()}
        elif model_recipe.is_model(value):
            out[name] = model_recipe.model_to_json(type(est).__name__, name, value)
        else:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise TypeError(
                    f"cannot save parameter {name}={value!r}: it is not a JSON value. Fix: "
                    "set it to a number, string, bool or None before saving."
                ) from None
            out[name] = value
    return out


def _training_group(
    data: TrialData, score: PropensityFeature | None
) -> tuple[xr.Dataset, dict[str, Any]]:
    ids = data.patient_ids
    if isinstance(ids, pd.MultiIndex):
        raise DataValidationError(
            "cannot save a model whose patient ids are a MultiIndex. Fix: refit on a frame "
            "with a single-level index (df.reset_index())."
        )
    values = np.asarray(ids)
    if values.dtype.kind in "iu":
        kind = "int"
    elif all(isinstance(x, str) for x in values):
        kind, values = "str", values.astype(str)
    else:
        raise DataValidationError(
            f"cannot save a model whose patient ids are of type {values.dtype} (only integers "
            "or strings can be stored in netCDF). Fix: refit with string or integer ids."
        )
    variables: dict[str, Any] = {
        "y": ("patient", data.y),
        "t": ("patient", data.t),
        "X": (("patient", "feature"), data.X),
    }
    if data.site is not None:
        variables["site"] = ("patient", data.site)
    if score is not None:
        variables["propensity"] = ("patient", score.scores)
    coords = {"patient": values, "feature": list(data.feature_names)}
    meta = {
        "encoder": data.encoder.to_dict(),
        "site_index": None if data.site_index is None else data.site_index.to_dict(),
        "outcome_name": data.outcome_name,
        "treatment_name": data.treatment_name,
        "treatment_labels": [to_native(x) for x in data.treatment_labels],
        "patient_ids": {"kind": kind, "name": ids.name},
        "propensity": None if score is None else {"estimated": score.model is not None},
    }
    return xr.Dataset(variables, coords=coords), meta


# ----------------------------------------------------------------------------- loading
def load_estimator(path: str | os.PathLike[str], expected: type | None = None) -> Any:
    """Read an estimator written by :func:`save_estimator`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    expected : type, optional
        The class the caller asked for (``HierarchicalITE.load``); another class in the file
        is an error that names it.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a readable netCDF4 file, not an itelib estimator, from a newer format,
        damaged (its SHA-256 or an array's checksum differs) or truncated.
    """
    tree = read_datatree(path, what="estimator").tree
    where = repr(str(path))
    attrs = tree.attrs
    if attrs.get("itelib_format") != FORMAT:
        hint = (
            " (it looks like a saved EffectPosterior: use EffectPosterior.load)"
            if ("posterior" in tree.children and "training" not in tree.children)
            else ""
        )
        raise ValueError(f"{where} is not a saved itelib estimator{hint}.")
    version = _format_version(attrs.get("format_version"), where)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where} is in estimator format {version}, written by itelib "
            f"{attrs.get('itelib_version', '?')}; this itelib ({_version()}) reads format "
            f"{FORMAT_VERSION}. Fix: load it with the itelib version that wrote it."
        )
    name = attrs.get("estimator")
    if name not in registry.names():
        raise ValueError(f"{where} holds an unknown estimator {name!r}.")
    cls = registry.estimator_class(name)
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(f"{where} holds a {name}, not a {expected.__name__}: use {name}.load.")
    try:
        metadata = json.loads(attrs["metadata"])
        checksums = dict(metadata["checksums"])
        if not checksums:
            raise ValueError("its list of array checksums is empty")
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where} is not a consistent itelib estimator file: {err!r}") from err
    _verify(tree, checksums, where)
    try:
        return _restore(cls, tree, metadata)
    except RefitMismatchError as err:  # a refit on loading (CausalForest) that differs
        raise RefitMismatchError(f"{where}: {err}") from None
    except (KeyError, TypeError, ValueError) as err:  # DataValidationError is a ValueError
        raise ValueError(f"{where} is not a consistent itelib estimator file: {err!r}") from err


def _restore(cls: type, tree: xr.DataTree, metadata: dict[str, Any]) -> Any:
    # a parameter added since the file was written takes the value its model had then
    params = getattr(cls, "_PARAMS_BEFORE_THEY_EXISTED", {}) | dict(metadata["params"])
    if isinstance(params.get("propensity_classifier"), dict):
        params["propensity_classifier"] = None
    if isinstance(params.get("priors"), dict):
        params["priors"] = cls._priors_from_dict(params["priors"]["priors"])
    params = {k: model_recipe.model_from_json(v) for k, v in params.items()}
    est = cls(**params)
    fitted = metadata["fitted"]
    data, score = _data_from_training(tree["training"].to_dataset(), metadata["data"])
    if "imputation" in fitted:  # missing="impute": one fit per imputation
        from itelib.estimators.imputed import ImputationInfo, pool

        info = ImputationInfo.from_dict(fitted["imputation"])
        subs = []
        for k in range(info.n_imputations):
            node = tree[f"imputation_{k}"]
            subs.append(_restore(cls, node, json.loads(node.attrs["metadata"])))
        fit = Fit(None, float(fitted["outcome_center"]), float(fitted["outcome_scale"]))
        record_fit(
            est, data=data, outcome=fitted["outcome"], random_state=int(fitted["random_state"]),
            propensity=score, fit=fit,
        )  # fmt: skip
        pool(est, subs, info)
        return est
    posterior_groups = {k: tree[k].to_dataset() for k in ("posterior", "sample_stats") if k in tree}
    posterior = (  # None: an estimator without draws of its own (EconML's forest)
        xr.DataTree(children={k: xr.DataTree(v) for k, v in posterior_groups.items()})
        if posterior_groups
        else None
    )
    record_fit(
        est, data=data, outcome=fitted["outcome"], random_state=int(fitted["random_state"]),
        propensity=score,
        fit=Fit(posterior, float(fitted["outcome_center"]), float(fitted["outcome_scale"])),
    )  # fmt: skip
    extra = {k: tree[k].to_dataset() for k in tree.children if k not in posterior_groups}
    est._restore_state(fitted, extra)
    return est


def _data_from_training(
    ds: xr.Dataset, meta: dict[str, Any]
) -> tuple[TrialData, PropensityFeature | None]:
    ids_meta = meta["patient_ids"]
    values = ds["patient"].values
    values = values.astype(np.int64) if ids_meta["kind"] == "int" else values.astype(str)
    dtype = object if ids_meta["kind"] == "str" else None
    ids = pd.Index(values, name=ids_meta["name"], dtype=dtype)
    site_index = None if meta["site_index"] is None else SiteIndex.from_dict(meta["site_index"])
    data = TrialData(
        y=ds["y"].values,
        t=ds["t"].values,
        X=ds["X"].values,
        site=ds["site"].values if "site" in ds else None,
        patient_ids=ids,
        encoder=CovariateEncoder.from_dict(meta["encoder"]),
        site_index=site_index,
        outcome_name=meta["outcome_name"],
        treatment_name=meta["treatment_name"],
        treatment_labels=tuple(meta["treatment_labels"]),
    )
    score = None
    if meta["propensity"] is not None:
        reason = _PROPENSITY_NOT_SAVED if meta["propensity"]["estimated"] else None
        score = PropensityFeature(ds["propensity"].values, missing_model_reason=reason)
    return data, score


# ----------------------------------------------------------------------------- integrity
def _checksums(tree: xr.DataTree) -> dict[str, str]:
    out = {}
    for node in tree.subtree:
        ds = node.to_dataset()
        for name, var in {**ds.coords, **ds.data_vars}.items():
            out[f"{node.path}/{name}"] = _digest(var.values)
    return out


def _verify(tree: xr.DataTree, expected: dict[str, str], where: str) -> None:
    found = _checksums(tree)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ValueError(f"{where} is incomplete: arrays {missing[:5]} are missing.")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ValueError(
            f"{where} is damaged: it holds arrays {extra[:5]} that were not saved in it. Fix: "
            "use another copy of the file, or refit."
        )
    damaged = sorted(k for k in expected if found[k] != expected[k])
    if damaged:
        raise ValueError(
            f"{where} is damaged: the contents of {damaged[:5]} differ from what was saved "
            "(checksum mismatch). Fix: use another copy of the file, or refit."
        )


def _digest(values: np.ndarray) -> str:
    """SHA-256 of an array's content in a canonical form that survives the netCDF round trip."""
    values = np.asarray(values)
    h = hashlib.sha256(str(values.shape).encode())
    if values.dtype.kind in "OUS":
        h.update("\x1f".join(str(x) for x in values.reshape(-1)).encode())
    elif values.dtype.kind == "f":
        h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    else:
        h.update(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return h.hexdigest()


def _format_version(raw: Any, where: str) -> int:
    """The file's ``format_version`` attribute as an int; anything but an integer is refused."""
    if isinstance(raw, np.ndarray) and raw.size == 1:
        raw = raw.reshape(-1)[0]
    if isinstance(raw, (int, np.integer)) and not isinstance(raw, (bool, np.bool_)):
        return int(raw)
    raise ValueError(
        f"{where} has format_version {raw!r}, not an integer: it is damaged or was not "
        "written by itelib. Fix: use another copy of the file, or refit."
    )


def _version() -> str:
    from itelib.posterior import _itelib_version

    return _itelib_version()
