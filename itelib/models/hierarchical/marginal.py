"""The Gaussian model with its regression coefficients integrated out.

Given the scales (noise sd, horseshoe, site sds, smooth-term sds), every regression coefficient
of the continuous-outcome model has a Gaussian prior and enters the likelihood linearly, so

    w = [alpha, beta, smooth, tau0, gamma, a_1..a_S, b_1..b_S] ~ N(0, diag(prior_sd^2))
    y | w ~ N(D w, sigma^2 I)

can be integrated over w in closed form. NUTS then samples only the scales (a few dozen
dimensions, none of the funnels that tie non-centred coefficients to their scales, and a
posterior whose shape does not tighten with n), and the coefficients are drawn afterwards,
exactly, from their Gaussian conditional (Rao-Blackwellization; e.g. Gelman et al., BDA3,
section 14.2 and 15.4).

Numerics. With ``P = D'D / sigma^2 + diag(prior_sd)^-2`` the posterior precision, everything is
computed from the Jacobi-scaled matrix ``P_J = S P S`` with ``S = diag(P)^-1/2``, whose
diagonal is 1: its condition number stays moderate whether a prior sd is huge or tiny, which
keeps float32 usable at n = 1e6. The quadratic form is taken around a float64 least-squares
fit ``w_hat`` (see :class:`MarginalStats`) so no O(n) quantities cancel in float32.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular

__all__ = [
    "DENSE_MAX_SITES",
    "FLOAT32_MAX_PATIENTS",
    "BlockSums",
    "MarginalStats",
    "block_statistics",
    "block_statistics_from_sums",
    "block_sums",
    "block_sums_from_grams",
    "conditional_draw",
    "data_constant",
    "marginal_loglik",
    "marginal_statistics",
]


# The centre's ridge, absolute on the standardized scale: the posterior mean under unit prior
# sds and unit noise, so O(1) coefficients at any n, ever closer to least squares as n grows.
_CENTRE_RIDGE = 1.0

# Up to this many sites the statistics hold the dense (K + 2S)-square matrix A; above it, its
# blocks (:func:`block_statistics`): the shared block, the shared-site cross-products and each
# site's 2 x 2 block, so memory and preprocessing grow linearly in the number of sites. Both are
# exact; the dense form is kept where it is cheap so that its float32 rounding (and so the
# pinned draws of tests/test_pinned_draws.py) stays as it was.
DENSE_MAX_SITES = 50


# precision="auto" samples in float64 above this many patients: in float32 the marginal model
# gave 1 divergence at 10^6 rows, 50 at 10^7 and non-finite draws at 10^8, where float64 gave
# none (benchmarks/results/dask_cohort.md); below it float32 is faster and as exact.
FLOAT32_MAX_PATIENTS = 2_000_000


def resolved_precision(precision: str, n: int) -> str:
    """The sampler's precision for ``n`` patients: ``precision`` unless it is ``"auto"``."""
    if precision != "auto":
        return precision
    return "float64" if n > FLOAT32_MAX_PATIENTS else "float32"


class MarginalStats(NamedTuple):
    """``|y - D w|^2 = q_hat - 2 (w - w_hat)' h + (w - w_hat)' A (w - w_hat)`` for all ``w``.

    ``w_hat`` is a ridged least-squares fit, ``h = D'y - A w_hat`` what the ridge left,
    and ``q_hat`` the residual sum of squares at ``w_hat``, all computed in float64 on the host.
    """

    gram: jax.Array  # (K, K) A = D'D; block form: (k, k), its shared block
    moment: jax.Array  # (K,)  D'y
    w_hat: jax.Array  # (K,)
    h: jax.Array  # (K,)
    q_hat: jax.Array  # ()
    n: jax.Array  # ()
    site_minor: jax.Array  # (S,) A_aa A_bb - A_ab^2 of each site's (a_s, b_s) block
    # block form (:func:`block_statistics`) only; None: ``gram`` is the whole of A
    site_cross: jax.Array | None = None  # (k, 2S) A between the shared and the site coefficients
    site_gram: jax.Array | None = None  # (3, S) A_aa, A_bb, A_ab of each site


