"""Fit without moving patient rows: site summaries for the continuous hierarchical model.

The protocol (README.md, "Federated sites", and examples/federated_sites.py)::

    # round 1, at each site                     # the coordinator
    moments = site_moments(df_site, spec)   ->  agreement = agree([moments, ...])
    # round 2, at each site
    write_summary(site_summary(df_site, agreement), "site_a.nc")
                                            ->  est = HierarchicalITE(prognostic_score=False, ...)
                                                est.fit_summaries(["site_a.nc", ...])
    # back at a site: est.effect(X_site, site="A")

Only counts, moments, ranges, categorical levels and cross-products of the model's design
leave a site; sites below a minimum size are refused (:data:`MIN_PER_COLUMN`). An
experimental differential-privacy mode (:mod:`itelib.federated.privacy`) is not calibrated yet.

A Dask DataFrame is fitted by the same two rounds, one task per partition
(:mod:`itelib.federated.dask_fit`, through ``HierarchicalITE.fit``), and its patients' effects
are written back per partition by :func:`effect_to_parquet`.
"""

from itelib.federated.agreement import (
    FORMAT_VERSION,
    Agreement,
    FederatedSpec,
    SiteMoments,
    agree,
    site_moments,
)
from itelib.federated.dask_effects import effect_to_parquet
from itelib.federated.privacy import PrivacyBudget
from itelib.federated.summary import (
    MIN_CELL,
    MIN_PER_COLUMN,
    SiteSummary,
    read_summary,
    site_summary,
    write_summary,
)

__all__ = [
    "FORMAT_VERSION",
    "MIN_CELL",
    "MIN_PER_COLUMN",
    "Agreement",
    "FederatedSpec",
    "PrivacyBudget",
    "SiteMoments",
    "SiteSummary",
    "agree",
    "effect_to_parquet",
    "read_summary",
    "site_moments",
    "site_summary",
    "write_summary",
]
