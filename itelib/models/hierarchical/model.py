"""The hierarchical treatment-effect model as pure NumPyro functions.

Everything static (sizes, priors) lives in a frozen, hashable :class:`ModelSpec`; everything that
changes between data sets of the same shape lives in :class:`ModelData`, a pytree of arrays, so a
compiled sampler is reused across fits (see :mod:`itelib.inference.nuts`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from itelib.models.hierarchical.marginal import (
    DENSE_MAX_SITES,
    BlockSums,
    MarginalStats,
    block_statistics,
    block_statistics_from_sums,
    block_sums,
    block_sums_from_grams,
    conditional_draw,
    marginal_loglik,
    marginal_statistics,
)
from itelib.models.hierarchical.priors import HierarchicalPriors
from itelib.models.survival.likelihood import CensoredAFT

__all__ = [
    "GaussianStats",
    "MarginalStats",
    "ModelData",
    "coefficient_draws",
    "DENSE_MAX_SITES",
    "block_statistics",
    "block_statistics_from_sums",
    "block_sums",
    "block_sums_from_grams",
    "BlockSums",
    "gaussian_design",
    "ModelSpec",
    "effect_draws",
    "linear_predictors",
    "marginal_statistics",
    "prognosis_draws",
    "risk_difference",
    "gaussian_sufficient_statistics",
    "site_grams",
    "sufficient_statistics_from_grams",
    "hierarchical_model",
]


class ModelData(NamedTuple):
    """Standardized training data (a JAX pytree).

    Row-wise fields feed the row-wise likelihood; the sufficient-statistics fields (see
    :func:`gaussian_sufficient_statistics`) feed the exact Gaussian likelihood whose cost does not
    grow with n. Fields a likelihood does not use are None.
    """

    global_scale: jax.Array  # () horseshoe global scale before the factor sigma
    y: jax.Array | None = None  # (n,) standardized outcome
    t: jax.Array | None = None  # (n,) 0/1
    X: jax.Array | None = None  # (n, p) standardized covariates
    site: jax.Array | None = None  # (n,) int32 site codes; zeros when there are no sites
    stats: GaussianStats | None = None
    offset: jax.Array | None = None  # () binary outcomes: logit of the training event rate
    basis: jax.Array | None = None  # (n, n_smooth * n_basis) smooth prognostic basis
    modifiers: jax.Array | None = None  # (n, q) effect-modifier features; None: X
    sqrt_eig: jax.Array | None = None  # (n_smooth, n_basis) sqrt Laplacian eigenvalues
    marginal: MarginalStats | None = None  # likelihood "marginal": coefficients integrated out
    effect_basis: jax.Array | None = None  # (n, n_effect_smooth * n_basis) smooth effect basis
    effect_sqrt_eig: jax.Array | None = None  # (n_effect_smooth, n_basis)
    event: jax.Array | None = None  # (n,) survival outcomes: 1 event observed, 0 censored


class GaussianStats(NamedTuple):
    """Per-site cross-products of the design ``d_i = [1, x_i, phi_i, t_i, t_i·z_i, t_i·psi_i]``
    (``psi``: the smooth effect basis, when the model has one).

    Taken around a pooled least-squares fit ``theta_hat`` (residuals ``r = y - D·theta_hat``),
    so the quadratic form keeps its precision in float32 at large n.
    """

    gram: jax.Array  # (S, K, K)  D_s' D_s
    cross: jax.Array  # (S, K)    D_s' r_s
    rss: jax.Array  # ()         r' r
    theta_hat: jax.Array  # (K,)
    n: jax.Array  # ()         number of patients


@dataclass(frozen=True)
class ModelSpec:
    """Static structure of the model: sizes and priors (hashable, part of the compile key)."""

    p: int
    n_sites: int  # 0: no site terms
    priors: HierarchicalPriors
    # "sufficient" (exact Gaussian, O(1) in n), "marginal" (the same with the regression
    # coefficients integrated out, see :mod:`.marginal`) or "rows"
    likelihood: str = "sufficient"
    outcome: str = "continuous"  # or "binary": Bernoulli, logit link, always row-wise
    # or "survival": censored AFT on standardized log time, always row-wise
    q: int | None = None  # effect-modifier features; None: the p covariates
    n_smooth: int = 0  # covariates with a smooth (HSGP) prognostic term
    n_basis: int = 0  # basis functions per smooth term
    batch_size: int | None = None  # likelihood "rows": patients per (SVI) step; None: all
    n_effect_smooth: int = 0  # modifiers with a smooth (HSGP) effect term (n_basis functions)
    survival_family: str | None = None  # outcome "survival": "weibull" or "lognormal"

    @property
    def n_modifiers(self) -> int:
        return self.p if self.q is None else self.q


def initial_inverse_mass(spec: ModelSpec, n: int) -> dict[str, float] | None:
    """Approximate posterior variances, in unconstrained space, for NUTS's first window.

    ``log sigma`` of a continuous outcome has variance about ``1 / (2 n)`` (its Fisher
    information is ``2 n``), where NumPyro starts every site at 1: at p = 200 (n = 1000) the first
    window then ran at step size 0.017 and warmup took 4 times the leapfrog steps of sampling.
    With this start: 10,000 instead of 40,000 warmup steps (``docs/decisions.md``, issue 24).
    """
    return {"sigma": 1.0 / (2.0 * n)} if spec.outcome == "continuous" else None


def _half_cauchy(name: str, scale: float | jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Half-Cauchy(scale) as scale * N+(0,1) * sqrt(InvGamma(1/2, 1/2)); lighter tails for NUTS."""
    a = numpyro.sample(f"{name}_a", dist.HalfNormal(1.0).expand(shape).to_event(len(shape)))
    b = numpyro.sample(f"{name}_b", dist.InverseGamma(0.5, 0.5).expand(shape).to_event(len(shape)))
    return scale * a * jnp.sqrt(b)


