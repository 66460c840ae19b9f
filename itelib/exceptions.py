"""Exceptions and warnings raised by itelib."""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DataValidationError",
    "DisclosureError",
    "DataWarning",
    "MissingCovariatesError",
    "ModelCheckWarning",
    "NotFittedError",
    "OverlapWarning",
    "RandomizationWarning",
    "RefitMismatchError",
    "SamplerInitError",
]


class DataValidationError(ValueError):
    """Input data that itelib cannot use as given.

    The message names the argument or column, what was found (with a count and the first
    offending patient ids) and how to fix it.
    """


class DisclosureError(DataValidationError):
    """A site summary that would disclose too much about few patients (a site below the
    minimum size of :mod:`itelib.federated`); the message says which site and why."""


class MissingCovariatesError(DataValidationError):
    """Covariates with missing (or non-finite) values, every such column in one message.

    Besides the message, it carries what a caller needs to word the options its own way (the
    command line names CSV rows and flags instead of pandas calls).

    Attributes
    ----------
    counts : dict
        Column name -> number of patients without a usable value, for every such column.
    first_ids : dict
        Column name -> the first few of those patients' ids.
    n_patients, n_complete : int
        Patients in all, and patients with every covariate.
    """

    def __init__(
        self,
        message: str,
        *,
        counts: dict[str, int],
        first_ids: dict[str, list],
        n_patients: int,
        n_complete: int,
    ) -> None:
        super().__init__(message)
        self.counts = counts
        self.first_ids = first_ids
        self.n_patients = n_patients
        self.n_complete = n_complete


class NotFittedError(ValueError, AttributeError):
    """An estimator method that needs a fitted model was called before ``fit``.

    Subclasses both ``ValueError`` and ``AttributeError`` like scikit-learn's, so
    ``sklearn.utils.validation.check_is_fitted`` idioms keep working.
    """


class RefitMismatchError(ValueError):
    """A saved model that is refitted on loading (``CausalForest``) did not reproduce the
    effects saved with it, e.g. under other EconML / scikit-learn versions; it is not loaded."""


class SamplerInitError(FloatingPointError):
    """The log density is not finite where a chain starts, so the sampler cannot move.

    The message names the model terms that are not finite there and the model inputs holding
    non-finite values.
    """


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics crossed a threshold (R-hat, ESS or divergences)."""


class ModelCheckWarning(UserWarning):
    """The fitted outcome model leaves structure in its residuals (see
    :func:`itelib.model_check.check_model`); the message names the covariate and the fix."""


class OverlapWarning(UserWarning):
    """Treated and control patients barely overlap in their covariates."""


class RandomizationWarning(UserWarning):
    """Data fitted as a randomized trial look observational (treatment predictable from x)."""


class DataWarning(UserWarning):
    """Valid data that cannot say much: a constant, collinear or extreme covariate, a site with
    one arm, a binary outcome without events in an arm. The fit runs; the message says which
    parts of the answer then rest on the prior, and how to fix the data."""
