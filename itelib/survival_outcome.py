"""Right-censored time-to-event outcomes: reading ``Y`` as (time, event), checked once.

``fit(Y, ...)`` with ``outcome="survival"`` takes ``Y`` in the usual conventions:

- a two-column pandas DataFrame, the time first and the event indicator second (lifelines'
  duration and event columns); its column names are kept for the messages;
- a scikit-survival structured array (``sksurv.util.Surv``: one bool field, the event, and one
  float field, the time, in either order);
- an ``(n, 2)`` array, the time first.

The event is 1 (or True) where the event was observed at ``time`` and 0 where the patient was
censored then. The effect scales of a survival fit (``scale=``) are named here too, with the
one place that turns ``scale="survival", time=t`` into the key the estimators pass around.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from itelib.exceptions import DataValidationError

__all__ = [
    "SURVIVAL_SCALES",
    "SurvivalOutcome",
    "looks_like_survival",
    "no_effect",
    "parse_scale",
    "read_survival",
    "scale_key",
]

SURVIVAL_SCALES = ("rmst", "survival", "time_ratio")  # the first is the default
_SEP = "@"  # "survival@12.0": the survival-probability difference at time 12


@dataclass(frozen=True, eq=False)
class SurvivalOutcome:
    """A validated right-censored outcome, in the order of the rows of ``Y``.

    Attributes
    ----------
    time : pandas.Series
        Observed times (> 0, finite), with ``Y``'s index when it had one.
    event : numpy.ndarray
        0/1 int8: 1 where the event was observed.
    time_name, event_name : str
        The user's names of the two columns (``"time"``, ``"event"`` for arrays).
    """

    time: pd.Series
    event: np.ndarray
    time_name: str
    event_name: str


def looks_like_survival(Y: Any) -> bool:
    """Whether ``Y`` has the shape of a survival outcome: two columns or two fields."""
    if isinstance(Y, pd.DataFrame):
        return Y.shape[1] == 2
    dtype = getattr(Y, "dtype", None)
    if dtype is not None and dtype.names is not None:
        return len(dtype.names) == 2
    return getattr(Y, "ndim", 0) == 2 and Y.shape[1] == 2


def read_survival(Y: Any) -> SurvivalOutcome:
    """``Y`` as (time, event), checked; see the module docstring for the formats.

    Raises
    ------
    DataValidationError
        (a ValueError) naming the column and the fix: not two columns, a time that is not
        finite and > 0, an event outside {0, 1}, every patient censored.
    """
    time, event, names = _columns(Y)
    time_name, event_name = names
    try:
        t = pd.to_numeric(time, errors="raise").astype(np.float64)
    except (TypeError, ValueError) as err:
        raise DataValidationError(
            f"survival time '{time_name}' is not numeric ({err}). Fix: pass the times as numbers "
            "(e.g. days from randomization)."
        ) from err
    values = t.to_numpy()
    bad = ~np.isfinite(values) | ~(values > 0)
    if bad.any():
        first = list(t.index[bad][:5])
        raise DataValidationError(
            f"survival time '{time_name}' must be finite and > 0; {int(bad.sum())} patients are "
            f"not (first at {first}: {list(values[bad][:5])}). Fix: drop or correct them; an "
            "event on the day of randomization can be coded as a small positive time (e.g. 0.5 "
            "days)."
        )
    e = _event(event, event_name)
    if e.sum() == 0:
        raise DataValidationError(
            f"every patient is censored (event '{event_name}' is 0 for all {len(e)}): the data "
            "hold no event, so no event time can be modelled. Fix: check the event column's "
            "coding (1 = event observed, 0 = censored)."
        )
    return SurvivalOutcome(t, e, time_name, event_name)


def _columns(Y: Any) -> tuple[pd.Series, Any, tuple[str, str]]:
    """The time and event columns of ``Y`` and their names."""
    if isinstance(Y, pd.DataFrame):
        if Y.shape[1] != 2:
            raise DataValidationError(
                f"a survival outcome Y must have two columns, the time then the event; received "
                f"{Y.shape[1]} columns {list(Y.columns)}. Fix: pass Y=df[['time', 'event']]."
            )
        time_name, event_name = (str(c) for c in Y.columns)
        return Y.iloc[:, 0], Y.iloc[:, 1].to_numpy(), (time_name, event_name)
    arr = np.asarray(Y)
    if arr.dtype.names is not None:  # scikit-survival's structured array
        fields = arr.dtype.names
        flags = [f for f in fields if arr.dtype[f] == np.bool_]
        if len(fields) != 2 or len(flags) != 1:
            raise DataValidationError(
                f"a structured survival array must have two fields, one bool (the event) and "
                f"one float (the time); received fields {list(fields)}. Fix: build it with "
                "sksurv.util.Surv.from_arrays(event, time)."
            )
        event_name = flags[0]
        time_name = next(f for f in fields if f != event_name)
        return pd.Series(arr[time_name]), arr[event_name], (time_name, event_name)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataValidationError(
            f"a survival outcome Y must have two columns, the time then the event; received "
            f"shape {arr.shape}. Fix: pass an (n, 2) array, a DataFrame [time, event] or a "
            "scikit-survival structured array."
        )
    return pd.Series(arr[:, 0]), arr[:, 1], ("time", "event")


def _event(event: Any, name: str) -> np.ndarray:
    values = np.asarray(event)
    if values.dtype == np.bool_:
        return values.astype(np.int8)
    try:
        numeric = np.asarray(pd.to_numeric(pd.Series(values), errors="raise"), np.float64)
    except (TypeError, ValueError):
        numeric = np.full(len(values), np.nan)
    bad = ~np.isin(numeric, (0.0, 1.0))
    if bad.any():
        raise DataValidationError(
            f"event '{name}' must be 0 (censored) or 1 (event observed); {int(bad.sum())} values "
            f"are not (first: {list(values[bad][:5])}). Fix: code the event indicator as 0/1 or "
            "bool (the time column first, the event second)."
        )
    return numeric.astype(np.int8)


def scale_key(scale: str, time: Any, name: str) -> str:
    """The key a survival scale travels under: ``"survival@t"`` carries its time ``t``.

    ``time`` is required with ``"survival"`` and refused with the other scales.
    """
    if scale == "survival":
        if time is None:
            raise ValueError(
                f'{name}: scale="survival" compares survival probabilities at a time; pass it, '
                'e.g. time=12.0 (in the time unit of the data), or use scale="rmst".'
            )
        if isinstance(time, bool) or not isinstance(time, int | float | np.number):
            raise TypeError(f"{name}: time must be a number; got {type(time).__name__}.")
        if not (math.isfinite(time) and time > 0):
            raise ValueError(f"{name}: time must be finite and > 0; got {time!r}.")
        return f"survival{_SEP}{float(time)!r}"
    if time is not None:
        raise ValueError(
            f'{name}: time= is for scale="survival" (the survival-probability difference at '
            f"that time); scale={scale!r} does not take it."
        )
    return scale


def no_effect(attrs: Any) -> float:
    """The effect that means none on a posterior's scale: 1 for a time ratio, else 0."""
    return 1.0 if attrs.get("scale") == "time_ratio" else 0.0


def parse_scale(key: str) -> tuple[str, float | None]:
    """``"survival@12.0"`` -> ``("survival", 12.0)``; any other scale -> ``(scale, None)``."""
    name, sep, time = key.partition(_SEP)
    return name, (float(time) if sep else None)
