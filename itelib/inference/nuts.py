"""A NUTS driver that compiles once per model, shape and configuration.

NumPyro's ``MCMC.run`` rebuilds (and recompiles) its sampling loop on every call. Here the whole
chain, warmup included, is one module-level jitted function whose static arguments are the model
function, its frozen :class:`~itelib.models.hierarchical.model.ModelSpec`-like spec and a frozen
:class:`NUTSConfig`; the data are ordinary array arguments. A second fit of the same shape reuses
the compiled code. The kernel itself is NumPyro's NUTS (``numpyro.infer.hmc.hmc``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.distributions import biject_to
from numpyro.handlers import seed, trace
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy

from itelib.exceptions import SamplerInitError
from itelib.inference.blas import single_threaded_blas
from itelib.inference.progress import maybe_report, progress

__all__ = [
    "GibbsStep",
    "NUTSConfig",
    "NUTSResult",
    "sample_nuts",
    "sample_nuts_datasets",
    "resolve_chain_method",
]

CHAIN_METHODS = ("auto", "parallel", "sequential", "vectorized")


@dataclass(frozen=True)
class GibbsStep:
    """Sites updated outside NUTS, by ``sweep(key, z_sites, z_rest, data, spec, model) ->
    z_sites`` (unconstrained values, the posterior's conditional given the rest), once per
    iteration before the NUTS step on the other sites (NumPyro's ``HMCGibbs`` pattern)."""

    sites: tuple[str, ...]
    sweep: Callable


@dataclass(frozen=True)
class NUTSConfig:
    """Static settings of a NUTS run (hashable: part of the compile key).

    Parameters
    ----------
    num_warmup, num_samples : int
        Warmup (adaptation) and kept iterations per chain.
    num_chains : int
        Independent chains (R-hat needs at least 2).
    target_accept : float
        Target acceptance probability of step-size adaptation; higher means smaller steps and
        fewer divergences.
    max_tree_depth : int
        Maximum NUTS tree depth (at most ``2**depth`` leapfrog steps per iteration).
    dense_mass : bool
        Adapt a dense mass matrix instead of a diagonal one.
    chain_method : str
        ``"parallel"`` (one XLA device per chain), ``"sequential"`` or ``"vectorized"``.
    gibbs : GibbsStep, optional
        Sites that NUTS leaves to a Gibbs sweep.
    """

    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    target_accept: float = 0.9
    max_tree_depth: int = 10
    dense_mass: bool = False
    chain_method: str = "sequential"
    gibbs: GibbsStep | None = None


class NUTSResult(NamedTuple):
    """Draws with a leading ``(chain, draw)`` shape, as NumPy arrays."""

    params: dict[str, np.ndarray]  # constrained parameters and deterministic sites
    stats: dict[str, np.ndarray]  # diverging, n_steps, acceptance_rate, energy, step_size


def resolve_chain_method(method: str, num_chains: int) -> str:
    """Pick how chains run.

    ``"auto"`` runs chains on separate XLA devices when there are enough of them and one after
    another otherwise: on a 2-core CPU parallel chains were about twice as fast as sequential or
    vectorized ones (``docs/decisions.md``). On the CPU, more devices come from
    ``numpyro.set_host_device_count(n)`` before JAX starts; the ``itelib`` CLI does that.
    """
    if method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}; got {method!r}.")
    if method != "auto":
        return method
    return "parallel" if num_chains > 1 and jax.local_device_count() >= num_chains else "sequential"


# Chains start uniformly in [-r, r] in unconstrained space. Stan's r = 2 let one chain of the
# smooth-prognosis model start where warmup collapsed the step size to 0 (Hahn design, n = 500).
_INIT_RADIUS = 1.0


# -- one chain ---------------------------------------------------------------------------------
def _unconstrained_shapes(model: Callable, data: Any, spec: Any) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of the latent sites in unconstrained space (abstract trace: nothing is computed)."""

    def latent() -> dict[str, jax.Array]:
        tr = trace(seed(model, jax.random.key(0))).get_trace(data, spec)
        return {
            name: biject_to(site["fn"].support).inv(site["value"])
            for name, site in tr.items()
            if site["type"] == "sample" and not site["is_observed"]
        }

    return jax.eval_shape(latent)


def _chain(
    key: jax.Array,
    token: jax.Array,
    data: Any,
    model: Callable,
    spec: Any,
    cfg: NUTSConfig,
    inverse_mass: dict[str, jax.Array] | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Warm up and sample one chain; returns unconstrained draws and per-draw statistics."""
    if cfg.gibbs is not None:
        return _gibbs_chain(key, token, data, model, spec, cfg, inverse_mass)
    shapes = _unconstrained_shapes(model, data, spec)

    def pe(z: dict[str, jax.Array]) -> jax.Array:
        return potential_energy(model, (data, spec), {}, z)

    init_kernel, sample_kernel = hmc(potential_fn=pe, algo="NUTS")
    k_init, k_run = jax.random.split(key)
    z0 = _initial_point(k_init, shapes)
    state = init_kernel(
        z0,
        cfg.num_warmup,
        target_accept_prob=cfg.target_accept,
        max_tree_depth=cfg.max_tree_depth,
        dense_mass=cfg.dense_mass,
        rng_key=k_run,
        inverse_mass_matrix=_initial_inverse_mass(shapes, inverse_mass, cfg.dense_mass),
    )

    def warm(state: Any, i: jax.Array) -> tuple[Any, None]:
        maybe_report(token, i)
        return sample_kernel(state), None

    def draw(state: Any, i: jax.Array) -> tuple[Any, tuple]:
        maybe_report(token, i)
        state = sample_kernel(state)
        return state, (state.z, _draw_info(state))

    initial_lp = -state.potential_energy
    state, _ = jax.lax.scan(warm, state, jnp.arange(cfg.num_warmup))
    _, (z, info) = jax.lax.scan(draw, state, jnp.arange(cfg.num_samples))
    return z, info | {"initial_lp": initial_lp}


def _draw_info(state: Any) -> dict[str, jax.Array]:
    """What a kept NUTS iteration records besides the draw."""
    return {
        "diverging": state.diverging,
        "n_steps": state.num_steps,
        "acceptance_rate": state.accept_prob,
        "energy": state.energy,
        "step_size": state.adapt_state.step_size,
        "lp": -state.potential_energy,
    }


def _gibbs_chain(
    key: jax.Array,
    token: jax.Array,
    data: Any,
    model: Callable,
    spec: Any,
    cfg: NUTSConfig,
    inverse_mass: dict[str, jax.Array] | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """:func:`_chain` with ``cfg.gibbs.sites`` moved by its sweep: per iteration, the sweep
    given the NUTS sites, then one NUTS step on the rest given the swept sites (whose new
    values change the NUTS target, so its potential and gradient are recomputed first).

    The metric is dense whatever ``cfg.dense_mass`` says: the few sites left to NUTS are cheap
    to couple, and a diagonal metric walked the ridge of the horseshoe's global-scale split
    (``docs/decisions.md``). The recorded ``energy`` is that of the NUTS step alone, so E-BFMI
    from it does not describe the chain."""
    shapes = _unconstrained_shapes(model, data, spec)
    swept = cfg.gibbs.sites
    nuts_shapes = {k: v for k, v in shapes.items() if k not in swept}

    def potential_given(z_swept: dict[str, jax.Array]) -> Callable:
        return lambda z: potential_energy(model, (data, spec), {}, z | z_swept)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_given, algo="NUTS")
    k_init, k_run, k_sweep = jax.random.split(key, 3)
    z0 = _initial_point(k_init, shapes)
    z_swept = {k: z0[k] for k in swept}
    state = init_kernel(
        {k: z0[k] for k in nuts_shapes},
        cfg.num_warmup,
        target_accept_prob=cfg.target_accept,
        max_tree_depth=cfg.max_tree_depth,
        dense_mass=True,
        rng_key=k_run,
        model_args=(z_swept,),
        inverse_mass_matrix=_initial_inverse_mass(nuts_shapes, inverse_mass, True),
    )

    def iteration(carry: tuple, i: jax.Array) -> tuple[tuple, tuple]:
        maybe_report(token, i)
        state, z_swept = carry
        z_swept = cfg.gibbs.sweep(jax.random.fold_in(k_sweep, i), z_swept, state.z, data, spec,
                                  model)  # fmt: skip
        energy, grad = jax.value_and_grad(potential_given(z_swept))(state.z)
        state = sample_kernel(state._replace(potential_energy=energy, z_grad=grad),
                              model_args=(z_swept,))  # fmt: skip
        return (state, z_swept), (state.z | z_swept, _draw_info(state))

    initial_lp = -state.potential_energy
    carry, _ = jax.lax.scan(iteration, (state, z_swept), jnp.arange(cfg.num_warmup))
    _, (z, info) = jax.lax.scan(
        iteration, carry, jnp.arange(cfg.num_warmup, cfg.num_warmup + cfg.num_samples)
    )
    return z, info | {"initial_lp": initial_lp}


def _initial_inverse_mass(
    shapes: dict[str, Any], hint: dict[str, jax.Array] | None, dense: bool
) -> jax.Array | None:
    """The first adaptation window's diagonal inverse mass: 1 (NumPyro's default) except where
    the model knows a site's posterior variance in unconstrained space. Until the first window
    ends NUTS moves with this metric, so one site far tighter than the rest (log sigma, whose
    variance is about 1 / (2 n)) sets a step size that is tiny for every other site."""
    if not hint:
        return None
    diagonal = {
        name: jnp.broadcast_to(jnp.asarray(hint.get(name, 1.0), s.dtype), s.shape)
        for name, s in shapes.items()
    }
    flat = ravel_pytree(diagonal)[0]  # the sampler's own order: ravel_pytree of the point
    return jnp.diag(flat) if dense else flat


def _initial_point(key: jax.Array, shapes: dict[str, Any]) -> dict[str, jax.Array]:
    keys = jax.random.split(key, len(shapes))
    return {
        name: jax.random.uniform(k, s.shape, s.dtype, -_INIT_RADIUS, _INIT_RADIUS)
        for k, (name, s) in zip(keys, sorted(shapes.items()), strict=True)
    }


def _finite_log_prob(site: dict[str, Any]) -> bool:
    with warnings.catch_warnings(record=True) as caught:  # out of support: not finite
        warnings.simplefilter("always")
        finite = np.all(np.isfinite(np.asarray(site["fn"].log_prob(site["value"]))))
    return bool(finite) and not caught


def _check_initial_density(
    initial_lp: np.ndarray, keys: jax.Array, model: Callable, data: Any, spec: Any
) -> None:
    """Raise :class:`SamplerInitError` naming the model terms and data fields at fault.

    Runs on the host only when a chain started at a non-finite log density (no cost
    otherwise): the chain's starting point is rebuilt from its key and each term of the model
    evaluated there.
    """
    from numpyro.handlers import substitute

    bad_chains = np.flatnonzero(~np.isfinite(initial_lp))
    if not bad_chains.size:
        return
    k_init, _ = jax.random.split(keys[bad_chains[0]])
    z0 = _initial_point(k_init, _unconstrained_shapes(model, data, spec))
    values = constrain_fn(model, (data, spec), {}, z0)
    tr = trace(substitute(seed(model, jax.random.key(0)), values)).get_trace(data, spec)
    terms = [
        f"{'likelihood' if site['is_observed'] else 'prior'} of '{name}'"
        for name, site in tr.items()
        if site["type"] == "sample" and not _finite_log_prob(site)
    ]
    leaves = jax.tree_util.tree_flatten_with_path(data)[0]
    fields = [
        jax.tree_util.keystr(path)
        for path, leaf in leaves
        if np.issubdtype(np.asarray(leaf).dtype, np.inexact)
        and not np.all(np.isfinite(np.asarray(leaf)))
    ]
    raise SamplerInitError(
        f"the log density is not finite where chain {int(bad_chains[0])} starts, so the "
        f"sampler cannot move. Non-finite terms: {terms or 'none found at the start point'}; "
        f"model inputs with non-finite values: {fields or 'none'}. Likely cause: an outcome "
        "or covariate so extreme that it overflows float32 after standardization, or a prior "
        "scale of 0. Fix: rescale or remove the extreme values, or check the priors."
    )


def _constrain(z: dict[str, jax.Array], data: Any, model: Callable, spec: Any) -> dict:
    """Map unconstrained draws (leading sample axis) to parameters and deterministic sites."""
    one = lambda zi: constrain_fn(model, (data, spec), {}, zi, return_deterministic=True)  # noqa: E731
    return jax.vmap(one)(z)


_STATIC = ("model", "spec", "cfg")
_chain_jit = jax.jit(_chain, static_argnames=_STATIC)
_chains_vmap = jax.jit(
    jax.vmap(_chain, in_axes=(0, None, None, None, None, None, None)), static_argnums=(3, 4, 5)
)
_chains_pmap = jax.pmap(
    _chain,
    in_axes=(0, None, None, None, None, None, None),
    static_broadcasted_argnums=(3, 4, 5),
)
_constrain_jit = jax.jit(_constrain, static_argnames=("model", "spec"))
# datasets x chains in one program: in_axes (keys: datasets x chains, data: datasets)
_datasets_vmap = jax.jit(
    jax.vmap(
        jax.vmap(_chain, in_axes=(0, None, None, None, None, None, None)),
        in_axes=(0, None, 0, None, None, None, None),
    ),
    static_argnums=(3, 4, 5),
)
_constrain_datasets = jax.jit(
    jax.vmap(_constrain, in_axes=(0, 0, None, None)), static_argnums=(2, 3)
)


def sample_nuts(
    key: jax.Array,
    model: Callable,
    data: Any,
    spec: Any,
    cfg: NUTSConfig,
    *,
    progress_bar: bool = False,
    description: str = "sampling",
    inverse_mass: dict[str, Any] | None = None,
) -> NUTSResult:
    """Run ``cfg.num_chains`` NUTS chains of ``model(data, spec)``.

    Parameters
    ----------
    key : jax.Array
        PRNG key; chain ``c`` uses ``split(key, num_chains)[c]`` whatever the chain method, so
        the draws do not depend on how chains are run.
    model : callable
        A NumPyro model ``model(data, spec)``; must be a module-level function (hashable).
    data : pytree of arrays
        Everything that varies between data sets of one shape.
    spec : hashable
        Static model structure.
    cfg : NUTSConfig
        Sampler settings; ``cfg.chain_method`` must be resolved (not ``"auto"``).
    progress_bar : bool
        Show a tqdm bar over all chains' iterations.
    inverse_mass : dict, optional
        Site name -> that site's approximate posterior variance in unconstrained space, used as
        the inverse mass of the first adaptation window (other sites: 1).
    """
    keys = jax.random.split(key, cfg.num_chains)
    total = cfg.num_chains * (cfg.num_warmup + cfg.num_samples)
    with single_threaded_blas():  # see blas.py
        with progress(progress_bar, total, description) as token:
            if cfg.chain_method == "parallel":
                z, info = _chains_pmap(keys, token, data, model, spec, cfg, inverse_mass)
            elif cfg.chain_method == "vectorized":
                z, info = _chains_vmap(keys, token, data, model, spec, cfg, inverse_mass)
            elif cfg.chain_method == "sequential":
                outs = [_chain_jit(k, token, data, model, spec, cfg, inverse_mass) for k in keys]
                z, info = jax.tree.map(lambda *a: jnp.stack(a), *outs)
            else:
                raise ValueError(f"unresolved chain_method {cfg.chain_method!r}")
            jax.block_until_ready(z)
        flat = jax.tree.map(lambda a: a.reshape((a.shape[0] * a.shape[1], *a.shape[2:])), z)
        params = _constrain_jit(flat, data, model=model, spec=spec)
        shape = (cfg.num_chains, cfg.num_samples)
        params = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in params.items()}
    stats = {k: np.asarray(v) for k, v in info.items()}
    _check_initial_density(stats.pop("initial_lp"), keys, model, data, spec)
    return NUTSResult(params, stats)


