"""JAX building blocks for accelerated-failure-time survival outcomes.

:mod:`~itelib.models.survival.likelihood` holds the censored log-likelihood (a function and a
NumPyro distribution); :mod:`~itelib.models.survival.scales` the effect scales computed from
posterior draws of :math:`\\eta` (RMST, survival probability, time ratio).
``HierarchicalITE(outcome="survival")`` uses both: the likelihood in
:func:`~itelib.models.hierarchical.model.hierarchical_model` and the scales in
:mod:`~itelib.models.hierarchical.survival_effects`.
"""

from __future__ import annotations

from itelib.models.survival.likelihood import FAMILIES, CensoredAFT, aft_log_likelihood
from itelib.models.survival.scales import (
    EffectScales,
    effect_on_scale,
    effect_scales,
    rmst,
    survival_probability,
)

__all__ = [
    "FAMILIES",
    "CensoredAFT",
    "EffectScales",
    "aft_log_likelihood",
    "effect_on_scale",
    "effect_scales",
    "rmst",
    "survival_probability",
]