def marginal_statistics(gram: np.ndarray, cross: np.ndarray, rss: float, theta_hat: np.ndarray,
                        n: int, effect_column: int, n_sites: int) -> MarginalStats:  # fmt: skip
    """From per-site cross-products of ``d_i = [1, x_i, phi_i, t_i, t_i·z_i]`` (taken around
    ``theta_hat``, as in :class:`~itelib.models.hierarchical.model.GaussianStats`) to the
    coordinates ``w`` of all coefficients, sites' intercepts and effects last.

    Site ``s`` has coefficients ``theta_s = M_s w``: the shared ones, plus ``a_s`` on the
    intercept and ``b_s`` on the treatment column ``effect_column``.
    """
    gram, cross = np.asarray(gram, np.float64), np.asarray(cross, np.float64)
    theta_hat = np.asarray(theta_hat, np.float64)
    k = gram.shape[1]
    size = k + 2 * n_sites
    A, moment = np.zeros((size, size)), np.zeros(size)
    maps = []
    for s in range(gram.shape[0]):
        M = np.zeros((k, size))
        M[:, :k] = np.eye(k)
        if n_sites > 0:
            M[0, k + s] = M[effect_column, k + n_sites + s] = 1.0
        A += M.T @ gram[s] @ M
        moment += M.T @ (cross[s] + gram[s] @ theta_hat)  # D_s'y_s, as D_s'r_s = cross
        maps.append(M)
    # A is singular (the site columns sum to the intercept and effect columns) and, with a
    # smooth basis beside the linear terms, nearly so in other directions too (cond(A) ~ 3e10
    # on hahn_nonlinear_homogeneous, n = 500). A ridge of 1e-8 mean(diag(A)) there gave a centre
    # with coefficients ~100, around which the float32 quadratic form moved by several nats
    # between points 1e-7 apart: NUTS's step size fell to ~1e-7. Any centre is exact (``h``
    # carries what the ridge left); a moderate one keeps the digits. (1e-3 mean(diag(A)), as for
    # ``theta_hat``, also fixed that, but at n = 1e6 moved the centre far enough from the
    # posterior to cost the float32 gradient its 0.05 accuracy.)
    ridge = _CENTRE_RIDGE * np.eye(size)
    w_hat = np.linalg.solve(A + ridge, moment)
    q_hat = float(rss)
    for s, M in enumerate(maps):
        delta = M @ w_hat - theta_hat
        q_hat += delta @ gram[s] @ delta - 2 * delta @ cross[s]
    a, b = np.arange(k, k + n_sites), np.arange(k + n_sites, size)
    minor = A[a, a] * A[b, b] - A[a, b] ** 2
    return MarginalStats(A, moment, w_hat, moment - A @ w_hat, np.asarray(max(q_hat, 0.0)),
                         np.asarray(n), minor)  # fmt: skip


class BlockSums(NamedTuple):
    """What the block form needs of the data, in float64: sums over patients of the shared
    design ``d_i`` (k columns) and the outcome, pooled and per site.

    Computed from the rows (:func:`block_sums`) or from each site's cross-products of
    ``[d, y]`` (:func:`block_sums_from_grams`, the federated path): either way the same sums,
    so :func:`block_statistics_from_sums` is the one place the statistics are built.
    """

    gram: np.ndarray  # (k, k) D'D over every patient
    moment: np.ndarray  # (k,) D'y
    yy: float  # y'y
    c_a: np.ndarray  # (k, S) each site's sum of d_i * d_i0
    c_b: np.ndarray  # (k, S) each site's sum of d_i * d_ie (the treatment column)
    m_a: np.ndarray  # (S,) each site's sum of d_i0 * y_i
    m_b: np.ndarray  # (S,) each site's sum of d_ie * y_i
    n: int


def block_sums(design: np.ndarray, y: np.ndarray, site: np.ndarray, n_sites: int,
               effect_column: int) -> BlockSums:  # fmt: skip
    """:class:`BlockSums` from the rows ``d_i`` of the shared design and the site codes, in
    O(n k^2) time and O(k^2 + S k) memory."""
    design, y = np.asarray(design, np.float64), np.asarray(y, np.float64)
    codes = np.asarray(site, np.intp)
    k, e = design.shape[1], effect_column
    d0, de = design[:, 0], design[:, e]
    c_a, c_b = np.zeros((n_sites, k)), np.zeros((n_sites, k))
    np.add.at(c_a, codes, design * d0[:, None])
    np.add.at(c_b, codes, design * de[:, None])
    m_a = np.bincount(codes, weights=d0 * y, minlength=n_sites)
    m_b = np.bincount(codes, weights=de * y, minlength=n_sites)
    return BlockSums(design.T @ design, design.T @ y, float(y @ y), c_a.T, c_b.T, m_a, m_b,
                     len(y))  # fmt: skip


