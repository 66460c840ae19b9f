"""Simulation-based calibration: the generic rank/ECDF pieces, then SBC of the NumPyro model."""

from __future__ import annotations

import jax.monitoring
import numpy as np
import pytest

from itelib.calibration import (
    SBCResult,
    UniformityResult,
    ecdf_uniformity,
    hierarchical_sbc,
    plot_ecdf_difference,
    plot_rank_histograms,
    sbc_ranks,
)
from itelib.models.hierarchical.priors import HierarchicalPriors


# -- ranks -----------------------------------------------------------------------------------------
def test_sbc_ranks_hand_example():
    truth = {"a": np.array([0.5, 2.0, -1.0]), "v": np.array([[0.0, 1.0], [5.0, -5.0], [0, 0]])}
    draws = [
        {"a": np.array([0.1, 0.2, 0.9]), "v": np.array([[-1.0, 2.0], [1.0, 0.5], [2, 3]])},
        {"a": np.array([0.1, 0.2, 0.9]), "v": np.array([[-1.0, 2.0], [1.0, 0.5], [2, 3]])},
        {"a": np.array([0.1, 0.2, 0.9]), "v": np.array([[-1.0, 2.0], [1.0, 0.5], [2, 3]])},
    ]
    ranks = sbc_ranks(truth, draws)
    np.testing.assert_array_equal(ranks["a"], [2, 3, 0])
    np.testing.assert_array_equal(ranks["v"], [[1, 1], [3, 0], [1, 0]])


def test_sbc_ranks_split_ties_at_random():
    # truth 1 among draws (0, 1, 1, 2): one draw below, two tied, so the rank is 1, 2 or 3,
    # each with probability 1/3.
    truth = {"k": np.ones(3000)}
    draws = [{"k": np.array([0.0, 1.0, 1.0, 2.0])}] * 3000
    ranks = sbc_ranks(truth, draws, rng=np.random.default_rng(1))["k"]
    assert set(np.unique(ranks)) == {1, 2, 3}
    # each share has sd sqrt(2/9 / 3000) = 0.0086; 4 sd
    np.testing.assert_allclose(np.bincount(ranks)[1:] / 3000, 1 / 3, atol=0.035)


def test_sbc_ranks_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"truth\['a'\]"):
        sbc_ranks({"a": np.zeros(2)}, [{"a": np.zeros(5)}] * 3)


# -- uniformity ------------------------------------------------------------------------------------
def test_exactly_uniform_ranks_pass():
    rng = np.random.default_rng(2)
    ranks = {"x": rng.integers(0, 100, 300), "y": rng.integers(0, 100, (300, 3))}
    res = ecdf_uniformity(ranks, 99, prob=0.99, rng=np.random.default_rng(3))
    assert isinstance(res, UniformityResult)
    assert list(res.passed) == ["x", "y[0]", "y[1]", "y[2]"]
    assert res.all_passed and res.failed == []
    assert res.level == pytest.approx(1 - 0.01 / 4)  # Bonferroni over 4 quantities
    assert res.z.shape == res.lower.shape == res.upper.shape == (99,)
    assert np.all(res.lower <= res.z) and np.all(res.z <= res.upper)


