"""The flexible prognosis samples: its smooth terms stalled the marginal model's NUTS.

With ``prognosis="additive"`` and the marginal likelihood, the step size collapsed to ~2e-7 and
every tree hit the depth limit on hahn_nonlinear_homogeneous (n = 500); the cause is not found
yet. ``auto`` now samples every coefficient there, and ``"marginal"`` is refused with the fix.
"""

from __future__ import annotations

import pytest

from itelib import HierarchicalITE
from itelib.simulate import simulate


def test_additive_prognosis_samples_with_a_sane_step_size():
    trial = simulate("hahn_nonlinear_homogeneous", n=300, seed=1)
    est = HierarchicalITE(prognosis="additive", num_warmup=150, num_samples=100, num_chains=1,
                          max_tree_depth=6, progress_bar=False, random_state=1)  # fmt: skip
    with pytest.warns():  # 100 draws of one chain: the convergence warning is expected
        est.fit(**trial.fit_kwargs(), propensity="estimate")
    assert est.model_spec_.likelihood == "sufficient"
    # measured 0.019 (sufficient) against 2e-7 (marginal) on this design at n = 500; 1e-4
    # separates a working adaptation from a stalled one by two orders of magnitude either way
    step = float(est.posterior_["sample_stats"]["step_size"].mean())
    assert step > 1e-4, step


def test_additive_prognosis_refuses_the_marginal_likelihood_with_the_fix():
    trial = simulate("multisite_rct", n=1000, seed=0)
    est = HierarchicalITE(prognosis="additive", likelihood="marginal", progress_bar=False)
    with pytest.raises(ValueError, match='likelihood="auto"'):
        est.fit(**trial.fit_kwargs())
