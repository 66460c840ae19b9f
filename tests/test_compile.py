"""A second fit of the same shape must not compile again (NumPyro's MCMC.run does, every call)."""

from __future__ import annotations

import jax.monitoring
import pytest

from itelib import ConvergenceWarning, HierarchicalITE
from itelib.simulate import multisite_rct

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@pytest.fixture
def compile_counter():
    """Counts XLA backend compilations while the test runs."""
    events: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == COMPILE_EVENT:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    jax.monitoring.unregister_event_duration_listener(listener)


def _fit(n: int, seed: int) -> HierarchicalITE:
    trial = multisite_rct(n=n, seed=seed, n_sites=5)
    est = HierarchicalITE(num_warmup=50, num_samples=50, num_chains=2, random_state=seed)
    with pytest.warns(ConvergenceWarning):  # 100 draws: ESS < 400 by construction
        est.fit(**trial.fit_kwargs())
    return est


def test_second_fit_of_same_shape_does_not_compile(compile_counter):
    _fit(n=200, seed=0).effect()
    assert compile_counter, "the listener saw no compilation at all: the test is broken"
    compile_counter.clear()
    _fit(n=200, seed=1).effect()  # new data values and seed, same shapes
    assert compile_counter == []
    # Even a new n: the sufficient-statistics likelihood makes the sampler's shapes independent
    # of n. (effect() on 260 patients would compile one new padded chunk size, by design.)
    _fit(n=260, seed=2)
    assert compile_counter == []
