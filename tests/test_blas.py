"""Sampling runs with one BLAS thread (itelib/inference/blas.py says why), restored afterwards."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from itelib.inference.blas import single_threaded_blas
from itelib.inference.nuts import NUTSConfig, sample_nuts, sample_nuts_datasets


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    """Start from 2 threads, so that one thread inside cannot be the machine's default."""
    jax.numpy.linalg.cholesky(jax.numpy.eye(2))  # JAX's LAPACK (SciPy's OpenBLAS) is loaded
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see is loaded")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


SEEN: list[list[int]] = []


def watching_model(data, spec):
    """Records the BLAS thread counts from inside the compiled sampler, at every gradient."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    jax.debug.callback(lambda _: SEEN.append(blas_threads()), mu)
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=data["y"])


CFG = NUTSConfig(num_warmup=5, num_samples=5, num_chains=2)


def test_the_context_sets_one_thread_and_restores_the_users_setting(two_blas_threads):
    with single_threaded_blas():
        assert set(blas_threads()) == {1}
    assert set(blas_threads()) == {2}


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
def test_sample_nuts_runs_its_chains_on_one_blas_thread(two_blas_threads, chain_method):
    SEEN.clear()
    cfg = NUTSConfig(**{**CFG.__dict__, "chain_method": chain_method})
    sample_nuts(jax.random.key(0), watching_model, {"y": np.zeros(3, np.float32)}, None, cfg)
    jax.effects_barrier()
    assert SEEN and all(set(threads) == {1} for threads in SEEN)
    assert set(blas_threads()) == {2}


def test_sample_nuts_datasets_runs_on_one_blas_thread(two_blas_threads):
    SEEN.clear()
    data = {"y": np.zeros((2, 3), np.float32)}
    sample_nuts_datasets(jax.random.split(jax.random.key(0), 2), watching_model, data, None, CFG)
    jax.effects_barrier()
    assert SEEN and all(set(threads) == {1} for threads in SEEN)
    assert set(blas_threads()) == {2}


def test_the_limit_reaches_jaxs_lapack_in_a_fresh_process():
    """threadpoolctl limits only loaded libraries, and JAX loads SciPy's OpenBLAS at its first
    Cholesky factorization: a fresh process's first fit ran LAPACK on every core (267 ms for a
    403 x 403 factorization under load instead of 0.8 ms). The environment asks for 2 threads,
    so one thread inside cannot be the machine's default."""
    import os
    import subprocess
    import sys

    code = (
        "import jax.numpy as jnp\n"
        "from threadpoolctl import threadpool_info\n"
        "from itelib.inference.blas import single_threaded_blas\n"
        "with single_threaded_blas():\n"
        "    jnp.linalg.cholesky(jnp.eye(3)).block_until_ready()\n"
        "    print(sorted({p['num_threads'] for p in threadpool_info()"
        " if p['user_api'] == 'blas'}))\n"
    )
    env = os.environ | {"OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[1]", out.stdout + out.stderr