def block_sums_from_grams(grams: np.ndarray, n: int, effect_column: int) -> BlockSums:
    """:class:`BlockSums` from each site's cross-products ``[D_s, y_s]' [D_s, y_s]``
    (S, k + 1, k + 1), the outcome last: what a site sends instead of its rows."""
    grams = np.asarray(grams, np.float64)
    total = grams.sum(axis=0)
    k, e = grams.shape[1] - 1, effect_column
    return BlockSums(
        total[:k, :k], total[:k, k], float(total[k, k]), grams[:, :k, 0].T, grams[:, :k, e].T,
        grams[:, 0, k], grams[:, e, k], int(n),
    )  # fmt: skip


def block_statistics(design: np.ndarray, y: np.ndarray, site: np.ndarray, n_sites: int,
                     effect_column: int) -> MarginalStats:  # fmt: skip
    """:class:`MarginalStats` in block form, straight from the rows ``d_i`` of the shared design
    and the site codes (:func:`block_sums`, then :func:`block_statistics_from_sums`)."""
    sums = block_sums(design, y, site, n_sites, effect_column)
    return block_statistics_from_sums(sums, effect_column)


def block_statistics_from_sums(sums: BlockSums, effect_column: int) -> MarginalStats:
    """:class:`MarginalStats` in block form: O(S k^2) time and O(k^2 + S k) memory for k
    shared columns and S sites, where the dense form (:func:`marginal_statistics`) holds a
    (k + 2S)-square matrix and builds it in O(S (k + 2S)^2 k).

    Site ``s``'s intercept ``a_s`` multiplies ``d_i0`` (1) and its effect ``b_s`` multiplies
    ``d_ie`` (the treatment column ``effect_column``) of its own patients. The centre ``w_hat``
    solves the same ridged system as the dense form, the sites eliminated 2 x 2 block by block,
    and ``q_hat`` is the residual sum of squares at it, ``y'y - 2 w_hat' D'y + w_hat' A w_hat``,
    all in float64 (its cancellation costs ``y'y / q_hat`` in relative accuracy: 1e-14 where
    the model explains 99 % of the outcome's variance).
    """
    gram, c_a, c_b, m_a, m_b = sums.gram, sums.c_a, sums.c_b, sums.m_a, sums.m_b
    k, e = gram.shape[0], effect_column
    a_aa, a_bb, a_ab = c_a[0], c_b[e], c_a[e]
    m_g = sums.moment
    # (A + ridge I) w_hat = moment: each site's 2 x 2 block (its determinant is at least 1)
    # eliminated into a Schur complement on the shared block
    r = _CENTRE_RIDGE
    det = (a_aa + r) * (a_bb + r) - a_ab**2
    u_a = (c_a * (a_bb + r) - c_b * a_ab) / det  # C B^-1, split by its a and b columns
    u_b = (c_b * (a_aa + r) - c_a * a_ab) / det
    schur = gram + r * np.eye(k) - u_a @ c_a.T - u_b @ c_b.T
    w_g = np.linalg.solve(schur, m_g - u_a @ m_a - u_b @ m_b)
    rest_a, rest_b = m_a - c_a.T @ w_g, m_b - c_b.T @ w_g
    w_a = ((a_bb + r) * rest_a - a_ab * rest_b) / det
    w_b = ((a_aa + r) * rest_b - a_ab * rest_a) / det
    w_hat = np.concatenate([w_g, w_a, w_b])
    a_w = np.concatenate([
        gram @ w_g + c_a @ w_a + c_b @ w_b,
        c_a.T @ w_g + a_aa * w_a + a_ab * w_b,
        c_b.T @ w_g + a_ab * w_a + a_bb * w_b,
    ])  # fmt: skip
    moment = np.concatenate([m_g, m_a, m_b])
    q_hat = max(sums.yy - 2 * w_hat @ moment + w_hat @ a_w, 0.0)
    return MarginalStats(
        gram, moment, w_hat, moment - a_w, np.asarray(q_hat), np.asarray(sums.n),
        a_aa * a_bb - a_ab**2, np.concatenate([c_a, c_b], axis=1), np.stack([a_aa, a_bb, a_ab]),
    )  # fmt: skip


def _gram_diagonal(stats: MarginalStats) -> jax.Array:
    """``diag(A)``, in either form."""
    if stats.site_cross is None:
        return jnp.diagonal(stats.gram)
    return jnp.concatenate([jnp.diagonal(stats.gram), stats.site_gram[0], stats.site_gram[1]])


