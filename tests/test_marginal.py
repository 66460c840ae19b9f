"""The marginal Gaussian model: coefficients integrated out exactly, then drawn exactly."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from itelib import HierarchicalITE
from itelib.models.hierarchical import marginal as mg
from itelib.models.hierarchical import model as m
from itelib.simulate import multisite_rct


def _design(n: int, p: int, n_sites: int, seed: int, one_arm_site: bool = False):
    """Rows of ``[1, x, t, t·x]``, the same in coordinates ``w`` (site intercepts and effects
    last) and an outcome."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    t = rng.binomial(1, 0.5, n).astype(float)
    site = rng.integers(0, max(n_sites, 1), n)
    if one_arm_site:
        t[site == 0] = 1.0  # site 0 treats everyone: its (a, b) block is nearly singular
    base = np.column_stack([np.ones(n), X, t, t[:, None] * X])
    onehot = np.eye(n_sites)[site] if n_sites else np.zeros((n, 0))
    full = np.column_stack([base, onehot, onehot * t[:, None]])
    y = full @ rng.normal(0, 0.5, full.shape[1]) + rng.normal(0, 0.8, n)
    return X, t, site, y, full


def _stats(X, t, site, y, n_sites) -> mg.MarginalStats:
    p = X.shape[1]
    gs = m.gaussian_sufficient_statistics(y, t, X, site if n_sites else None, n_sites)
    return mg.marginal_statistics(*gs, 1 + p, n_sites)


@pytest.mark.parametrize("n_sites", [0, 4])
def test_statistics_are_the_gram_and_residual_form_of_the_site_design(n_sites):
    X, t, site, y, full = _design(300, 3, n_sites, seed=0)
    ms = _stats(X, t, site, y, n_sites)
    np.testing.assert_allclose(ms.gram, full.T @ full, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(ms.moment, full.T @ y, rtol=1e-12, atol=1e-9)
    w = np.random.default_rng(1).normal(size=full.shape[1])
    d = w - ms.w_hat
    q = ms.q_hat - 2 * d @ ms.h + d @ ms.gram @ d
    np.testing.assert_allclose(q, np.sum((y - full @ w) ** 2), rtol=1e-10)


@pytest.mark.parametrize(
    ("n_sites", "one_arm_site", "tiny_sd"),
    [(0, False, False), (4, False, False), (4, True, False), (4, False, True)],
)
def test_loglik_equals_the_dense_gaussian_marginal(n_sites, one_arm_site, tiny_sd):
    """``log N(y; 0, sigma^2 I + D diag(sd^2) D')`` to rounding, including a site that treated
    everyone and prior sds of 1e-4 (a collapsed site sd), the cases the scaling is for."""
    X, t, site, y, full = _design(200, 3, n_sites, seed=2, one_arm_site=one_arm_site)
    ms = _stats(X, t, site, y, n_sites)
    sd = np.random.default_rng(3).uniform(0.1, 2.0, full.shape[1])
    if tiny_sd:
        sd[-2 * n_sites :] = 1e-4
    sigma = 0.7
    cov = sigma**2 * np.eye(len(y)) + full @ np.diag(sd**2) @ full.T
    expected = stats.multivariate_normal(np.zeros(len(y)), cov).logpdf(y)
    with jax.enable_x64(True):
        st = jax.tree.map(jnp.asarray, ms)
        got = mg.marginal_loglik(st, jnp.asarray(sd), sigma) + mg.data_constant(st)
    np.testing.assert_allclose(float(got), expected, rtol=1e-10)


@pytest.mark.parametrize(
    ("n_sites", "one_arm_site", "tiny_sd"),
    [(0, False, False), (4, False, False), (4, True, False), (4, False, True)],
)
def test_written_out_gradient_equals_the_dense_marginals_autodiff(n_sites, one_arm_site, tiny_sd):
    """The closed-form gradient (posterior mean and variances, no backward pass through the
    Cholesky) against JAX's autodiff of the dense ``log N(y; 0, sigma^2 I + D diag(sd^2) D')``,
    in float64 and in the same cases as the value: agreement to rounding (1e-8 relative), in
    reverse and in forward mode."""
    X, t, site, y, full = _design(200, 3, n_sites, seed=2, one_arm_site=one_arm_site)
    ms = _stats(X, t, site, y, n_sites)
    sd = np.random.default_rng(3).uniform(0.1, 2.0, full.shape[1])
    if tiny_sd:
        sd[-2 * n_sites :] = 1e-4
    with jax.enable_x64(True):
        st, D, yy = jax.tree.map(jnp.asarray, ms), jnp.asarray(full), jnp.asarray(y)

        def dense(sd, sigma):
            cov = sigma**2 * jnp.eye(len(yy)) + (D * sd**2) @ D.T
            return jax.scipy.stats.multivariate_normal.logpdf(yy, jnp.zeros(len(yy)), cov)

        def ours(sd, sigma):
            return mg.marginal_loglik(st, sd, sigma)

        args = (jnp.asarray(sd), jnp.asarray(0.7))
        expected = jax.grad(dense, argnums=(0, 1))(*args)
        got = jax.grad(ours, argnums=(0, 1))(*args)
        direction = (jnp.linspace(-1.0, 1.0, len(sd)), jnp.asarray(0.3))
        jvp_got = jax.jvp(ours, args, direction)[1]
        jvp_expected = jax.jvp(dense, args, direction)[1]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(float(jvp_got), float(jvp_expected), rtol=1e-8)


def test_conditional_draws_have_the_exact_posterior_mean_and_covariance():
    """20,000 draws against ``N(P^-1 D'y / sigma^2, P^-1)``: each mean within 5 of its Monte
    Carlo standard errors (a 1-in-10^6 miss per coordinate for a correct sampler), each
    variance within 6 % (5 standard errors of a variance from 20,000 Gaussian draws: 5 x
    sqrt(2 / 20000) = 7 %)."""
    X, t, site, y, full = _design(150, 2, 3, seed=4)
    ms = _stats(X, t, site, y, 3)
    sd = np.random.default_rng(5).uniform(0.2, 1.5, full.shape[1])
    sigma = 0.9
    precision = full.T @ full / sigma**2 + np.diag(sd**-2.0)
    cov = np.linalg.inv(precision)
    mean = cov @ full.T @ y / sigma**2
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), 20_000)
        draws = jax.vmap(lambda k: mg.conditional_draw(k, jax.tree.map(jnp.asarray, ms),
                                                       jnp.asarray(sd), sigma))(keys)  # fmt: skip
    draws = np.asarray(draws)
    se = np.sqrt(np.diag(cov) / len(draws))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(draws.var(0), np.diag(cov), rtol=0.06)
    corr = np.corrcoef(draws.T)
    exact = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.max(np.abs(corr - exact)) < 0.04  # a correlation's se is at most 1/sqrt(2e4)


