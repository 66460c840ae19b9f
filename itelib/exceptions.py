"""Exceptions and warnings raised by itelib."""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DataValidationError",
    "NotFittedError",
    "OverlapWarning",
    "RandomizationWarning",
]


class DataValidationError(ValueError):
    """Input data that itelib cannot use as given.

    The message names the argument or column, what was found (with a count and the first
    offending patient ids) and how to fix it.
    """


class NotFittedError(ValueError, AttributeError):
    """An estimator method that needs a fitted model was called before ``fit``.

    Subclasses both ``ValueError`` and ``AttributeError`` like scikit-learn's, so
    ``sklearn.utils.validation.check_is_fitted`` idioms keep working.
    """


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics crossed a threshold (R-hat, ESS or divergences)."""


class OverlapWarning(UserWarning):
    """Treated and control patients barely overlap in their covariates."""


class RandomizationWarning(UserWarning):
    """Data fitted as a randomized trial look observational (treatment predictable from x)."""
