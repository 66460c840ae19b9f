"""Training data that is valid but weak: warned about once, at fit, with what to do.

The data contract (:mod:`itelib._validation`) refuses what cannot be used. These checks look at
what *can* be fit but leaves part of the answer to the prior: covariates that carry no
information (constant), that cannot be told apart (collinear) or whose scale is broken by a few
values (extreme); sites where only one arm was observed; binary outcomes with no events, or
only events, in an arm. Each gets one :class:`~itelib.exceptions.DataWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from itelib._validation import format_values
from itelib.exceptions import DataWarning

__all__ = ["check_binary_arms", "check_covariates", "check_site_arms"]

EXTREME_ROBUST_Z = 1e3  # |x - median| / (1.4826 MAD) beyond this is a unit mix-up or a typo
_COLLINEAR_RTOL = 1e-10  # eigenvalue of the correlation matrix, relative to the largest


def _warn(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=4)


def check_covariates(raw: np.ndarray, standardized: np.ndarray, names: Sequence[str]) -> None:
    """Constant, collinear and extreme encoded covariates (``raw``: before standardization)."""
    if raw.shape[1] == 0:
        return
    spread = standardized.std(axis=0)
    constant = spread == 0
    if constant.any():
        _warn(
            f"covariate(s) {format_values(np.asarray(names)[constant])} are constant over the "
            "training patients: they cannot modify anyone's effect and are carried as zeros. "
            "Fix: drop them."
        )
    _check_collinear(standardized[:, ~constant], np.asarray(names)[~constant])
    _check_extreme(raw, names)


def _check_collinear(X: np.ndarray, names: np.ndarray) -> None:
    if X.shape[1] < 2:
        return
    corr = np.corrcoef(X, rowvar=False)
    eigval, eigvec = np.linalg.eigh(corr)
    null = eigval <= _COLLINEAR_RTOL * eigval[-1]
    if not null.any():
        return
    loading = np.abs(eigvec[:, np.argmin(eigval)])
    involved = names[loading > 1e-6]
    _warn(
        f"covariates {format_values(involved)} are perfectly collinear (one is a linear "
        "combination of the others): how the effect depends on each of them separately is "
        "not identified, and the prior decides. Fix: drop one of them."
    )


def _check_extreme(raw: np.ndarray, names: Sequence[str]) -> None:
    median = np.median(raw, axis=0)
    mad = 1.4826 * np.median(np.abs(raw - median), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(raw - median) / mad
    z = np.where(mad > 0, z, 0.0)  # binary and mostly-constant columns have no MAD scale
    worst = z.max(axis=0)
    for j in np.flatnonzero(worst > EXTREME_ROBUST_Z):
        i = int(np.argmax(z[:, j]))
        _warn(
            f"covariate '{names[j]}' has extreme values (e.g. {raw[i, j]:.4g}, {worst[j]:.3g} "
            "robust standard deviations from its median): standardizing by them squeezes "
            "every other patient's value together. Fix: check for a typo or mixed units, or "
            "transform the covariate (log, winsorize)."
        )


def check_site_arms(
    t: np.ndarray, site: np.ndarray, levels: Sequence[object], *, pooled: bool = True
) -> None:
    """Sites where only one arm was observed (a single patient, or one arm by design).

    ``pooled``: whether the estimator gives each site its own effect, partially pooled (the
    hierarchical model, the Bayesian causal forest); EconML's forest uses sites only in its
    nuisance models and folds, and gets a warning that says what it does instead.
    """
    treated = np.bincount(site, weights=t, minlength=len(levels))
    total = np.bincount(site, minlength=len(levels))
    one_arm = (treated == 0) | (treated == total)
    if one_arm.any() and not one_arm.all():
        consequence = (
            "their own treatment effects are not observed, so partial pooling sets them to the "
            "population's, with its uncertainty"
            if pooled
            else "within these sites treatment is predicted by the site, so their patients "
            "carry almost no information on the effect, which rests on the other sites"
        )
        _warn(
            f"site(s) {format_values(np.asarray(levels, dtype=object)[one_arm])} have patients "
            f"in only one arm: {consequence}. Fix: none needed if that is acceptable; "
            "otherwise merge such sites with similar ones."
        )
    elif one_arm.all():
        _warn(
            "every site has patients in only one arm: treatment is confounded with site, and "
            "the site effects cannot be separated from the treatment effect. Fix: fit without "
            "site=..., and treat the comparison as observational (propensity='estimate')."
        )


def check_binary_arms(y: np.ndarray, t: np.ndarray, outcome: str) -> None:
    """A binary outcome that is all 0 or all 1 in an arm: separation, the prior decides."""
    if y.min() == y.max():
        return  # a constant outcome is an error, raised where the model is set up
    for arm, label in ((0, "control"), (1, "treated")):
        values = y[t == arm]
        if values.size and (values.min() == values.max()):
            _warn(
                f"outcome '{outcome}' is {int(values[0])} for every {label} patient "
                f"({values.size}): the data put no bound on the log odds ratio (separation), so "
                "its size comes from the prior. Fix: report risk differences (the default), "
                "which stay bounded, and check that the outcome is coded as intended."
            )
