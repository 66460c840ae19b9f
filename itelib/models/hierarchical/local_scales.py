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
the model (:func:`~itelib.models.hierarchical.model._half_cauchy`). The likelihood sees only
``lambda``, so the sweep moves ``log lambda`` (its conditional fitted on a grid and used as an
independence proposal, then random-walk steps: :func:`move_log_lambda`) and redraws ``a`` given
``lambda`` exactly (:func:`split_local_scale`). The first version, random-walk steps alternating
``log a`` and ``log b``, crept along the ridge of pairs with the same ``lambda``: at p = 200 the
slowest modifier had a bulk ESS of 138 of 800 draws, against 500 now (``docs/decisions.md``).

In float32 the change above is evaluated through ``r_j = 1 - S_jj / v`` computed without
cancellation (:func:`_posterior`): written as ``1 + delta S_jj`` it is rounding noise for a
modifier shrunk to ``v`` ~ 1e-10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve
from numpyro.handlers import substitute
from numpyro.infer.util import constrain_fn

from itelib.inference.nuts import GibbsStep

__all__ = [
    "COLLAPSED_MIN_MODIFIERS",
    "LOCAL_SITES",
    "collapsed_gibbs",
    "local_scale_sweep",
    "grid_log_density",
    "loglik_change",
    "move_log_lambda",
    "rank_one_update",
    "rayleigh_split",
    "split_local_scale",
]

LOCAL_SITES = ("hs_local_a", "hs_local_b")

# From this many effect modifiers on, the local scales are updated here and not by NUTS.
# Measured (docs/decisions.md, issue 24): 200 modifiers (high_dimensional_rct, n = 1000), the
# same effective draws of the modifiers in 0.6x the time; 55 (multisite_rct, p = 10 with its
# pairwise products), no gain (NUTS then needs few leapfrog steps and mixes them jointly).
COLLAPSED_MIN_MODIFIERS = 100
# Per coordinate and sweep: independence Metropolis steps from a piecewise-uniform fit of the
# conditional of log lambda on a grid, then random-walk steps (they alone reach a log lambda
# off the grid, so the chain can go anywhere).
_GRID = (-12.0, 10.0)  # log lambda range of the grid: C+(0, 1) puts 3e-5 of its mass outside
_CELLS = 64
_INDEPENDENT = 2
_WALK = 2
_WALK_STEP = 1.0
_UNIFORM_FLOOR = 2.0**-23  # float32 epsilon: E = -log(1 - U) > 0


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