@pytest.mark.parametrize("n", [200_000, 1_000_000])
def test_float32_loglik_holds_its_digits_at_large_n(n):
    """20 sites, the regime the scaling, the centring and the dropped constant exist for.
    NUTS accepts on differences of log density; at its step sizes the energy error per step is
    of order 0.1, so float32's differences must be far more accurate than that: here within
    0.01 of float64's over a walk of small moves in sigma and in the prior sds. (With the
    constant of order n kept in, float32 resolves only ~0.06 at n = 1e6.) The gradient agrees
    too."""
    X, t, site, y, full = _design(n, 5, 20, seed=6)
    ms = _stats(X, t, site, y, 20)
    del X, t, site, y, full
    rng = np.random.default_rng(7)
    sds = 0.5 * np.exp(0.01 * np.cumsum(rng.normal(size=(20, len(ms.moment))), axis=0))
    sigmas = np.sqrt(ms.q_hat / n) * np.exp(1e-4 * np.cumsum(rng.normal(size=20)))

    def walk(dtype):
        st = jax.tree.map(lambda a: jnp.asarray(a, dtype), ms)
        f = jax.jit(jax.vmap(jax.value_and_grad(lambda s, sig: mg.marginal_loglik(st, s, sig))))
        return f(jnp.asarray(sds, dtype), jnp.asarray(sigmas, dtype))

    with jax.enable_x64(True):
        (v64, g64), (v32, g32) = walk(jnp.float64), walk(jnp.float32)
    steps64, steps32 = np.diff(np.asarray(v64)), np.diff(np.asarray(v32, np.float64))
    assert np.max(np.abs(steps32 - steps64)) < 0.01, np.abs(steps32 - steps64).max()
    np.testing.assert_allclose(np.asarray(g32), np.asarray(g64), rtol=2e-3, atol=0.05)


