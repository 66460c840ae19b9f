"""Censored log times in the forest's Gibbs sweep: data augmentation (AFT-BCF).

The accelerated-failure-time BCF is the Gaussian BCF on log time (Henderson, Louis, Rosner &
Varadhan 2020). A patient censored at ``c`` has a log time known only to exceed ``log c``; each
sweep draws it from its full conditional, N(fit, sigma^2) truncated below at ``log c``, and the
rest of the sweep (forests, sigma, sites) is the continuous outcome's, on the completed data.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtri

from itelib.models.forest import _bartz

__all__ = ["impute_censored", "upper_tail_normal"]

# Standardized bounds above this are clipped: the tail mass beyond 12 sd (~2e-33) is the
# smallest float32 keeps; a fit 12 sd below a censoring time is a model that has failed anyway.
_MAX_BOUND = 12.0


def upper_tail_normal(key: jax.Array, lower: jax.Array) -> jax.Array:
    """Standard normal draws conditioned on exceeding ``lower`` (elementwise), exact in the tail.

    Inverse CDF on the upper tail: z = -Phi^-1(u Phi(-a)), with Phi(-a) kept on the log scale,
    so a bound far above 0 (a long-censored patient of a short-lived fit) does not round to 1
    as ``jax.random.truncated_normal``'s CDF difference does.
    """
    a = jnp.minimum(lower, _MAX_BOUND)
    u = jax.random.uniform(key, a.shape, a.dtype, minval=jnp.finfo(a.dtype).tiny, maxval=1.0)
    tail = jnp.exp(jnp.log(u) + log_ndtr(-a))  # u * Phi(-a): underflows for tiny u, far a
    z = -ndtri(jnp.maximum(tail, jnp.finfo(a.dtype).tiny))  # so at most ~13.1, never inf
    return jnp.maximum(z, a)  # rounding at the bound


def impute_censored(key: jax.Array, state: _bartz.SiteBCFState) -> _bartz.SiteBCFState:
    """Redraw every censored patient's log time given the current fit; move the residual along.

    One chain; a state without censoring is returned as it is.
    """
    if state.censored_at is None:
        return state
    resid = _bartz.residual(state)
    fit = state.log_time - resid
    sd = jax.lax.rsqrt(_bartz.error_precision(state))
    censored = jnp.isfinite(state.censored_at)
    bound = jnp.where(censored, (state.censored_at - fit) / sd, 0.0)
    drawn = fit + sd * upper_tail_normal(key, bound)
    log_time = jnp.where(censored, drawn, state.log_time)
    state = _bartz.with_residual(state, resid + (log_time - state.log_time))
    return replace(state, log_time=log_time)
