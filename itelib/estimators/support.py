"""The one training-support rule: is a target population inside the covariates the model saw?

A patient is *outside* the training support when any encoded covariate lies beyond the
training minimum or maximum by more than ``SUPPORT_MARGIN`` (10 %) of the training range; the
rule is scale-free. A population average is warned about when more than ``SUPPORT_SHARE``
(5 %) of its patients are outside: a few extrapolated patients move an average little, while
the sample range's own noise puts some patients of the training population beyond it. Measured
with 6 correlated normal covariates (2,000 replications, a cohort of 200 from the training
population): the share outside averages 3.3 % / 0.8 % / 0.15 % for n = 100 / 300 / 1000
training patients, and exceeds 1 % in 90 % / 20 % / 0.6 % of cohorts (too many false alarms),
5 % in 14 % / 0 % / 0 %. A single new patient outside is 100 % of its population and is
always warned about.

Patient by patient (``effect(X)``) the margin is ``FAR_MARGIN``, half the training range: a
patient of the training population is beyond 10 % of it with probability 0.15-3 % (same
measurement), so naming those would warn on most batches of ordinary new patients, while half
the range beyond the edge of a normal covariate is about 3 sd past the largest of 300 training
values (probability under 1e-8): what it catches is a wrong unit, a typo or a patient unlike
any in the trial, whose effect is the model's extrapolation.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from itelib._validation import format_ids, format_values
from itelib.exceptions import DataWarning

__all__ = [
    "SUPPORT_MARGIN",
    "SUPPORT_SHARE",
    "FAR_MARGIN",
    "outside_support",
    "warn_outside_support",
    "warn_patients_outside_support",
]

SUPPORT_MARGIN = 0.10  # beyond the training range by more than 10 % of the range
SUPPORT_SHARE = 0.05  # warn when more than 5 % of the target population is outside
FAR_MARGIN = 0.5  # one patient's effect(X): beyond the training range by half of it


def outside_support(
    train: np.ndarray, new: np.ndarray, margin: float = SUPPORT_MARGIN
) -> np.ndarray:
    """(m, p) booleans: new patient i lies beyond training covariate j's range by more than
    ``margin`` of it.

    Both arrays are encoded the same way (e.g. standardized); the rule is scale-free.
    """
    low, high = train.min(axis=0), train.max(axis=0)
    margin = margin * (high - low)
    return (new < low - margin) | (new > high + margin)


def _columns(outside: np.ndarray, names: tuple[str, ...]) -> str:
    columns = [(names[j], float(outside[:, j].mean())) for j in np.flatnonzero(outside.any(0))]
    columns.sort(key=lambda c: -c[1])
    return format_values([f"{name} ({s:.0%})" for name, s in columns], limit=5)


def warn_patients_outside_support(
    train: np.ndarray, new: np.ndarray, names: tuple[str, ...], ids: Any, *, stacklevel: int = 3
) -> None:
    """Issue a :class:`DataWarning` naming every new patient far outside the training
    support (beyond the range by more than ``FAR_MARGIN`` of it)."""
    outside = outside_support(train, new, FAR_MARGIN)
    rows = outside.any(axis=1)
    if not rows.any():
        return
    warnings.warn(
        f"{int(rows.sum())} of {len(rows)} new patients lie far outside the training "
        f"covariates (beyond the training range by more than {FAR_MARGIN:.0%} of it) in "
        f"{_columns(outside[rows], names)}: patients {format_ids(pd.Index(ids), rows)}. Their "
        "effects are extrapolated by the model, not learned from similar patients. Fix: check "
        "those covariates' values and units; otherwise read these effects as model-based "
        "extrapolations.",
        DataWarning,
        stacklevel=stacklevel,
    )


def warn_outside_support(
    train: np.ndarray, new: np.ndarray, names: tuple[str, ...], *, stacklevel: int = 3
) -> None:
    """Issue a :class:`DataWarning` when more than ``SUPPORT_SHARE`` of ``new`` is outside."""
    outside = outside_support(train, new)
    rows = outside.any(axis=1)
    share = float(rows.mean()) if len(rows) else 0.0
    if share <= SUPPORT_SHARE:
        return
    detail = _columns(outside, names)
    warnings.warn(
        f"{share:.1%} of the target population ({int(rows.sum())} of {len(rows)} patients) "
        f"lie outside the training covariates' support (beyond the training range by more "
        f"than {SUPPORT_MARGIN:.0%} of it) in {detail}: their effects are extrapolated by the "
        "model, not learned from similar patients. Fix: restrict the population to the "
        "training range, or read the average as a model-based extrapolation.",
        DataWarning,
        stacklevel=stacklevel,
    )
