"""The marginal model when coefficients outnumber patients, and with thousands of sites.

The marginal Gaussian likelihood is exact whatever the number of coefficients k and of sites S:
these tests hold its block form (``marginal.block_statistics``, used above
``DENSE_MAX_SITES`` sites) to the dense Gaussian, bound its size, and fit the designs of
issue 23 (p = 50 at n = 100; 150 sites of 2; 5,000 sites of 2) with calibrated intervals.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from itelib import HierarchicalITE
from itelib.calibration import coverage
from itelib.models.hierarchical import marginal as mg
from itelib.models.hierarchical import model as m
from itelib.simulate import simulate


def _design(n: int, p: int, n_sites: int, seed: int, one_arm_site: bool = False):
    """Rows of ``[1, x, t, t·x]``, the full design with site columns last, and an outcome."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    t = rng.binomial(1, 0.5, n).astype(float)
    site = rng.integers(0, n_sites, n)
    if one_arm_site:
        t[site == 0] = 1.0  # site 0 treats everyone: its (a, b) block is singular
    base = np.column_stack([np.ones(n), X, t, t[:, None] * X])
    onehot = np.eye(n_sites)[site]
    full = np.column_stack([base, onehot, onehot * t[:, None]])
    y = full @ rng.normal(0, 0.5, full.shape[1]) + rng.normal(0, 0.8, n)
    return X, t, site, y, base, full


def _both(X, t, site, y, base, n_sites):
    """The dense statistics and the block ones of one data set."""
    p = X.shape[1]
    gs = m.gaussian_sufficient_statistics(y, t, X, site, n_sites)
    dense = mg.marginal_statistics(*gs, 1 + p, n_sites)
    return dense, mg.block_statistics(base, y, site, n_sites, 1 + p)


# (n, p, sites): many small sites (some empty, some of one patient); more coefficients than
# patients (k = 2p + 2 + 2S = 142 > n = 40)
CASES = [(150, 3, 60), (40, 30, 10)]


@pytest.mark.parametrize(("n", "p", "n_sites"), CASES)
def test_block_statistics_are_the_dense_ones(n, p, n_sites):
    X, t, site, y, base, full = _design(n, p, n_sites, seed=0)
    dense, block = _both(X, t, site, y, base, n_sites)
    k = base.shape[1]
    np.testing.assert_allclose(block.gram, dense.gram[:k, :k], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(block.site_cross, dense.gram[:k, k:], rtol=1e-12, atol=1e-9)
    a, b = np.arange(k, k + n_sites), np.arange(k + n_sites, k + 2 * n_sites)
    np.testing.assert_allclose(block.site_gram, [dense.gram[a, a], dense.gram[b, b],
                                                 dense.gram[a, b]], atol=1e-9)  # fmt: skip
    for name in ("moment", "w_hat", "h", "q_hat", "site_minor"):
        np.testing.assert_allclose(getattr(block, name), getattr(dense, name), rtol=1e-8,
                                   atol=1e-8, err_msg=name)  # fmt: skip
    w = np.random.default_rng(1).normal(size=full.shape[1])
    d = w - block.w_hat
    with jax.enable_x64(True):
        quad = mg._gram_quadratic(jax.tree.map(jnp.asarray, block), jnp.asarray(d))
    q = block.q_hat - 2 * d @ block.h + float(quad)
    np.testing.assert_allclose(q, np.sum((y - full @ w) ** 2), rtol=1e-10)


@pytest.mark.parametrize(
    ("n", "p", "n_sites", "one_arm_site", "tiny_sd"),
    [(150, 3, 60, False, False), (150, 3, 60, True, False), (150, 3, 60, False, True),
     (40, 30, 10, False, False), (40, 30, 10, False, True)],
)  # fmt: skip
def test_block_loglik_and_gradient_equal_the_dense_gaussian(n, p, n_sites, one_arm_site, tiny_sd):
    """Value and gradient of the block form against ``log N(y; 0, sigma^2 I + D diag(sd^2)
    D')`` and its autodiff, in float64, to rounding: with sites of one patient or none, a site
    that treated everyone, collapsed site sds (1e-4), and k > n."""
    X, t, site, y, base, full = _design(n, p, n_sites, seed=2, one_arm_site=one_arm_site)
    _, block = _both(X, t, site, y, base, n_sites)
    sd = np.random.default_rng(3).uniform(0.1, 2.0, full.shape[1])
    if tiny_sd:
        sd[-2 * n_sites :] = 1e-4
    with jax.enable_x64(True):
        st, D, yy = jax.tree.map(jnp.asarray, block), jnp.asarray(full), jnp.asarray(y)

        def dense(sd, sigma):
            cov = sigma**2 * jnp.eye(len(yy)) + (D * sd**2) @ D.T
            return jax.scipy.stats.multivariate_normal.logpdf(yy, jnp.zeros(len(yy)), cov)

        def ours(sd, sigma):
            return mg.marginal_loglik(st, sd, sigma) + mg.data_constant(st)

        args = (jnp.asarray(sd), jnp.asarray(0.7))
        expected = stats.multivariate_normal(np.zeros(n), 0.49 * np.eye(n) + full * sd**2 @ full.T)
        np.testing.assert_allclose(float(ours(*args)), expected.logpdf(y), rtol=1e-10)
        want = jax.grad(dense, argnums=(0, 1))(*args)
        got = jax.grad(ours, argnums=(0, 1))(*args)
    for g, e in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-8, atol=1e-8)


def test_block_conditional_draws_have_the_exact_posterior_mean_and_covariance():
    """20,000 block draws (the shared coefficients from their marginal, each site's pair given
    them) against ``N(P^-1 D'y / sigma^2, P^-1)``, with the bounds of test_marginal.py's dense
    test: means within 5 Monte Carlo standard errors, variances within 6 %, correlations 0.04."""
    X, t, site, y, base, full = _design(120, 2, 12, seed=4)
    _, block = _both(X, t, site, y, base, 12)
    sd = np.random.default_rng(5).uniform(0.2, 1.5, full.shape[1])
    sigma = 0.9
    cov = np.linalg.inv(full.T @ full / sigma**2 + np.diag(sd**-2.0))
    mean = cov @ full.T @ y / sigma**2
    with jax.enable_x64(True):
        st = jax.tree.map(jnp.asarray, block)
        keys = jax.random.split(jax.random.key(0), 20_000)
        draws = jax.vmap(lambda k: mg.conditional_draw(k, st, jnp.asarray(sd), sigma))(keys)
    draws = np.asarray(draws)
    se = np.sqrt(np.diag(cov) / len(draws))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(draws.var(0), np.diag(cov), rtol=0.06)
    exact = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.max(np.abs(np.corrcoef(draws.T) - exact)) < 0.04
