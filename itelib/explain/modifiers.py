"""``ModifierSummary``: which covariates modify the effect, and how sure (``est.modifiers()``).

Built from the training patients' effect draws (:func:`from_draws`) or, for an estimator
without joint draws, from doubly robust scores (:func:`from_scores`); both read the covariates
as the estimator encoded them (:class:`~itelib.data.CovariateEncoder`) and report them in the
user's units, under the user's column names and factor levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from itelib.explain.projection import (
    LinearProjection,
    TreeProjection,
    best_linear_projection,
    linear_projection,
    tree_projection,
)

__all__ = ["ExactTerms", "ModifierSummary", "covariate_terms", "from_draws", "from_scores"]

_MIN_LEAF_SHARE = 0.05  # the tree's leaves hold at least 5 % of the patients (and 10 of them)
# Importance comes from a projection with the pairwise products of up to this many covariate
# columns (45 products), so a covariate acting only through a product (Hahn et al.'s
# 1 + 2 x2 x4) is credited; beyond it the products grow as p^2 and the main terms alone serve.
PAIRS_MAX_COLUMNS = 10


class ExactTerms(NamedTuple):
    """A model's own modifier coefficients on the outcome scale, ``(chain, draw, term)``."""

    terms: tuple[str, ...]
    kind: tuple[str, ...]  # "main", "pair", or a piecewise modifier's "step" or "hinge"
    per_unit: np.ndarray
    per_sd: np.ndarray


class SiteTerms(NamedTuple):
    """Each training site's effect deviation ``(chain, draw, site)`` and its patient count."""

    labels: tuple[str, ...]
    draws: np.ndarray
    n: np.ndarray


class _Terms(NamedTuple):
    covariate: tuple[str, ...]  # per encoded column: the user's column
    level: tuple[Any, ...]  # the factor level (None for a number)
    groups: list[np.ndarray]  # per covariate: its encoded columns
    names: tuple[str, ...]  # the covariates, in the data's order


def covariate_terms(encoder: Any) -> _Terms:
    """Map the encoder's columns back to the user's covariates (a factor's levels together)."""
    covariate, level, groups = [], [], []
    for col in encoder.columns:
        start = len(covariate)
        if col in encoder.categorical:
            for lv in encoder.categorical[col][1:]:
                covariate.append(col)
                level.append(lv)
        else:
            covariate.append(col)
            level.append(None)
        groups.append(np.arange(start, len(covariate)))
    return _Terms(tuple(covariate), tuple(level), groups, tuple(encoder.columns))


def _binary_labels(encoder: Any, terms: _Terms) -> dict[int, tuple[str, str]]:
    out = {}
    for j, (col, lv) in enumerate(zip(terms.covariate, terms.level, strict=True)):
        if lv is not None:
            out[j] = (f"{col} is not {lv}", f"{col} is {lv}")
    return out


def _frame(draws: np.ndarray, index: Any, prob: float) -> pd.DataFrame:
    """mean, lower, upper (equal-tailed), prob_positive of (S, k) draws."""
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return pd.DataFrame(
        {"mean": draws.mean(axis=0), "lower": lo, "upper": hi,
         "prob_positive": (draws > 0).mean(axis=0)},
        index=pd.Index(index),
    )  # fmt: skip


