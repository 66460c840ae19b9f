"""HierarchicalITE's own effect modifiers and site effects, in outcome units.

The model's effect is ``tau0 + b_s + z·gamma`` on the standardized scale: the outcome divided by
its training sd ``outcome_scale_``, each covariate ``x_j`` standardized to
``z_j = (x_j - c_j) / s_j`` (:class:`~itelib.data.CovariateEncoder`), each pairwise product
``z_i z_j`` standardized again with its own training mean and sd ``(m_ij, v_ij)``
(:class:`~itelib.models.hierarchical.features.FeatureMap`). So, in outcome units:

- a main term changes the effect by ``gamma_j * outcome_scale_`` per sd of ``x_j`` and by that
  over ``s_j`` per unit of ``x_j`` (a factor's level: against the reference level);
- a pair changes it by ``gamma_ij * outcome_scale_ / v_ij`` per sd of ``x_i`` times sd of
  ``x_j`` (the coefficient of ``z_i z_j``), and by that over ``s_i s_j`` per unit of
  ``(x_i - c_i)(x_j - c_j)``;
- a step (``"age>q50"``, the piecewise modifiers) changes it by ``gamma_k * outcome_scale_``
  over the step column's training sd where the covariate crosses the knot; a hinge
  (``"(age-q50)+"``) changes its slope beyond the knot by that per sd of the covariate;
- site ``s``'s effect differs from the population's by ``b_s * outcome_scale_``.

Binary outcomes: the same on the log-odds scale (``scale="log_odds_ratio"``, where
``outcome_scale_`` is 1); risk differences and a survival outcome's scales have no coefficients
(the projection covers them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itelib.explain.modifiers import ExactTerms, SiteTerms

__all__ = ["exact_modifiers", "site_effects"]


def exact_modifiers(est: Any, scale: str, keep: np.ndarray) -> ExactTerms | None:
    post = est.posterior_["posterior"]
    if scale not in ("outcome", "log_odds_ratio") or "gamma" not in post:
        return None
    gamma = post["gamma"].values[:, keep].astype(np.float64) * est.outcome_scale_
    data, features = est.data_, est.features_
    names, s = data.feature_names, np.asarray(data.encoder.scale)
    pairs = features.pairs if features.modifier_pairs else ()
    pair_scale = np.asarray(features.pair_scale if pairs else (), dtype=np.float64)
    pieces = features.pieces
    # a step's coefficient is a jump, the same per unit and per sd; a hinge's a change of slope
    piece_unit = [s[j] if kind == "hinge" else 1.0 for j, _, kind in pieces]
    unit_scale = np.concatenate([s, [s[i] * s[j] for i, j in pairs], piece_unit])
    per_sd = gamma * np.concatenate([
        np.ones(data.p), 1.0 / pair_scale, 1.0 / np.asarray(features.piece_scale, dtype=np.float64)
    ])  # fmt: skip
    terms = features.modifier_names(names)
    if gamma.shape[-1] != len(terms):
        raise ValueError(f"internal: gamma has {gamma.shape[-1]} modifiers, expected {terms}")
    kind = ("main",) * data.p + ("pair",) * len(pairs) + tuple(k for _, _, k in pieces)
    return ExactTerms(terms, kind, per_sd / unit_scale, per_sd)


def site_effects(est: Any, scale: str, keep: np.ndarray) -> SiteTerms | None:
    post = est.posterior_["posterior"]
    if scale not in ("outcome", "log_odds_ratio") or "site_effect_z" not in post:
        return None
    z = post["site_effect_z"].values[:, keep].astype(np.float64)
    sd = post["sigma_site_effect"].values[:, keep].astype(np.float64)
    draws = sd[..., None] * z * est.outcome_scale_
    labels = tuple(str(v) for v in post["site_effect_z"].coords["site"].values)
    n = np.bincount(est.data_.site, minlength=len(labels))
    return SiteTerms(labels, draws, n)
