"""Sampler faults: a chain that starts at a non-finite log density gets an error naming why."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from itelib import SamplerInitError
from itelib.inference.nuts import NUTSConfig, sample_nuts


def toy_model(data, spec):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu * data["x"], 1.0), obs=data["y"])


CFG = NUTSConfig(num_warmup=10, num_samples=10, num_chains=1)


def test_non_finite_start_names_the_term_and_the_input():
    data = {"x": np.ones(5, np.float32), "y": np.array([0, 1, np.inf, 2, 3], np.float32)}
    with pytest.raises(SamplerInitError, match=r"likelihood of 'y'.*\['y'\]"):
        sample_nuts(jax.random.key(0), toy_model, data, None, CFG)


def test_finite_start_samples_normally():
    data = {"x": np.ones(5, np.float32), "y": np.arange(5, dtype=np.float32)}
    result = sample_nuts(jax.random.key(0), toy_model, data, None, CFG)
    assert result.params["mu"].shape == (1, 10) and np.isfinite(result.params["mu"]).all()
    assert "initial_lp" not in result.stats
