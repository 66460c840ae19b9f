"""Survival designs in studies: which estimators get cells, and the two survival peers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from itelib.calibration import peers
from itelib.calibration.study import cells, fits_outcome, load_config, run_cell

MIXED = """
name = "mixed"
seed = 3
replications = 1

[[dgp]]
name = "survival_weibull"
n = [300]

[[dgp]]
name = "multisite_rct"
n = [120]

[[estimator]]
name = "bcf"
kind = "itelib:BayesianCausalForest"
params = { num_warmup = 60, num_samples = 60, num_chains = 2, num_trees_mu = 50 }

[[estimator]]
name = "causal_forest"
kind = "itelib:CausalForest"

[[estimator]]
name = "cox"
kind = "peer:sksurv_cox"

[[estimator]]
name = "drlearner"
kind = "peer:econml_drlearner"
"""


def test_each_design_gets_the_estimators_that_fit_its_outcome(tmp_path: Path):
    path = tmp_path / "mixed.toml"
    path.write_text(MIXED)
    made = {(c.dgp, c.estimator) for c in cells(load_config(path))}
    assert made == {
        ("survival_weibull", "bcf"), ("survival_weibull", "cox"),
        ("multisite_rct", "bcf"), ("multisite_rct", "causal_forest"),
        ("multisite_rct", "drlearner"),
    }  # fmt: skip
    assert fits_outcome("itelib:HierarchicalITE", "survival")
    assert not fits_outcome("peer:sksurv_rsf", "scalar")
    assert fits_outcome("adapter.py:f", "survival")  # a user's file is trusted with either


def test_a_survival_cell_scores_rmst_differences(tmp_path: Path):
    """A study cell on a survival design fits the forest with outcome="survival" and the
    design's horizon and scores its RMST differences against the truth: the row has coverage
    and an ATE interval like any other cell, and no error."""
    path = tmp_path / "mixed.toml"
    path.write_text(MIXED)
    cell = next(c for c in cells(load_config(path)) if c.dgp == "survival_weibull")
    row = run_cell(cell)
    assert row["error"] == "", row.get("traceback")
    assert 0.0 <= row["cov95"] <= 1.0 and np.isfinite(row["sqrt_pehe"])
    assert "ate_covered" in row


def test_rmst_of_step_curves_is_the_area_under_them():
    """S = 1 on [0, 1), 0.5 on [1, 2), 0.25 from 2: areas 1 + 0.5 + 0.25 = 1.75 up to 3, and
    1 + 0.5 * 0.5 up to 1.5 (the steps beyond the horizon are cut)."""
    times, curves = np.array([1.0, 2.0]), np.array([[0.5, 0.25], [1.0, 1.0]])
    np.testing.assert_allclose(peers._rmst_of_steps(times, curves, 3.0), [1.75, 3.0])
    np.testing.assert_allclose(peers._rmst_of_steps(times, curves, 1.5), [1.25, 1.5])


@pytest.mark.parametrize("name", ["sksurv_cox", "sksurv_rsf"])
def test_the_survival_peers_estimate_rmst_differences(name, linear_aft_trial):
    """On the linear log-normal AFT trial (n = 300) each peer's RMST differences lie inside
    (-horizon, horizon) and beat the no-heterogeneity answer (every patient at the true mean):
    sqrt-PEHE below the true differences' sd. Measured: Cox 0.35, forest 0.65 of that sd; a peer
    that mixed up the arms or the horizon would be worse than the constant."""
    from types import SimpleNamespace

    Y, t, X, horizon, tau, _ = linear_aft_trial("lognormal", 300, seed=11)
    trial = SimpleNamespace(
        fit_kwargs=lambda: {"Y": Y, "T": t, "X": X}, params={"horizon": horizon}
    )
    estimate = peers.adapter(name)(trial, {}, {}, 1)["mean"]
    assert np.all(np.abs(estimate) < horizon)
    pehe = float(np.sqrt(np.mean((estimate - tau) ** 2)))
    print(f"{name}: sqrt-PEHE {pehe:.3f}, sd of the truth {tau.std():.3f}")
    assert pehe < tau.std(), (pehe, tau.std())
