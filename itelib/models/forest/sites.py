"""Site random effects for the Bayesian causal forest: one Gibbs update on bartz's running residual.

The outcome model gains, per site s, a random intercept a_s and a random effect slope c_s:

    y_i = mu(x_i) + a_s + b_{z_i} (tau0 + c_s + tau(x_i)) + e_i,   e_i ~ N(0, 1/prec)
    a_s ~ N(0, va),  c_s ~ N(0, vc),  sqrt(va) ~ C+(0, A_a),  sqrt(vc) ~ C+(0, A_c)

where b_z is the treatment coding (-1/2, +1/2 by default; 0/1; or adaptive). Given everything
else, (a_s, c_s) is a bivariate normal per site (a 2x2 regression on [1, b_z] within the site),
and each half-Cauchy variance is conjugate after Makalic & Schmidt's (2016) inverse-gamma mixture
v | xi ~ IG(1/2, 1/xi), xi ~ IG(1/2, 1/A^2). Everything is O(n) segment sums.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp

from itelib.models.forest import _bartz

__all__ = ["site_step", "site_fit"]


def site_fit(state: _bartz.SiteBCFState) -> jax.Array:
    """Each patient's current site contribution a_s + c_s * b_z (one chain)."""
    b_z = _bartz.coding(state)
    return state.site_intercept[state.site] + state.site_slope[state.site] * b_z


def _inverse_gamma(key: jax.Array, shape: jax.Array, scale: jax.Array) -> jax.Array:
    return scale / jax.random.gamma(key, shape)


def site_step(key: jax.Array, state: _bartz.SiteBCFState) -> _bartz.SiteBCFState:
    """Draw the site effects, then their variances, given the rest (one chain)."""
    k_eff, k_var, k_aux = jax.random.split(key, 3)
    n_sites = state.site_intercept.shape[0]
    b_z = _bartz.coding(state)
    partial = _bartz.residual(state) + site_fit(state)  # y minus everything but the sites
    prec = _bartz.error_precision(state)
    on = state.site_active.astype(jnp.float32)  # (2,): inactive parts stay exactly 0

    def seg(v: jax.Array) -> jax.Array:
        return jax.ops.segment_sum(v, state.site, num_segments=n_sites)

    va, vc = state.site_var[0], state.site_var[1]
    p11 = jnp.where(on[0] > 0, prec * seg(jnp.ones_like(b_z)) + 1 / va, 1.0)
    p22 = jnp.where(on[1] > 0, prec * seg(b_z * b_z) + 1 / vc, 1.0)
    p12 = prec * seg(b_z) * on[0] * on[1]
    r1 = prec * seg(partial) * on[0]
    r2 = prec * seg(b_z * partial) * on[1]
    # Cholesky of [[p11, p12], [p12, p22]]; mean = P^-1 r; draw = mean + L^-T z.
    det = p11 * p22 - p12 * p12
    m1 = (p22 * r1 - p12 * r2) / det
    m2 = (p11 * r2 - p12 * r1) / det
    l11 = jnp.sqrt(p11)
    l21 = p12 / l11
    l22 = jnp.sqrt(p22 - l21 * l21)
    z = jax.random.normal(k_eff, (2, n_sites))
    x2 = z[1] / l22
    x1 = (z[0] - l21 * x2) / l11
    intercept = (m1 + x1) * on[0]
    slope = (m2 + x2) * on[1]

    effects = jnp.stack([intercept, slope])  # (2, S)
    scale2 = jnp.square(state.site_scale)
    var = _inverse_gamma(
        k_var, (n_sites + 1) / 2, 1 / state.site_aux + 0.5 * jnp.sum(effects**2, axis=1)
    )
    var = jnp.where(state.site_active, var, scale2)
    aux = _inverse_gamma(k_aux, jnp.ones(2), 1 / scale2 + 1 / var)

    new = replace(state, site_intercept=intercept, site_slope=slope, site_var=var, site_aux=aux)
    return _bartz.with_residual(new, partial - site_fit(new))