def sample_nuts_datasets(
    keys: jax.Array,
    model: Callable,
    data: Any,
    spec: Any,
    cfg: NUTSConfig,
    inverse_mass: dict[str, Any] | None = None,
) -> list[NUTSResult]:
    """NUTS on many same-shape data sets at once: every data set's chains in one program.

    ``data`` is ``model``'s data pytree with a leading data-set axis on every leaf and ``keys``
    has one key per data set; data set ``d`` gets exactly what ``sample_nuts(keys[d], ...)``
    gives it (up to float rounding), whatever ``cfg.chain_method`` says. Every lane waits for
    the deepest NUTS tree of any chain of any data set, so this pays on accelerators, not on
    CPUs (``benchmarks/speed/replications.py`` measures it against a compiled-once loop).
    """
    chain_keys = jax.vmap(lambda k: jax.random.split(k, cfg.num_chains))(keys)
    with single_threaded_blas():
        z, info = _datasets_vmap(chain_keys, None, data, model, spec, cfg, inverse_mass)
        flat = jax.tree.map(lambda a: a.reshape((a.shape[0], -1, *a.shape[3:])), z)
        params = _constrain_datasets(flat, data, model, spec)
        params = {k: np.asarray(v) for k, v in params.items()}
    info = {k: np.asarray(v) for k, v in info.items()}  # to the host once, not per data set
    shape = (cfg.num_chains, cfg.num_samples)
    results = []
    for d in range(keys.shape[0]):
        one = {k: v[d].reshape(shape + v.shape[2:]) for k, v in params.items()}
        stats = {k: v[d].copy() for k, v in info.items()}
        one_data = jax.tree.map(lambda a, d=d: a[d], data)
        _check_initial_density(stats.pop("initial_lp"), chain_keys[d], model, one_data, spec)
        results.append(NUTSResult(one, stats))
    return results
