"""Checks of estimator parameters, run at ``fit`` (``__init__`` only stores, as in scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_bool", "check_choice", "check_int", "check_real"]


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


def _same(value: Any, choice: Any) -> bool:
    """``value`` is ``choice``, with booleans strict: 0 and 1 are not False and True (Python
    says ``0 == False``, so ``site_effects=0`` would pass a plain ``in`` check and then be read
    as on, being neither ``False`` nor ``"auto"``)."""
    if isinstance(choice, bool) or isinstance(value, bool | np.bool_):
        return isinstance(choice, bool) and isinstance(value, bool | np.bool_) and value == choice
    try:
        return bool(value == choice)
    except (TypeError, ValueError):  # an array compares element-wise
        return False


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (booleans strictly: 0/1 are not False/True); returns the choice."""
    for choice in choices:
        if _same(value, choice):
            return choice
    fix = ""
    if any(isinstance(c, bool) for c in choices) and isinstance(value, int | np.integer):
        fix = f" Fix: {name}=True or {name}=False (not 1 or 0)."
    raise ValueError(f"{owner}({name}=...) must be one of {list(choices)}; got {value!r}.{fix}")


def check_bool(owner: str, name: str, value: Any) -> bool:
    """True or False, strictly (not 0/1, not a string such as 'false', which is truthy)."""
    return check_choice(owner, name, value, (True, False))
