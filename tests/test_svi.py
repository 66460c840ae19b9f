"""The variational option (inference="svi"): its checks, its labels, its saved files.

Its agreement with NUTS is tested in test_hierarchical_binary.py, on that module's NUTS fit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from itelib import ConvergenceWarning, HierarchicalITE
from itelib.inference.svi import VariationalDiagnostics, elbo_converged
from itelib.simulate import binary_multisite_rct, multisite_rct

TINY = dict(inference="svi", svi_steps=400, num_samples=50, progress_bar=False)


def test_elbo_convergence_is_a_relative_change_of_windowed_means():
    rng = np.random.default_rng(0)
    flat = 1000 + rng.normal(0, 5, 2000)  # noise, no trend: levelled off
    falling = np.linspace(2000, 1000, 2000)  # still 5 % down over the last tenth
    assert elbo_converged(flat)
    assert not elbo_converged(falling)
    assert not elbo_converged(np.r_[flat[:-1], np.nan])
    assert not elbo_converged(flat[:1])


def test_diagnostics_name_the_fix_when_the_elbo_still_moves():
    diag = VariationalDiagnostics.from_losses(np.linspace(2000, 1000, 500), n_draws=10)
    assert not diag.converged
    assert "svi_steps" in diag.problems()[0]
    assert diag.to_dict()["num_steps"] == 500


def test_continuous_outcomes_and_the_pymc_backend_are_refused_with_the_fix():
    trial = multisite_rct(n=80, seed=0, n_sites=3)
    with pytest.raises(ValueError, match='likelihood="rows"'):
        HierarchicalITE(**TINY).fit(**trial.fit_kwargs())
    with pytest.raises(ValueError, match='backend="numpyro"'):
        HierarchicalITE(**TINY, backend="pymc").fit(**trial.fit_kwargs())
    with pytest.raises(ValueError, match="svi_guide"):
        HierarchicalITE(**TINY, svi_guide="diagonal").fit(**trial.fit_kwargs())


@pytest.fixture(scope="module")
def tiny_svi_fit():
    trial = binary_multisite_rct(n=300, seed=5, n_sites=6)
    with warnings.catch_warnings():  # 400 steps: the ELBO may still move
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = HierarchicalITE(**TINY, batch_size=100, random_state=1).fit(**trial.fit_kwargs())
    return trial, est


def test_draws_are_one_chain_of_independent_guide_draws_labelled_variational(tiny_svi_fit):
    trial, est = tiny_svi_fit
    post = est.effect()
    assert post.draws().shape == (1, 50, trial.n)
    assert post.attrs["inference"] == "variational"
    assert est.ate().attrs["inference"] == "variational"
    assert "sample_stats" not in est.posterior_  # no sampler, no sampler statistics
    assert est.posterior_["variational"]["loss"].shape == (400,)
    assert est.model_spec_.batch_size == 100


def test_a_saved_svi_fit_reloads_with_its_loss_trace_and_the_same_effects(tiny_svi_fit, tmp_path):
    _, est = tiny_svi_fit
    back = HierarchicalITE.load(est.save(tmp_path / "svi.nc"))
    assert back.inference == "svi" and back.model_spec_.batch_size == 100
    np.testing.assert_array_equal(
        back.posterior_["variational"]["loss"].values, est.posterior_["variational"]["loss"].values
    )
    assert back.diagnostics_ == est.diagnostics_
    np.testing.assert_allclose(back.effect().draws(), est.effect().draws())


def test_posterior_predictive_replicates_every_patient_not_a_minibatch(tiny_svi_fit):
    trial, est = tiny_svi_fit
    y = est.posterior_predictive()["posterior_predictive"]["y"]
    assert y.shape == (1, 50, trial.n)
    assert set(np.unique(y.values)) <= {0, 1}
