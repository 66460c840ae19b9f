"""itelib: Bayesian individualized treatment effects for personalized medicine.

Importing ``itelib`` is cheap: JAX and NumPyro load only when an estimator is first used, and
no JAX flag is set at import.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from itelib.estimators import registry as _registry
from itelib.exceptions import (
    ConvergenceWarning,
    DataValidationError,
    DataWarning,
    ModelCheckWarning,
    NotFittedError,
    OverlapWarning,
    RandomizationWarning,
    RefitMismatchError,
    SamplerInitError,
)

try:
    __version__ = version("itelib")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# Public name -> module; resolved on first access (PEP 562) so that `import itelib` stays light.
# The estimators come from their one list, itelib.estimators.registry.
_LAZY = {entry.name: entry.module for entry in _registry.ESTIMATORS} | {
    "HierarchicalPriors": "itelib.models.hierarchical.priors",
    "EffectPosterior": "itelib.posterior",
    "TrialData": "itelib.data",
    "SimulatedTrial": "itelib.simulate",
    "validate": "itelib.answers",
    "recommend": "itelib.answers",
}
# `itelib.simulate` is the simulator subpackage (call `itelib.simulate.simulate(name, n, seed)`);
# a top-level function of the same name would be shadowed as soon as the subpackage loads.

__all__ = [
    "BayesianCausalForest",
    "CausalForest",
    "ConvergenceWarning",
    "DataWarning",
    "DataValidationError",
    "EffectPosterior",
    "HierarchicalITE",
    "HierarchicalPriors",
    "ModelCheckWarning",
    "NotFittedError",
    "OverlapWarning",
    "RandomizationWarning",
    "RefitMismatchError",
    "SamplerInitError",
    "SimulatedTrial",
    "TrialData",
    "__version__",
    "recommend",
    "validate",
]

if TYPE_CHECKING:
    from itelib.answers import recommend, validate
    from itelib.data import TrialData
    from itelib.models.forest.bcf import BayesianCausalForest
    from itelib.models.forest.econml_forest import CausalForest
    from itelib.models.hierarchical.estimator import HierarchicalITE
    from itelib.models.hierarchical.priors import HierarchicalPriors
    from itelib.posterior import EffectPosterior
    from itelib.simulate import SimulatedTrial


# modules too: itelib.plot.caterpillar(...)
_SUBPACKAGES = ("answers", "calibration", "plot", "simulate")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"itelib.{name}")
    raise AttributeError(f"module 'itelib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
