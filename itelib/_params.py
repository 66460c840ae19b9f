"""Checks of estimator parameters, run at ``fit`` (``__init__`` only stores, as in scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_choice", "check_int", "check_real"]


def check_int(owner: str, name: str, value: Any, *, minimum: int) -> int:
    """An int (not bool, not a string) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{owner}({name}=...) must be an int >= {minimum}; got {type(value).__name__} "
            f"{value!r}. Fix: pass e.g. {name}={max(minimum, 4)}."
        )
    if value < minimum:
        raise ValueError(f"{owner}({name}=...) must be >= {minimum}; got {value}.")
    return int(value)


def check_real(owner: str, name: str, value: Any, *, low: float, high: float) -> float:
    """A real number strictly inside ``(low, high)``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(
            f"{owner}({name}=...) must be a number in ({low}, {high}); got "
            f"{type(value).__name__} {value!r}."
        )
    if not low < float(value) < high:
        raise ValueError(f"{owner}({name}=...) must lie in ({low}, {high}); got {value}.")
    return float(value)


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{owner}({name}=...) must be one of {list(choices)}; got {value!r}.")
    return value
