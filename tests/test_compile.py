"""A second fit of the same shape must not compile again (NumPyro's MCMC.run does, every call)."""

from __future__ import annotations

import gc
import sys

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


CACHE_SCRIPT = """
import jax.monitoring, warnings
from itelib import BayesianCausalForest
from itelib.simulate import multisite_rct
events = {"compile": 0, "hit": 0}
def on_duration(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        events["compile"] += 1
def on_event(event, **kw):
    if event == "/jax/compilation_cache/cache_hits":
        events["hit"] += 1
jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
trial = multisite_rct(n=150, seed=0, n_sites=4)
warnings.simplefilter("ignore")
BayesianCausalForest(num_trees_mu=10, num_trees_tau=5, num_warmup=5, num_samples=20,
                     num_chains=2, progress_bar=False).fit(**trial.fit_kwargs())
print(events["compile"], events["hit"])
"""


def test_a_second_process_loads_the_sampler_from_the_persistent_cache(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "ITELIB_JAX_CACHE": str(tmp_path / "cache")}

    def run() -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=env, text=True,
                             capture_output=True, timeout=600)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        compiles, hits = map(int, out.stdout.split()[-2:])
        return compiles, hits

    first_compiles, first_hits = run()  # a fresh cache directory: nothing to load
    assert first_hits == 0 and first_compiles > 0
    assert any((tmp_path / "cache").iterdir()), "nothing was written to the cache directory"
    _, second_hits = run()
    # The sampler (tens of seconds to compile) came from disk. (JAX reports a backend-compile
    # duration for cache loads too, so the compile count itself does not drop.)
    assert second_hits > 0


def test_the_progress_bar_counts_every_iteration_of_every_chain(capsys):
    trial = multisite_rct(n=150, seed=0, n_sites=4)
    est = HierarchicalITE(num_warmup=60, num_samples=40, num_chains=2, progress_bar=True)
    with pytest.warns(ConvergenceWarning):
        est.fit(**trial.fit_kwargs())
    err = capsys.readouterr().err
    assert "HierarchicalITE" in err and "200/200" in err  # 2 chains x (60 + 40)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_thousand_fits_in_one_process_keep_memory_flat():
    """An SBC run of 1,000 same-shape fits in one process (issue 6: NumPyro's MCMC.run in a
    loop recompiled every call and a process died of LLVM memory after ~75 fits). Measured:
    +6 MB of resident memory over the 1,000 fits, the kept draws and ranks included; a leak of
    the compiled code would cost megabytes per fit. The bound, 50 MB, allows 50 kB per fit."""
    from itelib.calibration.sbc import hierarchical_sbc

    sizes = dict(n_patients=40, p=2, n_sites=2, num_warmup=20, num_samples=20, num_chains=1,
                 thin=1)  # fmt: skip
    hierarchical_sbc(20, **sizes)  # compiles; the allocator settles
    gc.collect()
    before = _rss_mb()
    result = hierarchical_sbc(1000, seed=1, **sizes)
    gc.collect()
    assert result.ranks["tau0"].shape == (1000,)
    assert _rss_mb() - before < 50
