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
    "effect_column",
    "gaussian_data",
    "gaussian_rows",
    "horseshoe_scale",
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
    if kind in ("binary", "survival") or option == "rows":
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
    Survival: (mean, sd) of the log times, censored or not (only a centre and a unit).

    The outcome varies: :func:`~itelib.data.outcome_kind` refuses a constant one."""
    if kind == "survival":
        y = np.log(y)
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
    Survival outcomes (log time, censored) are centred on the share treated alone, never the
    propensity: a new patient's RMST needs its untreated location, ``prognosis - centre *
    effect``, which a constant centre gives without a propensity model for new patients.
    Under censoring the orthogonality is only approximate: centring alone left coverage and
    accuracy unchanged; with ``"piecewise"`` modifiers it covered more on 3 of 4 fits
    (``docs/decisions.md``, issue 19).
    """
    if coding == "indicator" or kind == "binary":
        return 0.0
    if kind == "survival" or scores is None:
        return float(np.mean(t))
    return np.asarray(scores, np.float64)


def model_data(
    data: Any,
    X: np.ndarray,
    spec: m.ModelSpec,
    features: FeatureMap,
    y_mean: float,
    y_scale: float,
    centre: np.ndarray | float = 0.0,
    event: np.ndarray | None = None,
) -> m.ModelData:
    """Model arrays of a :class:`~itelib.data.TrialData`; ``X`` holds the prognostic columns
    (covariates and, if the model has one, the propensity score's logit); ``centre`` is
    subtracted from the treatment (:func:`treatment_centre`); ``event``: survival outcomes'
    event indicators (``data.y`` then holds the times)."""
    t = data.t - centre
    p_scale = horseshoe_scale(spec, data.n, float(np.mean(t**2)))
    if spec.outcome == "binary":  # pseudo-sd 1/sqrt(p(1-p)) (Piironen & Vehtari 2017, 3.5)
        rate = float(np.mean(data.y))
        p_scale /= np.sqrt(rate * (1 - rate))
    y = np.log(data.y) if spec.outcome == "survival" else data.y
    y = y if spec.outcome == "binary" else (y - y_mean) / y_scale
    arrays = model_arrays(
        spec, y=y, t=t, X=X, site=data.site, global_scale=np.asarray(p_scale),
        features=features, offset=np.asarray(y_mean) if spec.outcome == "binary" else None,
    )  # fmt: skip
    if spec.outcome == "survival":
        arrays = arrays._replace(event=np.asarray(event, np.int8))
    return arrays


def horseshoe_scale(spec: m.ModelSpec, n: int, mean_square_t: float) -> float:
    """The horseshoe's global scale for ``n`` patients whose (centred) treatment column has
    mean square ``mean_square_t``."""
    # Piironen & Vehtari's sigma / sqrt(n) is the noise scale of a coefficient whose column has
    # unit variance; a modifier's column is t·z, of root mean square rms(t) (0.5 centred in a
    # balanced trial), so its coefficient's noise scale is sigma / (rms(t) sqrt(n)).
    p_scale = spec.priors.global_scale(max(spec.n_modifiers, 1), n)
    return p_scale / max(float(np.sqrt(mean_square_t)), 1e-3)


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
    if spec.likelihood in ("sufficient", "marginal"):
        design = gaussian_rows(y, t, X, features)
        if spec.likelihood == "marginal" and spec.n_sites > m.DENSE_MAX_SITES:
            # many sites: A's blocks, linear in the number of sites (see marginal.py)
            sums = m.block_sums(design, y, site, spec.n_sites, effect_column(spec))
            return gaussian_data(spec, sums, global_scale, features)
        codes = np.zeros(len(y), np.intp) if site is None or spec.n_sites == 0 else site
        grams = m.site_grams(design, y, codes, max(spec.n_sites, 1))
        return gaussian_data(spec, grams, global_scale, features)
    smooth = features is not None and bool(features.smooth)
    basis = features.basis(X) if smooth else None
    modifiers = features.modifiers(X) if features is not None else None
    sqrt_eig = features.sqrt_eigenvalues() if smooth else None
    effect_smooth = features is not None and bool(features.effect_smooth)
    effect_basis = features.effect_basis(X) if effect_smooth else None
    effect_eig = {"effect_sqrt_eig": features.effect_sqrt_eigenvalues()} if effect_smooth else {}
    site = site if site is not None else np.zeros(len(t), np.int32)
    return m.ModelData(
        global_scale, y=y, t=t, X=X, site=site, offset=offset,
        basis=basis, modifiers=modifiers, sqrt_eig=sqrt_eig,
        effect_basis=effect_basis, **effect_eig,
    )  # fmt: skip