def _horseshoe_scale(spec: ModelSpec, sigma: jax.Array, global_scale: jax.Array) -> jax.Array:
    """Prior sd ``tau * lambda_tilde`` of each effect modifier under the regularized horseshoe
    (Piironen & Vehtari 2017)."""
    pr = spec.priors
    tau_hs = _half_cauchy("hs_global", global_scale * sigma)
    lam = _half_cauchy("hs_local", 1.0, (spec.n_modifiers,))
    c2 = numpyro.sample(
        "hs_slab", dist.InverseGamma(0.5 * pr.slab_df, 0.5 * pr.slab_df * pr.slab_scale**2)
    )
    return tau_hs * jnp.sqrt(c2 * lam**2 / (c2 + tau_hs**2 * lam**2))


def _effect_modifiers(spec: ModelSpec, sigma: jax.Array, global_scale: jax.Array) -> jax.Array:
    """Regularized horseshoe, non-centred."""
    scale = _horseshoe_scale(spec, sigma, global_scale)
    z = numpyro.sample("gamma_z", dist.Normal(0.0, 1.0).expand((spec.n_modifiers,)).to_event(1))
    return numpyro.deterministic("gamma", scale * z)


def _smooth_scale(spec: ModelSpec, sqrt_eig: jax.Array, prefix: str = "smooth") -> jax.Array:
    """(n_smooth, n_basis) prior sds of the HSGP coefficients: one squared-exponential GP per
    smooth covariate, ``f_j(x) = sum_k sqrt(S_j(sqrt(lambda_k))) z_jk phi_k(x)`` with the SE
    spectral density ``S(w) = amplitude^2 sqrt(2 pi) lengthscale exp(-lengthscale^2 w^2 / 2)``
    (Riutort-Mayol et al. 2023, eq. 1 and 4).

    ``prefix="effect_smooth"``: the smooth effect terms (their own, smaller amplitude prior).
    """
    pr = spec.priors
    effect = prefix == "effect_smooth"
    shape = (spec.n_effect_smooth if effect else spec.n_smooth,)
    amp_sd = pr.effect_smooth_sd if effect else pr.smooth_sd
    amp = numpyro.sample(f"{prefix}_amplitude", dist.HalfNormal(amp_sd).expand(shape).to_event(1))
    ls_prior = (
        (pr.effect_smooth_lengthscale_shape, pr.effect_smooth_lengthscale_scale)
        if effect
        else (pr.smooth_lengthscale_shape, pr.smooth_lengthscale_scale)
    )
    ls = numpyro.sample(
        f"{prefix}_lengthscale", dist.InverseGamma(*ls_prior).expand(shape).to_event(1)
    )
    # sqrt(S(w)) written out, never sqrt(S): for long length-scales S(w) underflows to 0 in
    # float32 and sqrt's gradient at 0 is infinite, which sent whole chains astray.
    return (
        amp[:, None]
        * (2 * jnp.pi) ** 0.25
        * jnp.sqrt(ls[:, None])
        * jnp.exp(-0.25 * (ls[:, None] * sqrt_eig) ** 2)
    )


