"""Projections of per-patient effect draws onto a readable model (NumPy; no estimator here).

Woody, Carvalho & Murray (2021, "Model interpretation through lower-dimensional posterior
summarization", JCGS 30(1)) summarize a posterior over functions by projecting each draw onto a
simple model: the projection's parameters then have a posterior of their own, and the share of
each draw's variation the summary reproduces (the *summary R²*) says how far to trust it.

- :func:`linear_projection`: least squares of each draw of the effects ``tau_s`` (one value per
  patient) on the covariates; per-draw coefficients, summary R² and each covariate's
  importance (the standard deviation of the effect that only it explains, below);
- :func:`tree_projection`: one shallow CART tree fitted to the posterior mean effect, then each
  draw's mean effect per leaf and the tree's summary R²;
- :func:`best_linear_projection`: for an estimator without joint draws (EconML's forest), the
  least squares of its doubly robust scores on the covariates with HC3 standard errors
  (Semenova & Chernozhukov 2021; grf's ``best_linear_projection``), and normal draws of it.

**Importance** of a covariate (all its columns ``G``, e.g. a factor's levels), per draw, is
``sqrt(drop / n)``: ``drop`` is how much less of the draw's variation across patients the
linear projection explains without ``G``. It is in outcome units, the standard deviation of the
part of the effect only ``G`` accounts for: ``|coef| x sd(x)`` for a covariate independent of
the others, smaller for one whose information the others share (``docs/decisions.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "LinearProjection",
    "TreeProjection",
    "best_linear_projection",
    "linear_projection",
    "tree_projection",
]

_FLAT = 1e-12  # a draw whose effects vary less than this (relative) is constant: summary R² 1


class LinearProjection(NamedTuple):
    """Per-draw least-squares summary; ``S`` draws, ``p`` columns, ``g`` covariates.

    Attributes
    ----------
    intercept : (S,) the projection's value at the covariates' means.
    coef : (S, p) the change of the effect per unit of each column of ``X``.
    importance : (S, g) standard deviation of the effect only each covariate explains.
    r2 : (S,) summary R² (None for :func:`best_linear_projection`, which has no effect draws).
    """

    intercept: np.ndarray
    coef: np.ndarray
    importance: np.ndarray
    r2: np.ndarray | None


class TreeProjection(NamedTuple):
    """A shallow tree's partition of the patients and each draw's mean effect per leaf."""

    leaf: np.ndarray  # (n,) leaf index of each patient, 0 .. L - 1
    rules: tuple[str, ...]  # (L,) the path to each leaf, readable
    leaf_mean: np.ndarray  # (S, L)
    n: np.ndarray  # (L,) patients per leaf
    r2: np.ndarray | None  # (S,)


def _centred(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0)


def _unique_drops(
    Xc: np.ndarray, coef: np.ndarray, targets: np.ndarray, groups: list[np.ndarray]
) -> np.ndarray:
    """(S, g) loss of explained sum of squares when each group's columns leave the projection.

    Full rank: ``coef_G' [(X'X)^-1_GG]^-1 coef_G`` (the partial F-test's numerator), for all
    draws at once. Otherwise refit without the group (exact, slower).
    """
    gram = Xc.T @ Xc
    out = np.zeros((coef.shape[0], len(groups)))
    if np.linalg.matrix_rank(gram) == gram.shape[0]:
        inverse = np.linalg.inv(gram)
        for k, cols in enumerate(groups):
            block = np.linalg.inv(inverse[np.ix_(cols, cols)])
            out[:, k] = np.einsum("si,ij,sj->s", coef[:, cols], block, coef[:, cols])
        return np.maximum(out, 0.0)
    full = ((Xc @ coef.T) ** 2).sum(axis=0)
    for k, cols in enumerate(groups):
        rest = np.setdiff1d(np.arange(Xc.shape[1]), cols)
        fitted = Xc[:, rest] @ np.linalg.lstsq(Xc[:, rest], targets, rcond=None)[0]
        out[:, k] = full - (fitted**2).sum(axis=0)
    return np.maximum(out, 0.0)


def linear_projection(
    draws: np.ndarray, X: np.ndarray, groups: list[np.ndarray]
) -> LinearProjection:
    """Least squares of every draw of the patients' effects on ``X``.

    Parameters
    ----------
    draws : (S, n) effects, one row per posterior draw.
    X : (n, p) covariate columns (an intercept is added).
    groups : list of int arrays
        The columns of each covariate (one for a number, one per non-reference level of a
        factor); importance is per group.
    """
    n = X.shape[0]
    Xc = _centred(X)
    mean = draws.mean(axis=1)
    targets = (draws - mean[:, None]).T  # (n, S)
    coef = np.linalg.lstsq(Xc, targets, rcond=None)[0].T  # (S, p)
    rss = ((targets - Xc @ coef.T) ** 2).sum(axis=0)
    tss = (targets**2).sum(axis=0)
    r2 = _r2(rss, tss, draws)
    intercept = mean  # centred columns: the intercept is the mean effect
    drops = _unique_drops(Xc, coef, targets, groups)
    return LinearProjection(intercept, coef, np.sqrt(drops / n), r2)


def _r2(rss: np.ndarray, tss: np.ndarray, draws: np.ndarray) -> np.ndarray:
    flat = tss <= _FLAT * draws.shape[1] * (1.0 + (draws**2).mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(flat, 1.0, 1.0 - rss / np.where(flat, 1.0, tss))
    return np.clip(r2, 0.0, 1.0)


def tree_projection(
    draws: np.ndarray | None,
    X: np.ndarray,
    target: np.ndarray,
    names: list[str],
    binary_labels: dict[int, tuple[str, str]],
    *,
    max_depth: int,
    min_leaf: int,
    random_state: int,
) -> TreeProjection:
    """A CART tree of depth ``max_depth`` fitted to ``target`` (the posterior mean effect),
    then each draw's mean effect per leaf.

    ``X`` is in the user's units, so the rules read as such; ``binary_labels[j]`` names the two
    sides of a 0/1 column ``j`` (a factor's level: ``"sex is not F"``, ``"sex is F"``).
    ``draws`` None: the leaves and their patients only (``leaf_mean`` holds ``target``'s).
    """
    from sklearn.tree import DecisionTreeRegressor

    tree = DecisionTreeRegressor(
        max_depth=max_depth, min_samples_leaf=min_leaf, random_state=random_state
    ).fit(X, target)
    node_leaf = tree.apply(X)
    leaves = np.unique(node_leaf)
    leaf = np.searchsorted(leaves, node_leaf)
    rules = _rules(tree.tree_, names, binary_labels)
    values = target[None, :] if draws is None else draws
    onehot = (leaf[:, None] == np.arange(len(leaves))[None, :]).astype(float)
    n = onehot.sum(axis=0)
    leaf_mean = values @ onehot / n
    r2 = None
    if draws is not None:
        rss = ((draws - leaf_mean[:, leaf]) ** 2).sum(axis=1)
        tss = ((draws - draws.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        r2 = _r2(rss, tss, draws)
    return TreeProjection(leaf, tuple(rules[i] for i in leaves), leaf_mean, n.astype(int), r2)


def _rules(tree: object, names: list[str], binary: dict[int, tuple[str, str]]) -> dict[int, str]:
    """Readable path to every node: ``"age <= 52.5 and sex is F"``."""
    rules: dict[int, str] = {0: "all patients"}
    stack = [(0, [])]
    while stack:
        node, path = stack.pop()
        rules[node] = " and ".join(path) or "all patients"
        left, right = tree.children_left[node], tree.children_right[node]
        if left < 0:
            continue
        j, cut = int(tree.feature[node]), float(tree.threshold[node])
        if j in binary:
            no, yes = binary[j]
        else:
            no, yes = f"{names[j]} <= {cut:.4g}", f"{names[j]} > {cut:.4g}"
        stack.append((left, [*path, no]))
        stack.append((right, [*path, yes]))
    return rules


def best_linear_projection(
    scores: np.ndarray,
    X: np.ndarray,
    groups: list[np.ndarray],
    *,
    num_draws: int,
    rng: np.random.Generator,
) -> tuple[LinearProjection, np.ndarray, np.ndarray]:
    """Least squares of doubly robust scores on ``X`` with HC3 standard errors, and
    ``num_draws`` draws from the normal approximation of its coefficients.

    Returns the projection over those draws (``r2`` None), the point coefficients
    ``(1 + p,)`` (intercept first) and their ``(1 + p, 1 + p)`` covariance.
    """
    n = X.shape[0]
    Xc = _centred(X)
    design = np.column_stack([np.ones(n), Xc])
    bread = np.linalg.pinv(design.T @ design)
    beta = bread @ design.T @ scores
    resid = scores - design @ beta
    leverage = np.einsum("ij,jk,ik->i", design, bread, design)
    weight = (resid / np.clip(1.0 - leverage, 1e-8, None)) ** 2
    cov = bread @ (design.T * weight) @ design @ bread
    cov = (cov + cov.T) / 2
    draws = rng.multivariate_normal(beta, cov, size=num_draws, method="eigh")
    coef = draws[:, 1:]
    drops = _unique_drops(Xc, coef, (Xc @ coef.T), groups)
    return LinearProjection(draws[:, 0], coef, np.sqrt(drops / n), None), beta, cov
