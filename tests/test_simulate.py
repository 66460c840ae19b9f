"""Tests for itelib.simulate: the SimulatedTrial container, the registry and the designs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr

from itelib.simulate import SimulatedTrial, available, hahn2020, multisite_rct, register, simulate

HAHN = [
    "hahn_linear_homogeneous",
    "hahn_linear_heterogeneous",
    "hahn_nonlinear_homogeneous",
    "hahn_nonlinear_heterogeneous",
]
DESIGNS = [*HAHN, "multisite_rct"]


def _small(name: str, n: int, seed: object) -> SimulatedTrial:
    """A small trial; multisite_rct gets few sites so that tiny n is allowed."""
    kwargs = {"n_sites": 4} if name == "multisite_rct" else {}
    return simulate(name, n, seed=seed, **kwargs)


def test_registry_lists_all_designs() -> None:
    assert set(DESIGNS) <= set(available())
    assert available() == sorted(available())


def test_unknown_design_lists_available_names() -> None:
    with pytest.raises(ValueError, match="unknown design 'nope'.*multisite_rct"):
        simulate("nope", 10)


def test_register_rejects_a_taken_name() -> None:
    def other(n: int, seed: object = None) -> SimulatedTrial:
        raise NotImplementedError

    with pytest.raises(ValueError, match="already registered"):
        register("multisite_rct")(other)
    with pytest.raises(ValueError, match="non-empty"):
        register("")


def test_simulate_forwards_kwargs_and_names_the_trial() -> None:
    trial = simulate("multisite_rct", 200, seed=1, n_sites=5, p=4)
    assert trial.name == "multisite_rct"
    assert trial.params["n_sites"] == 5 and trial.params["seed"] == 1
    assert trial.covariates == ("x1", "x2", "x3", "x4")
    assert trial.data["site"].nunique() == 5
    for name in HAHN:
        trial = simulate(name, 50, seed=0)
        assert trial.name == name
        assert (trial.params["mu"], trial.params["tau"]) == tuple(name.split("_")[1:])


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(DESIGNS),
    n=st.integers(min_value=20, max_value=200),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_designs_have_consistent_shapes_and_truth(name: str, n: int, seed: int) -> None:
    trial = _small(name, n, seed)
    data = trial.data
    assert data.shape[0] == n == trial.n
    assert data.index.name == "patient" and data.index.is_unique
    assert data.index[0] == "p0000"
    expected = ["y", "t", *trial.covariates] + (["site"] if trial.site else [])
    assert list(data.columns) == expected
    assert set(np.unique(data["t"])) <= {0, 1} and data["t"].dtype == np.int64
    numeric = [c for c in trial.covariates if c not in trial.categorical]
    assert np.isfinite(data[["y", *numeric]].to_numpy()).all()
    for series in (trial.tau, trial.mu0, trial.mu1, trial.propensity):
        assert series.index.equals(data.index)
        assert np.isfinite(series.to_numpy()).all()
    assert ((trial.propensity > 0) & (trial.propensity < 1)).all()
    np.testing.assert_allclose(trial.tau, trial.mu1 - trial.mu0, atol=1e-12)
    assert trial.ate == pytest.approx(trial.tau.mean())


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(DESIGNS), seed=st.integers(min_value=0, max_value=2**32 - 2))
def test_designs_are_reproducible_and_seed_dependent(name: str, seed: int) -> None:
    first, again = _small(name, 60, seed), _small(name, 60, seed)
    pd.testing.assert_frame_equal(first.data, again.data)
    pd.testing.assert_series_equal(first.tau, again.tau)
    pd.testing.assert_series_equal(first.propensity, again.propensity)
    other = _small(name, 60, seed + 1)
    assert not np.array_equal(first.data["y"].to_numpy(), other.data["y"].to_numpy())


@pytest.mark.parametrize("name", DESIGNS)
def test_seed_kinds_and_no_global_rng(name: str) -> None:
    state = np.random.get_state()  # noqa: NPY002 - checking the global RNG is left alone
    by_int = _small(name, 40, 7)
    by_sequence = _small(name, 40, np.random.SeedSequence(7))
    by_generator = _small(name, 40, np.random.default_rng(7))
    pd.testing.assert_frame_equal(by_int.data, by_sequence.data)
    pd.testing.assert_frame_equal(by_int.data, by_generator.data)
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1])
    with pytest.raises(TypeError, match="seed"):
        _small(name, 40, "7")


@pytest.mark.parametrize("name", HAHN)
def test_hahn_designs_follow_their_formulas(name: str) -> None:
    mu_kind, tau_kind = name.split("_")[1:]
    trial = simulate(name, 2000, seed=11)
    data = trial.data
    x1, x2, x3, x4 = (data[c].to_numpy() for c in ("x1", "x2", "x3", "x4"))
    assert isinstance(data["x5"].dtype, pd.CategoricalDtype)
    assert trial.categorical == ("x5",)
    assert list(data["x5"].cat.categories) == [1, 2, 3]
    x5 = data["x5"].astype(int).to_numpy()
    assert set(np.unique(x4)) == {0.0, 1.0} and set(np.unique(x5)) == {1, 2, 3}
    g = np.select([x5 == 1, x5 == 2, x5 == 3], [2.0, -1.0, -4.0])
    mu = 1 + g + x1 * x3 if mu_kind == "linear" else -6 + g + 6 * np.abs(x3 - 1)
    tau = np.full(len(data), 3.0) if tau_kind == "homogeneous" else 1 + 2 * x2 * x4
    np.testing.assert_allclose(trial.mu0, mu, atol=1e-12)
    np.testing.assert_allclose(trial.tau, tau, atol=1e-12)
    # pi = 0.8 Phi(3 mu / sd(mu) - 0.5 x1) + 0.05 + u / 10, so the remainder u / 10 is U(0, 0.1):
    # its mean over 2000 patients is 0.05 with sd 0.1 / sqrt(12 * 2000) = 0.00065; allow 5 sd.
    u10 = trial.propensity.to_numpy() - 0.8 * ndtr(3 * mu / np.std(mu, ddof=1) - 0.5 * x1) - 0.05
    assert u10.min() >= 0.0 and u10.max() <= 0.1
    assert abs(u10.mean() - 0.05) < 5 * 0.1 / np.sqrt(12 * 2000)
    # y - mu - tau * t is the N(0, 1) noise: its sd over 2000 patients is 1 +- 0.016; allow 5 sd.
    residual = data["y"] - mu - tau * data["t"]
    assert abs(residual.std() - 1.0) < 5 / np.sqrt(2 * 2000)


def test_hahn2020_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`mu`"):
        hahn2020(50, 0, mu="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`tau`"):
        hahn2020(50, 0, tau="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`n`"):
        hahn2020(1, 0)
    with pytest.raises(TypeError, match="`n`"):
        hahn2020(50.0, 0)  # type: ignore[arg-type]


def test_multisite_structure() -> None:
    trial = multisite_rct(4000, seed=5)
    data = trial.data
    assert trial.site == "site" and trial.covariates == tuple(f"x{k}" for k in range(1, 7))
    sizes = data["site"].value_counts()
    assert len(sizes) == 20 and sizes.min() >= 5 and sizes.max() > 2 * sizes.min()
    assert (trial.propensity == 0.5).all()
    sites = pd.get_dummies(data["site"]).to_numpy(dtype=float)
    design = np.column_stack([sites, data[list(trial.covariates)].to_numpy()])
    # The effect is exactly linear in x within site: site intercepts + (0.5, -0.4, 0, ...).
    coef, *_ = np.linalg.lstsq(design, trial.tau.to_numpy(), rcond=None)
    np.testing.assert_allclose(design @ coef, trial.tau, atol=1e-9)
    np.testing.assert_allclose(coef[20:], [0.5, -0.4, 0, 0, 0, 0], atol=1e-9)
    # The prognosis is mostly but not exactly linear (population R^2 about 0.90).
    coef, *_ = np.linalg.lstsq(design, trial.mu0.to_numpy(), rcond=None)
    r_squared = 1 - np.var(trial.mu0.to_numpy() - design @ coef) / np.var(trial.mu0.to_numpy())
    assert 0.8 < r_squared < 0.97
    # Heterogeneity: sd(tau) = sqrt(0.29 + 0.09) = 0.62 in the population; one trial's 20
    # site effects make it vary, so only a wide band is checked.
    assert 0.45 < trial.tau.std() < 0.8


def test_multisite_linear_prognosis_and_arguments() -> None:
    trial = multisite_rct(300, seed=2, nonlinearity=0.0, n_sites=6)
    sites = pd.get_dummies(trial.data["site"]).to_numpy(dtype=float)
    design = np.column_stack([sites, trial.X.to_numpy()])
    coef, *_ = np.linalg.lstsq(design, trial.mu0.to_numpy(), rcond=None)
    np.testing.assert_allclose(design @ coef, trial.mu0, atol=1e-9)
    kwargs = trial.fit_kwargs()
    assert kwargs["X"].columns.tolist() == list(trial.covariates)
    assert kwargs["site"].equals(trial.data["site"])
    with pytest.raises(ValueError, match="`n` must be at least 100"):
        multisite_rct(99, seed=0)
    with pytest.raises(ValueError, match="`modifiers`"):
        multisite_rct(200, seed=0, p=3, modifiers=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="`rho`"):
        multisite_rct(200, seed=0, rho=1.0)
    with pytest.raises(ValueError, match="`noise_sd`"):
        multisite_rct(200, seed=0, noise_sd=float("nan"))


def test_simulated_trial_checks_its_parts() -> None:
    trial = hahn2020(30, seed=0)
    with pytest.raises(ValueError, match="lacks the columns"):
        dataclasses.replace(trial, outcome="missing")
    with pytest.raises(ValueError, match="`tau` must be indexed"):
        dataclasses.replace(trial, tau=trial.tau.reset_index(drop=True))
    with pytest.raises(ValueError, match="categorical"):
        dataclasses.replace(trial, categorical=("x9",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        trial.name = "other"  # type: ignore[misc]
