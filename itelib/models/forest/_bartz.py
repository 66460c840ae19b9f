"""Every use of bartz lives in this module (bartz is pinned; see ``tests/test_bartz_contract.py``).

bartz 0.13 keeps the BCF building blocks we need in private modules (the state, the per-forest
Gibbs updates, the chain-vmapping decorator); importing them anywhere else would let a bartz
release break itelib silently. What we take from bartz:

- covariate binning at quantiles of the unique values (``UniqueQuantileBinner``), rebuilt from
  its cut points for saved models (``GivenSplitsBinner``);
- the state of a two-forest BCF (``init_bcf``) and its Gibbs updates: the prognostic forest with
  the error precision and the probit latent outcome (``bcf_step_mu``), the effect intercept
  (``bcf_step_tau_0``), the effect forest (``bcf_step_tau``) and the adaptive coding
  (``bcf_step_b``);
- tree evaluation (``evaluate_forest``).

What we add on top (in :mod:`itelib.models.forest.sites`): site random intercepts and slopes,
updated on bartz's running residual.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, NamedTuple

import equinox
import jax
import jax.numpy as jnp
from bartz._jaxext import field, float32_matmuls
from bartz.bcf._loop import (
    bcf_step_b,
    bcf_step_mu,
    bcf_step_tau,
    bcf_step_tau_0,
    recompute_prec_trees,
)
from bartz.bcf._state import BCFState, init_bcf
from bartz.grove import evaluate_forest
from bartz.mcmcstep import Wishart, make_p_nonterminal
from bartz.mcmcstep._axes import CHAIN_AXIS, chain_vmap_axes
from bartz.mcmcstep._state import vmap_chains
from bartz.prepcovars import GivenSplitsBinner, UniqueQuantileBinner

__all__ = [
    "SiteBCFState",
    "Wishart",
    "make_p_nonterminal",
    "init_state",
    "with_fixed_coding",
    "vmap_chains",
    "float32_matmuls",
    "bcf_step_mu",
    "bcf_step_tau_0",
    "bcf_step_tau",
    "bcf_step_b",
    "fit_binner",
    "binner_from_cutpoints",
    "cutpoints",
    "bin_covariates",
    "residual",
    "with_residual",
    "error_precision",
    "tau_forest_at_training",
    "mu_forest_at_training",
    "latent_outcome",
    "coding",
    "tau_trees",
    "mu_trees",
    "leaf_units",
    "tau_leaf_precision",
    "map_chains",
    "evaluate_trees",
]


class SiteBCFState(BCFState):
    """bartz's BCF state plus site random effects (chain axis first, as bartz's fields)."""

    site: jax.Array = field(data=-1)  # (n,) int32 site code of each patient
    site_intercept: jax.Array = field(chains=CHAIN_AXIS)  # (S,)
    site_slope: jax.Array = field(chains=CHAIN_AXIS)  # (S,)
    site_var: jax.Array = field(chains=CHAIN_AXIS)  # (2,) variances of intercepts, slopes
    site_aux: jax.Array = field(chains=CHAIN_AXIS)  # (2,) half-Cauchy mixing variables
    site_scale: jax.Array  # (2,) half-Cauchy scales of the two site sds (no chain axis)
    site_active: jax.Array  # (2,) bool: intercepts / slopes switched on
    # survival (None otherwise): the log time a censored patient outlived (-inf for an event)
    # and each chain's current log times, imputed where censored (itelib.models.forest.censored)
    censored_at: jax.Array | None = field(data=-1)  # (n,)
    log_time: jax.Array | None = field(chains=CHAIN_AXIS, data=-1)  # (n,)


def init_state(
    *,
    X_binned: jax.Array,
    trt: jax.Array,
    y: jax.Array,
    site: jax.Array,
    n_sites: int,
    site_scale: jax.Array,
    site_active: jax.Array,
    num_chains: int,
    censored_at: jax.Array | None = None,
    **bcf_kwargs: Any,
) -> SiteBCFState:
    """bartz's ``init_bcf`` (keyword arguments passed through) extended with site effects at 0
    and, for survival outcomes, the censoring bounds (``y`` holds each patient's observed log
    time, where the imputed log times of the censored start)."""
    log_time = None  # survival: a copy per chain (init_bcf may donate y's buffer)
    if censored_at is not None:
        log_time = jnp.array(y, jnp.float32, copy=True)
        log_time = jnp.tile(log_time, (num_chains, 1)) if num_chains else log_time
    base = init_bcf(X_unified=X_binned, trt=trt, y=y, num_chains=num_chains, **bcf_kwargs)
    chains = (num_chains,) if num_chains else ()  # None: one chain without a chain axis
    values = {f.name: getattr(base, f.name) for f in fields(base)}
    return SiteBCFState(
        **values,
        site=jnp.asarray(site, jnp.int32),
        site_intercept=jnp.zeros(chains + (n_sites,), jnp.float32),
        site_slope=jnp.zeros(chains + (n_sites,), jnp.float32),
        site_var=jnp.broadcast_to(jnp.square(site_scale).astype(jnp.float32), chains + (2,)),
        site_aux=jnp.ones(chains + (2,), jnp.float32),
        site_scale=jnp.asarray(site_scale, jnp.float32),
        site_active=jnp.asarray(site_active, bool),
        censored_at=None if censored_at is None else jnp.asarray(censored_at, jnp.float32),
        log_time=log_time,
    )


def with_fixed_coding(state: SiteBCFState, b: tuple[float, float]) -> SiteBCFState:
    """A fresh state (``init_state`` without adaptive coding) recoded to fixed b = (b0, b1).

    bartz's ``bcf_step_b`` leaves b alone when it is not adaptive, and every other step reads
    b from the state, so only the effect forest's per-leaf precision cache (sums of b_z^2)
    must follow. The residual is unchanged: tau0 and the effect forest start at 0.
    """
    if state.b_prior_cov_inv is not None:
        raise ValueError("with_fixed_coding needs a state built without adaptive coding")
    coded = replace(state, b=jnp.broadcast_to(jnp.asarray(b, jnp.float32), state.b.shape))

    def prec_tree(one: SiteBCFState) -> jax.Array:
        return recompute_prec_trees(one.forest_tau, jnp.square(coding(one)), one.config)

    return equinox.tree_at(lambda s: s.forest_tau.prec_tree, coded, map_chains(prec_tree, coded))


# -- residual conventions ------------------------------------------------------------------------
# bartz stores the running residual in units of ``resid_unit``: data residual = resid * unit,
# where "data" is y for continuous outcomes and the probit latent z for binary ones.
def residual(state: BCFState) -> jax.Array:
    """The residual on the data scale (one chain)."""
    return state.resid * state.resid_unit


def with_residual(state: BCFState, data_residual: jax.Array) -> BCFState:
    """Replace the running residual, given on the data scale (one chain)."""
    return replace(state, resid=(data_residual / state.resid_unit).astype(state.resid.dtype))


def error_precision(state: BCFState) -> jax.Array:
    """The error precision on the data scale; 1 for the probit model (one chain)."""
    if state.error_cov_inv is None:
        return jnp.asarray(1.0, jnp.float32)
    return state.error_cov_inv.value


def coding(state: BCFState) -> jax.Array:
    """Each patient's treatment coding b_z (b0 for control, b1 for treated) (one chain)."""
    return state.b[state.trt.astype(jnp.int32)]