def _smooth_design(n: int):
    """hahn_nonlinear_homogeneous (seed 1) with its smooth prognostic basis: the design whose
    marginal model stalled NUTS (step size ~1e-7). Columns ``[1, x, phi, t, t·x]``; the sine
    basis beside the linear terms makes ``D'D`` nearly singular (cond ~1e10)."""
    from itelib.models.hierarchical.features import FeatureMap
    from itelib.simulate import simulate

    trial = simulate("hahn_nonlinear_homogeneous", n=n, seed=1)
    kw = trial.fit_kwargs()
    X = pd.get_dummies(kw["X"], drop_first=True).to_numpy(float)  # x1..x4, x5's two dummies
    X = (X - X.mean(0)) / X.std(0)
    y = np.asarray(kw["Y"], float)
    y = (y - y.mean()) / y.std()
    t = np.asarray(kw["T"], float)
    fm = FeatureMap.fit(X, prognosis="additive", n_basis=10)
    basis = fm.basis(X)
    full = np.column_stack([np.ones(n), X, basis, t, t[:, None] * X])
    gs = m.gaussian_sufficient_statistics(y, t, X, None, 0, basis=basis)
    ms = mg.marginal_statistics(*gs, 1 + X.shape[1] + basis.shape[1], 0)
    return ms, fm, full, y


def _smooth_prior_sd(fm, p: int, amplitude, lengthscale) -> np.ndarray:
    """Prior sds of ``[alpha, beta, smooth, tau0, gamma]`` with the model's spectral scales."""
    from numpyro.handlers import substitute

    spec = m.ModelSpec(p=p, n_sites=0, priors=m.HierarchicalPriors(), likelihood="marginal",
                       n_smooth=len(fm.smooth), n_basis=fm.n_basis)  # fmt: skip
    draw = {
        "smooth_amplitude": jnp.asarray(amplitude),
        "smooth_lengthscale": jnp.asarray(lengthscale),
    }
    smooth = substitute(m._smooth_scale, data=draw)(spec, jnp.asarray(fm.sqrt_eigenvalues()))
    gamma = np.linspace(0.02, 0.3, p)  # horseshoe scales, shrunk as in the stalled chain
    return np.concatenate([np.ones(1 + p), np.asarray(smooth, float).ravel(), [1.0], gamma])


# where the stalled chain sat (sigma, amplitudes, length-scales of its three smooth terms)
_STALLED = (0.159, [1.29, 0.74, 2.65], [0.358, 2.86, 0.389])


def test_smooth_terms_keep_a_moderate_centre_and_float32_digits():
    """The stall's cause: with the smooth basis the centre ``w_hat`` was a 1e-8-ridged fit with
    coefficients ~100, and the float32 quadratic form around it moved by several nats between
    points 1e-7 apart, so NUTS shrank its step size to ~1e-7. Now: the centre is O(1) and over a
    walk of small moves around the stalled point float32's differences of log density are
    within 0.01 of float64's (they were off by ~3), the gradient too."""
    ms, fm, full, _ = _smooth_design(500)
    p = 6  # [1, x(6), phi(3 x 10), t, t·x(6)]
    assert full.shape[1] == 2 + 2 * p + 3 * fm.n_basis
    sigma0, amp0, ls0 = _STALLED
    rng = np.random.default_rng(0)
    walk = 1e-4 * np.cumsum(rng.normal(size=(20, 7)), axis=0)
    sds = np.stack([_smooth_prior_sd(fm, p, np.exp(np.log(amp0) + w[:3]),
                                     np.exp(np.log(ls0) + w[3:6])) for w in walk])  # fmt: skip
    sigmas = sigma0 * np.exp(walk[:, 6])

    def values(dtype):
        st = jax.tree.map(lambda a: jnp.asarray(a, dtype), ms)
        f = jax.jit(jax.vmap(jax.value_and_grad(lambda s, sig: mg.marginal_loglik(st, s, sig))))
        return f(jnp.asarray(sds, dtype), jnp.asarray(sigmas, dtype))

    with jax.enable_x64(True):
        (v64, g64), (v32, g32) = values(jnp.float64), values(jnp.float32)
    steps64, steps32 = np.diff(np.asarray(v64)), np.diff(np.asarray(v32, np.float64))
    assert np.max(np.abs(steps32 - steps64)) < 0.01, np.abs(steps32 - steps64).max()
    # d/d sd_j scales as 1/sd_j for the smooth terms' tiny sds: compare sd_j * gradient
    np.testing.assert_allclose(np.asarray(g32) * sds, np.asarray(g64) * sds, atol=0.05)
    assert np.max(np.abs(ms.w_hat)) < 10, np.max(np.abs(ms.w_hat))


