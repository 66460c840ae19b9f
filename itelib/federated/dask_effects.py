"""Patients' effects written back where the rows lie: one Parquet file per Dask partition.

A model fitted on a Dask DataFrame (:mod:`itelib.federated.dask_fit`) holds the posterior's
coefficient draws and the encoder, no row. :func:`effect_to_parquet` sends it to the workers
once and, partition by partition, computes each patient's posterior summary from those draws
(:meth:`~itelib.HierarchicalITE.effect`, in chunks of patients so that the draws of a chunk stay
small) and writes it with the user's id column; no effect draw comes back to the client.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from itelib.federated.dask_fit import dask_client

__all__ = ["EFFECT_COLUMNS", "effect_to_parquet"]

EFFECT_COLUMNS = ("mean", "sd", "lower", "upper", "prob_benefit")
_CHUNK_VALUES = 20_000_000  # draws x patients per chunk: 160 MB of float64 draws


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise ImportError("writing Parquet needs pyarrow: pip install 'itelib[dask]'") from err


def _effect_columns(part: pd.DataFrame, est: Any, covariates: list[str], site: str | None,
                    id_column: str | None, options: dict[str, Any]) -> pd.DataFrame:  # fmt: skip
    """One partition's summary columns (its index kept, the id column first)."""
    draws = est.posterior_["posterior"].sizes["chain"] * est.posterior_["posterior"].sizes["draw"]
    chunk = max(1, _CHUNK_VALUES // draws)
    out = []
    for start in range(0, len(part), chunk):
        rows = part.iloc[start : start + chunk]
        post = est.effect(rows[covariates], site=None if site is None else rows[site].to_numpy())
        bounds = post.interval(options["prob"], options["kind"])
        out.append(pd.DataFrame({
            "mean": np.asarray(post.mean()), "sd": np.asarray(post.sd()),
            "lower": bounds.iloc[:, 0].to_numpy(), "upper": bounds.iloc[:, 1].to_numpy(),
            "prob_benefit": np.asarray(post.prob_benefit(options["threshold"],
                                                         options["higher_is_better"])),
        }, index=rows.index))  # fmt: skip
    frame = pd.concat(out) if out else _empty(part.index)
    if id_column is not None:
        frame.insert(0, id_column, part[id_column].to_numpy())
    return frame


def _empty(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0) for c in EFFECT_COLUMNS}, index=index[:0])


def effect_to_parquet(
    est: Any,
    ddf: Any,
    path: str | os.PathLike[str],
    *,
    id: str | None = None,  # noqa: A002 (the column's role, as users name it)
    site: str | None = None,
    prob: float = 0.95,
    kind: str = "eti",
    threshold: float = 0.0,
    higher_is_better: bool = True,
    scheduler: Any = None,
) -> str:
    """Write every patient's effect summary, partition by partition, as Parquet.

    Parameters
    ----------
    est : HierarchicalITE
        Fitted (on Dask, from summaries, or on rows).
    ddf : dask.dataframe.DataFrame
        The patients: the fitted covariate columns, the site column and ``id``.
    path : str or path-like
        The Parquet dataset's folder (one file per partition).
    id : str, optional
        A column of patient ids written beside the effects; None: the index is written.
    site : str, optional
        The site column; None: the fitted model's site column when the frame has it. Patients
        of a site not seen in fitting get the population effect with the between-site
        uncertainty.
    prob, kind : float, {"eti", "hdi"}
        The credible interval, as in :meth:`EffectPosterior.interval`.
    threshold, higher_is_better : float, bool
        ``prob_benefit``, as in :meth:`EffectPosterior.prob_benefit`.
    scheduler : str, distributed.Client or None
        As in :meth:`HierarchicalITE.fit`.

    Returns
    -------
    str
        ``path``. Columns: ``id`` (when given), ``mean, sd, lower, upper, prob_benefit``.
    """
    _require_pyarrow()
    import dask.dataframe as dd

    est._check_fitted()
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"effect_to_parquet needs a Dask DataFrame; got {type(ddf).__name__}.")
    covariates = list(est.data_.encoder.columns)
    fitted_site = None if est.data_.site_index is None else est.data_.site_index.name
    site = fitted_site if site is None and fitted_site in ddf.columns else site
    needed = list(dict.fromkeys(covariates + [c for c in (site, id) if c is not None]))
    missing = [c for c in needed if c not in ddf.columns]
    if missing:
        raise ValueError(
            f"effect_to_parquet: the Dask DataFrame has no column {missing} (needed: the fitted "
            f"covariates {covariates}, site={site!r}, id={id!r}). Fix: add them, or pass the "
            "site= and id= columns it has."
        )
    options = {"prob": prob, "kind": kind, "threshold": threshold,
               "higher_is_better": higher_is_better}  # fmt: skip
    meta = _empty(ddf._meta.index)
    if id is not None:
        meta.insert(0, id, ddf._meta[id].iloc[:0])
    effects = ddf[needed].map_partitions(_effect_columns, est, covariates, site, id, options,
                                         meta=meta)  # fmt: skip
    with dask_client(scheduler) as client:
        client.compute(effects.to_parquet(os.fspath(path), compute=False)).result()
    return os.fspath(path)
