"""A registry of named data-generating processes.

Every generator is a function ``generator(n, seed=None, **kwargs) -> SimulatedTrial``; the
:func:`register` decorator files it under a name, and :func:`simulate` calls it by name, so
studies can be configured with strings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from itelib.simulate.trial import SeedLike, SimulatedTrial

__all__ = ["DataGenerator", "available", "outcome_kind", "register", "simulate"]

DataGenerator = Callable[..., SimulatedTrial]
"""A data-generating process: ``generator(n, seed=None, **kwargs) -> SimulatedTrial``."""

_REGISTRY: dict[str, DataGenerator] = {}
_KINDS: dict[str, str] = {}
OUTCOME_KINDS = ("scalar", "survival")


def register(
    name: str, *, outcome_kind: str = "scalar"
) -> Callable[[DataGenerator], DataGenerator]:
    """Decorator that files a data-generating process under ``name``.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"multisite_rct"``.
    outcome_kind : {"scalar", "survival"}, default "scalar"
        ``"scalar"``: one outcome column (continuous or 0/1) that every estimator fits;
        ``"survival"``: ``Y`` is a ``[time, event]`` frame, which only the estimators that
        take survival outcomes fit (a study makes cells of those and of the survival peers).

    Returns
    -------
    callable
        A decorator that registers the function and returns it unchanged.

    Raises
    ------
    ValueError
        If ``name`` is empty or already taken by a different function, or ``outcome_kind``
        is unknown.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string; got {name!r}")
    if outcome_kind not in OUTCOME_KINDS:
        raise ValueError(f"`outcome_kind` must be one of {OUTCOME_KINDS}; got {outcome_kind!r}")

    def decorator(func: DataGenerator) -> DataGenerator:
        current = _REGISTRY.get(name)
        if current is not None and _identity(current) != _identity(func):
            raise ValueError(
                f"a generator is already registered as {name!r} ({_identity(current)}); "
                "choose another name"
            )
        _REGISTRY[name] = func
        _KINDS[name] = outcome_kind
        return func

    return decorator


def _identity(func: DataGenerator) -> str:
    """Module and qualified name, so re-importing a module re-registers without complaint."""
    module = getattr(func, "__module__", "?")
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


def available() -> list[str]:
    """Names of the registered data-generating processes, sorted.

    Returns
    -------
    list of str
    """
    return sorted(_REGISTRY)


def outcome_kind(name: str) -> str:
    """The outcome kind a registered design produces: ``"scalar"`` or ``"survival"``.

    Parameters
    ----------
    name : str
        A name from :func:`available`.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If ``name`` is not registered.
    """
    _generator(name)
    return _KINDS[name]


def _generator(name: str) -> DataGenerator:
    """The generator registered as ``name``; a ValueError listing the names if none."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown design {name!r}; available designs: {', '.join(available())}"
        ) from None


def simulate(name: str, n: int, seed: SeedLike = None, **kwargs: Any) -> SimulatedTrial:
    """Simulate one trial from the registered design ``name``.

    Parameters
    ----------
    name : str
        A name from :func:`available`.
    n : int
        Number of patients.
    seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
        Seed for :func:`numpy.random.default_rng`; the same seed gives the same trial.
    **kwargs
        Design-specific keyword arguments, passed on to the generator.

    Returns
    -------
    SimulatedTrial

    Raises
    ------
    ValueError
        If ``name`` is not registered (the message lists the registered names).
    """
    return _generator(name)(n=n, seed=seed, **kwargs)
