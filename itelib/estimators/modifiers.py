"""``est.modifiers()``, written once: checks, draws, then the estimator's hooks.

An estimator with joint draws of the patients' effects has each draw projected
(:func:`itelib.explain.modifiers.from_draws`), beside what its hooks add: the model's own
coefficients (``_exact_modifiers``) and site effects (``_site_effects``). An estimator whose
per-patient draws are independent (EconML's forest) gives doubly robust scores instead
(``_modifier_scores``), since a projection of independent draws would average their errors
away and report intervals far too narrow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itelib import _params
from itelib.estimators.imputed import pooled_terms, with_completed_covariates
from itelib.explain.modifiers import ModifierSummary, from_draws, from_scores

__all__ = ["MAX_TREE_DEPTH", "modifier_summary", "thinned"]

MAX_TREE_DEPTH = 4  # at most 16 leaves: deeper trees stop being a readable summary


def thinned(n_chains: int, n_draws: int, max_draws: int) -> np.ndarray:
    """Evenly spaced draw indices, the same in every chain, at most ``max_draws`` in all."""
    per_chain = max(1, min(n_draws, max_draws // n_chains))
    return np.unique(np.linspace(0, n_draws - 1, per_chain).round().astype(int))


def modifier_summary(
    est: Any, *, prob: Any, tree_depth: Any, max_draws: Any, scale: Any
) -> ModifierSummary:
    """See :meth:`itelib.estimators.base.ITEEstimator.modifiers`."""
    name = f"{type(est).__name__}.modifiers"
    est._check_fitted()
    prob = _params.check_real(name, "prob", prob, low=0.0, high=1.0)
    depth = _params.check_int(name, "tree_depth", tree_depth, minimum=1)
    if depth > MAX_TREE_DEPTH:
        raise ValueError(
            f"{name}(tree_depth={depth}): at most {MAX_TREE_DEPTH} (16 leaves); a deeper tree "
            "is no longer a readable summary."
        )
    max_draws = _params.check_int(name, "max_draws", max_draws, minimum=2)
    scale = est._check_scale(scale)
    attrs = est._attrs(scale, quantity="modifiers")
    seed = est.random_state_
    scores = est._modifier_scores(scale)
    if scores is not None:
        dr, point = scores
        return from_scores(
            dr, point, est.data_, attrs=attrs, prob=prob, tree_depth=depth,
            num_draws=max_draws, random_state=seed,
        )  # fmt: skip
    draws = est._training_draws(scale)  # pooled over imputations
    keep = thinned(draws.shape[0], draws.shape[1], max_draws)
    data = est.data_
    if est._pooled:  # each imputation's fit has its own coefficients: pooled as the draws are
        exact = pooled_terms([s._exact_modifiers(scale, keep) for s in est.imputations_])
        sites = pooled_terms([s._site_effects(scale, keep) for s in est.imputations_])
        data = with_completed_covariates(est)
    else:
        exact, sites = est._exact_modifiers(scale, keep), est._site_effects(scale, keep)
    return from_draws(
        draws[:, keep], data, attrs=attrs, prob=prob, tree_depth=depth, random_state=seed,
        exact=exact, sites=sites,
    )  # fmt: skip
