"""Designs with missing covariates: a registered design, then 30 % of its numeric covariate
cells masked, at random given what is observed (MAR) or depending on the missing value itself
(MNAR). The truth (``tau``, ``mu0``, ``mu1``, propensity) is the base design's, unchanged.

- ``missing_at_random``: a cell of covariate j is missing with probability
  ``sigmoid(a_j + 0.75 * y_std + 0.5 * (t - 0.5))``: it depends on the outcome and the
  treatment, which are always observed (so MAR; complete-case analysis is biased, imputation
  from y and t is not).
- ``missing_not_at_random``: ``sigmoid(a_j + 1.5 * x_std)``, the cell's own value: large values
  go missing more often, which no imputation from observed data can fully undo.

``a_j`` is solved so that each maskable column loses ``share`` of its cells on average.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from itelib.simulate.registry import outcome_kind, register, simulate
from itelib.simulate.trial import SeedLike, SimulatedTrial, _as_rng

__all__ = ["mask_covariates", "missing_at_random", "missing_not_at_random"]

_MASK_STREAM = 0x6D697373  # "miss": the masks' own random stream, apart from the base trial's


def _calibrated(score: np.ndarray, share: float) -> np.ndarray:
    """Probabilities ``sigmoid(a + score)`` with ``a`` chosen so that their mean is ``share``."""
    a = brentq(lambda a: expit(a + score).mean() - share, -50.0, 50.0)
    return expit(a + score)


def mask_covariates(
    trial: SimulatedTrial, mechanism: str, share: float, rng: np.random.Generator
) -> SimulatedTrial:
    """The trial with ``share`` of each numeric covariate's cells set to NaN (see the module)."""
    if mechanism not in ("mar", "mnar"):
        raise ValueError(f"mechanism must be 'mar' or 'mnar'; got {mechanism!r}")
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must lie in (0, 1); got {share!r}")
    data = trial.data.copy()
    y = data[trial.outcome].to_numpy(float)
    t = data[trial.treatment].to_numpy(float)
    y_std = (y - y.mean()) / (y.std() or 1.0)
    numeric = [c for c in trial.covariates if c not in trial.categorical]
    for col in numeric:
        x = data[col].to_numpy(float)
        if mechanism == "mar":
            score = 0.75 * y_std + 0.5 * (t - 0.5)
        else:
            score = 1.5 * (x - x.mean()) / (x.std() or 1.0)
        gone = rng.random(len(x)) < _calibrated(score, share)
        data[col] = np.where(gone, np.nan, x)
    params = {**trial.params, "mechanism": mechanism, "share": share}
    params["design"] = trial.name
    name = {"mar": "missing_at_random", "mnar": "missing_not_at_random"}[mechanism]
    return dataclasses.replace(trial, data=data, name=name, params=params)


def _masked(n: int, seed: SeedLike, design: str, share: float, mechanism: str, **kw: Any) -> Any:
    if outcome_kind(design) != "scalar":  # registered as scalar: studies must be able to fit it
        raise ValueError(
            f"design={design!r} has a {outcome_kind(design)} outcome; the designs with missing "
            "covariates mask a design with one outcome column. Fix: pick such a design."
        )
    trial = simulate(design, n=n, seed=seed, **kw)
    if seed is None or isinstance(seed, int | np.integer):
        rng = np.random.default_rng([_MASK_STREAM, 0 if seed is None else int(seed)])
    else:  # a Generator or SeedSequence goes on from where the base design left it
        rng = _as_rng(seed)
    return mask_covariates(trial, mechanism, share, rng)


@register("missing_at_random")
def missing_at_random(
    n: int, seed: SeedLike = None, *, design: str = "multisite_rct", share: float = 0.3, **kw: Any
) -> SimulatedTrial:
    """``design`` (default the multi-site trial) with ``share`` of its numeric covariate cells
    missing at random given the outcome and the treatment; the same seed gives the same
    complete trial as ``simulate(design, n, seed)``."""
    return _masked(n, seed, design, share, "mar", **kw)


@register("missing_not_at_random")
def missing_not_at_random(
    n: int, seed: SeedLike = None, *, design: str = "multisite_rct", share: float = 0.3, **kw: Any
) -> SimulatedTrial:
    """``design`` with ``share`` of its numeric covariate cells missing more often the larger
    the value (not at random)."""
    return _masked(n, seed, design, share, "mnar", **kw)