def _smooth_terms(spec: ModelSpec, sqrt_eig: jax.Array, prefix: str = "smooth") -> jax.Array:
    """HSGP coefficients, non-centred (see :func:`_smooth_scale`)."""
    sqrt_spd = _smooth_scale(spec, sqrt_eig, prefix)
    z = numpyro.sample(f"{prefix}_z", dist.Normal(0.0, 1.0).expand(sqrt_spd.shape).to_event(2))
    return numpyro.deterministic(f"{prefix}_coef", (sqrt_spd * z).reshape(-1))


def _site_scales(spec: ModelSpec) -> tuple[jax.Array, jax.Array]:
    """Sds of the site intercepts and of the site treatment effects."""
    pr = spec.priors
    sd_a = numpyro.sample("sigma_site", dist.HalfNormal(pr.site_intercept_sd))
    sd_b = numpyro.sample("sigma_site_effect", dist.HalfNormal(pr.site_effect_sd))
    return sd_a, sd_b


def _site_effects(spec: ModelSpec) -> tuple[jax.Array, jax.Array]:
    """Non-centred site intercepts and site treatment effects."""
    sd_a, sd_b = _site_scales(spec)
    shape = (spec.n_sites,)
    za = numpyro.sample("site_intercept_z", dist.Normal(0.0, 1.0).expand(shape).to_event(1))
    zb = numpyro.sample("site_effect_z", dist.Normal(0.0, 1.0).expand(shape).to_event(1))
    return sd_a * za, sd_b * zb


