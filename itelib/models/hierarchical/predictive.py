"""Prior and posterior predictive draws of a fitted HierarchicalITE, in ArviZ's group names.

Both use the row-wise likelihood on the training design (covariates, treatments, sites and, if
the model has one, the propensity score) and return outcomes on the outcome's own scale, so
ArviZ's predictive-check plots read them directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from numpyro.infer import Predictive

from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.design import model_data

__all__ = ["posterior_predictive", "prior_predictive"]

_POSTERIOR_KEY, _PRIOR_KEY = 2, 3  # fold_in tags: streams apart from sampling and new sites


def _design(est: Any) -> tuple[m.ModelData, m.ModelSpec]:
    """The training design with no outcome, for the row-wise model."""
    spec = dataclasses.replace(est.model_spec_, likelihood="rows", batch_size=None)  # every row
    X = est.data_.X
    if est.propensity_ is not None:
        X = np.column_stack([X, est.propensity_.feature()])
    data = model_data(est.data_, X, spec, est.features_, est.outcome_center_, est.outcome_scale_)
    return data._replace(y=None), spec


def _outcome_scale(est: Any, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y if est.outcome_ == "binary" else y * est.outcome_scale_ + est.outcome_center_


def _tree(groups: dict[str, dict[str, np.ndarray]], est: Any) -> Any:
    import arviz_base

    groups = groups | {"observed_data": {"y": np.asarray(est.data_.y)}}
    dims = {"y": ["patient"]}
    coords = {"patient": list(est.data_.patient_ids)}
    return arviz_base.from_dict(groups, dims=dims, coords=coords, check_conventions=False)


def posterior_predictive(est: Any) -> Any:
    """DataTree with ``posterior_predictive`` (y: chain, draw, patient) and ``observed_data``."""
    post = est.posterior_["posterior"]
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    samples = {k: np.asarray(post[k].values).reshape(n_chains * n_draws, *post[k].shape[2:])
               for k in post.data_vars}  # fmt: skip
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
