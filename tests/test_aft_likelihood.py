"""The JAX AFT survival pieces (itelib.models.survival) against SciPy and the NumPy simulator.

References: ``scipy.stats.weibull_min`` / ``lognorm`` (log-likelihood, float64) and
``itelib.simulate.aft`` (survival and RMST, whose closed forms its own tests check against
quadrature). Float32 results are compared with the float64 computation at the same
float32-rounded inputs, so the tolerance only has to cover float32 arithmetic.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, Predictive, log_likelihood
from scipy import stats

from itelib.models.survival import (
    FAMILIES,
    CensoredAFT,
    aft_log_likelihood,
    effect_scales,
    rmst,
    survival_probability,
)
from itelib.simulate import aft

EPS32 = float(np.finfo(np.float32).eps)


def _scipy_law(eta: np.ndarray, sigma: np.ndarray, family: str):
    if family == "weibull":
        return stats.weibull_min(c=1.0 / sigma, scale=np.exp(eta))
    return stats.lognorm(s=sigma, scale=np.exp(eta))


def _random_points(seed: int, n: int = 500):
    """log time, event, eta, sigma with residuals z = (log t - eta)/sigma within about ±6."""
    rng = np.random.default_rng(seed)
    eta = rng.normal(0.0, 3.0, n)
    sigma = rng.uniform(0.2, 2.0, n)
    log_time = eta + sigma * rng.normal(0.0, 2.0, n)
    event = rng.integers(0, 2, n)
    return log_time, event, eta, sigma


@pytest.mark.parametrize("family", FAMILIES)
def test_log_likelihood_equals_scipy_in_float64(family):
    log_time, event, eta, sigma = _random_points(seed=1)
    with jax.enable_x64(True):
        got = np.asarray(aft_log_likelihood(log_time, event, eta, sigma, family))
    law = _scipy_law(eta, sigma, family)
    time = np.exp(log_time)
    want = np.where(event == 1, law.logpdf(time), law.logsf(time))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def _float32_tail_grid(family: str):
    """Residuals far into both tails: Weibull to z = ±60 (log S = -e^60 ~ -1e26 is still
    finite in float32), log-normal to z = ±150."""
    z_max = 60.0 if family == "weibull" else 150.0
    z = np.concatenate([np.linspace(-z_max, z_max, 241), [-1e-3, 0.0, 1e-3]])
    sigma = np.array([0.2, 1.0, 2.0])
    eta = np.array([-10.0, 0.0, 10.0])
    z, sigma, eta, event = (a.ravel() for a in np.meshgrid(z, sigma, eta, [0, 1], indexing="ij"))
    log_time = (eta + sigma * z).astype(np.float32)
    return log_time, event, eta.astype(np.float32), sigma.astype(np.float32)


@pytest.mark.parametrize("family", FAMILIES)
def test_log_likelihood_float32_is_finite_and_accurate_in_the_tails(family):
    log_time, event, eta, sigma = _float32_tail_grid(family)
    got = np.asarray(aft_log_likelihood(log_time, event, eta, sigma, family))
    assert got.dtype == np.float32
    assert np.isfinite(got).all()
    with jax.enable_x64(True):
        args = [np.float64(a) for a in (log_time, event, eta, sigma)]
        want = np.asarray(aft_log_likelihood(*args, family))
        # d ell / d log t = (d ell / dz) / sigma - event: the condition number of ell in z.
        grad = jax.vmap(jax.grad(aft_log_likelihood), (0, 0, 0, 0, None))(*args, family)
        slope = np.abs(args[3] * (np.asarray(grad) + args[1]))
    z = np.abs((args[0] - args[2]) / args[3])
    # z carries a rounding error ~2 eps |z| (a subtraction and a division, exact inputs), which
    # moves ell by |d ell/dz| times that; the rest are a few roundings of terms of size |ell|,
    # |log t|, |log sigma|. The worst seen is 0.63 eps times this scale; 4 eps leaves room.
    scale = 1.0 + np.abs(want) + z * slope + np.abs(args[0]) + np.abs(np.log(args[3]))
    assert np.all(np.abs(got - want) <= 4 * EPS32 * scale)
    # NUTS needs the gradient there too.
    grads = jax.vmap(jax.grad(aft_log_likelihood, (2, 3)), (0, 0, 0, 0, None))(
        log_time, event, eta, sigma, family
    )
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_lognormal_log_survival_matches_the_asymptotic_series_in_float32():
    """log Phi(-z) = -z^2/2 - log z - log(2 pi)/2 + log(1 - 1/z^2 + 3/z^4 - 15/z^6) + O(z^-8)
    (Abramowitz & Stegun 26.2.12): independent of SciPy; the O(105/z^8) remainder is < 2e-10
    for z >= 30."""
    z = np.array([30.0, 50.0, 100.0, 1000.0])
    asymptotic = (
        -0.5 * z**2
        - np.log(z)
        - 0.5 * math.log(2 * math.pi)
        + np.log1p(-1 / z**2 + 3 / z**4 - 15 / z**6)
    )
    # log time = z, eta = 0, sigma = 1, censored: ell = log Phi(-z).
    got = aft_log_likelihood(jnp.float32(z), 0, jnp.float32(0.0), jnp.float32(1.0), "lognormal")
    np.testing.assert_allclose(np.asarray(got), asymptotic, rtol=4 * EPS32)


def _grid():
    """eta in [-10, 10], sigma in [0.2, 2], times around and far from e^eta."""
    eta, sigma, factor = np.meshgrid(
        np.linspace(-10.0, 10.0, 21),
        [0.2, 0.35, 0.5, 1.0, 1.5, 2.0],
        [1e-4, 0.5, 0.999, 1.0, 1.001, 2.0, 1e4],
        indexing="ij",
    )
    return eta.ravel(), sigma.ravel(), np.exp(eta.ravel()) * factor.ravel()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("horizon", [1e-3, 1.0, 1e3, "near e^eta"])
def test_rmst_equals_the_numpy_closed_form(family, horizon):
    """Both the Weibull branches (x < 1 series, x >= 1 incomplete gamma) and the boundary."""
    eta, sigma, near = _grid()
    horizon = near if horizon == "near e^eta" else np.full_like(eta, horizon)
    with jax.enable_x64(True):
        got = np.asarray(rmst(eta, sigma, horizon, family))
    np.testing.assert_allclose(got, aft.restricted_mean(horizon, eta, sigma, family), rtol=1e-10)
    eta32, sigma32, horizon32 = (a.astype(np.float32) for a in (eta, sigma, horizon))
    got32 = np.asarray(rmst(eta32, sigma32, horizon32, family))
    want32 = aft.restricted_mean(np.float64(horizon32), np.float64(eta32), sigma32, family)
    assert got32.dtype == np.float32 and np.isfinite(got32).all()
    # RMST is well conditioned (a relative change in L or e^eta moves it by at most as much
    # relatively); the worst seen on this grid is 1.1e-6.
    np.testing.assert_allclose(got32, want32, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_rmst_gradient_matches_finite_differences(family):
    """The Weibull branch switch (jnp.where with safe arguments) leaves exact, finite
    gradients; central differences with h = 1e-6 are good to ~1e-9 relative here."""
    eta, sigma, horizon = _grid()
    with jax.enable_x64(True):
        grad = jax.vmap(jax.grad(rmst, (0, 1)), (0, 0, 0, None))(eta, sigma, horizon, family)
        h = 1e-6
        for i, g in enumerate(grad):
            up = [eta, sigma]
            down = [eta, sigma]
            up[i], down[i] = up[i] + h, up[i] - h
            numeric = (rmst(*up, horizon, family) - rmst(*down, horizon, family)) / (2 * h)
            scale = np.asarray(rmst(eta, sigma, horizon, family))
            assert np.max(np.abs(np.asarray(g - numeric)) / scale) < 1e-7
    grad32 = jax.vmap(jax.grad(rmst, (0, 1)), (0, 0, 0, None))(
        *(a.astype(np.float32) for a in (eta, sigma, horizon)), family
    )
    assert all(np.isfinite(np.asarray(g)).all() for g in grad32)


@pytest.mark.parametrize("family", FAMILIES)
def test_survival_probability_equals_the_numpy_closed_form(family):
    eta, sigma, time = _grid()
    with jax.enable_x64(True):
        got = np.asarray(survival_probability(time, eta, sigma, family))
    want = aft.survival_probability(time, eta, sigma, family)
    # Compared on the log scale: down at S ~ 1e-150 a relative 1e-10 in S is 1e-12 of log S,
    # below the float64 rounding of z times |d log S/dz| there; where S underflows, so must we.
    positive = want > 0.0
    np.testing.assert_allclose(np.log(got[positive]), np.log(want[positive]), rtol=1e-10)
    assert np.all(got[~positive] == 0.0)
    eta32, sigma32, time32 = (a.astype(np.float32) for a in (eta, sigma, time))
    got32 = np.asarray(survival_probability(time32, eta32, sigma32, family))
    want32 = aft.survival_probability(np.float64(time32), np.float64(eta32), sigma32, family)
    assert got32.dtype == np.float32 and np.isfinite(got32).all()
    # S is ill conditioned in its upper tail: log S moves by |d log S/dz| per unit of z, and z
    # carries the float32 rounding of log t (eps |log t| / sigma) and of the subtraction. So
    # compare where S > 1e-30 (float32 normal range) with that condition number in the bound.
    keep = want32 > 1e-30
    z = (np.log(np.float64(time32)) - eta32) / sigma32
    dlogs_dz = np.exp(z) if family == "weibull" else np.abs(z) + 1.0
    bound = 8 * EPS32 * (1.0 + dlogs_dz * (np.abs(z) + np.abs(np.log(time32)) / sigma32))
    rel = np.abs(got32[keep] / want32[keep] - 1.0)
    assert np.all(rel <= bound[keep]), float(np.max(rel / bound[keep]))


@pytest.mark.parametrize("family", FAMILIES)
def test_effect_scales_over_a_draws_by_patients_grid_jit_and_vmap(family):
    rng = np.random.default_rng(3)
    draws, patients = 40, 25
    eta0 = jnp.asarray(rng.normal(0.0, 1.0, (draws, patients)), dtype=jnp.float32)
    eta1 = eta0 + jnp.asarray(rng.normal(0.2, 0.3, (draws, patients)), dtype=jnp.float32)
    sigma = jnp.asarray(rng.uniform(0.3, 1.5, draws), dtype=jnp.float32)
    horizon, t_eval = 2.0, 1.0

    traces = []

    def scales(e0, e1, s):
        traces.append(1)
        return effect_scales(e0, e1, s[:, None], family, horizon, t_eval)

    jitted = jax.jit(scales)
    got = jitted(eta0, eta1, sigma)
    jitted(eta0 + 1.0, eta1 + 1.0, sigma)  # same shapes: no second trace
    assert len(traces) == 1
    assert all(a.shape == (draws, patients) for a in got)
    want = aft.restricted_mean(horizon, np.float64(eta1), np.float64(sigma)[:, None], family)
    want = want - aft.restricted_mean(horizon, np.float64(eta0), np.float64(sigma)[:, None], family)
    np.testing.assert_allclose(got.rmst_difference, want, rtol=1e-4, atol=1e-5)
    s1 = aft.survival_probability(t_eval, np.float64(eta1), np.float64(sigma)[:, None], family)
    s0 = aft.survival_probability(t_eval, np.float64(eta0), np.float64(sigma)[:, None], family)
    np.testing.assert_allclose(got.survival_difference, s1 - s0, atol=1e-6)
    np.testing.assert_allclose(got.time_ratio, np.exp(np.float64(eta1 - eta0)), rtol=1e-6)

    # vmap over draws of the per-patient log-likelihood equals broadcasting it.
    log_time = jnp.asarray(rng.normal(0.0, 1.0, patients), dtype=jnp.float32)
    event = jnp.asarray(rng.integers(0, 2, patients))
    per_draw = jax.jit(
        jax.vmap(lambda e, s: aft_log_likelihood(log_time, event, e, s, family), (0, 0))
    )(eta0, sigma)
    broadcast = aft_log_likelihood(log_time, event, eta0, sigma[:, None], family)
    # Compiled and eager code may round the O(1) terms of ell in another order: atol of a few
    # float32 ulps of 1.
    np.testing.assert_allclose(per_draw, broadcast, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: aft_log_likelihood(0.0, 1, 0.0, 1.0, "exponential"),
        lambda: rmst(0.0, 1.0, 1.0, "Weibull"),
        lambda: survival_probability(1.0, 0.0, 1.0, "cox"),
        lambda: effect_scales(0.0, 0.1, 1.0, "gamma", 1.0, 1.0),
        lambda: CensoredAFT(0.0, 1.0, "loglogistic"),
    ],
)
def test_bad_family_raises_naming_the_argument(call):
    with pytest.raises(ValueError, match="`family`"):
        call()


@pytest.mark.parametrize("family", FAMILIES)
def test_censored_aft_sample_follows_the_law(family):
    draws = CensoredAFT(jnp.float32(0.5), jnp.float32(0.7), family).sample(
        jax.random.key(0), (20_000,)
    )
    # Seeded; a correct sampler fails this Kolmogorov–Smirnov test with probability 1e-4.
    law = _scipy_law(np.float64(0.5), np.float64(0.7), family)
    assert stats.kstest(np.asarray(draws, np.float64), law.cdf).pvalue > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_censored_aft_log_prob_is_the_likelihood_at_log_time(family):
    log_time, event, eta, sigma = _random_points(seed=2, n=50)
    with jax.enable_x64(True):
        law = CensoredAFT(eta, sigma, family, event, validate_args=True)
        got = np.asarray(law.log_prob(np.exp(log_time)))
        want = np.asarray(aft_log_likelihood(log_time, event, eta, sigma, family))
    assert law.batch_shape == (50,)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="sigma"):
        CensoredAFT(eta, -sigma, family, event, validate_args=True)


def _survival_model(x, time, event, family):
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 5.0))
    slope = numpyro.sample("slope", dist.Normal(0.0, 5.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("patient", x.shape[0]):
        numpyro.sample("time", CensoredAFT(intercept + slope * x, sigma, family, event), obs=time)


def _censored_trial(family: str, n: int, seed: int):
    """eta = 1 + 0.5 x, sigma = 0.6, exponential censoring calibrated to 30 %."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    eta = 1.0 + 0.5 * x
    population = aft.draw_event_times(rng, 1.0 + 0.5 * rng.normal(0.0, 1.0, 2**16), 0.6, family)
    rate = aft.calibrate_censoring_rate(population, 0.3)
    event_time = aft.draw_event_times(rng, eta, 0.6, family)
    censor_time = rng.exponential(1.0 / rate, n)
    event = event_time <= censor_time
    return x, np.minimum(event_time, censor_time), event