def _posterior(
    stats: Any, prior_sd: jax.Array, sigma: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Posterior covariance ``S`` and mean ``m`` of the coefficients given every scale (dense
    form, through the Jacobi-scaled precision as in :mod:`.marginal`), and each coordinate's
    ``r_j = 1 - S_jj / v_j`` (``v`` the prior variances).

    ``r`` is computed without the cancellation of ``1 - S_jj / v_j``: for a modifier shrunk
    hard (``v_j`` ~ 1e-10) ``S_jj / v_j`` is 1 to float32's precision and ``r_j`` ~ 1e-8 would be
    rounding noise. With ``P_J = I + O`` (``O`` off the diagonal), ``S_jj / v_j =
    (P_J^-1)_jj / d_j`` and ``P_J^-1 = I - P_J^-1 O``, so ``r_j = (d_j - 1 + (P_J^-1 O)_jj) /
    d_j``, whose terms are of the size of ``r_j`` itself."""
    extra = jnp.diagonal(stats.gram) * prior_sd**2 / sigma**2  # d - 1
    d = 1.0 + extra
    s = prior_sd / jnp.sqrt(d)
    p_j = (s[:, None] * s[None, :]) * stats.gram / sigma**2
    off = p_j - jnp.diag(jnp.diagonal(p_j))
    eye = jnp.eye(len(d), dtype=s.dtype)
    inv = cho_solve((jnp.linalg.cholesky(off + eye), True), eye)
    cov = (s[:, None] * s[None, :]) * inv
    mean = cov @ stats.moment / sigma**2
    r = (extra + jnp.sum(inv * off, axis=1)) / d
    return cov, mean, r


def loglik_change(
    v_new: jax.Array, v_start: jax.Array, s_jj: jax.Array, m_j: jax.Array, r_j: jax.Array
) -> jax.Array:
    """Change of the log marginal likelihood when coordinate j's prior variance moves from
    ``v_start`` to ``v_new``, the other scales fixed (``1 + delta S_jj = r_j + S_jj / v_new``,
    positive whatever the rounding)."""
    delta = 1.0 / v_new - 1.0 / v_start
    denom = r_j + s_jj / v_new
    return -0.5 * jnp.log(v_new / v_start) - 0.5 * jnp.log(denom) - 0.5 * delta * m_j**2 / denom


def rank_one_update(
    cov: jax.Array, mean: jax.Array, r: jax.Array, variances: jax.Array, j: jax.Array,
    v_new: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:  # fmt: skip
    """``S``, ``m`` and ``r`` after coordinate j's prior variance moves from ``variances[j]`` to
    ``v_new`` (Sherman-Morrison; ``r_k`` grows by ``f S_jk^2 / v_k``, with no cancellation)."""
    s_jj = cov[j, j]
    delta = 1.0 / v_new - 1.0 / variances[j]
    denom = r[j] + s_jj / v_new
    factor = delta / denom
    col = cov[:, j]
    r_j = r[j] / denom
    r = (r + factor * col**2 / variances).at[j].set(r_j)
    return cov - factor * jnp.outer(col, col), mean - factor * mean[j] * col, r


def _log_prior_log_lambda(ell: jax.Array) -> jax.Array:
    """log density of ``ell = log lambda``, lambda ~ C+(0, 1), Jacobian included (up to a
    constant): ``lambda / (1 + lambda^2)``, written to stay finite for any ``ell``."""
    return -jnp.logaddexp(-ell, ell)


def split_local_scale(key: jax.Array, ell: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """Unconstrained ``(log a, log b)`` drawn given ``lambda = a sqrt(b) = exp(ell)``.

    With ``a ~ N+(0, 1)`` and ``b ~ InvGamma(1/2, 1/2)``, ``p(a | lambda)`` is proportional to
    ``a exp(-a^2 (1 + lambda^-2) / 2)``: Rayleigh with ``s^2 = lambda^2 / (1 + lambda^2)``, so
    the ridge of ``(a, b)`` pairs with the same ``lambda`` is crossed by one exact draw.
    """
    return rayleigh_split(ell, jax.random.uniform(key, (), dtype))


def rayleigh_split(ell: jax.Array, uniform: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:func:`split_local_scale` given its uniform draw, ``a = s sqrt(2 E)`` with ``E =
    -log(1 - U)`` ~ Exp(1). ``U`` is floored at float32's epsilon: JAX's uniform returns exactly
    0 with probability 2^-23, which made ``log a = -inf`` and ``lambda`` NaN (found in review:
    at 4 x 2000 iterations of 200 scales about one fit in six would have died)."""
    log_s2 = 2 * ell - jnp.logaddexp(0.0, 2 * ell)
    e = -jnp.log1p(-jnp.maximum(uniform, _UNIFORM_FLOOR))
    u = 0.5 * (log_s2 + jnp.log(2 * e))  # log a
    return u, 2 * (ell - u)  # log b = 2 (log lambda - log a)


def grid_log_density(x: jax.Array, log_cells: jax.Array, grid: jax.Array) -> jax.Array:
    """Log density at ``x`` of the piecewise-uniform law with cell probabilities
    ``exp(log_cells)`` on the cells of ``grid``; -inf off the grid. Both edges belong to it: in
    float32 ``grid[c] + width * U`` can round onto the last edge, whose density was -inf, so
    that proposal's correction was +inf and it was accepted whatever the target (review)."""
    width = grid[1] - grid[0]
    cell = jnp.clip(jnp.floor((x - grid[0]) / width).astype(jnp.int32), 0, len(log_cells) - 1)
    inside = (x >= grid[0]) & (x <= grid[-1])
    return jnp.where(inside, log_cells[cell] - jnp.log(width), -jnp.inf)


def move_log_lambda(
    key: jax.Array, ell: jax.Array, log_target: Callable[[jax.Array], jax.Array], dtype: Any
) -> jax.Array:
    """A new ``log lambda`` from ``ell`` by steps that leave ``log_target`` (a 1-d log density,
    vectorized) invariant: ``_INDEPENDENT`` independence Metropolis steps whose proposal is the
    target at the midpoints of a grid's cells, uniform within a cell (the proposal's density is
    0 off the grid, so from there they never move), then ``_WALK`` random-walk steps (which
    reach every value)."""
    grid = jnp.linspace(*_GRID, _CELLS + 1, dtype=dtype)
    width = grid[1] - grid[0]
    log_cells = log_target(0.5 * (grid[:-1] + grid[1:]))
    log_cells = log_cells - jax.scipy.special.logsumexp(log_cells)

    k_cell, k_pos, k_walk, k_unif = jax.random.split(key, 4)
    cells = jax.random.categorical(k_cell, log_cells, shape=(_INDEPENDENT,))
    fresh = grid[cells] + width * jax.random.uniform(k_pos, (_INDEPENDENT,), dtype)
    walk = _WALK_STEP * jax.random.normal(k_walk, (_WALK,), dtype)
    # log(1 - U) with U in [0, 1): finite, so no proposal is accepted by a log(0)
    log_unif = jnp.log1p(-jax.random.uniform(k_unif, (_INDEPENDENT + _WALK,), dtype))
    lp = log_target(ell)
    for i in range(_INDEPENDENT + _WALK):  # unrolled: an XLA loop costs more than a few steps
        if i < _INDEPENDENT:
            new = fresh[i]
            correction = grid_log_density(ell, log_cells, grid) - grid_log_density(
                new, log_cells, grid
            )
        else:
            new, correction = ell + walk[i - _INDEPENDENT], 0.0
        lp_new = log_target(new)
        ok = log_unif[i] < lp_new - lp + correction
        ell, lp = jnp.where(ok, new, ell), jnp.where(ok, lp_new, lp)
    return ell


def local_scale_sweep(
    key: jax.Array, z_local: dict[str, jax.Array], z_rest: dict[str, jax.Array], data: Any,
    spec: Any, model: Any,
) -> dict[str, jax.Array]:  # fmt: skip
    """One sweep over every local scale given the other (unconstrained) sites ``z_rest``:
    new unconstrained ``hs_local_a`` and ``hs_local_b``."""
    from itelib.models.hierarchical.model import coefficient_prior_sd

    values = constrain_fn(model, (data, spec), {}, z_rest | z_local)
    sigma, prior_sd = substitute(coefficient_prior_sd, data=values)(data, spec)
    cov, mean, r = _posterior(data.marginal, prior_sd, sigma)
    q = z_local["hs_local_a"].shape[0]
    offset = modifier_offset(spec)
    # the modifiers' block is all a sweep reads, and a rank-one update of it stays exact
    cov = jax.lax.dynamic_slice(cov, (offset, offset), (q, q))
    mean = jax.lax.dynamic_slice(mean, (offset,), (q,))
    r = jax.lax.dynamic_slice(r, (offset,), (q,))
    tau = _global(values, sigma, data)
    c2 = values["hs_slab"]
    dtype = mean.dtype

    def variance(ell: jax.Array) -> jax.Array:
        lam2 = jnp.exp(2 * ell)
        return tau**2 * c2 * lam2 / (c2 + tau**2 * lam2)

    def coordinate(j: jax.Array, carry: tuple, key: jax.Array) -> tuple:
        """Metropolis steps on ``log lambda_j``'s own conditional (O(1) per evaluation:
        ``S_jj``, ``m_j`` and ``r_j`` are those of the state the sweep has reached), then one
        rank-one update of ``S``, ``m`` and ``r`` to where they ended."""
        ell_all, cov, mean, r = carry
        variances = variance(ell_all)
        s_jj, m_j, r_j, v_start = cov[j, j], mean[j], r[j], variances[j]

        def log_target(ell: jax.Array) -> jax.Array:
            change = loglik_change(variance(ell), v_start, s_jj, m_j, r_j)
            return change + _log_prior_log_lambda(ell)

        ell = move_log_lambda(key, ell_all[j], log_target, dtype)
        cov, mean, r = rank_one_update(cov, mean, r, variances, j, variance(ell))
        return ell_all.at[j].set(ell), cov, mean, r

    keys = jax.random.split(key, q + 1)

    def body(j: jax.Array, carry: tuple) -> tuple:
        return coordinate(j, carry, keys[j])

    ell_all = z_local["hs_local_a"] + 0.5 * z_local["hs_local_b"]  # log lambda
    ell_all, *_ = jax.lax.fori_loop(0, q, body, (ell_all, cov, mean, r))
    u, v = jax.vmap(lambda k, ell: split_local_scale(k, ell, dtype))(
        jax.random.split(keys[q], q), ell_all
    )
    return {"hs_local_a": u, "hs_local_b": v}


def _global(values: dict[str, jax.Array], sigma: jax.Array, data: Any) -> jax.Array:
    """The horseshoe's global scale ``tau`` at ``values`` (as in ``_horseshoe_scale``)."""
    return data.global_scale * sigma * values["hs_global_a"] * jnp.sqrt(values["hs_global_b"])