def hierarchical_model(data: ModelData, spec: ModelSpec) -> None:
    """``y = alpha + a_s + X·beta + t·(tau0 + b_s + X·gamma) + e`` on the standardized scale.

    For binary outcomes the same linear predictor, plus ``data.offset``, is the log-odds of
    ``y = 1`` (Bernoulli, logit link); there is no ``sigma`` and the horseshoe's global scale
    carries the pseudo-sd ``1 / sqrt(p(1 - p))`` of Piironen & Vehtari (2017), section 3.5.

    For survival outcomes ``y`` is the standardized log time and the same linear predictor is
    the location ``eta`` of an accelerated-failure-time model, ``y = eta + sigma * eps`` with
    ``eps`` of ``spec.survival_family``; censored patients enter through their survival
    function (:class:`~itelib.models.survival.likelihood.CensoredAFT`, whose value is the
    time ``exp(y)`` on this scale).
    """
    if spec.likelihood == "marginal":
        sigma, prior_sd = coefficient_prior_sd(data, spec)
        numpyro.factor("y", marginal_loglik(data.marginal, prior_sd, sigma))
        return
    pr = spec.priors
    alpha = numpyro.sample("alpha", dist.Normal(0.0, pr.intercept_sd))
    tau0 = numpyro.sample("tau0", dist.Normal(0.0, pr.effect_sd))
    binary = spec.outcome == "binary"
    sigma = 1.0 if binary else numpyro.sample("sigma", dist.HalfNormal(pr.noise_sd))
    beta = numpyro.sample("beta", dist.Normal(0.0, pr.prognostic_sd).expand((spec.p,)).to_event(1))
    smooth = _smooth_terms(spec, data.sqrt_eig) if spec.n_smooth > 0 else jnp.zeros(0)
    gamma = (
        _effect_modifiers(spec, sigma, data.global_scale) if spec.n_modifiers > 0 else jnp.zeros(0)
    )
    effect_smooth = (
        _smooth_terms(spec, data.effect_sqrt_eig, "effect_smooth")
        if spec.n_effect_smooth > 0
        else jnp.zeros(0)
    )
    a, b = _site_effects(spec) if spec.n_sites > 0 else (jnp.zeros(1), jnp.zeros(1))
    if spec.likelihood == "sufficient" and not binary:
        prognostic = jnp.concatenate([beta, smooth])
        modifying = jnp.concatenate([gamma, effect_smooth])
        _gaussian_sufficient_likelihood(
            data.stats, alpha + a, prognostic, tau0 + b, modifying, sigma
        )
        return
    n = data.t.shape[0]
    rows = _minibatch(n, spec.batch_size)
    take = (lambda a: a) if rows is None else (lambda a: a[rows])  # noqa: E731
    X, t, y = take(data.X), take(data.t), take(data.y)
    site = take(data.site) if spec.n_sites > 0 else jnp.zeros_like(t, jnp.int32)
    prognosis = alpha + a[site] + X @ beta
    if spec.n_smooth > 0:
        prognosis = prognosis + take(data.basis) @ smooth
    effect = tau0 + b[site] + (X if data.modifiers is None else take(data.modifiers)) @ gamma
    if spec.n_effect_smooth > 0:
        effect = effect + take(data.effect_basis) @ effect_smooth
    weight = None if rows is None else n / spec.batch_size
    with numpyro.handlers.scale(scale=weight) if weight else contextlib.nullcontext():
        if binary:
            numpyro.sample("y", dist.BernoulliLogits(data.offset + prognosis + t * effect), obs=y)
        elif spec.outcome == "survival":
            law = CensoredAFT(prognosis + t * effect, sigma, spec.survival_family, take(data.event))
            numpyro.sample("y", law, obs=None if y is None else jnp.exp(y))
        else:
            numpyro.sample("y", dist.Normal(prognosis + t * effect, sigma), obs=y)


def _minibatch(n: int, batch_size: int | None) -> jax.Array | None:
    """Rows of this step's minibatch, drawn with replacement (the scaled log-likelihood is then
    unbiased, and drawing costs O(batch) where ``numpyro.plate``'s subsample permutes all n
    rows: at n = 10,000 that made a 1,000-patient step 5x slower than a full one); None: all."""
    if batch_size is None:
        return None
    return jax.random.randint(numpyro.prng_key(), (batch_size,), 0, n)


def coefficient_prior_sd(data: ModelData, spec: ModelSpec) -> tuple[jax.Array, jax.Array]:
    """Sample the scales of the continuous model; return ``sigma`` and the prior sds of
    ``w = [alpha, beta, smooth, tau0, gamma, effect_smooth, a_1..a_S, b_1..b_S]`` (see
    :mod:`.marginal`)."""
    pr = spec.priors
    sigma = numpyro.sample("sigma", dist.HalfNormal(pr.noise_sd))
    parts = [jnp.full(1, pr.intercept_sd), jnp.full(spec.p, pr.prognostic_sd)]
    if spec.n_smooth > 0:
        parts.append(_smooth_scale(spec, data.sqrt_eig).reshape(-1))
    parts.append(jnp.full(1, pr.effect_sd))
    if spec.n_modifiers > 0:
        parts.append(_horseshoe_scale(spec, sigma, data.global_scale))
    if spec.n_effect_smooth > 0:
        parts.append(_smooth_scale(spec, data.effect_sqrt_eig, "effect_smooth").reshape(-1))
    if spec.n_sites > 0:
        sd_a, sd_b = _site_scales(spec)
        parts += [jnp.full(spec.n_sites, sd_a), jnp.full(spec.n_sites, sd_b)]
    return sigma, jnp.concatenate([jnp.asarray(x, jnp.result_type(float)) for x in parts])


