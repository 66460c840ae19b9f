"""From validated data to the hierarchical model's arrays: the likelihood, the outcome's scale,
and the :class:`~itelib.models.hierarchical.model.ModelData` the sampler reads.

The estimator, its predictive checks, the PyMC twin and the SBC study all build their model
inputs here, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.features import FeatureMap

__all__ = [
    "LIKELIHOODS",
    "TREATMENT_CODINGS",
    "choose_likelihood",
    "model_arrays",
    "model_data",
    "outcome_scale",
    "treatment_centre",
]

LIKELIHOODS = ("auto", "sufficient", "marginal", "rows")
TREATMENT_CODINGS = ("centered", "indicator")


def choose_likelihood(option: str, kind: str, backend: str) -> str:
    """The model's likelihood: binary outcomes are always row-wise; continuous ones integrate the
    coefficients out (``"auto"``) unless the PyMC twin, which samples every coefficient, runs."""
    if kind == "binary" or option == "rows":
        return "rows"
    if backend == "pymc":
        if option == "marginal":
            raise ValueError(
                'HierarchicalITE(likelihood="marginal") needs backend="numpyro": the PyMC twin '
                'of the model samples every coefficient. Use likelihood="auto" or "sufficient".'
            )
        return "sufficient"
    return "marginal" if option == "auto" else option


def outcome_scale(y: np.ndarray, kind: str) -> tuple[float, float]:
    """Continuous: (mean, sd) used to standardize. Binary: (logit of the event rate, 1).

    The outcome varies: :func:`~itelib.data.outcome_kind` refuses a constant one."""
    y_mean, y_sd = float(np.mean(y)), float(np.std(y))
    if kind == "binary":
        return float(np.log(y_mean / (1 - y_mean))), 1.0
    return y_mean, y_sd


def treatment_centre(
    t: np.ndarray, kind: str, coding: str, scores: np.ndarray | None
) -> np.ndarray | float:
    """What the model subtracts from the 0/1 treatment: ``t - e(x)`` (Robinson 1988).

    With the treatment centred on its propensity, every effect column ``(t - e)·z`` is
    orthogonal to every function of the covariates, so whatever the prognostic part misses
    cannot be fitted as effect heterogeneity (it can with ``t·z``, whose mean ``e·z`` is a
    function of the covariates). ``e`` is the propensity score when the model has one, the
    share treated otherwise (a randomized trial's known ratio). The patient's effect keeps its
    meaning; the prognostic part becomes ``E[y | x]`` instead of ``E[y | x, t = 0]``.

    Binary outcomes keep the indicator: on the log-odds scale the decomposition does not hold.
    """
    if coding == "indicator" or kind == "binary":
        return 0.0
    return float(np.mean(t)) if scores is None else np.asarray(scores, np.float64)


def model_data(
    data: Any,
    X: np.ndarray,
    spec: m.ModelSpec,
    features: FeatureMap,
    y_mean: float,
    y_scale: float,
    centre: np.ndarray | float = 0.0,
) -> m.ModelData:
    """Model arrays of a :class:`~itelib.data.TrialData`; ``X`` holds the prognostic columns
    (covariates and, if the model has one, the propensity score's logit); ``centre`` is
    subtracted from the treatment (:func:`treatment_centre`)."""
    t = data.t - centre
    # Piironen & Vehtari's sigma / sqrt(n) is the noise scale of a coefficient whose column has
    # unit variance; a modifier's column is t·z, of root mean square rms(t) (0.5 centred in a
    # balanced trial), so its coefficient's noise scale is sigma / (rms(t) sqrt(n)).
    p_scale = spec.priors.global_scale(max(spec.n_modifiers, 1), data.n)
    p_scale /= max(float(np.sqrt(np.mean(t**2))), 1e-3)
    if spec.outcome == "binary":  # pseudo-sd 1/sqrt(p(1-p)) (Piironen & Vehtari 2017, 3.5)
        rate = float(np.mean(data.y))
        p_scale /= np.sqrt(rate * (1 - rate))
    y = data.y if spec.outcome == "binary" else (data.y - y_mean) / y_scale
    return model_arrays(
        spec, y=y, t=t, X=X, site=data.site, global_scale=np.asarray(p_scale),
        features=features, offset=np.asarray(y_mean) if spec.outcome == "binary" else None,
    )  # fmt: skip


def model_arrays(
    spec: m.ModelSpec,
    *,
    y: np.ndarray | None,
    t: np.ndarray,
    X: np.ndarray,
    site: np.ndarray | None,
    global_scale: Any,
    features: FeatureMap | None = None,
    offset: Any = None,
) -> m.ModelData:
    """Model arrays on the model's own scale (``y`` standardized, or 0/1 with ``offset``).

    ``features``: the smooth bases and modifier columns; None means linear prognosis and
    modifiers (``X`` itself).
    """
    smooth = features is not None and bool(features.smooth)
    basis = features.basis(X) if smooth else None
    modifiers = features.modifiers(X) if features is not None else None
    sqrt_eig = features.sqrt_eigenvalues() if smooth else None
    effect_smooth = features is not None and bool(features.effect_smooth)
    effect_basis = features.effect_basis(X) if effect_smooth else None
    effect_eig = {"effect_sqrt_eig": features.effect_sqrt_eigenvalues()} if effect_smooth else {}
    if spec.likelihood in ("sufficient", "marginal"):
        # the smooth effect basis enters the design as more columns t·psi after t·z
        columns = modifiers if not effect_smooth else np.column_stack([
            X if modifiers is None else modifiers, effect_basis
        ])  # fmt: skip
        effect_column = 1 + spec.p + spec.n_smooth * spec.n_basis
        if spec.likelihood == "marginal" and spec.n_sites > m.DENSE_MAX_SITES:
            # many sites: A's blocks, linear in the number of sites (see marginal.py)
            design = m.gaussian_design(y, t, X, basis, columns)
            marginal = m.block_statistics(design, y, site, spec.n_sites, effect_column)
            return m.ModelData(global_scale, marginal=marginal, sqrt_eig=sqrt_eig, **effect_eig)
        stats = m.gaussian_sufficient_statistics(
            y, t, X, site, spec.n_sites, basis=basis, modifiers=columns
        )
        if spec.likelihood == "sufficient":
            return m.ModelData(global_scale, stats=stats, sqrt_eig=sqrt_eig, **effect_eig)
        marginal = m.marginal_statistics(*stats, effect_column, spec.n_sites)
        return m.ModelData(global_scale, marginal=marginal, sqrt_eig=sqrt_eig, **effect_eig)
    site = site if site is not None else np.zeros(len(t), np.int32)
    return m.ModelData(
        global_scale, y=y, t=t, X=X, site=site, offset=offset,
        basis=basis, modifiers=modifiers, sqrt_eig=sqrt_eig,
        effect_basis=effect_basis, **effect_eig,
    )  # fmt: skip
