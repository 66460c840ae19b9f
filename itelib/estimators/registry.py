"""The one list of itelib's estimator classes; persistence, studies and the CLI read it.

Classes are named by module path and imported on first use, so the frame never imports the
models at module level (they import the frame) and ``import itelib`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

__all__ = [
    "ESTIMATORS",
    "Entry",
    "by_cli_name",
    "estimator_class",
    "names",
    "survival_estimators",
]


class Entry(NamedTuple):
    name: str  # the class name, as users import it
    module: str  # where the class lives
    cli_name: str  # ``itelib fit --estimator ...``
    summary: str  # one line for help texts


ESTIMATORS: tuple[Entry, ...] = (
    Entry(
        "HierarchicalITE", "itelib.models.hierarchical.estimator", "hierarchical",
        "hierarchical Bayesian model, NUTS on JAX",
    ),
    Entry(
        "BayesianCausalForest", "itelib.models.forest.bcf", "bcf",
        "Bayesian causal forest with site effects, on JAX",
    ),
    Entry(
        "CausalForest", "itelib.models.forest.econml_forest", "causal-forest",
        "EconML's CausalForestDML, normal-approximation draws",
    ),
)  # fmt: skip


def names() -> tuple[str, ...]:
    """Class names of every registered estimator."""
    return tuple(e.name for e in ESTIMATORS)


def survival_estimators() -> tuple[str, ...]:
    """The registered estimators that take survival outcomes (their ``_TAKES_SURVIVAL``)."""
    return tuple(n for n in names() if estimator_class(n)._TAKES_SURVIVAL)


def estimator_class(name: str) -> Any:
    """The class registered under ``name``; ``KeyError`` naming the choices if there is none."""
    for entry in ESTIMATORS:
        if entry.name == name:
            return getattr(importlib.import_module(entry.module), entry.name)
    raise KeyError(f"no itelib estimator named {name!r}; registered: {list(names())}")


def by_cli_name(cli_name: str) -> Any:
    """The class behind ``--estimator cli_name``."""
    for entry in ESTIMATORS:
        if entry.cli_name == cli_name:
            return estimator_class(entry.name)
    raise KeyError(f"no estimator {cli_name!r}; choose from {[e.cli_name for e in ESTIMATORS]}")