def coefficient_draws(
    key: jax.Array, params: dict[str, np.ndarray], data: ModelData, spec: ModelSpec
) -> dict[str, np.ndarray]:
    """The regression coefficients for draws of the scales (leading ``(chain, draw)`` axes),
    each drawn exactly from its Gaussian conditional, under the names of the full model."""
    lead = next(iter(params.values())).shape[:2]
    flat = {k: jnp.asarray(v).reshape(-1, *v.shape[2:]) for k, v in params.items()}
    keys = jax.random.split(key, lead[0] * lead[1])
    out = _coefficient_draws(keys, flat, data, spec)
    return {k: np.asarray(v).reshape(*lead, *v.shape[1:]) for k, v in out.items()}


@partial(jax.jit, static_argnames="spec")
def _coefficient_draws(
    keys: jax.Array, flat: dict[str, jax.Array], data: ModelData, spec: ModelSpec
) -> dict[str, jax.Array]:
    from numpyro.handlers import substitute

    def one(k: jax.Array, draw: dict[str, jax.Array]) -> dict[str, jax.Array]:
        sigma, sd = substitute(coefficient_prior_sd, data=draw)(data, spec)
        w = conditional_draw(k, data.marginal, sd, sigma)
        return _named_coefficients(w, sd, spec)

    return jax.vmap(one)(keys, flat)


def _named_coefficients(w: jax.Array, sd: jax.Array, spec: ModelSpec) -> dict[str, jax.Array]:
    """Split ``w`` into the full model's sites (the z's are coefficient / prior sd)."""
    p, smooth, q, sites = spec.p, spec.n_smooth * spec.n_basis, spec.n_modifiers, spec.n_sites
    out = {"alpha": w[0], "beta": w[1 : 1 + p]}
    k = 1 + p
    if smooth > 0:
        out["smooth_coef"] = w[k : k + smooth]
        out["smooth_z"] = _standardized(w[k : k + smooth], sd[k : k + smooth]).reshape(
            spec.n_smooth, spec.n_basis
        )
    k += smooth
    out["tau0"] = w[k]
    k += 1
    if q > 0:
        out["gamma"], out["gamma_z"] = w[k : k + q], _standardized(w[k : k + q], sd[k : k + q])
    k += q
    e = spec.n_effect_smooth * spec.n_basis
    if e > 0:
        out["effect_smooth_coef"] = w[k : k + e]
        out["effect_smooth_z"] = _standardized(w[k : k + e], sd[k : k + e]).reshape(
            spec.n_effect_smooth, spec.n_basis
        )
    k += e
    if sites > 0:
        out["site_intercept_z"] = w[k : k + sites] / sd[k]
        out["site_effect_z"] = w[k + sites :] / sd[k + sites]
    return out


def _standardized(w: jax.Array, sd: jax.Array) -> jax.Array:
    """``w / sd``, and 0 where a prior sd underflowed to 0 in float32 (its coefficient is 0)."""
    positive = sd > 0
    return jnp.where(positive, w / jnp.where(positive, sd, 1.0), 0.0)


def _gaussian_sufficient_likelihood(
    stats: GaussianStats,
    intercepts: jax.Array,
    beta: jax.Array,
    effects: jax.Array,
    gamma: jax.Array,
    sigma: jax.Array,
) -> None:
    """Exact Gaussian log-likelihood from per-site cross-products (cost independent of n)."""
    n_sites = intercepts.shape[0]
    theta = jnp.concatenate(
        [
            intercepts[:, None],
            jnp.broadcast_to(beta, (n_sites, beta.shape[0])),
            effects[:, None],
            jnp.broadcast_to(gamma, (n_sites, gamma.shape[0])),
        ],
        axis=1,
    )  # (S, K): coefficients of [1, x, t, t·x] in each site
    delta = theta - stats.theta_hat
    quad = (
        stats.rss
        - 2 * jnp.sum(delta * stats.cross)
        + jnp.einsum("sk,skl,sl->", delta, stats.gram, delta)
    )
    loglik = -stats.n * (jnp.log(sigma) + 0.5 * jnp.log(2 * jnp.pi)) - 0.5 * quad / sigma**2
    numpyro.factor("y", loglik)


