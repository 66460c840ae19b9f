"""The one writer of the state every fitted estimator shares (``fit`` and ``load`` call it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Fit", "record_fit"]


@dataclass(frozen=True)
class Fit:
    """What an estimator's sampling hook learned, beyond the data.

    Attributes
    ----------
    posterior : xarray.DataTree or None
        ArviZ groups of the draws (``posterior``, ``sample_stats``, ...); None for an estimator
        without draws of its own (EconML's forest).
    outcome_center, outcome_scale : float
        How the outcome was standardized for the model (0 and 1: not at all).
    state : mapping of str to object
        Estimator-specific fitted attributes, names ending in ``_`` (trees, feature maps, ...).
    """

    posterior: Any = None
    outcome_center: float = 0.0
    outcome_scale: float = 1.0
    state: Mapping[str, Any] = field(default_factory=dict)


def record_fit(
    est: Any, *, data: Any, outcome: str, random_state: int, propensity: Any, fit: Fit
) -> None:
    """Set the fitted attributes of ``est``: the common ones, then ``fit.state``."""
    bad = [name for name in fit.state if not name.endswith("_") or name.startswith("_")]
    if bad:
        raise ValueError(f"internal: fitted attributes must end in '_': {bad}")
    est.data_, est.outcome_, est.random_state_ = data, outcome, random_state
    est.propensity_ = propensity
    est.outcome_center_ = float(fit.outcome_center)
    est.outcome_scale_ = float(fit.outcome_scale)
    est.n_features_in_ = data.encoder.n_features
    est.feature_names_in_ = np.asarray(data.feature_names, dtype=object)
    if fit.posterior is not None:
        est.posterior_ = fit.posterior
    for name, value in fit.state.items():
        setattr(est, name, value)