def _at_training(forest: Any) -> jax.Array:
    leaves = jnp.take_along_axis(forest.leaf_tree, forest.leaf_indices.astype(jnp.int32), axis=-1)
    return forest.leaf_unit * jnp.sum(leaves, axis=0, dtype=jnp.float32)


def tau_forest_at_training(state: BCFState) -> jax.Array:
    """The effect forest at the training patients from the cached leaf indices (one chain)."""
    return _at_training(state.forest_tau)


def mu_forest_at_training(state: BCFState) -> jax.Array:
    """Offset plus the prognostic forest at the training patients (one chain)."""
    return state.forest.offset + _at_training(state.forest)


def latent_outcome(state: BCFState) -> jax.Array:
    """What the residual is taken from: y (continuous) or the probit latent z (one chain)."""
    return state.y if state.z is None else state.z


def _trees(forest: Any) -> dict[str, jax.Array]:
    return {
        "leaf_tree": forest.leaf_tree,
        "var_tree": forest.var_tree,
        "split_tree": forest.split_tree,
    }


def tau_trees(state: BCFState) -> dict[str, jax.Array]:
    """The arrays that define the effect forest (one chain)."""
    return _trees(state.forest_tau)


def mu_trees(state: BCFState) -> dict[str, jax.Array]:
    """The arrays that define the prognostic forest (one chain)."""
    return _trees(state.forest)


def leaf_units(state: BCFState) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(prognostic leaf unit, prognostic offset, effect leaf unit): constant over a run."""
    return state.forest.leaf_unit, state.forest.offset, state.forest_tau.leaf_unit


def tau_leaf_precision(state: BCFState) -> jax.Array:
    """The effect forest's current leaf prior precision (fixed or sampled) (one chain)."""
    return state.forest_tau.leaf_prior_cov_inv.value


def map_chains(fun: Any, state: BCFState) -> Any:
    """``fun(one_chain_state)`` for every chain, stacked on a leading chain axis."""
    return jax.vmap(fun, in_axes=(chain_vmap_axes(state),))(state)


class _TreeHeaps(NamedTuple):  # bartz.grove's TreeHeaps protocol, as a pytree
    leaf_tree: jax.Array
    var_tree: jax.Array
    split_tree: jax.Array
    leaf_unit: jax.Array


def evaluate_trees(
    X_binned: jax.Array, trees: dict[str, jax.Array], leaf_unit: jax.Array
) -> jax.Array:
    """Sum of one draw's trees at binned covariates ``X_binned`` (p, m), in data units."""

    heaps = _TreeHeaps(
        trees["leaf_tree"], trees["var_tree"], trees["split_tree"], jnp.asarray(leaf_unit)
    )
    return evaluate_forest(X_binned, heaps, sum_batch_axis=0)


# -- covariate binning ----------------------------------------------------------------------------
def fit_binner(X: jax.Array, max_bins: int, key: jax.Array) -> Any:
    """Cut points at quantiles of the unique values of each row of ``X`` (p, n)."""
    return UniqueQuantileBinner(jnp.asarray(X, jnp.float32), max_bins=max_bins, key=key)


def cutpoints(binner: Any) -> jax.Array:
    """The binner's cut points (p, m) with unused slots as NaN, bartz's ``xinfo`` format."""
    splits = jnp.asarray(binner._splits)  # noqa: SLF001 - the only way to export them
    used = jnp.arange(splits.shape[1])[None, :] < binner.max_split[:, None]
    return jnp.where(used, splits, jnp.nan)


def binner_from_cutpoints(X: jax.Array, xinfo: jax.Array) -> Any:
    """Rebuild a binner from :func:`cutpoints` (for saved models)."""
    return GivenSplitsBinner(jnp.asarray(X, jnp.float32), xinfo=jnp.asarray(xinfo, jnp.float32))


def bin_covariates(binner: Any, X: jax.Array) -> jax.Array:
    """Bin covariates ``X`` (p, m) with a fitted binner."""
    return binner.bin(jnp.asarray(X, jnp.float32))
