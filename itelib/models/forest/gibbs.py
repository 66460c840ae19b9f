"""The Bayesian causal forest's Gibbs sampler, compiled once per shape and configuration.

One sweep, for every chain at once (vmapped over bartz's chain axes): the censored log times of a
survival outcome (:mod:`itelib.models.forest.censored`), the prognostic forest with
the error variance (and the probit latent outcome), the effect intercept tau0, the effect forest,
the adaptive coding, then the site random effects and their variances. Sweep ``i`` of chain ``c``
uses ``fold_in(keys[c], i)``, so a run split in two equals one continuous run and a chain's draws
do not depend on which other chains run beside it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from itelib.models.forest import _bartz
from itelib.models.forest.censored import impute_censored
from itelib.models.forest.sites import site_step

__all__ = ["sweep", "run", "sample", "block_size"]

BLOCK = 100  # sweeps per compiled call: the progress bar's step; the call overhead is ~ms
_CENSORED_KEY = 7  # fold_in data of the censored log times' key


@_bartz.float32_matmuls
def _sweep_chain(key: jax.Array, state: _bartz.SiteBCFState) -> _bartz.SiteBCFState:
    k_mu, k_tau0, k_tau, k_b, k_site = jax.random.split(key, 5)
    # survival: the censored log times first (their own key, so uncensored sweeps keep theirs)
    state = impute_censored(jax.random.fold_in(key, _CENSORED_KEY), state)
    state = _bartz.bcf_step_mu(k_mu, state)
    state = _bartz.bcf_step_tau_0(k_tau0, state)
    state = _bartz.bcf_step_tau(k_tau, state)
    state = _bartz.bcf_step_b(k_b, state)
    return site_step(k_site, state)


sweep = _bartz.vmap_chains(_sweep_chain)
"""``sweep(keys, state)``: one Gibbs sweep of every chain; ``keys`` has one key per chain."""


def _record_chain(state: _bartz.SiteBCFState, store: tuple[str, ...]) -> dict[str, jax.Array]:
    """What one kept sweep of one chain contributes to the trace."""
    b0, b1 = state.b[0], state.b[1]
    slope = state.site_slope[state.site]
    tau_all = state.tau_0 + slope + _bartz.tau_forest_at_training(state)
    record = {
        "tau0": state.tau_0,
        "b": state.b,
        "sigma": jax.lax.rsqrt(_bartz.error_precision(state)),
        "site_intercept": state.site_intercept,
        "site_slope": state.site_slope,
        "site_sd": jnp.sqrt(state.site_var),
        "effect_train": (b1 - b0) * tau_all,
    }
    if state.z is not None:  # probit: risk differences need the prognostic part too
        fit = state.z - _bartz.residual(state)  # offset + mu + a_s + b_z * tau_all
        base = fit - _bartz.coding(state) * tau_all
        cdf = jax.scipy.stats.norm.cdf
        record["risk_difference_train"] = cdf(base + b1 * tau_all) - cdf(base + b0 * tau_all)
    if state.log_time is not None:  # survival: the untreated location of each patient's log T
        fit = state.log_time - _bartz.residual(state)  # offset + mu + a_s + b_z * tau_all
        record["untreated_train"] = fit - (_bartz.coding(state) - b0) * tau_all
    if "tau" in store:
        record["tau_trees"] = _bartz.tau_trees(state)
    if "mu" in store:
        record["mu_trees"] = _bartz.mu_trees(state)
    return record


def run(
    keys: jax.Array,
    state: _bartz.SiteBCFState,
    start: int | jax.Array,
    n_burn: int | jax.Array,
    *,
    n_keep: int,
    store: tuple[str, ...] = (),
) -> tuple[_bartz.SiteBCFState, dict[str, jax.Array]]:
    """Sweeps ``start .. start + n_burn`` discarded, then ``n_keep`` kept.

    One loop body holds the (large) sweep, so it is compiled once; ``start`` and ``n_burn``
    are traced, so runs that differ only in them share the program (both are cast to strong
    int32 here: a weakly typed ``jnp.asarray(0)`` would otherwise compile a second copy). The
    program has no host callback, so JAX's persistent cache can keep it across processes.
    Returns the final state and the trace: arrays with leading axes (chain, draw).
    """
    start, n_burn = jnp.asarray(start, jnp.int32), jnp.asarray(n_burn, jnp.int32)
    return _run(keys, state, start, n_burn, n_keep=n_keep, store=store)


@partial(jax.jit, static_argnames=("n_keep", "store"))
def _run(
    keys: jax.Array,
    state: _bartz.SiteBCFState,
    start: jax.Array,
    n_burn: jax.Array,
    *,
    n_keep: int,
    store: tuple[str, ...],
) -> tuple[_bartz.SiteBCFState, dict[str, jax.Array]]:
    record = partial(_record_chain, store=store)
    shapes = jax.eval_shape(lambda s: _bartz.map_chains(record, s), state)
    buffer = jax.tree.map(lambda a: jnp.zeros((n_keep, *a.shape), a.dtype), shapes)

    def body(i: jax.Array, carry: tuple[Any, Any]) -> tuple[Any, Any]:
        state, buffer = carry
        state = sweep(jax.vmap(jax.random.fold_in, (0, None))(keys, start + i), state)
        slot = i - n_burn

        def write(buffer: Any) -> Any:
            row = _bartz.map_chains(record, state)
            return jax.tree.map(lambda b, r: b.at[slot].set(r), buffer, row)

        if n_keep:  # static: a burn-in-only run has an empty trace
            buffer = jax.lax.cond(slot >= 0, write, lambda b: b, buffer)
        return state, buffer

    state, buffer = jax.lax.fori_loop(0, n_burn + n_keep, body, (state, buffer))
    trace = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), buffer)  # (draw, chain) -> (chain, draw)
    return state, trace


def block_size(n_keep: int, target: int = BLOCK) -> int:
    """Kept sweeps per call: about ``target``, dividing the kept draws into equal blocks."""
    n_blocks = max(1, -(-n_keep // target))
    return -(-n_keep // n_blocks)


def sample(
    key: jax.Array,
    state: _bartz.SiteBCFState,
    *,
    n_burn: int,
    n_keep: int,
    store: tuple[str, ...] = (),
    progress_bar: bool = False,
    description: str = "BayesianCausalForest",
    block: int = BLOCK,
) -> dict[str, Any]:
    """Run every chain of ``state``; chain ``c`` uses ``split(key, n_chains)[c]``.

    The sweeps run in blocks of one compiled program (every call ``b`` burn-in sweeps, then
    ``k`` recorded ones; burn-in blocks discard their record), so the progress bar advances
    between calls and no host callback is compiled in. A run split in blocks equals one
    continuous run (sweep ``i`` always uses ``fold_in(keys[c], i)``).
    """
    n_chains = int(state.tau_0.shape[0])
    keys = jax.random.split(key, n_chains)
    k = block_size(n_keep, block)
    n_blocks = -(-n_keep // k)
    total = n_chains * (n_burn + n_blocks * k)
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=description, unit="sweep")
    done, remaining, pieces = 0, n_burn, []
    try:
        while remaining >= block:  # whole burn-in blocks; their last k records are unused
            state, _ = run(keys, state, done, block - k, n_keep=k, store=store)
            done, remaining = done + block, remaining - block
            _advance(bar, n_chains * block)
        for _ in range(n_blocks):  # the first kept block absorbs the rest of the burn-in
            state, trace = run(keys, state, done, remaining, n_keep=k, store=store)
            pieces.append(trace)
            done, remaining = done + remaining + k, 0
            _advance(bar, n_chains * k)
    finally:
        if bar is not None:
            bar.close()
    trace = jax.tree.map(lambda *a: jnp.concatenate(a, axis=1)[:, :n_keep], *pieces)
    return jax.block_until_ready(trace)


def _advance(bar: Any, steps: int) -> None:
    if bar is not None:
        bar.update(steps)
