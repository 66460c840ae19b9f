"""Collapsed Metropolis-within-Gibbs updates of the horseshoe's local scales.

With many effect modifiers (p = 200: 400 local-scale coordinates) NUTS on every scale of the
marginal model factors the (2p + 2)-square posterior precision at each of ~40 leapfrog steps per
iteration. Here NUTS moves only the few global scales (noise, horseshoe global and slab, site
sds) and each local scale is updated in turn from its conditional **with the coefficients
integrated out** (the same posterior; Johndrow, Orenstein & Bhattacharya 2020 integrate the
coefficients for the global scale for the same reason). Given the others, changing coordinate
j's prior variance from v to v' (prior precision change ``delta = 1/v' - 1/v``) changes the log
marginal likelihood by

    -1/2 log(v'/v) - 1/2 log(1 + delta S_jj) - 1/2 delta m_j^2 / (1 + delta S_jj),

with ``S`` the posterior covariance of the coefficients and ``m`` their posterior mean given all
scales (matrix determinant lemma and Sherman-Morrison), and an accepted move updates ``S`` and
``m`` by a rank-one term: a sweep costs O(q K^2) instead of a factorization per leapfrog step.
Drawing the coefficients given the scales (Makalic & Schmidt 2016) was tried first and is
sticky: a local scale near zero holds its coefficient near zero and the reverse
(``docs/decisions.md``); integrated out, nothing holds it.

Each local scale is ``lambda = a sqrt(b)``, ``a ~ N+(0, 1)``, ``b ~ InvGamma(1/2, 1/2)`` as in
the model (:func:`~itelib.models.hierarchical.model._half_cauchy`); a random-walk Metropolis step
on ``log a`` and one on ``log b`` per coordinate, on the unconstrained scale NUTS would use.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve
from numpyro.handlers import substitute
from numpyro.infer.util import constrain_fn

from itelib.inference.nuts import GibbsStep

__all__ = ["COLLAPSED_MIN_MODIFIERS", "LOCAL_SITES", "collapsed_gibbs", "local_scale_sweep"]

LOCAL_SITES = ("hs_local_a", "hs_local_b")

# From this many effect modifiers on, the local scales are updated here and not by NUTS.
# Measured (docs/decisions.md, issue 24): 200 modifiers (high_dimensional_rct, n = 1000), the
# same effective draws of the modifiers in 0.6x the time; 55 (multisite_rct, p = 10 with its
# pairwise products), no gain (NUTS then needs few leapfrog steps and mixes them jointly).
COLLAPSED_MIN_MODIFIERS = 100
_STEP = 1.5  # random-walk sd on log a and log b (acceptance about 0.6)
_INNER = 10  # Metropolis steps per coordinate and sweep (O(1) each)


def collapsed_gibbs(spec: Any, data: Any) -> GibbsStep | None:
    """The local-scale sweep for :func:`~itelib.inference.nuts.sample_nuts`, where it pays:
    the marginal model (dense form) with at least ``COLLAPSED_MIN_MODIFIERS`` modifiers."""
    if spec.likelihood != "marginal" or spec.n_modifiers < COLLAPSED_MIN_MODIFIERS:
        return None
    if data.marginal.site_cross is not None:  # block form (many sites): NUTS on every scale
        return None
    return GibbsStep(sites=LOCAL_SITES, sweep=local_scale_sweep)


def modifier_offset(spec: Any) -> int:
    """Index of the first modifier in ``w = [alpha, beta, smooth, tau0, gamma, ...]``."""
    return 1 + spec.p + spec.n_smooth * spec.n_basis + 1


def _posterior(stats: Any, prior_sd: jax.Array, sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior covariance and mean of the coefficients given every scale (dense form),
    through the Jacobi-scaled precision as in :mod:`.marginal`."""
    d = 1.0 + jnp.diagonal(stats.gram) * prior_sd**2 / sigma**2
    s = prior_sd / jnp.sqrt(d)
    p_j = (s[:, None] * s[None, :]) * stats.gram / sigma**2
    p_j = p_j - jnp.diag(jnp.diagonal(p_j)) + jnp.eye(len(d), dtype=s.dtype)
    chol = jnp.linalg.cholesky(p_j)
    inv = cho_solve((chol, True), jnp.eye(len(d), dtype=s.dtype))
    cov = (s[:, None] * s[None, :]) * inv
    mean = cov @ stats.moment / sigma**2
    return cov, mean


def _log_prior_log_a(u: jax.Array) -> jax.Array:
    """log density of u = log a, a ~ N+(0, 1), Jacobian included."""
    return -0.5 * jnp.exp(2 * u) + u


