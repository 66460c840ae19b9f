"""Tests for itelib.calibration.metrics against closed forms and by properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from itelib.calibration import (
    CalibrationMetrics,
    ate_error,
    coverage,
    crps,
    interval_width,
    metrics,
    pit,
    sqrt_pehe,
)

LEVELS = (0.5, 0.8, 0.9, 0.95)


def _normal_crps(mean: np.ndarray, sd: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mean, sd^2) at y (Gneiting & Raftery 2007, eq. 21)."""
    z = (y - mean) / sd
    return sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def _brute_crps(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """O(S^2) energy form over all pairs: E|X - y| - 0.5 E|X - X'|."""
    first = np.abs(draws - y).mean(axis=0)
    pairs = np.abs(draws[:, None, :] - draws[None, :, :]).mean(axis=(0, 1))
    return first - 0.5 * pairs


def _true_posterior(n: int, s: int, seed: int) -> tuple[np.ndarray, ...]:
    """S draws from per-patient normal posteriors, truth drawn from them, their means and sds."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(0.0, 2.0, size=n)
    sd = rng.uniform(0.5, 2.0, size=n)
    truth = mean + sd * rng.standard_normal(n)
    draws = mean + sd * rng.standard_normal((s, n))
    return draws, truth, mean, sd


# --- closed-form cases -------------------------------------------------------------------------


def test_sqrt_pehe_and_ate_error_closed_form() -> None:
    truth = np.array([1.0, -2.0, 0.5, 3.0])
    assert sqrt_pehe(truth + np.array([3.0, -4.0, 3.0, -4.0]), truth) == pytest.approx(
        np.sqrt(12.5)
    )
    # symmetric draws around truth + 0.25: posterior mean is exactly truth + 0.25
    draws = np.stack([truth + 0.25 - 1.0, truth + 0.25, truth + 0.25 + 1.0])
    assert sqrt_pehe(draws, truth) == pytest.approx(0.25)
    assert ate_error(draws, truth) == pytest.approx(0.25)
    assert ate_error(truth - 0.5, truth) == pytest.approx(-0.5)
    assert ate_error(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == pytest.approx(2.0)


def test_crps_of_a_point_mass_is_the_absolute_error() -> None:
    x = np.array([0.0, 1.5, -2.0, 10.0])
    y = np.array([1.0, 1.5, 3.0, -1.0])
    np.testing.assert_allclose(crps(x[None, :], y, per_patient=True), np.abs(x - y))
    np.testing.assert_allclose(crps(np.tile(x, (7, 1)), y, per_patient=True), np.abs(x - y))
    assert crps(np.tile(x, (7, 1)), y) == pytest.approx(np.abs(x - y).mean())


def test_crps_of_normal_draws_matches_the_closed_form() -> None:
    n, s = 200, 4000
    draws, truth, mean, sd = _true_posterior(n, s, seed=3)
    exact = _normal_crps(mean, sd, truth)
    # The empirical-CDF CRPS has expectation exact + sd / (sqrt(pi) S) (V-statistic pairs);
    # its Monte Carlo sd per patient is below sd * sqrt(1 + z^2) / sqrt(S) <= 2 * 4 / 63 = 0.13
    # for these patients, so the mean over 200 independent patients has sd < 0.0090 and the
    # per-patient error is checked against 5 of its own sds.
    got = crps(draws, truth, per_patient=True)
    bias = sd / (np.sqrt(np.pi) * s)
    per_patient_sd = sd * np.sqrt(1 + ((truth - mean) / sd) ** 2) / np.sqrt(s)
    assert np.all(np.abs(got - exact - bias) < 5 * per_patient_sd)
    assert abs(got.mean() - exact.mean()) < 5 * np.sqrt(np.sum(per_patient_sd**2)) / n
    assert crps(draws, truth) == pytest.approx(got.mean())


def test_crps_of_normal_quantile_draws_is_close_to_exact() -> None:
    # Deterministic "draws" at the normal quantiles (i - 0.5) / S: no Monte Carlo noise, only
    # the discretization of the forecast, which is below 1e-4 sd here (7e-5 sd at z = -4).
    s = 2000
    grid = stats.norm.ppf((np.arange(1, s + 1) - 0.5) / s)
    mean, sd = np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.5, 3.0])
    y = np.array([0.3, -1.0, 4.0])
    got = crps(mean + sd * grid[:, None], y, per_patient=True)
    assert np.all(np.abs(got - _normal_crps(mean, sd, y)) < 1e-4 * sd)


def test_coverage_of_the_true_posterior_is_nominal() -> None:
    n, s = 4000, 1000
    draws, truth, *_ = _true_posterior(n, s, seed=1)
    got = coverage(draws, truth, LEVELS)
    assert list(got) == list(LEVELS)
    for level, share in got.items():
        # Each patient is covered independently with probability ~level, so the share has
        # binomial sd sqrt(level (1 - level) / n) <= 0.0079; band: 4 sd, plus 2 / S for the
        # interpolated empirical quantiles of S draws (expected coverage ~ level (S-1)/(S+1)).
        band = 4 * np.sqrt(level * (1 - level) / n) + 2 / s
        assert abs(share - level) < band, (level, share)


def test_coverage_of_an_overconfident_posterior_is_low() -> None:
    draws, truth, *_ = _true_posterior(2000, 400, seed=2)
    shrunk = draws.mean(axis=0) + 0.5 * (draws - draws.mean(axis=0))
    # the true coverage of a half-width normal 95 % interval is 2 Phi(0.98) - 1 = 0.67
    assert coverage(shrunk, truth, [0.95])[0.95] < 0.75
    assert metrics(shrunk, truth).pit_ks > 0.1


def test_interval_width_closed_form() -> None:
    # Equally spaced draws 0, c/S, ..., c: linearly interpolated quantiles are exact.
    s, scale = 100, np.array([1.0, 2.0, 0.5])
    draws = np.linspace(0.0, 1.0, s + 1)[:, None] * scale
    for level in LEVELS:
        assert interval_width(draws, level) == pytest.approx(level * scale.mean())
    # Normal draws: width 2 * 1.96 * sd; the 2.5 % quantile of S = 4000 draws has sd
    # sqrt(0.025 * 0.975 / S) / phi(1.96) * sd = 0.042 sd, so the width's sd over 500
    # patients is < 0.042 * sqrt(2) * 2 / sqrt(500) = 0.0054; allow 5 sd.
    rng = np.random.default_rng(4)
    sd = rng.uniform(0.5, 2.0, size=500)
    draws = sd * rng.standard_normal((4000, 500))
    expected = 2 * stats.norm.ppf(0.975) * sd.mean()
    assert interval_width(draws) == pytest.approx(expected, abs=0.027)


def test_pit_closed_form_and_ties() -> None:
    draws = np.tile(np.arange(10.0)[:, None], (1, 4))  # draws 0, 1, ..., 9 for each patient
    truth = np.array([2.5, 3.0, -1.0, 100.0])
    np.testing.assert_allclose(pit(draws, truth), [0.3, 0.35, 0.0, 1.0])
    randomized = pit(draws, truth, rng=np.random.default_rng(0))
    assert 0.3 <= randomized[1] <= 0.4
    np.testing.assert_allclose(randomized[[0, 2, 3]], [0.3, 0.0, 1.0])
    np.testing.assert_array_equal(randomized, pit(draws, truth, rng=np.random.default_rng(0)))
    # all draws tied with the truth: mid-rank 0.5, randomized PIT ~ U(0, 1)
    tied = np.zeros((5, 3000))
    assert np.all(pit(tied, np.zeros(3000)) == 0.5)
    u = pit(tied, np.zeros(3000), rng=np.random.default_rng(1))
    assert stats.kstest(u, "uniform").pvalue > 0.001


def test_pit_of_the_true_posterior_is_uniform() -> None:
    n, s = 2000, 500
    draws, truth, *_ = _true_posterior(n, s, seed=5)
    values = pit(draws, truth)
    result = metrics(draws, truth)
    assert result.pit_ks == pytest.approx(stats.kstest(values, "uniform").statistic)
    # 99 % point of the KS distance is 1.63 / sqrt(n); PIT from S draws is discrete (+1/S).
    assert result.pit_ks < 1.63 / np.sqrt(n) + 1 / s


def test_metrics_agrees_with_the_single_functions() -> None:
    draws, truth, *_ = _true_posterior(300, 200, seed=6)
    result = metrics(draws, truth)
    assert isinstance(result, CalibrationMetrics)
    assert result.sqrt_pehe == pytest.approx(sqrt_pehe(draws, truth))
    assert result.ate_error == pytest.approx(ate_error(draws, truth))
    assert result.coverage == pytest.approx(coverage(draws, truth))
    assert result.width95 == pytest.approx(interval_width(draws, 0.95))
    assert result.crps == pytest.approx(crps(draws, truth))
    assert set(result.coverage) == set(LEVELS)


def test_leading_sample_dims_are_flattened() -> None:
    draws, truth, *_ = _true_posterior(50, 400, seed=7)
    chains = draws.reshape(4, 100, 50)  # (chain, draw, patient)
    flat, nested = metrics(draws, truth), metrics(chains, pd.Series(truth))
    assert flat.coverage == nested.coverage
    for field in ("sqrt_pehe", "ate_error", "width95", "crps", "pit_ks"):
        assert getattr(flat, field) == pytest.approx(getattr(nested, field), rel=1e-12)
    np.testing.assert_array_equal(pit(draws, truth), pit(chains, truth))


# --- input validation ----------------------------------------------------------------------------


def test_validation_names_the_argument() -> None:
    draws, truth = np.zeros((10, 3)), np.zeros(3)
    with pytest.raises(ValueError, match="`truth`.*1-d"):
        crps(draws, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="`draws` must have shape"):
        coverage(np.zeros(3), truth)
    with pytest.raises(ValueError, match="`draws` has 4 patients.*`truth` has 3"):
        pit(np.zeros((10, 4)), truth)
    bad = draws.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="`draws` contains 1 non-finite"):
        metrics(bad, truth)
    with pytest.raises(ValueError, match="`truth` contains 1 non-finite"):
        crps(draws, np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match="`estimate` has shape"):
        sqrt_pehe(np.zeros(4), truth)
    with pytest.raises(ValueError, match="`draws_or_estimate`"):
        ate_error(np.zeros((5, 4)), truth)
    with pytest.raises(ValueError, match="`levels`"):
        coverage(draws, truth, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match="`levels`"):
        coverage(draws, truth, levels=())
    with pytest.raises(ValueError, match="`level`"):
        interval_width(draws, level=0.0)
    with pytest.raises(ValueError, match="`draws` must be a numeric"):
        crps([["a", "b", "c"]], truth)
    with pytest.raises(TypeError, match="`rng`"):
        pit(draws, truth, rng=0)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------------

_values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def _draws_and_truth(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    s = draw(st.integers(min_value=1, max_value=30))
    n = draw(st.integers(min_value=1, max_value=6))
    # a small value pool makes ties between draws and with the truth common
    elements = st.one_of(_values, st.sampled_from([-1.0, 0.0, 1.0]))
    draws = draw(hnp.arrays(np.float64, (s, n), elements=elements))
    truth = draw(hnp.arrays(np.float64, (n,), elements=elements))
    return draws, truth


@settings(max_examples=150, deadline=None)
@given(_draws_and_truth())
def test_crps_is_nonnegative_and_equals_the_pairwise_form(case: tuple) -> None:
    draws, truth = case
    got = crps(draws, truth, per_patient=True)
    assert np.all(got >= 0)
    scale = 1.0 + np.abs(draws).max() + np.abs(truth).max()
    np.testing.assert_allclose(got, _brute_crps(draws, truth), rtol=1e-9, atol=1e-12 * scale)
    assert np.all(got <= np.abs(draws - truth).mean(axis=0) + 1e-12 * scale)


@settings(max_examples=150, deadline=None)
@given(
    _draws_and_truth(),
    st.lists(st.floats(min_value=0.01, max_value=0.99), min_size=1, max_size=6),
)
def test_coverage_and_width_are_monotone_in_level(case: tuple, levels: list[float]) -> None:
    draws, truth = case
    levels = sorted(set(levels))
    shares = coverage(draws, truth, levels)
    values = [shares[level] for level in levels]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values)
    widths = [interval_width(draws, level) for level in levels]
    assert all(b >= a - 1e-9 * (1 + abs(a)) for a, b in zip(widths, widths[1:], strict=False))


@settings(max_examples=150, deadline=None)
@given(_draws_and_truth(), st.integers(min_value=0, max_value=2**32 - 1))
def test_pit_lies_in_the_unit_interval(case: tuple, seed: int) -> None:
    draws, truth = case
    for values in (pit(draws, truth), pit(draws, truth, rng=np.random.default_rng(seed))):
        assert values.shape == truth.shape
        assert np.all((values >= 0) & (values <= 1))
    below = (draws < truth).mean(axis=0)
    at_or_below = (draws <= truth).mean(axis=0)
    mid = pit(draws, truth)
    assert np.all((below <= mid) & (mid <= at_or_below))
