"""Synthetic trials with known individual treatment effects.

Each data-generating process returns a :class:`SimulatedTrial` (the data plus the true
``tau``, ``mu0``, ``mu1`` and propensity) and is registered by name, so studies can call
``simulate("hahn_nonlinear_heterogeneous", n=500, seed=1)``. See :func:`available`.
"""

from __future__ import annotations

from itelib.simulate.binary import binary_multisite_rct
from itelib.simulate.cohort import observational_cohort
from itelib.simulate.hahn import hahn2020
from itelib.simulate.missingness import missing_at_random, missing_not_at_random
from itelib.simulate.multisite import multisite_rct
from itelib.simulate.published import high_dimensional_rct, ihdp_b, nie_wager
from itelib.simulate.registry import available, outcome_kind, register, simulate
from itelib.simulate.survival import survival_lognormal, survival_multisite, survival_weibull
from itelib.simulate.trial import SimulatedTrial, SurvivalTrial

__all__ = [
    "SimulatedTrial",
    "SurvivalTrial",
    "available",
    "binary_multisite_rct",
    "hahn2020",
    "high_dimensional_rct",
    "ihdp_b",
    "missing_at_random",
    "missing_not_at_random",
    "multisite_rct",
    "nie_wager",
    "observational_cohort",
    "outcome_kind",
    "register",
    "simulate",
    "survival_lognormal",
    "survival_multisite",
    "survival_weibull",
]