def _log_prior_log_b(v: jax.Array) -> jax.Array:
    """log density of v = log b, b ~ InvGamma(1/2, 1/2), Jacobian included."""
    return -0.5 * v - 0.5 * jnp.exp(-v)


def local_scale_sweep(
    key: jax.Array, z_local: dict[str, jax.Array], z_rest: dict[str, jax.Array], data: Any,
    spec: Any, model: Any,
) -> dict[str, jax.Array]:  # fmt: skip
    """One sweep over every local scale given the other (unconstrained) sites ``z_rest``:
    new unconstrained ``hs_local_a`` and ``hs_local_b``."""
    from itelib.models.hierarchical.model import coefficient_prior_sd

    values = constrain_fn(model, (data, spec), {}, z_rest | z_local)
    sigma, prior_sd = substitute(coefficient_prior_sd, data=values)(data, spec)
    cov, mean = _posterior(data.marginal, prior_sd, sigma)
    q = z_local["hs_local_a"].shape[0]
    offset = modifier_offset(spec)
    # the modifiers' block is all a sweep reads, and a rank-one update of it stays exact
    cov = jax.lax.dynamic_slice(cov, (offset, offset), (q, q))
    mean = jax.lax.dynamic_slice(mean, (offset,), (q,))
    tau = _global(values, sigma, data)
    c2 = values["hs_slab"]

    def variance(u: jax.Array, v: jax.Array) -> jax.Array:
        lam2 = jnp.exp(2 * u + v)
        return tau**2 * c2 * lam2 / (c2 + tau**2 * lam2)

    def coordinate(j: jax.Array, carry: tuple, key: jax.Array) -> tuple:
        """Several Metropolis steps on coordinate j's own conditional (O(1) each: ``S_jj`` and
        ``m_j`` are those of the state the sweep has reached), then one rank-one update of
        ``S`` and ``m`` to where they ended."""
        u_all, v_all, cov, mean = carry
        s_jj, m_j, v_start = cov[j, j], mean[j], variance(u_all[j], v_all[j])

        def log_target(u: jax.Array, v: jax.Array) -> jax.Array:
            delta = 1.0 / variance(u, v) - 1.0 / v_start
            denom = 1.0 + delta * s_jj
            loglik = (-0.5 * jnp.log(variance(u, v) / v_start) - 0.5 * jnp.log(denom)
                      - 0.5 * delta * m_j**2 / denom)  # fmt: skip
            value = loglik + _log_prior_log_a(u) + _log_prior_log_b(v)
            return jnp.where(denom > 0, value, -jnp.inf)

        noise = jax.random.normal(key, (_INNER,), mean.dtype) * _STEP
        log_unif = jnp.log(jax.random.uniform(jax.random.fold_in(key, 1), (_INNER,), mean.dtype))

        def metropolis(i: jax.Array, state: tuple) -> tuple:
            u, v, lp = state  # even steps move log a, odd steps log b
            u_new = jnp.where(i % 2 == 0, u + noise[i], u)
            v_new = jnp.where(i % 2 == 1, v + noise[i], v)
            lp_new = log_target(u_new, v_new)
            ok = log_unif[i] < lp_new - lp
            return jnp.where(ok, u_new, u), jnp.where(ok, v_new, v), jnp.where(ok, lp_new, lp)

        u, v = u_all[j], v_all[j]
        u, v, _ = jax.lax.fori_loop(0, _INNER, metropolis, (u, v, log_target(u, v)))
        delta = 1.0 / variance(u, v) - 1.0 / v_start
        factor = delta / (1.0 + delta * s_jj)
        col = cov[:, j]
        cov = cov - factor * jnp.outer(col, col)
        mean = mean - factor * m_j * col
        return u_all.at[j].set(u), v_all.at[j].set(v), cov, mean

    keys = jax.random.split(key, q)

    def body(j, carry):
        return coordinate(j, carry, keys[j])

    carry = (z_local["hs_local_a"], z_local["hs_local_b"], cov, mean)
    u_all, v_all, _, _ = jax.lax.fori_loop(0, q, body, carry)
    return {"hs_local_a": u_all, "hs_local_b": v_all}


def _global(values: dict[str, jax.Array], sigma: jax.Array, data: Any) -> jax.Array:
    """The horseshoe's global scale ``tau`` at ``values`` (as in ``_horseshoe_scale``)."""
    return data.global_scale * sigma * values["hs_global_a"] * jnp.sqrt(values["hs_global_b"])
