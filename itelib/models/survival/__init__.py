"""JAX building blocks for accelerated-failure-time survival outcomes.

:mod:`~itelib.models.survival.likelihood` holds the censored log-likelihood (a function and a
NumPyro distribution); :mod:`~itelib.models.survival.scales` the effect scales computed from
posterior draws of :math:`\\eta` (RMST, survival probability, time ratio). The hierarchical model
is not wired to them yet.
"""

from __future__ import annotations

from itelib.models.survival.likelihood import FAMILIES, CensoredAFT, aft_log_likelihood
from itelib.models.survival.scales import (
    EffectScales,
    effect_scales,
    rmst,
    survival_probability,
)

__all__ = [
    "FAMILIES",
    "CensoredAFT",
    "EffectScales",
    "aft_log_likelihood",
    "effect_scales",
    "rmst",
    "survival_probability",
]