def _gram_quadratic(stats: MarginalStats, x: jax.Array) -> jax.Array:
    """``x' A x``, in either form."""
    if stats.site_cross is None:
        return x @ stats.gram @ x
    k, n_sites = stats.gram.shape[0], stats.site_minor.shape[0]
    x_g, x_a, x_b = x[:k], x[k : k + n_sites], x[k + n_sites :]
    a_aa, a_bb, a_ab = stats.site_gram
    return (
        x_g @ stats.gram @ x_g
        + 2 * x_g @ (stats.site_cross @ x[k:])
        + jnp.sum(a_aa * x_a**2 + a_bb * x_b**2 + 2 * a_ab * x_a * x_b)
    )


def data_constant(stats: MarginalStats) -> jax.Array:
    """``log p(y | scales) - marginal_loglik``: ``-n/2 (log(2 pi q_hat / n) + 1)``."""
    return -0.5 * stats.n * (jnp.log(2 * jnp.pi * stats.q_hat / stats.n) + 1.0)


def _jacobi(stats: MarginalStats, prior_sd: jax.Array, sigma: jax.Array):
    """``d = 1 + A_ii prior_sd^2 / sigma^2`` and ``s = diag(P)^-1/2 = prior_sd / sqrt(d)``:
    ``P_J = S P S`` has a unit diagonal."""
    d = 1.0 + _gram_diagonal(stats) * prior_sd**2 / sigma**2
    return d, prior_sd / jnp.sqrt(d)


@jax.custom_jvp
def marginal_loglik(stats: MarginalStats, prior_sd: jax.Array, sigma: jax.Array) -> jax.Array:
    """``log p(y | scales)`` with ``w ~ N(0, diag(prior_sd^2))`` integrated out, less the
    constant :func:`data_constant`.

    The constant is of order n: kept in, a float32 log density at n = 1e6 (~1e6) would resolve
    only ~0.06, noise that NUTS's acceptance test sees (a run at target_accept 0.9 collapsed its
    step size). Without it the value is of order K, and the noise term ``-n/2 (log sigma^2 +
    sigma_hat^2 / sigma^2)`` is written as ``n/2 (log1p(x) - x)``, ``x = sigma_hat^2 / sigma^2
    - 1``, which stays accurate near its maximum.

    For a Gaussian the integral is its integrand at the posterior mean ``m`` times a
    determinant: ``log N(y; D m, sigma^2) + log N(m; 0, prior) + K/2 log(2 pi) - log|P|/2``,
    which is ``-n/2 log(2 pi sigma^2) - Q(m) / (2 sigma^2) - |m / prior_sd|^2 / 2
    - log|P prior_sd^2| / 2``. Sites enter as 2 x 2 blocks ``(a_s, b_s)`` coupled only to the
    shared coefficients, so they are eliminated in closed form (a Schur complement) and only
    the shared block is factorized: a value costs O(S K^2 + K^3) for K shared coefficients.

    Its gradient is written out (:func:`_marginal_loglik_jvp`) rather than traced back through
    the Cholesky factorization: a potential's value and gradient for NUTS cost 44 us instead of
    118 us (20 sites, p = 10, 2-core CPU).
    """
    return _value_and_gradient(stats, prior_sd, sigma)[0]


@marginal_loglik.defjvp
def _marginal_loglik_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    """The derivative of a Gaussian marginal likelihood in its prior variances and noise
    variance needs only the posterior mean and the diagonal of the posterior covariance (the
    identities behind EM for variance components; e.g. Bishop 2006, eqs. 3.92 and 9.68)."""
    stats, prior_sd, sigma = primals
    _, d_sd, d_sigma = tangents  # the statistics are data: their tangents are not used
    value, g_sd, g_sigma = _value_and_gradient(stats, prior_sd, sigma)
    return value, g_sd @ d_sd + g_sigma * d_sigma