def test_smooth_terms_loglik_and_gradient_equal_the_dense_gaussian():
    """With smooth terms in (sine basis, spectral prior sds down to ~1e-9), at the stalled point:
    the value equals ``log N(y; 0, sigma^2 I + D diag(sd^2) D')`` and the written-out gradient
    equals autodiff's of that dense density, in float64."""
    ms, fm, full, y = _smooth_design(300)
    sigma, amp, ls = _STALLED
    sd = _smooth_prior_sd(fm, 6, amp, ls)
    assert sd.min() < 1e-6  # the high-frequency terms of the long length-scale are tiny
    with jax.enable_x64(True):
        st, D, yy = jax.tree.map(jnp.asarray, ms), jnp.asarray(full), jnp.asarray(y)

        def dense(sd, sigma):
            cov = sigma**2 * jnp.eye(len(yy)) + (D * sd**2) @ D.T
            return jax.scipy.stats.multivariate_normal.logpdf(yy, jnp.zeros(len(yy)), cov)

        def ours(sd, sigma):
            return mg.marginal_loglik(st, sd, sigma) + mg.data_constant(st)

        args = (jnp.asarray(sd), jnp.asarray(sigma))
        np.testing.assert_allclose(float(ours(*args)), float(dense(*args)), rtol=1e-9)
        got, expected = jax.grad(ours, (0, 1))(*args), jax.grad(dense, (0, 1))(*args)
    # relative to each coordinate's natural scale: sd_j * d/d sd_j (the log-sd gradient)
    np.testing.assert_allclose(np.asarray(got[0]) * sd, np.asarray(expected[0]) * sd,
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(float(got[1]), float(expected[1]), rtol=1e-8)


def _fit(likelihood: str, trial) -> HierarchicalITE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ESS warnings are not the point here
        # 4 x 1,500 draws: at 600 the Monte Carlo error alone moved one of 400 patients' means
        # by 0.050 between the two samplers on an AMD CPU (at 2,400: 0.013 at worst)
        return HierarchicalITE(
            likelihood=likelihood, num_warmup=600, num_samples=1500, random_state=0,
            progress_bar=False,
        ).fit(**trial.fit_kwargs())  # fmt: skip


def test_marginal_fit_gives_the_posterior_of_the_full_model():
    """Two samplers of one posterior: NUTS over every coefficient ("sufficient") and NUTS over
    the scales with exact coefficient draws ("marginal"). Posterior means and sds agree within 4
    standard errors of their difference, each se the Monte Carlo se of that chain set (arviz's
    ``mcse``, method "mean" and "sd"). The sd's own se is the honest yardstick: a horseshoe-shrunk
    coefficient's draws are heavy-tailed, and its sd's se is 5-10 % even from 2,400 draws (a
    fixed 15 % margin failed on an AMD CPU on one such coefficient, 0.0187 vs 0.0159, while
    holding on Intel)."""
    trial = multisite_rct(n=400, seed=3, n_sites=8, p=4)
    full, marg = _fit("sufficient", trial), _fit("marginal", trial)
    assert marg.model_spec_.likelihood == "marginal"
    assert int(marg.posterior_["sample_stats"]["diverging"].sum()) == 0
    from arviz_stats.base import array_stats

    for name in ("alpha", "tau0", "sigma", "beta", "gamma", "sigma_site", "site_effect_z"):
        a, b = (np.asarray(e.posterior_["posterior"][name]) for e in (full, marg))
        a, b = a.reshape(*a.shape[:2], -1), b.reshape(*b.shape[:2], -1)
        for j in range(a.shape[-1]):
            x, z = a[..., j], b[..., j]
            for method, stat in (("mean", np.mean), ("sd", np.std)):
                se = np.hypot(*(array_stats.mcse(w, method=method, chain_axis=0, draw_axis=1)
                                for w in (x, z)))  # fmt: skip
                assert abs(stat(x) - stat(z)) < 4 * se, (name, j, method, stat(x), stat(z), se)
    np.testing.assert_allclose(marg.effect().mean(), full.effect().mean(), atol=0.05)


def test_the_pymc_backend_refuses_the_marginal_model_by_name():
    trial = multisite_rct(n=100, seed=0, n_sites=3, p=3)
    with pytest.raises(ValueError, match=r'likelihood="marginal"\) needs backend="numpyro"'):
        HierarchicalITE(likelihood="marginal", backend="pymc").fit(**trial.fit_kwargs())


def test_gradient_is_zero_not_nan_where_a_prior_sd_underflows_to_zero():
    """In float32 a smooth term's high frequencies have prior sd exactly 0 for long
    length-scales (exp(-140)); the written-out gradient divided 0 by 0 there, a NaN that NUTS
    counted as a divergence (~1 % of draws on hahn_nonlinear_homogeneous, none in float64). The
    value is even in each sd, so the derivative at 0 is 0."""
    X, t, site, y, full = _design(200, 3, 0, seed=2)
    ms = _stats(X, t, site, y, 0)
    sd = np.random.default_rng(3).uniform(0.1, 2.0, full.shape[1])
    sd[2] = 0.0
    st = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), ms)
    g_sd, g_sigma = jax.grad(mg.marginal_loglik, (1, 2))(st, jnp.asarray(sd, jnp.float32), 0.7)
    assert np.all(np.isfinite(np.asarray(g_sd))) and np.isfinite(float(g_sigma))
    assert float(g_sd[2]) == 0.0


