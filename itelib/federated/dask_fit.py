"""Fit a Dask DataFrame: every partition is a piece of a site, and only summaries travel.

``HierarchicalITE.fit(ddf["y"], ddf["t"], X=ddf[covariates], site=ddf["site"])`` runs the two
rounds of the federated protocol (:mod:`itelib.federated`) as Dask tasks, one per partition:

1. each partition's counts, means, sums of squared deviations, ranges and categorical levels
   (:func:`~itelib.federated.agreement.moments_of`), combined on the client
   (:func:`~itelib.federated.agreement.combine_moments`) into the pooled standardization
   (:func:`~itelib.federated.agree`);
2. each partition's per-site cross-products of the model's design under that agreement
   (:func:`~itelib.federated.summary.encoded_design`), summed on the cluster.

The client receives one small message per partition in round 1 and one ``(S, K + 1, K + 1)``
array in round 2, never a row; the fit from summaries then gives the posterior of a fit on the
pooled rows. The data are read twice (once per round): a cohort generated or loaded lazily is
never held in memory at once.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from itelib.federated.agreement import (
    FEDERATED_OPTIONS,
    Agreement,
    FederatedSpec,
    SiteMoments,
    agree,
    combine_moments,
    moments_of,
    validated,
)
from itelib.federated.summary import SiteSummary, column_names, encoded_design
from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.marginal import FLOAT32_MAX_PATIENTS

__all__ = ["LOCAL_CLUSTER", "dask_client", "fit_dask", "is_dask"]

# The cluster a call without a scheduler (and without an active Client) starts and closes:
# one single-threaded worker process per core (each partition's work is NumPy, one thread).
# (dashboard ":0": any free port; None would take 8787 and clash with another cluster)
LOCAL_CLUSTER: dict[str, Any] = {"threads_per_worker": 1, "processes": True,
                                 "dashboard_address": ":0"}  # fmt: skip


def is_dask(obj: Any) -> bool:
    """A Dask collection (checked without importing Dask when nothing has imported it)."""
    if "dask" not in sys.modules:
        return False
    from dask import is_dask_collection

    return is_dask_collection(obj)


@contextmanager
def dask_client(scheduler: Any = None) -> Iterator[Any]:
    """The client to run on; closes only what it created.

    ``scheduler``: a ``distributed.Client`` (used as is), a scheduler's address (a new Client
    to it, closed after; the cluster stays), or None: the active Client if there is one, else a
    new ``LocalCluster`` (:data:`LOCAL_CLUSTER`), closed after with its Client.
    """
    try:
        import distributed
    except ImportError as err:  # a dependency of itelib; absent only in a broken install
        raise ImportError("a fit on Dask needs distributed: pip install 'itelib[dask]'") from err
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is None:
        try:
            yield distributed.get_client()
            return
        except ValueError:  # no active client: start a local cluster, ours to close
            pass
        cluster = distributed.LocalCluster(**LOCAL_CLUSTER)
        try:
            with distributed.Client(cluster, set_as_default=False) as client:
                yield client
        finally:
            cluster.close()
        return
    if not isinstance(scheduler, str):
        raise TypeError(
            f"scheduler must be a Dask scheduler's address (e.g. 'tcp://10.0.0.5:8786'), a "
            f"distributed.Client or None; got {type(scheduler).__name__}."
        )
    with distributed.Client(scheduler, set_as_default=False) as client:
        yield client


def check_options(est: Any, propensity: Any) -> None:
    """The estimator's options a fit from partition summaries can honour, each refusal naming
    the option and the fix (before any data are read)."""
    name = type(est).__name__
    if est.outcome == "binary":
        raise ValueError(binary_message(name))
    if est.prognostic_score:
        raise ValueError(
            f"{name}(prognostic_score=True) cannot be fitted on a Dask DataFrame: the score is "
            "cross-fitted per patient by gradient-boosted trees on all rows at once. Fix: "
            f"{name}(prognostic_score=False) (prognosis='additive' carries a nonlinear "
            "prognosis instead)."
        )
    for option, allowed in FEDERATED_OPTIONS.items():
        value = getattr(est, option)
        if value not in allowed:
            raise ValueError(
                f"{name}({option}={value!r}) cannot be fitted on a Dask DataFrame: a fit from "
                f"partition summaries needs columns fixed by the agreed standardization and "
                f"ranges. Fix: {name}({option}='linear') or {option}='additive' (pairwise "
                "'interactions', 'piecewise' and 'auto' (products for up to 10 covariates) need "
                "each product's own mean and sd, and 'piecewise' each covariate's median)."
            )
    if propensity is not None:
        raise ValueError(
            f"{name}.fit on a Dask DataFrame takes propensity=None (a randomized trial: the "
            "treatment is centred on the share treated). Fix: propensity=None, or fit the rows "
            "in memory for an estimated or known propensity."
        )
    if est.missing != "refuse":
        raise ValueError(
            f"{name}(missing={est.missing!r}) imputes per patient from all rows; a fit on a Dask "
            f"DataFrame needs complete rows. Fix: {name}(missing='refuse') and impute or drop "
            "incomplete rows per partition (ddf.dropna())."
        )
    from itelib.federated.fit import _check_options

    _check_options(est)  # inference, backend and likelihood, as for fit_summaries


def binary_message(name: str) -> str:
    return (
        f"{name}: a binary (0/1) outcome has no exact fit from partition summaries (the "
        "Bernoulli likelihood needs every row in one process). Fix: bring the rows into memory "
        f"(ddf.compute(), or a sample of it) and fit them there, with {name}(inference='svi', "
        "batch_size=...) when there are too many for NUTS; or "
        f"{name}(outcome='continuous') for a linear probability model."
    )


def _frame(Y: Any, T: Any, X: Any, site: Any, categorical: Any,
           treatment_labels: Any, est: Any) -> tuple[Any, FederatedSpec]:  # fmt: skip
    """One Dask DataFrame of covariates, outcome, treatment and site, and its spec."""
    import dask.dataframe as dd

    name = type(est).__name__
    if not isinstance(X, dd.DataFrame):
        raise TypeError(
            f"{name}.fit on Dask: X must be a Dask DataFrame of the covariates; got "
            f"{type(X).__name__}. Fix: X=ddf[covariates]."
        )
    if site is None:
        raise ValueError(
            f"{name}.fit on a Dask DataFrame needs site=ddf[site_column] (the summaries are "
            "per site). Fix: pass the site column; a single-site cohort can pass a constant one."
        )
    covariates = [str(c) for c in X.columns]
    roles = {}
    for role, obj, default in (("Y", Y, "y"), ("T", T, "t"), ("site", site, "site")):
        if not isinstance(obj, dd.Series):
            raise TypeError(
                f"{name}.fit on Dask: {role} must be a Dask Series from the same DataFrame as "
                f"X; got {type(obj).__name__}. Fix: {role}=ddf[column]."
            )
        label = obj.name if isinstance(obj.name, str) else default
        if label in covariates or label in roles.values():
            raise ValueError(
                f"{name}.fit on Dask: {role}'s column {label!r} is also a covariate in X (or "
                f"another role's). Fix: X=ddf[covariates] without the outcome, treatment and "
                "site columns."
            )
        roles[role] = label
    # category dtype columns are one-hot encoded, as in a fit on rows
    cats = {str(c) for c in categorical} | {
        c for c in covariates if isinstance(X.dtypes[c], pd.CategoricalDtype)
    }
    frame = X.assign(**{roles["Y"]: Y, roles["T"]: T, roles["site"]: site})
    spec = FederatedSpec(
        roles["Y"], roles["T"], tuple(covariates), roles["site"],
        categorical=tuple(c for c in covariates if c in cats), treatment_labels=treatment_labels,
        prognosis=est.prognosis, effect_modifiers=est.effect_modifiers, n_basis=est.n_basis,
        treatment_coding=est.treatment_coding,
    )  # fmt: skip
    return frame, spec


# -- the tasks, one per partition ---------------------------------------------------------------
def _piece_moments(part: pd.DataFrame, spec: FederatedSpec) -> SiteMoments | None:
    if len(part) == 0:
        return None
    # exact extremes (not widened): the rows stay on the user's own cluster
    return moments_of(part, validated(part, spec), spec, widen=False)


def _piece_grams(part: pd.DataFrame, agreement: Agreement) -> tuple[np.ndarray, ...]:
    """(n, n_treated, grams) per agreed site, zeros for sites absent from the partition."""
    n_sites, k = len(agreement.sites), len(column_names(agreement))
    if len(part) == 0:
        return np.zeros(n_sites), np.zeros(n_sites), np.zeros((n_sites, k, k))
    checked = validated(part, agreement.spec)
    design, y = encoded_design(part, checked, agreement)
    order = {label: i for i, label in enumerate(agreement.sites)}
    codes = np.array([order[label] for label in checked.site_index.levels], np.intp)[checked.site]
    n = np.bincount(codes, minlength=n_sites).astype(np.float64)
    n_treated = np.bincount(codes, weights=checked.t, minlength=n_sites)
    return n, n_treated, m.site_grams(design, y, codes, n_sites)


def _total(pieces: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    return tuple(np.sum([p[i] for p in pieces], axis=0) for i in range(3))


def partition_summary(client: Any, frame: Any, spec: FederatedSpec,
                      outcome: str = "auto") -> SiteSummary:  # fmt: skip
    """Both rounds on the cluster; what comes back is the one pooled summary."""
    from dask import delayed

    parts = frame.to_delayed()
    moments = client.gather(client.compute([delayed(_piece_moments)(p, spec) for p in parts]))
    moments = [x for x in moments if x is not None]
    if not moments:
        raise ValueError("the Dask DataFrame has no rows.")
    agreement = agree([combine_moments(moments)])
    values = agreement.outcome_values
    if outcome == "auto" and values is not None and set(values) <= {0.0, 1.0}:
        raise ValueError(binary_message("HierarchicalITE") + f" (outcome {spec.outcome!r} is 0/1)")
    total = delayed(_total)([delayed(_piece_grams)(p, agreement) for p in parts])
    n, n_treated, grams = client.compute(total).result()
    counts = [np.rint(x).astype(np.int64) for x in (n, n_treated)]
    return SiteSummary(agreement, tuple(agreement.sites), *counts, grams, column_names(agreement))


def fit_dask(est: Any, Y: Any, T: Any, *, X: Any, site: Any = None, propensity: Any = None,
             categorical: Any = (), treatment_labels: Any = None,
             scheduler: Any = None) -> Any:  # fmt: skip
    """See :meth:`HierarchicalITE.fit <itelib.HierarchicalITE.fit>` with Dask inputs."""
    from itelib.federated.fit import fit_from_summaries

    check_options(est, propensity)
    frame, spec = _frame(Y, T, X, site, categorical, treatment_labels, est)
    with dask_client(scheduler) as client:
        summary = partition_summary(client, frame, spec, est.outcome)
    n = summary.agreement.n
    if est.precision == "float32" and n > FLOAT32_MAX_PATIENTS:  # asked for, not "auto"
        warnings.warn(
            f"{type(est).__name__}(precision='float32') on {n:,} rows: the model's float32 "
            f"statistics lose digits above about {FLOAT32_MAX_PATIENTS:,} rows (divergences at "
            f"10^7, non-finite draws at 10^8 in benchmarks/dask_cohort.py). Fix: "
            f"{type(est).__name__}(precision='float64'), or 'auto' (the default).",
            UserWarning,
            stacklevel=3,
        )
    # the rows never left the user's cluster: no minimum per column (the per-arm and
    # per-level cells of 3 are still checked by the fit from summaries)
    return fit_from_summaries(est, [summary], min_per_column=1)
