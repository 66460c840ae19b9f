"""The hierarchical treatment-effect model written in PyMC, sampled by NumPyro's NUTS through JAX.

KEEP IN STEP WITH :mod:`itelib.models.hierarchical.model`. :func:`build_pymc_model` is the same
model as :func:`~itelib.models.hierarchical.model.hierarchical_model`, variable for variable, with
the same names, parameterization and automatic transforms (log for every positive variable), and
the helpers below carry the same names as the NumPyro ones, section by section. A change to one
must be made to the other: ``tests/test_pymc_backend.py`` checks that the two log densities agree
exactly at random points and that both backends give the same per-patient posterior means.
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from itelib.inference.nuts import NUTSConfig, NUTSResult
from itelib.models.hierarchical.model import GaussianStats, ModelData, ModelSpec, hierarchical_model

if TYPE_CHECKING:
    from collections.abc import Callable

    import pymc
    from pytensor.tensor import TensorVariable

__all__ = ["build_pymc_model", "sample_pymc"]

# NumPyro's extra fields that PyMC renames to our names (pymc/sampling/jax.py::
# _numpyro_stats_to_dict); its "lp" is the potential energy, so ours is minus it.
_STATS = ("diverging", "n_steps", "acceptance_rate", "energy", "step_size")


def _import_pymc() -> tuple[Any, Any]:
    """``(pymc, pytensor.tensor)``, imported without changing JAX's global precision.

    Importing PyTensor's JAX linker (``pymc.sampling.jax`` does) runs
    ``jax.config.update("jax_enable_x64", floatX == "float64")``: a process-wide switch that
    would turn every later NumPyro fit into float64. The global value is put back at once.
    """
    try:
        import pymc as pm
        import pytensor.tensor as pt
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            'the PyMC backend needs PyMC, which is not installed. Fix: pip install "itelib[pymc]".'
        ) from err
    if "pymc.sampling.jax" not in sys.modules:
        x64 = _global_x64()
        try:
            import pymc.sampling.jax  # noqa: F401
        finally:
            jax.config.update("jax_enable_x64", x64)
    return pm, pt


def _global_x64() -> bool:
    """JAX's global x64 flag; ``jax.enable_x64(...)`` contexts are thread-local, so ask a thread."""
    out: list[bool] = []
    reader = threading.Thread(target=lambda: out.append(bool(jax.config.jax_enable_x64)))
    reader.start()
    reader.join()
    return out[0]


def _const(x: Any) -> np.ndarray:
    """Data as a constant of PyTensor's ``floatX`` (no float64 leaks into a float32 graph)."""
    import pytensor

    return np.asarray(x, dtype=pytensor.config.floatX)


# -- the model, section by section as in model.py ----------------------------------------------
def _half_cauchy(name: str, scale: Any, shape: tuple[int, ...] = ()) -> TensorVariable:
    """Half-Cauchy(scale) as scale * N+(0,1) * sqrt(InvGamma(1/2, 1/2)); lighter tails for NUTS."""
    pm, pt = _import_pymc()
    a = pm.HalfNormal(f"{name}_a", sigma=1.0, shape=shape)
    b = pm.InverseGamma(f"{name}_b", alpha=0.5, beta=0.5, shape=shape)
    return scale * a * pt.sqrt(b)


def _effect_modifiers(spec: ModelSpec, sigma: Any, global_scale: np.ndarray) -> TensorVariable:
    """Regularized horseshoe (Piironen & Vehtari 2017), non-centred."""
    pm, pt = _import_pymc()
    pr = spec.priors
    tau_hs = _half_cauchy("hs_global", global_scale * sigma)
    lam = _half_cauchy("hs_local", 1.0, (spec.n_modifiers,))
    # PyMC's InverseGamma(alpha, beta) is NumPyro's InverseGamma(concentration, rate).
    c2 = pm.InverseGamma(
        "hs_slab", alpha=0.5 * pr.slab_df, beta=0.5 * pr.slab_df * pr.slab_scale**2
    )
    lam_tilde = pt.sqrt(c2 * lam**2 / (c2 + tau_hs**2 * lam**2))
    z = pm.Normal("gamma_z", 0.0, 1.0, shape=(spec.n_modifiers,))
    return pm.Deterministic("gamma", tau_hs * lam_tilde * z)


