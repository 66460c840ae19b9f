"""est.modifiers(): which covariates modify the effect, and how sure (itelib.explain).

The projections (itelib.explain.projection) are checked against hand computations on draws
whose answer is known; each estimator is checked to rank the true modifiers of
``multisite_rct`` (x1 and x2: 0.5 and -0.4 per sd; x3..x6 none) first; HierarchicalITE's own
coefficients against what its effects do when a covariate moves one unit; site effects against
the difference of two sites' effects.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from itelib import (
    BayesianCausalForest,
    CausalForest,
    ConvergenceWarning,
    DataWarning,
    HierarchicalITE,
    NotFittedError,
)
from itelib.explain.projection import (
    best_linear_projection,
    linear_projection,
    tree_projection,
)
from itelib.simulate import multisite_rct

TRUE_MODIFIERS = {"x1", "x2"}


def _quiet_fit(est, **kwargs):
    with warnings.catch_warnings():
        # short test chains do not reach ESS 400 (ConvergenceWarning); small simulated sites
        # can have one arm (DataWarning). Neither is what these tests check.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DataWarning)
        return est.fit(**kwargs)


@pytest.fixture(scope="module")
def trial():
    return multisite_rct(n=400, seed=3, n_sites=6)


@pytest.fixture(scope="module")
def hierarchical(trial):
    est = HierarchicalITE(num_warmup=200, num_samples=200, num_chains=2, progress_bar=False,
                          random_state=1)  # fmt: skip
    return _quiet_fit(est, **trial.fit_kwargs())


# --------------------------------------------------------------------------- projections
def test_linear_projection_of_exactly_linear_draws_is_exact():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    coef = rng.normal(size=(50, 3))
    draws = rng.normal(size=(50, 1)) + coef @ X.T
    proj = linear_projection(draws, X, [np.array([0]), np.array([1]), np.array([2])])
    np.testing.assert_allclose(proj.coef, coef, atol=1e-10)
    np.testing.assert_allclose(proj.r2, 1.0, atol=1e-10)
    np.testing.assert_allclose(proj.intercept, draws.mean(axis=1))


def test_summary_r2_lies_in_0_1_and_constant_draws_count_as_explained():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 2))
    draws = np.vstack([rng.normal(size=(20, 100)), np.full((1, 100), 3.0)])
    proj = linear_projection(draws, X, [np.array([0]), np.array([1])])
    assert np.all((proj.r2 >= 0) & (proj.r2 <= 1))
    assert proj.r2[:20].max() < 0.3 and proj.r2[-1] == 1.0  # noise: little; a constant: all
    tree = tree_projection(draws, X, draws.mean(axis=0), ["a", "b"], {}, max_depth=2,
                           min_leaf=10, random_state=0)  # fmt: skip
    assert np.all((tree.r2 >= 0) & (tree.r2 <= 1)) and tree.r2[-1] == 1.0


def test_importance_is_coef_times_sd_for_uncorrelated_covariates_and_a_factor_counts_once():
    rng = np.random.default_rng(2)
    n = 400
    x = rng.normal(size=n) * 3.0
    level = np.repeat([0, 1, 2, 3], n // 4)  # a factor with 4 levels: 3 dummy columns
    dummies = (level[:, None] == np.arange(1, 4)).astype(float)
    X = np.column_stack([x - x.mean(), dummies])
    X[:, 0] -= dummies @ np.linalg.lstsq(dummies - dummies.mean(0), X[:, 0], rcond=None)[0]
    coef = np.array([[0.5, 1.0, -1.0, 2.0]])
    draws = coef @ X.T
    proj = linear_projection(draws, X, [np.array([0]), np.array([1, 2, 3])])
    # the number's column is orthogonal to the factor's: importance = |coef| x sd
    np.testing.assert_allclose(proj.importance[0, 0], 0.5 * X[:, 0].std())
    # the factor: the sd of its own contribution to the effect
    np.testing.assert_allclose(proj.importance[0, 1], (dummies @ coef[0, 1:]).std())


def test_tree_projection_finds_a_step_and_names_factor_levels():
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=300), rng.integers(0, 2, 300)]).astype(float)
    step = np.where(X[:, 1] == 1, 2.0, 0.0)
    draws = step + rng.normal(scale=0.01, size=(40, 1))
    tree = tree_projection(draws, X, draws.mean(axis=0), ["age", "sex[F]"],
                           {1: ("sex is not F", "sex is F")}, max_depth=1, min_leaf=10,
                           random_state=0)  # fmt: skip
    assert set(tree.rules) == {"sex is not F", "sex is F"}
    np.testing.assert_allclose(tree.r2, 1.0, atol=1e-10)
    leaf_f = tree.rules.index("sex is F")
    np.testing.assert_allclose(tree.leaf_mean[:, leaf_f], draws[:, X[:, 1] == 1].mean(axis=1))


def test_best_linear_projection_is_least_squares_with_hc3_errors():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 2))
    scores = 1.0 + 0.5 * X[:, 0] + rng.normal(scale=1.0 + np.abs(X[:, 1]), size=500)
    proj, beta, cov = best_linear_projection(scores, X, [np.array([0]), np.array([1])],
                                             num_draws=4000, rng=rng)  # fmt: skip
    design = np.column_stack([np.ones(500), X - X.mean(0)])
    np.testing.assert_allclose(beta, np.linalg.lstsq(design, scores, rcond=None)[0])
    bread = np.linalg.inv(design.T @ design)
    h = np.einsum("ij,jk,ik->i", design, bread, design)
    e = (scores - design @ beta) / (1 - h)
    np.testing.assert_allclose(cov, bread @ (design.T * e**2) @ design @ bread, rtol=1e-10)
    # 4000 normal draws: the draws' sd within 5 % of the HC3 standard error
    np.testing.assert_allclose(proj.coef.std(axis=0), np.sqrt(np.diag(cov))[1:], rtol=0.05)
    assert proj.r2 is None


# --------------------------------------------------------------------------- estimators
def _top_two(summary):
    return set(summary.importance.index[:2])


def test_hierarchical_ranks_the_true_modifiers_first(hierarchical):
    s = hierarchical.modifiers()
    assert _top_two(s) == TRUE_MODIFIERS
    assert list(s.importance["rank"]) == [1, 2, 3, 4, 5, 6]
    table = s.table.set_index("covariate")
    assert table.loc["x1", "prob_positive"] > 0.99 and table.loc["x2", "prob_positive"] < 0.01
    # the model's own coefficients agree: the largest |per sd| terms are x1 and x2
    exact = s.exact.loc[s.exact["kind"] == "main", "per_sd"].abs().sort_values()
    assert set(exact.index[-2:]) == TRUE_MODIFIERS
    assert {"x1*x2", "x5*x6"} <= set(s.exact.index)  # pairs as pairs
    assert s.attrs["method"] == "posterior_projection" and s.attrs["inference"] == "mcmc"


def test_hierarchical_exact_per_unit_is_what_one_unit_does_to_the_effect(hierarchical):
    """With the other covariates at their training means every product with x1 is constant,
    and below x1's median knot its step and hinge are 0 (the default's piecewise modifiers),
    so moving x1 by one unit there changes each draw's effect by exactly the per-unit
    coefficient of x1; the pair x1*x2 is the double difference of moving both (each
    covariate's own pieces cancel in it)."""
    est = hierarchical
    s = est.modifiers(max_draws=10_000)  # every draw, in order
    tree = s.to_datatree()["posterior"]
    enc = est.data_.encoder
    j = list(enc.feature_names).index("x1")
    knots = [k for i, k, _ in est.features_.pieces if i == j]  # standardized; none: no pieces
    centre = pd.DataFrame([enc.center], columns=list(enc.feature_names))
    start = min([enc.center[j], *(enc.center[j] + enc.scale[j] * k for k in knots)]) - 1.5
    centre["x1"] = start  # x1 moves from here to half a unit below its knot
    rows = pd.concat([centre] * 4, ignore_index=True)
    rows.loc[[1, 3], "x1"] += 1.0
    rows.loc[[2, 3], "x2"] += 1.0
    draws = est.effect(rows, site="s00").draws()  # one training site: its b_s cancels
    per_unit = tree["exact_per_unit"]
    np.testing.assert_allclose(
        draws[..., 1] - draws[..., 0], per_unit.sel(exact_term="x1").values, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        draws[..., 3] - draws[..., 2] - draws[..., 1] + draws[..., 0],
        per_unit.sel(exact_term="x1*x2").values,
        rtol=1e-3,
        atol=1e-5,
    )
    # per unit and per sd by hand: gamma (standardized scale) x outcome sd / covariate sd
    gamma = est.posterior_["posterior"]["gamma"].values
    np.testing.assert_allclose(tree["exact_per_sd"].values[..., j],
                               gamma[..., j] * est.outcome_scale_, rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(
        tree["exact_per_unit"].values[..., j],
        gamma[..., j] * est.outcome_scale_ / enc.scale[j],
        rtol=1e-6,
    )
    k = list(s.exact.index).index("x1*x2")
    pair = gamma[..., k] * est.outcome_scale_ / est.features_.pair_scale[k - est.data_.p]
    np.testing.assert_allclose(tree["exact_per_sd"].values[..., k], pair, rtol=1e-6)
    # the projection's table: per unit = per sd / the covariate's sd, exactly
    np.testing.assert_allclose(s.table["per_unit"], s.table["per_sd"] / s.table["sd"])


def test_hierarchical_site_effects_are_differences_between_sites(hierarchical):
    est = hierarchical
    s = est.modifiers(max_draws=10_000)
    X = est.data_.encoder.center[None, :] + np.zeros((1, est.data_.p))
    X = pd.DataFrame(X, columns=list(est.data_.encoder.feature_names))
    a, b = est.effect(X, site="s01").draws()[..., 0], est.effect(X, site="s04").draws()[..., 0]
    sites = s.to_datatree()["posterior"]["site_effect"]
    np.testing.assert_allclose(a - b, (sites.sel(site="s01") - sites.sel(site="s04")).values,
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    assert list(s.sites.index) == [f"s{i:02d}" for i in range(6)]
    assert s.sites["n"].sum() == est.data_.n


def test_summary_r2_is_one_when_the_model_effect_is_linear(trial):
    est = HierarchicalITE(num_warmup=100, num_samples=100, num_chains=2, progress_bar=False,
                          effect_modifiers="linear", random_state=2)  # fmt: skip
    kwargs = {k: v for k, v in trial.fit_kwargs().items() if k != "site"}
    s = _quiet_fit(est, **kwargs).modifiers()
    np.testing.assert_allclose(s.to_datatree()["posterior"]["r2_linear"].values, 1.0, atol=1e-6)
    assert s.r2.loc["tree", "mean"] < 1.0
    np.testing.assert_allclose(  # the projection is the model: same coefficients
        s.table.loc[list(s.exact.index), "per_sd"], s.exact["per_sd"], rtol=1e-5, atol=1e-7
    )


def test_bayesian_causal_forest_ranks_the_true_modifiers_first(trial):
    est = BayesianCausalForest(
        num_trees_mu=20,
        num_trees_tau=10,
        num_warmup=100,
        num_samples=100,
        num_chains=2,
        progress_bar=False,
        random_state=1,
    )
    s = _quiet_fit(est, **trial.fit_kwargs()).modifiers()
    assert _top_two(s) == TRUE_MODIFIERS
    assert s.exact is None and list(s.sites.index) == [f"s{i:02d}" for i in range(6)]
    r2 = s.to_datatree()["posterior"]["r2_linear"].values
    assert np.all((r2 >= 0) & (r2 <= 1))


def test_causal_forest_gives_the_doubly_robust_projection(trial):
    est = CausalForest(n_estimators=200, n_jobs=1, random_state=1)
    s = _quiet_fit(est, **trial.fit_kwargs()).modifiers()
    assert _top_two(s) == TRUE_MODIFIERS
    assert s.attrs["method"] == "doubly_robust_best_linear_projection"
    assert s.attrs["inference"] == "normal_approximation"
    assert s.r2[["lower", "upper"]].isna().all().all()  # no draws: point R² only
    assert 0 < s.r2.loc["linear", "mean"] <= 1 and s.sites is None and s.exact is None


def test_factor_levels_keep_the_users_names():
    rng = np.random.default_rng(5)
    n = 600
    arm = pd.Categorical(rng.choice(["low", "mid", "high"], n), categories=["low", "mid", "high"])
    X = pd.DataFrame({"age": rng.normal(50, 10, n), "stage": arm, "bmi": rng.normal(25, 4, n)})
    t = rng.integers(0, 2, n)
    tau = np.select([X["stage"] == "mid", X["stage"] == "high"], [1.0, 3.0], 0.0)
    y = 0.02 * X["age"] + t * tau + rng.normal(size=n)
    est = _quiet_fit(CausalForest(n_estimators=200, n_jobs=1, random_state=0), Y=y, T=t, X=X)
    s = est.modifiers()
    assert s.importance.index[0] == "stage" and set(s.importance.index) == {"age", "stage", "bmi"}
    rows = s.table[s.table["covariate"] == "stage"]
    assert list(rows.index) == ["stage[mid]", "stage[high]"]
    assert list(rows["level"]) == ["mid", "high"]
    assert any("stage is high" in rule for rule in s.tree["rule"])
    # a level against the reference: per unit of its 0/1 column
    assert rows.loc["stage[high]", "per_unit_lower"] > 1.5


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prob": 1.5}, ValueError, "prob"),
        ({"prob": "high"}, TypeError, "prob"),
        ({"tree_depth": 0}, ValueError, "tree_depth"),
        ({"tree_depth": 9}, ValueError, "tree_depth"),
        ({"max_draws": 1}, ValueError, "max_draws"),
        ({"max_draws": 2.5}, TypeError, "max_draws"),
        ({"scale": "log_odds_ratio"}, ValueError, "scale"),
    ],
)
def test_bad_arguments_are_refused_by_name(hierarchical, kwargs, error, match):
    with pytest.raises(error, match=match):
        hierarchical.modifiers(**kwargs)


def test_an_unfitted_estimator_says_fit_first():
    with pytest.raises(NotFittedError, match="fit"):
        HierarchicalITE().modifiers()


def test_a_covariate_acting_only_through_a_product_is_credited():
    """tau = 1 + 2 x2 x4 (Hahn et al.'s effect): x4 has no linear slope at x2's mean, so only
    the projection with products ranks both first."""
    from itelib.data import TrialData
    from itelib.explain.modifiers import from_draws

    rng = np.random.default_rng(6)
    n = 300
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"x{k}" for k in range(1, 6)])
    data = TrialData.from_arrays(rng.normal(size=n), rng.integers(0, 2, n), X=X)
    draws = 1 + 2 * (X["x2"] * X["x4"]).to_numpy() + rng.normal(scale=0.1, size=(2, 50, n))
    attrs = {"estimator": "Test", "scale": "outcome", "inference": "mcmc"}
    s = from_draws(draws, data, attrs=attrs, prob=0.95, tree_depth=2, random_state=0)
    assert set(s.importance.index[:2]) == {"x2", "x4"}
    assert s.r2.loc["linear", "mean"] < 0.1 < 0.9 < s.r2.loc["pairs", "mean"]
