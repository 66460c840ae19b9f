"""Many data sets in one vectorized NUTS program give each data set what a lone run gives it."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from itelib import SamplerInitError
from itelib.inference.nuts import NUTSConfig, sample_nuts, sample_nuts_datasets


def regression(data, spec):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(a * data["x"], s), obs=data["y"])


CFG = NUTSConfig(num_warmup=40, num_samples=15, num_chains=2)


def stacked(n_sets: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_sets, 30)).astype(np.float32)
    return {"x": x, "y": (0.7 * x + rng.normal(size=x.shape)).astype(np.float32)}


def test_each_data_set_gets_the_draws_of_its_own_run():
    """Same keys, same data: each lane of the vmapped program follows its lone run. In float32
    the batched arithmetic rounds differently and NUTS amplifies that within a few dozen
    iterations (even chain-vectorized vs sequential runs part ways), so the comparison runs in
    float64, where lanes agree to ~1e-12 over these 55 iterations: rtol 1e-8 leaves 4 orders
    of margin and still fails on any wrong key, data slice or chain order."""
    with jax.enable_x64(True):
        data = {k: v.astype(np.float64) for k, v in stacked(3).items()}
        keys = jax.random.split(jax.random.key(1), 3)
        together = sample_nuts_datasets(keys, regression, data, None, CFG)
        assert len(together) == 3
        for d in range(3):
            one = {k: v[d] for k, v in data.items()}
            alone = sample_nuts(keys[d], regression, one, None, CFG)
            for name in ("a", "s"):
                assert together[d].params[name].shape == (2, 15)
                np.testing.assert_allclose(together[d].params[name], alone.params[name], rtol=1e-8)
            np.testing.assert_array_equal(together[d].stats["n_steps"], alone.stats["n_steps"])
    assert not np.allclose(together[0].params["a"], together[1].params["a"])


def test_a_broken_data_set_is_named_like_a_lone_run():
    data = stacked(2)
    data["y"][1, 3] = np.inf
    with pytest.raises(SamplerInitError, match=r"likelihood of 'y'.*\['y'\]"):
        sample_nuts_datasets(jax.random.split(jax.random.key(0), 2), regression, data, None, CFG)