def _site_blocks(stats: MarginalStats, prior_sd: jax.Array, sigma: jax.Array, d: jax.Array,
                 s: jax.Array) -> tuple:  # fmt: skip
    """The sites' part of ``P_J``: each site's block ``B = [[1, c], [c, 1]]`` (``c`` and
    ``det(B)``, the latter written as a sum of positive terms: ``c -> 1`` in a large one-arm
    site would cancel ``1 - c^2`` in float32), the shared-site block ``C`` (k, 2S), and
    ``x -> B^-1 x`` for ``x = [x_a, x_b]``."""
    n_sites = stats.site_minor.shape[0]
    k = d.shape[0] - 2 * n_sites
    dense = stats.site_cross is None
    a_diag = _gram_diagonal(stats)
    a, b = slice(k, k + n_sites), slice(k + n_sites, None)
    a_ab = stats.gram[a, b].diagonal() if dense else stats.site_gram[2]
    c = s[a] * s[b] * a_ab / sigma**2
    sd_a2, sd_b2, s2 = prior_sd[a] ** 2, prior_sd[b] ** 2, sigma**2
    det_b = (
        stats.site_minor * sd_a2 * sd_b2 / s2**2
        + (a_diag[a] * sd_a2 + a_diag[b] * sd_b2) / s2
        + 1.0
    ) / (d[a] * d[b])

    def b_solve(x_a: jax.Array, x_b: jax.Array) -> jax.Array:
        return jnp.concatenate([(x_a - c * x_b) / det_b, (x_b - c * x_a) / det_b])

    a_gs = stats.gram[:k, k:] if dense else stats.site_cross
    cross = (s[:k, None] * s[None, k:]) * a_gs / sigma**2  # C: (k, 2S)
    return c, det_b, cross, b_solve


