"""What a survival fit keeps beside its draws, and how it is saved: one place for every estimator.

A fit to a right-censored outcome (``outcome="survival"``) keeps the RMST horizon
(``horizon_``), the event indicator of each training patient (``survival_event_``) and the
user's names of the time and event columns (``survival_names_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["fitted_survival", "restore_survival", "saved_survival"]

HORIZON_QUANTILE = 0.9  # horizon=None: this quantile of the observed times


def fitted_survival(
    horizon: float | None, times: np.ndarray, outcome: Any, treatment_centre: float = 0.0
) -> dict[str, Any]:
    """The attributes a survival fit sets: ``horizon`` (None: the 0.9 quantile of ``times``),
    the events and column names of ``outcome`` (a ``SurvivalOutcome``) and the constant the
    model subtracted from the 0/1 treatment (HierarchicalITE; 0 for the indicator)."""
    chosen = horizon or float(np.quantile(times, HORIZON_QUANTILE))
    return {
        "horizon_": float(chosen),
        "survival_event_": outcome.event,
        "survival_names_": (outcome.time_name, outcome.event_name),
        "survival_centre_": float(treatment_centre),
    }


def saved_survival(est: Any) -> tuple[dict[str, Any], dict[str, xr.Dataset]]:
    """(``fitted`` entries, DataTree groups) that save a survival fit's own attributes."""
    fitted = {"survival": {"horizon": est.horizon_, "names": list(est.survival_names_),
                           "treatment_centre": est.survival_centre_}}  # fmt: skip
    groups = {"survival": xr.Dataset({"event": ("patient", est.survival_event_)})}
    return fitted, groups


def restore_survival(est: Any, fitted: dict[str, Any], groups: dict[str, Any]) -> None:
    """Set the attributes :func:`saved_survival` saved (a file without them: nothing)."""
    if "survival" not in fitted:
        return
    est.horizon_ = float(fitted["survival"]["horizon"])
    est.survival_names_ = tuple(fitted["survival"]["names"])
    # files saved before the survival model centred its treatment were fitted on the indicator
    est.survival_centre_ = float(fitted["survival"].get("treatment_centre", 0.0))
    est.survival_event_ = groups["survival"]["event"].values.astype(np.int8)