@pytest.mark.parametrize("option", ["additive", "additive_interactions"])
def test_smooth_effect_terms_loglik_equals_the_dense_gaussian(option):
    """``effect_modifiers="additive"``: the design gains columns ``t·psi_j(x_j)`` after ``t·z``
    (w = [alpha, beta, phi, tau0, gamma, psi, a, b]). With sites, smooth prognostic terms and
    the prior sds the model itself assigns (its HSGP spectral scales, the effect terms' own
    amplitude), the marginal value equals ``log N(y; 0, sigma^2 I + D diag(sd^2) D')`` built
    by hand from the rows, and the coefficients are named back where they belong."""
    from numpyro.handlers import substitute

    from itelib.models.hierarchical.design import model_arrays
    from itelib.models.hierarchical.features import FeatureMap

    rng = np.random.default_rng(5)
    n, n_sites = 240, 3
    X = np.column_stack([rng.standard_normal((n, 3)), rng.binomial(1, 0.5, n)])
    X = (X - X.mean(0)) / X.std(0)
    t = rng.binomial(1, 0.5, n).astype(float)
    site = rng.integers(0, n_sites, n)
    y = np.sin(2 * X[:, 0]) + t * (0.5 + X[:, 1] ** 2 * X[:, 3]) + rng.normal(0, 0.5, n)
    y = (y - y.mean()) / y.std()
    fm = FeatureMap.fit(X, prognosis="additive", modifiers=option, n_basis=5)
    assert fm.effect_smooth == (0, 1, 2)  # not the binary column
    q = X.shape[1] + len(fm.pairs)
    spec = m.ModelSpec(p=4, n_sites=n_sites, priors=m.HierarchicalPriors(), likelihood="marginal",
                       q=q, n_smooth=3, n_basis=5, n_effect_smooth=3)  # fmt: skip
    onehot = np.eye(n_sites)[site]
    treated = t[:, None] * np.column_stack([fm.modifiers(X), fm.effect_basis(X), onehot])
    full = np.column_stack([np.ones(n), X, fm.basis(X), t, treated])
    full = np.column_stack([full[:, :-n_sites], onehot, full[:, -n_sites:]])
    pos = lambda *s: np.exp(rng.normal(size=s) * 0.5)  # noqa: E731
    draw = {
        "sigma": 0.6, "smooth_amplitude": pos(3), "smooth_lengthscale": pos(3),
        "effect_smooth_amplitude": pos(3), "effect_smooth_lengthscale": pos(3),
        "hs_global_a": 0.5, "hs_global_b": 1.2, "hs_local_a": pos(q), "hs_local_b": pos(q),
        "hs_slab": 1.3, "sigma_site": 0.4, "sigma_site_effect": 0.3,
    }  # fmt: skip
    with jax.enable_x64(True):
        data = model_arrays(spec, y=y, t=t, X=X, site=site, global_scale=np.asarray(0.1),
                            features=fm)  # fmt: skip
        data = jax.tree.map(jnp.asarray, data)
        draw = {k: jnp.asarray(v) for k, v in draw.items()}
        sigma, sd = substitute(m.coefficient_prior_sd, data=draw)(data, spec)
        assert sd.shape == (full.shape[1],)
        got = mg.marginal_loglik(data.marginal, sd, sigma) + mg.data_constant(data.marginal)
        cov = float(sigma) ** 2 * np.eye(n) + (full * np.asarray(sd) ** 2) @ full.T
        expected = stats.multivariate_normal(np.zeros(n), cov).logpdf(y)
        np.testing.assert_allclose(float(got), expected, rtol=1e-9)
        # the conditional draw's pieces land under the full model's names
        w = mg.conditional_draw(jax.random.key(0), data.marginal, sd, sigma)
        named = m._named_coefficients(w, sd, spec)
    k = 1 + 4 + 15 + 1 + q
    np.testing.assert_array_equal(
        np.asarray(named["effect_smooth_coef"]), np.asarray(w[k : k + 15])
    )
    assert named["effect_smooth_z"].shape == (3, 5)
    np.testing.assert_array_equal(np.asarray(named["gamma"]), np.asarray(w[k - q : k]))
