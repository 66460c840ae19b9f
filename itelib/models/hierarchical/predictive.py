"""Prior and posterior predictive draws of a fitted HierarchicalITE, in ArviZ's group names,
and the posterior-mean fitted outcome of its training patients (for the model check).

The predictive draws use the row-wise likelihood on the training design (covariates,
treatments, sites and, if the model has one, the propensity score) and return outcomes on the
outcome's own scale, so ArviZ's predictive-check plots read them directly.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.design import model_data, treatment_centre

__all__ = ["fitted_outcome", "posterior_predictive", "prior_predictive"]

_POSTERIOR_KEY, _PRIOR_KEY = 2, 3  # fold_in tags: streams apart from sampling and new sites


def _design(est: Any) -> tuple[m.ModelData, m.ModelSpec]:
    """The training design with no outcome, for the row-wise model."""
    spec = dataclasses.replace(est.model_spec_, likelihood="rows", batch_size=None)  # every row
    X, scores = est.data_.X, None
    if est.propensity_ is not None:
        X, scores = np.column_stack([X, est.propensity_.feature()]), est.propensity_.scores
    if getattr(est, "prognostic_score_", None) is not None:
        X = np.column_stack([X, est.prognostic_score_])
    X = est.features_.prognostic(X)
    if est.outcome_ == "survival":  # as fitted (files saved before centring: 0)
        centre = est.survival_centre_
    else:
        centre = treatment_centre(est.data_.t, est.outcome_, est.treatment_coding, scores)
    event = getattr(est, "survival_event_", None) if est.outcome_ == "survival" else None
    data = model_data(
        est.data_, X, spec, est.features_, est.outcome_center_, est.outcome_scale_, centre, event
    )
    return data._replace(y=None), spec


def _outcome_scale(est: Any, y: np.ndarray) -> np.ndarray:
    """Survival outcomes: the model's draws are ``exp`` of the standardized log time, mapped
    back to times (uncensored event times: censoring is not simulated)."""
    y = np.asarray(y, dtype=np.float64)
    if est.outcome_ == "survival":
        return np.exp(np.log(y) * est.outcome_scale_ + est.outcome_center_)
    return y if est.outcome_ == "binary" else y * est.outcome_scale_ + est.outcome_center_


def _tree(groups: dict[str, dict[str, np.ndarray]], est: Any) -> Any:
    import arviz_base

    groups = groups | {"observed_data": {"y": np.asarray(est.data_.y)}}
    dims = {"y": ["patient"]}
    coords = {"patient": list(est.data_.patient_ids)}
    return arviz_base.from_dict(groups, dims=dims, coords=coords, check_conventions=False)


_FITTED_PARAMS = (
    "alpha", "beta", "tau0", "gamma", "smooth_coef", "effect_smooth_coef",
    "sigma_site", "sigma_site_effect", "site_intercept_z", "site_effect_z",
)  # fmt: skip
_FITTED_CELLS = 4_000_000  # draws x patients per chunk (32 MB of float64)


def fitted_outcome(est: Any, rows: np.ndarray | None = None) -> np.ndarray:
    """Posterior-mean fitted outcome ``E[y | x, t, site]`` of the training patients.

    Continuous outcomes: the mean over draws of ``prognosis + t * effect``, mapped back to the
    outcome's scale. Binary outcomes: the mean over draws of ``P(y = 1 | x, t, site)``. This is
    what :func:`itelib.model_check.check_model` takes as ``fitted``.

    Parameters
    ----------
    est : HierarchicalITE
        A fitted estimator.
    rows : array of int, optional
        Only these training patients (default: all).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` fitted outcomes, in the order of ``est.data_``.
    """
    post = est.posterior_["posterior"]
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    params = {
        k: jnp.asarray(post[k].values.reshape(n_draws, *post[k].shape[2:]))
        for k in _FITTED_PARAMS
        if k in post
    }
    data, _ = _design(est)
    if rows is not None:  # a subsample (the model check's, on large data)
        data = data._replace(**{
            k: getattr(data, k)[rows]
            for k in ("X", "t", "site", "modifiers", "basis", "effect_basis")
            if getattr(data, k) is not None
        })  # fmt: skip
    binary = est.outcome_ == "binary"
    n = data.t.shape[0]
    # Every chunk is padded to the same size, which depends on the draws only: a new n (the
    # fit runs this check every time) compiles nothing new.
    chunk = max(1, _FITTED_CELLS // n_draws)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        size = rows.stop - rows.start

        def padded(a: np.ndarray, rows: slice = rows, size: int = size) -> jax.Array:
            return jnp.asarray(np.pad(a[rows], [(0, chunk - size)] + [(0, 0)] * (a.ndim - 1)))

        basis = None if data.basis is None else padded(data.basis)
        psi = None if data.effect_basis is None else padded(data.effect_basis)
        out[rows] = np.asarray(
            _fitted_mean(
                params, padded(data.X), padded(data.t), padded(data.site), basis,
                padded(data.modifiers), jnp.asarray(0.0 if data.offset is None else data.offset),
                binary, psi,
            )
        )[:size]  # fmt: skip
    return out if binary else out * est.outcome_scale_ + est.outcome_center_


@partial(jax.jit, static_argnames="binary")
def _fitted_mean(
    params: dict, X: jax.Array, t: jax.Array, site: jax.Array, basis: jax.Array | None,
    modifiers: jax.Array, offset: jax.Array, binary: bool, effect_basis: jax.Array | None = None,
) -> jax.Array:  # fmt: skip
    prognosis = m.prognosis_draws(params, X, site, None, basis)
    effect = m.effect_draws(params, X, site, None, modifiers, effect_basis)
    linear = prognosis + t * effect
    return jnp.mean(jax.nn.sigmoid(offset + linear) if binary else linear, axis=0)


def posterior_samples(est: Any) -> dict[str, np.ndarray]:
    """Every posterior variable with its chains and draws flattened into one leading axis, as
    NumPyro's :class:`~numpyro.infer.Predictive` takes them."""
    post = est.posterior_["posterior"]
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    return {k: np.asarray(post[k].values).reshape(n_chains * n_draws, *post[k].shape[2:])
            for k in post.data_vars}  # fmt: skip


def posterior_predictive(est: Any) -> Any:
    """DataTree with ``posterior_predictive`` (y: chain, draw, patient) and ``observed_data``."""
    post = est.posterior_["posterior"]
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    samples = posterior_samples(est)
    data, spec = _design(est)
    key = jax.random.fold_in(jax.random.key(est.random_state_), _POSTERIOR_KEY)
    y = Predictive(m.hierarchical_model, posterior_samples=samples, return_sites=["y"])(
        key, data, spec
    )["y"]
    y = _outcome_scale(est, y).reshape(n_chains, n_draws, -1)
    return _tree({"posterior_predictive": {"y": y}}, est)


def prior_predictive(est: Any, num_samples: int = 500) -> Any:
    """DataTree with ``prior`` (parameters), ``prior_predictive`` (y) and ``observed_data``.

    The priors act on the standardized scale; outcomes are mapped back with the training mean
    and sd (continuous) or left as 0/1 (binary).
    """
    data, spec = _design(est)
    key = jax.random.fold_in(jax.random.key(est.random_state_), _PRIOR_KEY)
    draws = Predictive(m.hierarchical_model, num_samples=num_samples)(key, data, spec)
    y = _outcome_scale(est, draws.pop("y"))[None]
    prior = {k: np.asarray(v)[None] for k, v in draws.items()}
    return _tree({"prior": prior, "prior_predictive": {"y": y}}, est)