class ModifierSummary:
    """Effect modifiers of a fitted estimator on the effect's scale, with their uncertainty.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per covariate column (a factor: one per non-reference level), most important
        covariate first: ``covariate``, ``level``, ``per_unit`` and ``per_sd`` (the linear
        projection's change of the effect per unit and per standard deviation of the
        covariate, a factor level against the reference level) each with ``_lower`` /
        ``_upper``, ``sd`` (the covariate's training sd), ``prob_positive`` and the covariate's
        ``importance`` (``_lower`` / ``_upper``) and ``rank``.
    importance : pandas.DataFrame
        One row per covariate, ranked: the standard deviation of the effect (outcome units)
        that only this covariate explains, with its interval, in the projection on the
        covariates and (up to :data:`PAIRS_MAX_COLUMNS` columns) their pairwise products, a
        covariate owning its products: one that acts through a product is credited.
    r2 : pandas.DataFrame
        Rows ``linear``, ``pairs`` (the projection with products, when there is one) and
        ``tree``: the summary R² (share of the effects' variation across patients the
        projection reproduces, per draw), mean and interval.
    tree : pandas.DataFrame
        The shallow tree's leaves: ``rule``, ``n``, the leaf's mean effect and interval.
    exact : pandas.DataFrame or None
        The model's own modifier coefficients (HierarchicalITE: main terms and pairwise
        products), per unit and per sd, on the effect's scale.
    sites : pandas.DataFrame or None
        Each training site's effect minus the population effect, on the effect's scale.
    attrs : dict
        ``estimator``, ``inference``, ``scale``, ``outcome``, ``method``, ``prob``.
    """

    def __init__(
        self,
        *,
        terms: _Terms,
        sd: np.ndarray,
        linear: LinearProjection,
        tree: TreeProjection,
        pairs: LinearProjection | None,
        shape: tuple[int, int],
        attrs: Mapping[str, Any],
        prob: float,
        exact: ExactTerms | None = None,
        sites: SiteTerms | None = None,
        point_r2: Mapping[str, float] | None = None,
    ) -> None:
        self._terms, self._sd, self._linear, self._tree = terms, sd, linear, tree
        self._pairs = pairs
        self._importance = (pairs if pairs is not None else linear).importance
        self._shape, self._exact, self._sites = shape, exact, sites
        self.attrs = {**attrs, "prob": prob}
        self.importance = self._importance_table(prob)
        self.table = self._coefficient_table(prob)
        self.r2 = self._r2_table(prob, point_r2 or {})
        self.tree = self._tree_table(prob)
        self.exact = None if exact is None else self._exact_table(prob)
        self.sites = None if sites is None else self._site_table(prob)

    def __repr__(self) -> str:
        top = ", ".join(self.importance.index[:3])
        return (
            f"ModifierSummary({self.attrs.get('estimator')}, {len(self.importance)} covariates, "
            f"most important: {top})"
        )

    # -- tables --------------------------------------------------------------------------
    def _importance_table(self, prob: float) -> pd.DataFrame:
        f = _frame(self._importance, self._terms.names, prob)
        f = f.drop(columns="prob_positive").rename(columns={"mean": "importance"})
        f = f.sort_values("importance", ascending=False, kind="stable")
        f["rank"] = np.arange(1, len(f) + 1)
        f.index.name = "covariate"
        return f

    def _coefficient_table(self, prob: float) -> pd.DataFrame:
        names = self._term_names()
        per_sd = self._linear.coef
        unit = _frame(per_sd / self._sd, names, prob)
        sd = _frame(per_sd, names, prob)
        out = pd.DataFrame(
            {"covariate": self._terms.covariate, "level": self._terms.level,
             "per_unit": unit["mean"], "per_unit_lower": unit["lower"],
             "per_unit_upper": unit["upper"], "per_sd": sd["mean"],
             "per_sd_lower": sd["lower"], "per_sd_upper": sd["upper"], "sd": self._sd,
             "prob_positive": sd["prob_positive"]},
            index=pd.Index(names, name="term"),
        )  # fmt: skip
        imp = self.importance.rename(
            columns={"lower": "importance_lower", "upper": "importance_upper"}
        )
        out = out.join(imp, on="covariate")
        return out.sort_values("rank", kind="stable")

    def _r2_table(self, prob: float, point: Mapping[str, float]) -> pd.DataFrame:
        rows = {}
        pairs = None if self._pairs is None else self._pairs.r2
        for name, r2 in (("linear", self._linear.r2), ("pairs", pairs), ("tree", self._tree.r2)):
            if name == "pairs" and self._pairs is None:
                continue
            if r2 is None:  # no effect draws: the point estimates' R², without an interval
                rows[name] = {"mean": point.get(name, np.nan), "lower": np.nan, "upper": np.nan}
            else:
                rows[name] = _frame(r2[:, None], [name], prob).iloc[0, :3].to_dict()
        return pd.DataFrame.from_dict(rows, orient="index")

    def _tree_table(self, prob: float) -> pd.DataFrame:
        f = _frame(self._tree.leaf_mean, np.arange(len(self._tree.rules)), prob)
        f.insert(0, "n", self._tree.n)
        f.insert(0, "rule", self._tree.rules)
        f.index.name = "leaf"
        return f

    def _exact_table(self, prob: float) -> pd.DataFrame:
        e = self._exact
        flat = (-1, len(e.terms))
        unit = _frame(e.per_unit.reshape(flat), e.terms, prob)
        sd = _frame(e.per_sd.reshape(flat), e.terms, prob)
        out = pd.DataFrame(
            {"kind": e.kind, "per_unit": unit["mean"], "per_unit_lower": unit["lower"],
             "per_unit_upper": unit["upper"], "per_sd": sd["mean"],
             "per_sd_lower": sd["lower"], "per_sd_upper": sd["upper"],
             "prob_positive": sd["prob_positive"]},
            index=pd.Index(e.terms, name="term"),
        )  # fmt: skip
        return out

    def _site_table(self, prob: float) -> pd.DataFrame:
        s = self._sites
        f = _frame(s.draws.reshape(-1, len(s.labels)), s.labels, prob)
        f.insert(0, "n", s.n)
        f.index.name = "site"
        return f

    # -- draws ---------------------------------------------------------------------------
    def to_datatree(self) -> Any:
        """The draws behind the tables (ArviZ groups, dims ``(chain, draw, ...)``)."""
        import arviz_base

        shape = self._shape
        per_sd = self._linear.coef
        post = {
            "per_sd": per_sd.reshape(*shape, -1),
            "per_unit": (per_sd / self._sd).reshape(*shape, -1),
            "importance": self._importance.reshape(*shape, -1),
            "leaf_mean": self._tree.leaf_mean.reshape(*shape, -1),
        }
        pairs = None if self._pairs is None else self._pairs.r2
        for name, r2 in (("r2_linear", self._linear.r2), ("r2_pairs", pairs),
                         ("r2_tree", self._tree.r2)):  # fmt: skip
            if r2 is not None:
                post[name] = r2.reshape(shape)
        dims = {"per_sd": ["term"], "per_unit": ["term"], "importance": ["covariate"],
                "leaf_mean": ["leaf"]}  # fmt: skip
        coords: dict[str, Any] = {"term": self._term_names(),
                                  "covariate": list(self._terms.names),
                                  "leaf": list(self._tree.rules)}  # fmt: skip
        if self._exact is not None:
            post["exact_per_unit"] = self._exact.per_unit
            post["exact_per_sd"] = self._exact.per_sd
            dims |= {"exact_per_unit": ["exact_term"], "exact_per_sd": ["exact_term"]}
            coords["exact_term"] = list(self._exact.terms)
        if self._sites is not None:
            post["site_effect"] = self._sites.draws
            dims["site_effect"] = ["site"]
            coords["site"] = list(self._sites.labels)
        attrs = {k: v for k, v in self.attrs.items() if v is not None}
        tree = arviz_base.from_dict({"posterior": post}, dims=dims, coords=coords)
        tree.attrs.update(attrs)
        return tree

    def _term_names(self) -> list[str]:
        return [
            c if lv is None else f"{c}[{lv}]"
            for c, lv in zip(self._terms.covariate, self._terms.level, strict=True)
        ]