def gaussian_design(
    y: np.ndarray,
    t: np.ndarray,
    X: np.ndarray,
    basis: np.ndarray | None = None,
    modifiers: np.ndarray | None = None,
) -> np.ndarray:
    """Rows ``[1, x, phi, t, t·z]`` of the shared design (see
    :func:`gaussian_sufficient_statistics`)."""
    basis = np.zeros((len(y), 0)) if basis is None else basis
    modifiers = X if modifiers is None else modifiers
    return np.column_stack([np.ones_like(y), X, basis, t, t[:, None] * modifiers])


def gaussian_sufficient_statistics(
    y: np.ndarray,
    t: np.ndarray,
    X: np.ndarray,
    site: np.ndarray | None,
    n_sites: int,
    basis: np.ndarray | None = None,
    modifiers: np.ndarray | None = None,
) -> GaussianStats:
    """Cross-products per site of ``[1, x, phi, t, t·z]``, computed in float64 with NumPy.

    ``phi`` is the smooth prognostic basis (none by default) and ``z`` the effect-modifier
    features (``x`` by default; with smooth effect terms, the linear modifiers followed by
    their basis ``psi``). With no covariates the design is ``[1, t]``.
    """
    design = gaussian_design(y, t, X, basis, modifiers)
    codes = np.zeros(len(y), np.intp) if site is None or n_sites == 0 else np.asarray(site)
    return sufficient_statistics_from_grams(site_grams(design, y, codes, max(n_sites, 1)))