@pytest.mark.parametrize("family", FAMILIES)
def test_nuts_fit_recovers_the_coefficients_and_sigma(family):
    x, time, event = _censored_trial(family, n=2000, seed=11)
    assert 0.25 < 1.0 - event.mean() < 0.35
    mcmc = MCMC(NUTS(_survival_model), num_warmup=500, num_samples=500, progress_bar=False)
    mcmc.run(jax.random.key(7), jnp.asarray(x), jnp.asarray(time), jnp.asarray(event), family)
    samples = mcmc.get_samples()
    # With n = 2000 the posterior is close to normal (Bernstein–von Mises), so
    # (mean - truth) / sd is about N(0, 1): |.| > 4 has probability 6e-5 per parameter; the
    # Monte Carlo error of the mean (sd / sqrt(ESS), ESS > 100) adds < 0.1 sd.
    for name, truth in {"intercept": 1.0, "slope": 0.5, "sigma": 0.6}.items():
        draws = np.asarray(samples[name])
        assert abs(draws.mean() - truth) < 4 * draws.std(), (name, draws.mean(), draws.std())
    # The observed site is a real one: per-patient log-likelihood (LOO) and predictive draws.
    per_patient = log_likelihood(_survival_model, samples, x, time, event, family)["time"]
    assert per_patient.shape == (500, x.size) and np.isfinite(per_patient).all()
    predictive = Predictive(_survival_model, samples, return_sites=["time"])
    drawn = predictive(jax.random.key(8), x, None, event, family)["time"]
    assert drawn.shape == (500, x.size) and np.all(np.asarray(drawn) > 0)