def with_pairs(X: np.ndarray, groups: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``X`` and the standardized products of columns of different covariates, each covariate's
    group holding its own columns and every product it is part of; ``X`` unchanged beyond
    :data:`PAIRS_MAX_COLUMNS` columns (and no groups)."""
    p = X.shape[1]
    if p > PAIRS_MAX_COLUMNS or len(groups) < 2:
        return X, []
    owner = np.empty(p, dtype=int)
    for k, cols in enumerate(groups):
        owner[cols] = k
    columns, members = [X], [list(cols) for cols in groups]
    for i, j in combinations(range(p), 2):
        prod = X[:, i] * X[:, j]
        if owner[i] == owner[j] or prod.std() <= 1e-12:  # two levels of one factor: 0
            continue
        index = p + len(columns) - 1
        columns.append(((prod - prod.mean()) / prod.std())[:, None])
        members[owner[i]].append(index)
        members[owner[j]].append(index)
    return np.hstack(columns), [np.array(m) for m in members]


def _raw(data: Any) -> np.ndarray:
    """The encoded covariates in the user's units (undo the standardization)."""
    return data.X * data.encoder.scale + data.encoder.center


def _min_leaf(n: int) -> int:
    return max(10, int(np.ceil(_MIN_LEAF_SHARE * n)))


def from_draws(
    draws: np.ndarray,
    data: Any,
    *,
    attrs: Mapping[str, Any],
    prob: float,
    tree_depth: int,
    random_state: int,
    exact: ExactTerms | None = None,
    sites: SiteTerms | None = None,
) -> ModifierSummary:
    """Project every draw of the training patients' effects ``(chain, draw, patient)``."""
    shape = draws.shape[:2]
    flat = draws.reshape(-1, draws.shape[2])
    terms = covariate_terms(data.encoder)
    linear = linear_projection(flat, data.X, terms.groups)
    X_pairs, pair_groups = with_pairs(data.X, terms.groups)
    pairs = linear_projection(flat, X_pairs, pair_groups) if pair_groups else None
    raw = _raw(data)
    tree = tree_projection(
        flat, raw, flat.mean(axis=0), list(terms.covariate), _binary_labels(data.encoder, terms),
        max_depth=tree_depth, min_leaf=_min_leaf(data.n),
        random_state=random_state,
    )  # fmt: skip
    return ModifierSummary(
        terms=terms, sd=np.asarray(data.encoder.scale), linear=linear, tree=tree, pairs=pairs,
        shape=shape, attrs={**attrs, "method": "posterior_projection"}, prob=prob, exact=exact,
        sites=sites,
    )  # fmt: skip


def from_scores(
    scores: np.ndarray,
    point: np.ndarray,
    data: Any,
    *,
    attrs: Mapping[str, Any],
    prob: float,
    tree_depth: int,
    num_draws: int,
    random_state: int,
) -> ModifierSummary:
    """The doubly robust best linear projection (normal approximation) of an estimator whose
    per-patient draws are independent; the tree is fitted to its point estimates ``point`` and
    its leaves' means are the scores' means with their standard errors."""
    rng = np.random.default_rng(random_state)
    keep = np.isfinite(scores)
    terms = covariate_terms(data.encoder)
    linear, _, _ = best_linear_projection(
        scores[keep], data.X[keep], terms.groups, num_draws=num_draws, rng=rng
    )
    # importance from the main terms only: with the products' 15-45 more columns the noisy
    # scores' coefficients inflated every covariate's importance (Hahn et al.'s design, n = 500)
    raw = _raw(data)
    leaves = tree_projection(
        None, raw, point, list(terms.covariate), _binary_labels(data.encoder, terms),
        max_depth=tree_depth, min_leaf=_min_leaf(data.n), random_state=random_state,
    )  # fmt: skip
    leaf_mean = np.empty((num_draws, len(leaves.rules)))
    for k in range(len(leaves.rules)):
        s = scores[keep & (leaves.leaf == k)]
        se = s.std(ddof=1) / np.sqrt(len(s)) if len(s) > 1 else np.inf
        leaf_mean[:, k] = rng.normal(s.mean(), se, size=num_draws)
    # the summary R² of the point estimates (no draws to give it an interval)
    fitted = leaves.leaf_mean[0][leaves.leaf]
    centred = point - point.mean()
    point_r2 = {
        "linear": float(linear_projection(point[None], data.X, terms.groups).r2[0]),
        "tree": 1.0 - float(((point - fitted) ** 2).sum() / max((centred**2).sum(), 1e-300)),
    }
    tree = leaves._replace(leaf_mean=leaf_mean)
    return ModifierSummary(
        terms=terms, sd=np.asarray(data.encoder.scale), linear=linear, tree=tree, pairs=None,
        shape=(1, num_draws), attrs={**attrs, "method": "doubly_robust_best_linear_projection"},
        prob=prob, point_r2=point_r2,
    )  # fmt: skip
