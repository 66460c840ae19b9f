"""FeatureMap: smooth bases and interaction candidates, and their exact likelihood."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
from numpyro.infer.util import log_density

from itelib import HierarchicalPriors
from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.features import FeatureMap
from itelib.simulate import hahn2020


def _standardized_hahn(n=200, seed=0):
    from itelib.data import TrialData

    trial = hahn2020(n=n, seed=seed, mu="nonlinear", tau="heterogeneous")
    return trial, TrialData.from_arrays(**trial.fit_kwargs())


def test_smooth_terms_only_for_covariates_with_more_than_two_values():
    trial, data = _standardized_hahn()
    fm = FeatureMap.fit(data.X, prognosis="additive", n_basis=7)
    names = [data.feature_names[j] for j in fm.smooth]
    assert names == ["x1", "x2", "x3"]  # x4 is 0/1 and x5 is one-hot: no smooth term
    basis = fm.basis(data.X)
    assert basis.shape == (data.n, 3 * 7) and np.all(np.isfinite(basis))
    # Laplacian eigenfunctions on [-L, L] are orthogonal: check on a fine grid.
    L = fm.boundary[0]
    grid = np.linspace(-L, L, 4001)[:, None] * np.ones((1, data.p))
    phi = fm.basis(grid)[:, :7]
    gram = phi.T @ phi * (2 * L / 4000)
    np.testing.assert_allclose(gram, np.eye(7), atol=2e-3)


def test_new_patients_outside_the_box_are_clamped():
    _, data = _standardized_hahn()
    fm = FeatureMap.fit(data.X, prognosis="additive", n_basis=5)
    far = np.full((1, data.p), 1e6)
    edge = np.array(
        [
            [
                L if j in fm.smooth else 0.0
                for j, L in zip(range(data.p), _boundary_by_column(fm, data.p), strict=True)
            ]
        ]
    )
    np.testing.assert_allclose(fm.basis(far), fm.basis(edge))


def _boundary_by_column(fm, p):
    out = [0.0] * p
    for j, L in zip(fm.smooth, fm.boundary, strict=True):
        out[j] = L
    return out


def test_interactions_skip_products_of_one_factor_and_are_standardized():
    _, data = _standardized_hahn()
    fm = FeatureMap.fit(data.X, modifiers="interactions")
    names = fm.modifier_names(data.feature_names)
    assert "x2*x4" in names
    # x5[2]*x5[3]: the raw dummies' product is 0, so the standardized product is a linear
    # function of the two dummies and would only duplicate them.
    assert not any(n.count("x5[") == 2 for n in names)
    # x4 is 0/1: x4*x4 is not a candidate either (only distinct pairs are)
    assert "x4*x4" not in names
    Z = fm.modifiers(data.X)
    extra = Z[:, data.p :]
    np.testing.assert_allclose(extra.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(extra.std(0), 1, atol=1e-10)


def test_flexible_sufficient_statistics_equal_row_likelihood():
    """Smooth basis and interaction columns keep the cross-product likelihood exact."""
    _, data = _standardized_hahn(n=150, seed=3)
    fm = FeatureMap.fit(data.X, prognosis="additive", modifiers="interactions", n_basis=4)
    rng = np.random.default_rng(1)
    q, k = data.p + len(fm.pairs), len(fm.smooth)
    common = dict(p=data.p, n_sites=0, priors=HierarchicalPriors(), q=q, n_smooth=k, n_basis=4)
    with jax.enable_x64(True):
        y = (data.y - data.y.mean()) / data.y.std()
        basis, Z, eig = fm.basis(data.X), fm.modifiers(data.X), fm.sqrt_eigenvalues()
        rows = m.ModelData(
            np.asarray(0.1),
            y=y,
            t=data.t,
            X=data.X,
            site=np.zeros(data.n, "i4"),
            basis=basis,
            modifiers=Z,
            sqrt_eig=eig,
        )
        stats = m.gaussian_sufficient_statistics(
            y, data.t, data.X, None, 0, basis=basis, modifiers=Z
        )
        suff = m.ModelData(np.asarray(0.1), stats=stats, sqrt_eig=eig)
        for _ in range(3):
            pos = lambda *s: np.exp(rng.normal(size=s) * 0.5)  # noqa: E731
            params = {
                "alpha": rng.normal(), "tau0": rng.normal(), "sigma": pos()[()],
                "beta": rng.normal(size=data.p), "gamma_z": rng.normal(size=q),
                "hs_global_a": pos()[()], "hs_global_b": pos()[()], "hs_local_a": pos(q),
                "hs_local_b": pos(q), "hs_slab": pos()[()], "smooth_amplitude": pos(k),
                "smooth_lengthscale": pos(k), "smooth_z": rng.normal(size=(k, 4)),
            }  # fmt: skip
            lp_rows, _ = log_density(
                m.hierarchical_model, (rows, m.ModelSpec(**common, likelihood="rows")), {}, params
            )
            lp_suff, _ = log_density(
                m.hierarchical_model, (suff, m.ModelSpec(**common)), {}, params
            )
            np.testing.assert_allclose(float(lp_suff), float(lp_rows), rtol=1e-10)


def test_linear_map_is_the_identity():
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3))).to_numpy()
    fm = FeatureMap.fit(X)
    assert fm.smooth == () and fm.pairs == ()
    np.testing.assert_array_equal(fm.modifiers(X), X)
    assert fm.basis(X).shape == (20, 0)


def test_smooth_term_gradients_stay_finite_for_long_lengthscales():
    """sqrt(S(w)) of the HSGP is computed directly: as sqrt of an underflowed S(w) = 0 in
    float32 its gradient was infinite, which sent whole chains astray (R-hat 3.4, 2000
    divergent transitions on hahn_nonlinear_homogeneous with the propensity as a covariate)."""
    import jax
    import jax.numpy as jnp
    from numpyro import handlers

    from itelib.models.hierarchical import model as m
    from itelib.models.hierarchical.priors import HierarchicalPriors

    spec = m.ModelSpec(p=1, n_sites=0, priors=HierarchicalPriors(), n_smooth=1, n_basis=10)
    sqrt_eig = jnp.asarray(np.pi * np.arange(1, 11) / (2 * 4.0), jnp.float32)[None, :]

    def coef_sum(log_ls):
        values = {
            "smooth_amplitude": jnp.ones(1, jnp.float32),
            "smooth_lengthscale": jnp.exp(log_ls)[None],
            "smooth_z": jnp.ones((1, 10), jnp.float32),
        }
        with handlers.seed(rng_seed=0), handlers.substitute(data=values):
            return m._smooth_terms(spec, sqrt_eig).sum()

    for ls in (0.3, 5.0, 30.0, 300.0):  # exp(-(ls w)^2 / 2) underflows float32 from ls ~ 20
        grad = jax.grad(coef_sum)(jnp.log(jnp.float32(ls)))
        assert jnp.isfinite(grad), ls


def test_smooth_effect_terms_sufficient_statistics_equal_row_likelihood():
    """``effect_modifiers="additive_interactions"``: the columns ``t·psi`` keep the
    cross-product likelihood exact (rows: ``effect += psi @ v``; sufficient: ``v`` after gamma),
    so the row-wise model (binary outcomes, SVI) and the Gaussian ones are the same model."""
    _, data = _standardized_hahn(n=150, seed=4)
    fm = FeatureMap.fit(data.X, prognosis="additive", modifiers="additive_interactions", n_basis=4)
    rng = np.random.default_rng(2)
    q, k, e = data.p + len(fm.pairs), len(fm.smooth), len(fm.effect_smooth)
    assert e == k > 0
    common = dict(p=data.p, n_sites=0, priors=HierarchicalPriors(), q=q, n_smooth=k, n_basis=4,
                  n_effect_smooth=e)  # fmt: skip
    from itelib.models.hierarchical.design import model_arrays

    with jax.enable_x64(True):
        y = (data.y - data.y.mean()) / data.y.std()
        args = dict(y=y, t=data.t, X=data.X, site=None, global_scale=np.asarray(0.1), features=fm)
        rows = model_arrays(m.ModelSpec(**common, likelihood="rows"), **args)
        suff = model_arrays(m.ModelSpec(**common), **args)
        for _ in range(3):
            pos = lambda *s: np.exp(rng.normal(size=s) * 0.5)  # noqa: E731
            params = {
                "alpha": rng.normal(), "tau0": rng.normal(), "sigma": pos()[()],
                "beta": rng.normal(size=data.p), "gamma_z": rng.normal(size=q),
                "hs_global_a": pos()[()], "hs_global_b": pos()[()], "hs_local_a": pos(q),
                "hs_local_b": pos(q), "hs_slab": pos()[()], "smooth_amplitude": pos(k),
                "smooth_lengthscale": pos(k), "smooth_z": rng.normal(size=(k, 4)),
                "effect_smooth_amplitude": pos(e), "effect_smooth_lengthscale": pos(e),
                "effect_smooth_z": rng.normal(size=(e, 4)),
            }  # fmt: skip
            lp_rows, _ = log_density(
                m.hierarchical_model, (rows, m.ModelSpec(**common, likelihood="rows")), {}, params
            )
            lp_suff, _ = log_density(
                m.hierarchical_model, (suff, m.ModelSpec(**common)), {}, params
            )
            np.testing.assert_allclose(float(lp_suff), float(lp_rows), rtol=1e-10)


def test_effect_smooth_map_round_trips_and_old_maps_load():
    _, data = _standardized_hahn(n=100, seed=0)
    fm = FeatureMap.fit(data.X, modifiers="additive", n_basis=6, n_modifier_columns=data.p - 1)
    assert fm.smooth == () and fm.n_basis == 6  # a linear prognosis with smooth effects
    assert all(j < data.p - 1 for j in fm.effect_smooth)
    assert FeatureMap.from_dict(fm.to_dict()) == fm
    old = {k: v for k, v in fm.to_dict().items() if not k.startswith("effect_")}
    assert FeatureMap.from_dict(old).effect_smooth == ()


def test_piecewise_modifiers_are_a_step_and_a_hinge_at_the_median():
    """``effect_modifiers="piecewise"``: a step and a hinge at the median of every covariate
    with more than two values, standardized, after the pairs; none that duplicate a column."""
    _, data = _standardized_hahn()
    fm = FeatureMap.fit(data.X, modifiers="piecewise")
    names = fm.modifier_names(data.feature_names)
    assert fm.n_modifiers(data.p) == len(names) == data.p + len(fm.pairs) + len(fm.pieces)
    # x1-x3 are continuous (a step and a hinge each); x4 (0/1) and x5's dummies have none
    assert {data.feature_names[j] for j, _, _ in fm.pieces} == {"x1", "x2", "x3"}
    assert len(fm.pieces) == 6 and "x2>q50" in names and "(x2-q50)+" in names
    Z = fm.modifiers(data.X)
    assert Z.shape == (data.n, len(names))
    pieces = Z[:, data.p + len(fm.pairs) :]
    np.testing.assert_allclose(pieces.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(pieces.std(0), 1, atol=1e-10)
    x2 = data.X[:, data.feature_names.index("x2")]
    step = pieces[:, fm.piece_names(data.feature_names).index("x2>q50")]
    median = np.quantile(x2, 0.5)
    np.testing.assert_array_equal(step > 0, x2 > median)  # the step sits at the median
    # a column with three values spans every function of it with a constant, itself and one
    # step: the step at its median (0.5) is kept, the hinge there would duplicate them
    x = np.repeat([0.0, 1.0, 2.0], [50, 30, 20])[:, None]
    few = FeatureMap.fit(x, modifiers="piecewise")
    assert [(k, kind) for _, k, kind in few.pieces] == [(0.5, "step")]
    # a hinge at a column's minimum is the column itself
    tied = np.repeat([0.0, 1.0, 2.0, 3.0], [60, 20, 10, 10])[:, None]
    assert [kind for _, _, kind in FeatureMap.fit(tied, modifiers="piecewise").pieces] == ["step"]
    # beside x's own median split d, the step is d and the hinge x*d - k*d, a product's
    # combination: neither is kept (found in review)
    x = np.random.default_rng(0).normal(size=200)
    split = np.column_stack([x, (x > np.median(x)).astype(float)])
    with_split = FeatureMap.fit(split, modifiers="piecewise")
    assert with_split.pairs == ((0, 1),) and with_split.pieces == ()


def test_piecewise_map_round_trips_and_old_maps_load():
    _, data = _standardized_hahn(n=100, seed=0)
    fm = FeatureMap.fit(data.X, modifiers="piecewise")
    again = FeatureMap.from_dict(fm.to_dict())
    assert again == fm
    new = data.X[:7] + 0.3
    np.testing.assert_array_equal(again.modifiers(new), fm.modifiers(new))
    old = {k: v for k, v in fm.to_dict().items() if not k.startswith("piece")}
    assert FeatureMap.from_dict(old).pieces == ()  # a file saved before the option