def effect_column(spec: m.ModelSpec) -> int:
    """The treatment's column in the Gaussian design ``[1, x, phi, t, t·z, t·psi]``."""
    return 1 + spec.p + spec.n_smooth * spec.n_basis


def gaussian_rows(
    y: np.ndarray, t: np.ndarray, X: np.ndarray, features: FeatureMap | None
) -> np.ndarray:
    """Rows ``[1, x, phi, t, t·z, t·psi]`` of the continuous model's design (``phi``, ``psi``:
    the smooth prognostic and effect bases, when the model has them): the columns whose
    per-site cross-products (:func:`~itelib.models.hierarchical.model.site_grams`) are all the
    Gaussian likelihood needs. ``t`` is already centred (:func:`treatment_centre`)."""
    basis = features.basis(X) if features is not None and features.smooth else None
    modifiers = features.modifiers(X) if features is not None else None
    if features is not None and features.effect_smooth:
        # the smooth effect basis enters the design as more columns t·psi after t·z
        modifiers = np.column_stack([X if modifiers is None else modifiers,
                                     features.effect_basis(X)])  # fmt: skip
    return m.gaussian_design(y, t, X, basis, modifiers)


def gaussian_data(
    spec: m.ModelSpec,
    grams: Any,
    global_scale: Any,
    features: FeatureMap | None,
    n: int | None = None,
) -> m.ModelData:
    """Model arrays of the ``"sufficient"`` or ``"marginal"`` likelihood from the sites'
    cross-products ``[D_s, y_s]' [D_s, y_s]`` (S, K + 1, K + 1; or, for the block form above
    :data:`~itelib.models.hierarchical.marginal.DENSE_MAX_SITES` sites, their
    :class:`~itelib.models.hierarchical.marginal.BlockSums`): the one place both a fit on rows
    and a fit on site summaries (:mod:`itelib.federated`) build them. ``n``: the number of
    patients (None: read from the intercept's cross-product, exact only without noise)."""
    smooth = features is not None and bool(features.smooth)
    sqrt_eig = features.sqrt_eigenvalues() if smooth else None
    effect_smooth = features is not None and bool(features.effect_smooth)
    effect_eig = {"effect_sqrt_eig": features.effect_sqrt_eigenvalues()} if effect_smooth else {}
    if spec.likelihood == "marginal" and spec.n_sites > m.DENSE_MAX_SITES:
        sums = grams
        if not isinstance(sums, m.BlockSums):
            if n is None:
                n = int(round(float(np.asarray(grams)[:, 0, 0].sum())))
            sums = m.block_sums_from_grams(grams, n, effect_column(spec))
        marginal = m.block_statistics_from_sums(sums, effect_column(spec))
        return m.ModelData(global_scale, marginal=marginal, sqrt_eig=sqrt_eig, **effect_eig)
    stats = m.sufficient_statistics_from_grams(grams, n)
    if spec.likelihood == "sufficient":
        return m.ModelData(global_scale, stats=stats, sqrt_eig=sqrt_eig, **effect_eig)
    marginal = m.marginal_statistics(*stats, effect_column(spec), spec.n_sites)
    return m.ModelData(global_scale, marginal=marginal, sqrt_eig=sqrt_eig, **effect_eig)