def site_grams(design: np.ndarray, y: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(S, K + 1, K + 1): each site's cross-products ``[D_s, y_s]' [D_s, y_s]`` in float64, the
    outcome last. All the Gaussian likelihood needs of a site's patients (with their count):
    what a site computes and sends in a federated fit (:mod:`itelib.federated`)."""
    aug = np.column_stack([np.asarray(design, np.float64), np.asarray(y, np.float64)])
    codes = np.asarray(codes, np.intp)
    grams = np.zeros((n_groups, aug.shape[1], aug.shape[1]))
    for s in range(n_groups):
        rows = aug[codes == s]
        grams[s] = rows.T @ rows
    return grams


def sufficient_statistics_from_grams(grams: np.ndarray, n: int | None = None) -> GaussianStats:
    """:class:`GaussianStats` from the sites' cross-products (:func:`site_grams`). ``n``: the
    number of patients; None: ``grams[:, 0, 0]``'s sum, the intercept column's (exact only for
    exact cross-products: pass the counts for noisy, differentially private ones)."""
    grams = np.asarray(grams, np.float64)
    k = grams.shape[1] - 1
    total = grams.sum(axis=0)
    gram_all, moment = total[:k, :k], total[:k, k]
    # Centre on a lightly ridged least-squares fit: with near-collinear columns (a smooth basis
    # beside the linear terms) the exact fit has huge coefficients, and the quadratic form around
    # it loses all precision in float32. Any centre is exact; a moderate one keeps the digits.
    ridge = 1e-3 * np.mean(np.diag(gram_all)) * np.eye(k)
    theta_hat = np.linalg.solve(gram_all + ridge, moment)
    gram = grams[:, :k, :k]
    cross = grams[:, :k, k] - gram @ theta_hat  # D_s' r_s, r = y - D theta_hat
    # |r|^2 = y'y - 2 theta' D'y + theta' D'D theta (float64: the cancellation costs
    # y'y / |r|^2 in relative accuracy, 1e-14 where the model explains 99 % of the variance)
    rss = max(float(total[k, k] - 2 * theta_hat @ moment + theta_hat @ gram_all @ theta_hat), 0.0)
    n = int(round(float(total[0, 0]))) if n is None else int(n)
    return GaussianStats(gram, cross, np.asarray(rss), theta_hat, np.asarray(n))


def _site_draws(
    params: dict[str, jax.Array], name: str, sd: str, site: jax.Array, fresh: jax.Array | None
) -> jax.Array:
    """(S, m) site terms ``sd * z[site]``; codes past the training sites use ``fresh``."""
    z = params[name]
    if fresh is not None:
        z = jnp.concatenate([z, fresh.astype(z.dtype)], axis=1)
    return params[sd][:, None] * jnp.take(z, site, axis=1)


def prognosis_draws(
    params: dict[str, jax.Array],
    X: jax.Array,
    site: jax.Array,
    fresh_site_z: jax.Array | None,
    basis: jax.Array | None = None,
) -> jax.Array:
    """Per-draw prognosis ``alpha + a_s + x·beta + phi·w`` (see :func:`linear_predictors`)."""
    prognosis = params["alpha"][:, None] + params["beta"] @ X.T
    if "smooth_coef" in params:
        prognosis = prognosis + params["smooth_coef"] @ basis.T
    if "site_intercept_z" in params:
        fresh = None if fresh_site_z is None else fresh_site_z[..., 0]
        prognosis = prognosis + _site_draws(params, "site_intercept_z", "sigma_site", site, fresh)
    return prognosis


def effect_draws(
    params: dict[str, jax.Array],
    X: jax.Array,
    site: jax.Array,
    fresh_site_z: jax.Array | None,
    modifiers: jax.Array | None = None,
    effect_basis: jax.Array | None = None,
) -> jax.Array:
    """Per-draw conditional effects ``tau0 + b_s + z·gamma + psi·v`` (see
    :func:`linear_predictors`)."""
    effect = params["tau0"][:, None] + jnp.zeros((1, X.shape[0]), X.dtype)
    if "gamma" in params:
        effect = effect + params["gamma"] @ (X if modifiers is None else modifiers).T
    if "effect_smooth_coef" in params:
        effect = effect + params["effect_smooth_coef"] @ effect_basis.T
    if "site_effect_z" in params:
        fresh = None if fresh_site_z is None else fresh_site_z[..., 1]
        effect = effect + _site_draws(params, "site_effect_z", "sigma_site_effect", site, fresh)
    return effect


def linear_predictors(
    params: dict[str, jax.Array],
    X: jax.Array,
    site: jax.Array,
    fresh_site_z: jax.Array | None,
    basis: jax.Array | None = None,
    modifiers: jax.Array | None = None,
    effect_basis: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Per-draw prognosis ``alpha + a_s + x·beta + phi·w`` and effect ``tau0 + b_s + z·gamma``.

    Parameters
    ----------
    params : dict
        Posterior draws with a leading sample axis ``(S, ...)``.
    X : (m, p) standardized prognostic covariates of the patients.
    site : (m,) int codes into ``[training sites, fresh sites]``.
    fresh_site_z : (S, k, 2) standard normal draws, one row per site not seen in training: such a
        site's intercept and effect are fresh draws ``sigma_site * z[..., 0]`` and
        ``sigma_site_effect * z[..., 1]`` from the population of sites.
    basis : (m, n_smooth * n_basis) smooth prognostic basis, when the model has smooth terms.
    modifiers : (m, q) effect-modifier features; None: ``X``.
    effect_basis : (m, n_effect_smooth * n_basis) smooth effect basis, when the model has one.

    Returns
    -------
    prognosis, effect : (S, m) arrays on the model's (standardized or log-odds) scale.
    """
    return (
        prognosis_draws(params, X, site, fresh_site_z, basis),
        effect_draws(params, X, site, fresh_site_z, modifiers, effect_basis),
    )


def risk_difference(prognosis: jax.Array, effect: jax.Array, offset: jax.Array) -> jax.Array:
    """``P(y=1 | t=1) - P(y=1 | t=0)`` per draw, from log-odds pieces."""
    base = offset + prognosis
    return jax.nn.sigmoid(base + effect) - jax.nn.sigmoid(base)
