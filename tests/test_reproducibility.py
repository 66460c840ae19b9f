"""The same seed gives bit-identical draws in two separate processes on the same machine.

Each process fits every estimator on the same simulated trial and saves the effect draws;
the two processes run with different ``PYTHONHASHSEED`` values, so nothing may depend on
set or dict iteration order, on object ids, or on anything else that changes between runs.

``CausalForest`` is the exception: EconML's ``CausalForestDML`` is not bitwise deterministic
(two fits in one process with the same ``random_state`` differ by about 2e-15 in its own
``effect_interval``, with or without ``OMP_NUM_THREADS=1``), so its draws are held to 1e-12.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = """
import sys, warnings
import numpy as np
import itelib
from itelib.simulate import simulate

warnings.simplefilter("ignore")
kw = simulate("multisite_rct", n=120, seed=5, n_sites=4).fit_kwargs()
estimators = {
    "hierarchical": itelib.HierarchicalITE(
        num_warmup=100, num_samples=50, num_chains=2, progress_bar=False, random_state=7),
    "bcf": itelib.BayesianCausalForest(
        num_trees_mu=20, num_trees_tau=10, num_warmup=20, num_samples=30, num_chains=2,
        progress_bar=False, random_state=7),
    "causal_forest": itelib.CausalForest(n_estimators=40, cv=2, random_state=7),
}
draws = {name: est.fit(**kw).effect().draws() for name, est in estimators.items()}
np.savez(sys.argv[1], **draws)
"""


def _run(out: Path, hash_seed: str) -> dict[str, np.ndarray]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def test_same_seed_gives_bit_identical_draws_in_separate_processes(tmp_path: Path) -> None:
    first = _run(tmp_path / "first.npz", "1")
    second = _run(tmp_path / "second.npz", "2")
    assert first.keys() == second.keys() == {"hierarchical", "bcf", "causal_forest"}
    for name in first:
        a, b = first[name], second[name]
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert np.isfinite(a).all() and np.ptp(a) > 0, name  # real draws, not a constant
        if name == "causal_forest":
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        else:
            assert a.tobytes() == b.tobytes(), f"{name}: draws differ between processes"