def _normal_sbc(posterior_sd_factor: float, n_sims: int, seed: int) -> dict[str, np.ndarray]:
    """theta ~ N(0, 1), y ~ N(theta, 1): the posterior is N(y / 2, 1 / sqrt(2))."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_sims)
    y = rng.normal(theta)
    sd = posterior_sd_factor / np.sqrt(2)
    draws = [{"theta": rng.normal(m, sd, size=99)} for m in y / 2]
    return sbc_ranks({"theta": theta}, draws, rng=rng)


def test_correct_posterior_passes_too_narrow_posterior_fails():
    ok = ecdf_uniformity(_normal_sbc(1.0, 200, seed=4), 99)
    assert ok.all_passed
    narrow = ecdf_uniformity(_normal_sbc(0.5, 200, seed=4), 99)
    assert narrow.failed == ["theta"]
    assert narrow.max_deviation["theta"] > ok.max_deviation["theta"]


def test_band_has_its_simultaneous_level():
    # 4000 independent sets of uniform ranks (L = 50 simulations, S = 19 draws), each tested
    # against one band of level 0.9 (no Bonferroni: each quantity is its own test). The pass rate
    # estimates the band's realised level. Monte Carlo sd: the 4000 tests, sqrt(.9 * .1 / 4000) =
    # 0.0047, and the band's own calibration with 10 000 samples, sqrt(.9 * .1 / 1e4) = 0.003:
    # together 0.0056; tolerance 4 sd. (Measured with 20 000 sets: 0.903 here, 0.902 for
    # L = S = 100, 0.990 at level 0.99: the discreteness of the ranks costs little.)
    rng = np.random.default_rng(5)
    ranks = {"r": rng.integers(0, 20, size=(50, 4000))}
    res = ecdf_uniformity(ranks, 19, prob=0.9, bonferroni=False, rng=np.random.default_rng(6))
    rate = np.mean(list(res.passed.values()))
    assert 0.9 - 0.022 < rate < 0.9 + 0.022


def test_bonferroni_gives_each_band_level_one_minus_alpha_over_k():
    # With K quantities each band gets level 1 - (1 - prob) / K, so, by the union bound, uniform
    # ranks pass for all K together with probability at least prob (the previous test checks
    # that a band has the level it claims).
    ranks = {"r": np.random.default_rng(7).integers(0, 10, size=(40, 5))}
    fam = ecdf_uniformity(ranks, 9, prob=0.8, rng=np.random.default_rng(8))
    each = ecdf_uniformity(ranks, 9, prob=0.96, bonferroni=False, rng=np.random.default_rng(8))
    assert fam.level == pytest.approx(0.96)
    np.testing.assert_array_equal(fam.lower, each.lower)
    np.testing.assert_array_equal(fam.upper, each.upper)
    assert fam.all_passed == all(each.passed.values())


@pytest.mark.parametrize(
    ("ranks", "n_draws", "match"),
    [({"a": np.array([0, 5, 11])}, 10, "0..10"), ({}, 10, "empty")],
)
def test_ecdf_uniformity_rejects_bad_ranks(ranks, n_draws, match):
    with pytest.raises(ValueError, match=match):
        ecdf_uniformity(ranks, n_draws)


def test_ecdf_uniformity_rejects_bad_prob():
    with pytest.raises(ValueError, match="prob"):
        ecdf_uniformity({"a": np.array([0, 1])}, 3, prob=1.0)


# -- plots -----------------------------------------------------------------------------------------
def test_plots_return_figures():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = _normal_sbc(0.5, 60, seed=8) | {"u": np.random.default_rng(9).integers(0, 100, 60)}
    res = ecdf_uniformity(ranks, 99)
    for fig in (
        plot_rank_histograms(res),
        plot_ecdf_difference(res),
        plot_rank_histograms(ranks, 99, bins=10, ncols=1),
        plot_ecdf_difference(ranks, n_draws=99),
    ):
        assert isinstance(fig, matplotlib.figure.Figure)
        assert sum(ax.get_visible() for ax in fig.axes) == 2
        plt.close(fig)
    with pytest.raises(TypeError, match="n_draws"):
        plot_ecdf_difference(ranks)


def test_hierarchical_sbc_checks_its_arguments():
    with pytest.raises(ValueError, match="n_simulations"):
        hierarchical_sbc(0)
    with pytest.raises(ValueError, match="thin"):
        hierarchical_sbc(2, thin=0)
    with pytest.raises(TypeError, match="n_patients"):
        hierarchical_sbc(2, n_patients=80.0)


# -- SBC of the hierarchical NumPyro model ---------------------------------------------------------
# Sizes: 150 warmup + 150 draws per chain, 2 chains, thin=3 -> 100 ranked draws. A pilot put the
# smallest bulk ESS of the 300 draws (sigma_site_effect, the between-site sd from 4 sites) at
# 50-210, median ~100, the other quantities at 150-500: the kept draws are close to independent.
# Measured on 2 cores shared with other jobs: 1.3-2.6 s per simulation plus 50-70 s compilation
# per fit prior; 18 of 100 simulations had a divergence (27 in all), recorded in the result.
SIZES = {"num_warmup": 150, "num_samples": 150, "thin": 3}
# The uniformity test is Bonferroni-corrected over the 9 ranked quantities (tau0,
# sigma_site_effect, gamma[0..2], effect[0..2], sigma): each band has simultaneous level
# 1 - 0.01 / 9, so a correct sampler fails this test with probability at most 1 %.
PROB = 0.99


@pytest.mark.slow
def test_hierarchical_sbc_passes():
    hierarchical_sbc(2, seed=11, **SIZES)  # compiles the prior draw and the sampler
    compiles: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        res = hierarchical_sbc(100, seed=11, **SIZES)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == [], "a simulation of the same shape compiled again"
    assert isinstance(res, SBCResult)
    assert res.n_draws == 100 and res.ranks["gamma"].shape == (100, 3)
    assert res.divergences.shape == res.min_ess.shape == (100,)
    check = res.uniformity(prob=PROB)
    assert check.all_passed, (check.failed, check.max_deviation)


@pytest.mark.slow
def test_hierarchical_sbc_detects_prior_mismatch():
    # Planted bug: the fit's prior on the average effect tau0 is N(0, 0.1) while the simulator
    # draws tau0 ~ N(0, 1); posteriors shrink towards 0, so true values far from 0 rank at the
    # extremes: in the measured run 24 of 25 ranks were 0 or 100, a maximum ECDF deviation of
    # 0.51 against a band half-width of at most 0.39, so 25 simulations are plenty.
    bug = HierarchicalPriors(effect_sd=0.1)
    res = hierarchical_sbc(25, seed=12, fit_priors=bug, progress_bar=True, **SIZES)
    check = res.uniformity(prob=PROB)
    assert "tau0" in check.failed