def _smooth_terms(spec: ModelSpec, sqrt_eig: np.ndarray, prefix: str = "smooth") -> TensorVariable:
    """HSGP coefficients: one squared-exponential GP per smooth covariate, non-centred;
    ``prefix="effect_smooth"``: the smooth effect terms, with their own priors (as NumPyro's)."""
    pm, pt = _import_pymc()
    pr = spec.priors
    effect = prefix == "effect_smooth"
    shape = (spec.n_effect_smooth if effect else spec.n_smooth,)
    amp_sd = pr.effect_smooth_sd if effect else pr.smooth_sd
    amp = pm.HalfNormal(f"{prefix}_amplitude", sigma=amp_sd, shape=shape)
    ls = pm.InverseGamma(
        f"{prefix}_lengthscale",
        alpha=pr.effect_smooth_lengthscale_shape if effect else pr.smooth_lengthscale_shape,
        beta=pr.effect_smooth_lengthscale_scale if effect else pr.smooth_lengthscale_scale,
        shape=shape,
    )
    sqrt_spd = (  # sqrt(S(w)) written out, as in the NumPyro model (no sqrt of an underflow)
        amp[:, None]
        * (2 * math.pi) ** 0.25
        * pt.sqrt(ls[:, None])
        * pt.exp(-0.25 * (ls[:, None] * sqrt_eig) ** 2)
    )
    z = pm.Normal(f"{prefix}_z", 0.0, 1.0, shape=(shape[0], spec.n_basis))
    return pm.Deterministic(f"{prefix}_coef", (sqrt_spd * z).reshape((-1,)))


def _site_effects(spec: ModelSpec) -> tuple[TensorVariable, TensorVariable]:
    """Non-centred site intercepts and site treatment effects."""
    pm, _ = _import_pymc()
    pr = spec.priors
    sd_a = pm.HalfNormal("sigma_site", sigma=pr.site_intercept_sd)
    sd_b = pm.HalfNormal("sigma_site_effect", sigma=pr.site_effect_sd)
    shape = (spec.n_sites,)
    za = pm.Normal("site_intercept_z", 0.0, 1.0, shape=shape)
    zb = pm.Normal("site_effect_z", 0.0, 1.0, shape=shape)
    return sd_a * za, sd_b * zb


def _hierarchical_model(data: ModelData, spec: ModelSpec) -> None:
    """Body of :func:`~itelib.models.hierarchical.model.hierarchical_model`, inside a Model."""
    pm, pt = _import_pymc()
    pr = spec.priors
    alpha = pm.Normal("alpha", 0.0, pr.intercept_sd)
    tau0 = pm.Normal("tau0", 0.0, pr.effect_sd)
    binary = spec.outcome == "binary"
    sigma = 1.0 if binary else pm.HalfNormal("sigma", sigma=pr.noise_sd)
    beta = pm.Normal("beta", 0.0, pr.prognostic_sd, shape=(spec.p,))
    smooth = _smooth_terms(spec, _const(data.sqrt_eig)) if spec.n_smooth > 0 else pt.zeros(0)
    gamma = (
        _effect_modifiers(spec, sigma, _const(data.global_scale))
        if spec.n_modifiers > 0
        else pt.zeros(0)
    )
    effect_smooth = (
        _smooth_terms(spec, _const(data.effect_sqrt_eig), "effect_smooth")
        if spec.n_effect_smooth > 0
        else pt.zeros(0)
    )
    a, b = _site_effects(spec) if spec.n_sites > 0 else (pt.zeros(1), pt.zeros(1))
    if spec.likelihood == "sufficient" and not binary:
        prognostic = pt.concatenate([beta, smooth])
        modifying = pt.concatenate([gamma, effect_smooth])
        _gaussian_sufficient_likelihood(
            data.stats, alpha + a, prognostic, tau0 + b, modifying, sigma
        )
        return
    X, t = _const(data.X), _const(data.t)
    site = np.asarray(data.site) if spec.n_sites > 0 else np.zeros(t.shape, np.int32)
    prognosis = alpha + a[site] + pt.dot(X, beta)
    if spec.n_smooth > 0:
        prognosis = prognosis + pt.dot(_const(data.basis), smooth)
    modifiers = X if data.modifiers is None else _const(data.modifiers)
    effect = tau0 + b[site] + pt.dot(modifiers, gamma)
    if spec.n_effect_smooth > 0:
        effect = effect + pt.dot(_const(data.effect_basis), effect_smooth)
    if binary:
        logits = _const(data.offset) + prognosis + t * effect
        pm.Bernoulli("y", logit_p=logits, observed=np.asarray(data.y, np.int32))
    else:
        pm.Normal("y", prognosis + t * effect, sigma, observed=_const(data.y))


def _gaussian_sufficient_likelihood(
    stats: GaussianStats,
    intercepts: TensorVariable,
    beta: TensorVariable,
    effects: TensorVariable,
    gamma: TensorVariable,
    sigma: TensorVariable,
) -> None:
    """Exact Gaussian log-likelihood from per-site cross-products, as a ``pm.Potential``."""
    pm, pt = _import_pymc()
    n_sites = intercepts.shape[0]
    theta = pt.concatenate(
        [
            intercepts[:, None],
            pt.broadcast_to(beta, (n_sites, beta.shape[0])),
            effects[:, None],
            pt.broadcast_to(gamma, (n_sites, gamma.shape[0])),
        ],
        axis=1,
    )  # (S, K): coefficients of [1, x, phi, t, t·z] in each site
    delta = theta - _const(stats.theta_hat)
    quad = (
        _const(stats.rss)
        - 2 * pt.sum(delta * _const(stats.cross))
        + pt.einsum("sk,skl,sl->", delta, _const(stats.gram), delta)
    )
    n = _const(stats.n)
    loglik = -n * (pt.log(sigma) + 0.5 * math.log(2 * math.pi)) - 0.5 * quad / sigma**2
    pm.Potential("y", loglik)