def _value_and_gradient(
    stats: MarginalStats, prior_sd: jax.Array, sigma: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`marginal_loglik` and its gradient in ``prior_sd`` and ``sigma``.

    With ``m`` the posterior mean, ``V`` the posterior covariance, ``v = prior_sd^2`` and
    ``Q(m) = |y - D m|^2``:

        d/d prior_sd_j = ((m_j^2 + V_jj) / v_j - 1) / prior_sd_j
        d/d sigma      = (Q(m) + tr(A V)) / sigma^3 - n / sigma,
                         tr(A V) = sigma^2 (K - sum_j V_jj / v_j),

    and in Jacobi coordinates ``m_j^2 / v_j = u_j^2 / d_j``, ``V_jj / v_j = (P_J^-1)_jj / d_j``.
    """
    n_sites = stats.site_minor.shape[0]
    d, s = _jacobi(stats, prior_sd, sigma)
    rhs = s * stats.moment / sigma**2
    k = d.shape[0] - 2 * n_sites
    p_g = (s[:k, None] * s[None, :k]) * stats.gram[:k, :k] / sigma**2
    p_g = p_g - jnp.diag(jnp.diagonal(p_g)) + jnp.eye(k, dtype=p_g.dtype)
    if n_sites == 0:
        chol = jnp.linalg.cholesky(p_g)
        u = cho_solve((chol, True), rhs)
        log_det_sites = 0.0
        chol_inv = solve_triangular(chol, jnp.eye(k, dtype=chol.dtype), lower=True)
        p_inv_diag = jnp.sum(chol_inv**2, axis=0)
    else:
        # B = [[1, c], [c, 1]] per site; det(B) written as a sum of positive terms (c -> 1 in a
        # large one-arm site would cancel 1 - c^2 in float32).
        c, det_b, cross, b_solve = _site_blocks(stats, prior_sd, sigma, d, s)
        b_inv_cross_t = jax.vmap(b_solve, in_axes=(1, 1), out_axes=1)(
            cross[:, :n_sites].T, cross[:, n_sites:].T
        )  # B^-1 C': (2S, k)
        chol = jnp.linalg.cholesky(p_g - cross @ b_inv_cross_t)
        r_s = rhs[k:]
        u_g = cho_solve((chol, True), rhs[:k] - cross @ b_solve(r_s[:n_sites], r_s[n_sites:]))
        rest = r_s - cross.T @ u_g
        u = jnp.concatenate([u_g, b_solve(rest[:n_sites], rest[n_sites:])])
        log_det_sites = jnp.sum(jnp.log(det_b))
        # diag(P_J^-1): the Schur complement's inverse for the shared block, and
        # B^-1 + (B^-1 C') S^-1 (C B^-1) for the sites' blocks.
        chol_inv = solve_triangular(chol, jnp.eye(k, dtype=chol.dtype), lower=True)
        p_inv_diag = jnp.concatenate([
            jnp.sum(chol_inv**2, axis=0),
            jnp.tile(1.0 / det_b, 2) + jnp.sum((chol_inv @ b_inv_cross_t.T) ** 2, axis=0),
        ])  # fmt: skip
    delta = s * u - stats.w_hat  # m - w_hat, m = s * u the posterior mean
    excess = _gram_quadratic(stats, delta) - 2 * delta @ stats.h  # Q(m) - q_hat, of order K
    prior_quad = jnp.sum(u**2 / d)  # |m / prior_sd|^2 with s / prior_sd = 1 / sqrt(d)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol))) + log_det_sites + jnp.sum(jnp.log(d))
    x = stats.q_hat / (stats.n * sigma**2) - 1.0
    value = (
        0.5 * stats.n * (jnp.log1p(x) - x)
        - 0.5 * excess / sigma**2
        - 0.5 * prior_quad
        - 0.5 * log_det
    )
    posterior_var = p_inv_diag / d  # V_jj / v_j
    # At prior_sd = 0 (in float32 a smooth term's high frequencies underflow to exactly 0 for
    # long length-scales) the derivative is 0, the value being even in prior_sd; 0 / 0 here
    # was NaN, a divergence to NUTS.
    positive = prior_sd > 0
    g_sd = jnp.where(
        positive, (u**2 / d + posterior_var - 1.0) / jnp.where(positive, prior_sd, 1.0), 0.0
    )
    trace_term = d.shape[0] - jnp.sum(posterior_var)  # tr(A V) / sigma^2
    g_sigma = stats.n * x / sigma + excess / sigma**3 + trace_term / sigma
    return value, g_sd, g_sigma


def conditional_draw(
    key: jax.Array, stats: MarginalStats, prior_sd: jax.Array, sigma: jax.Array
) -> jax.Array:
    """One draw of ``w`` from ``N(P^-1 D'y / sigma^2, P^-1)``: ``s * (u + L^-T eps)`` with
    ``L L' = P_J`` (dense: once per kept draw, not per gradient).

    In block form the shared coefficients are drawn from their marginal (the Schur complement
    of the sites' blocks is their precision), then each site's pair from its conditional given
    them: the same Gaussian, in O(S k^2 + k^3) instead of O((k + 2S)^3)."""
    d, s = _jacobi(stats, prior_sd, sigma)
    if stats.site_cross is not None:
        return s * _block_draw(key, stats, prior_sd, sigma, d, s)
    p_j = (s[:, None] * s[None, :]) * stats.gram / sigma**2
    chol = jnp.linalg.cholesky(p_j - jnp.diag(jnp.diagonal(p_j)) + jnp.eye(len(d), dtype=s.dtype))
    u = cho_solve((chol, True), s * stats.moment / sigma**2)
    eps = jax.random.normal(key, u.shape, u.dtype)
    return s * (u + solve_triangular(chol, eps, lower=True, trans="T"))


def _block_draw(key: jax.Array, stats: MarginalStats, prior_sd: jax.Array, sigma: jax.Array,
                d: jax.Array, s: jax.Array) -> jax.Array:  # fmt: skip
    """``u`` ~ N(P_J^-1 r, P_J^-1) for the block form (see :func:`conditional_draw`)."""
    n_sites = stats.site_minor.shape[0]
    k = d.shape[0] - 2 * n_sites
    c, det_b, cross, b_solve = _site_blocks(stats, prior_sd, sigma, d, s)
    b_inv_cross_t = jax.vmap(b_solve, in_axes=(1, 1), out_axes=1)(
        cross[:, :n_sites].T, cross[:, n_sites:].T
    )  # B^-1 C': (2S, k)
    p_g = (s[:k, None] * s[None, :k]) * stats.gram / sigma**2
    p_g = p_g - jnp.diag(jnp.diagonal(p_g)) + jnp.eye(k, dtype=p_g.dtype)
    chol = jnp.linalg.cholesky(p_g - cross @ b_inv_cross_t)
    rhs = s * stats.moment / sigma**2
    r_s = rhs[k:]
    u_g = cho_solve((chol, True), rhs[:k] - cross @ b_solve(r_s[:n_sites], r_s[n_sites:]))
    eps = jax.random.normal(key, rhs.shape, rhs.dtype)
    x_g = u_g + solve_triangular(chol, eps[:k], lower=True, trans="T")
    rest = r_s - cross.T @ x_g  # the sites given the shared draw: N(B^-1 rest, B^-1)
    # B = L L', L = [[1, 0], [c, sqrt(det B)]]: L'^-1 eps has covariance B^-1
    root = jnp.sqrt(det_b)
    e_b = eps[k + n_sites :] / root
    e_a = eps[k : k + n_sites] - c * e_b
    return jnp.concatenate(
        [x_g, b_solve(rest[:n_sites], rest[n_sites:]) + jnp.concatenate([e_a, e_b])]
    )