def build_pymc_model(data: ModelData, spec: ModelSpec) -> pymc.Model:
    """The hierarchical model of :func:`hierarchical_model` as a PyMC model.

    Parameters
    ----------
    data : ModelData
        Standardized training data, as built for the NumPyro model.
    spec : ModelSpec
        Sizes, priors, likelihood (``"rows"`` or ``"sufficient"``) and outcome kind.

    Returns
    -------
    pymc.Model
        Free variables with the NumPyro site names (``alpha``, ``tau0``, ``sigma``, ``beta``, the
        ``hs_*``, ``smooth_*`` and ``effect_smooth_*`` pieces, ``gamma_z``, the site terms), the
        deterministics ``gamma``, ``smooth_coef`` and ``effect_smooth_coef``, and the likelihood
        ``y`` (observed, or a ``Potential`` for the sufficient statistics).
    """
    pm, _ = _import_pymc()
    with pm.Model() as model:
        _hierarchical_model(data, spec)
    return model


# -- sampling ----------------------------------------------------------------------------------
def _seed_from_key(key: jax.Array) -> int:
    """A deterministic non-negative int32 seed drawn from a JAX PRNG key."""
    return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))


def sample_pymc(
    key: jax.Array,
    model_fn: Callable,
    data: ModelData,
    spec: ModelSpec,
    cfg: NUTSConfig,
    *,
    progress_bar: bool = False,
    description: str = "",
) -> NUTSResult:
    """Sample the PyMC version of ``model_fn`` with NumPyro's NUTS, like :func:`sample_nuts`.

    Parameters
    ----------
    key : jax.Array
        PRNG key; the integer seed given to ``pm.sample`` is drawn from it, so the same key
        gives the same draws on the same machine.
    model_fn : callable
        Must be :func:`~itelib.models.hierarchical.model.hierarchical_model`: the only model
        with a PyMC twin.
    data, spec
        As for the NumPyro model.
    cfg : NUTSConfig
        Sampler settings; ``cfg.chain_method`` must be resolved (not ``"auto"``).
    progress_bar : bool
        Show PyMC's (NumPyro's) progress bar.
    description : str
        Ignored (NumPyro's bar has no label); kept for the same signature as ``sample_nuts``.

    Returns
    -------
    NUTSResult
        The keys of ``sample_nuts``: ``params``, every free variable and deterministic (``gamma``,
        ``smooth_coef``) on the constrained scale, and ``stats``, ``diverging``, ``n_steps``,
        ``acceptance_rate``, ``energy``, ``step_size`` and ``lp`` (log density in the
        unconstrained space, Jacobian included); NumPy arrays shaped ``(chain, draw, ...)``.
        Always sampled and returned in float64 (PyTensor's precision), whatever JAX's setting.
    """
    if model_fn is not hierarchical_model:
        name = getattr(model_fn, "__name__", repr(model_fn))
        raise ValueError(f"sample_pymc has a PyMC twin of hierarchical_model only; got {name}.")
    if cfg.chain_method not in ("parallel", "sequential", "vectorized"):
        raise ValueError(f"unresolved chain_method {cfg.chain_method!r}")
    pm, _ = _import_pymc()
    import pytensor

    # Always float64: PyTensor sums float32 terms with float64 accumulators, which JAX without
    # x64 truncates (with a warning). The context is thread-local; the global flag is untouched.
    with (
        jax.enable_x64(True),
        pytensor.config.change_flags(floatX="float64"),
        warnings.catch_warnings(),
    ):
        # PyTensor warns that pip's build has no C BLAS; we sample through JAX, which has its
        # own, so the warning only misleads (its C backend never runs here).
        warnings.filterwarnings("ignore", "PyTensor could not link to a BLAS", UserWarning)
        model = build_pymc_model(data, spec)
        idata = pm.sample(
            draws=cfg.num_samples,
            tune=cfg.num_warmup,
            chains=cfg.num_chains,
            target_accept=cfg.target_accept,
            random_seed=_seed_from_key(key),
            progressbar=progress_bar,
            model=model,
            nuts_sampler="numpyro",
            compute_convergence_checks=False,
            idata_kwargs={"log_likelihood": False},
            nuts_sampler_kwargs={
                # passed on to numpyro.infer.MCMC, which also runs "sequential" chains
                "chain_method": cfg.chain_method,
                "nuts_kwargs": {
                    "max_tree_depth": cfg.max_tree_depth,
                    "dense_mass": cfg.dense_mass,
                },
            },
        )
    names = [v.name for v in model.free_RVs + model.deterministics]
    params = {k: np.asarray(idata.posterior[k].values) for k in names}
    stats = {k: np.asarray(idata.sample_stats[k].values) for k in _STATS}
    stats["lp"] = -np.asarray(idata.sample_stats["lp"].values)  # PyMC's "lp": potential energy
    return NUTSResult(params, stats)
