"""The PyMC front end: the same model as the NumPyro one (exactly), and the same posterior."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pymc
import pytest
from arviz_stats.base import array_stats
from numpyro.distributions import biject_to
from numpyro.handlers import seed, trace
from numpyro.infer.util import log_density, potential_energy

from itelib import ConvergenceWarning, HierarchicalITE
from itelib.data import TrialData
from itelib.inference.nuts import NUTSConfig, sample_nuts
from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.design import model_data, outcome_scale
from itelib.models.hierarchical.features import FeatureMap
from itelib.models.hierarchical.priors import HierarchicalPriors
from itelib.models.hierarchical.pymc_backend import build_pymc_model, sample_pymc
from itelib.simulate import binary_multisite_rct, multisite_rct


class Case(NamedTuple):
    trial_data: TrialData
    features: FeatureMap
    spec: m.ModelSpec
    data: m.ModelData
    offset: float  # binary: logit of the training event rate


def _case(
    outcome: str,
    likelihood: str,
    *,
    seed_: int = 11,
    sites: bool = True,
    covariates: bool = True,
    prognosis: str = "linear",
    modifiers: str = "linear",
) -> Case:
    """Model inputs built exactly as ``HierarchicalITE.fit`` builds them."""
    if outcome == "binary":
        trial = binary_multisite_rct(n=400, seed=seed_, n_sites=5)
    else:
        trial = multisite_rct(n=200, seed=seed_, n_sites=5)
    kw = trial.fit_kwargs()
    X = kw["X"] if covariates else kw["X"].iloc[:, :0]
    td = TrialData.from_arrays(kw["Y"], kw["T"], X=X, site=kw["site"] if sites else None)
    y_center, y_scale = outcome_scale(td.y, outcome)
    X_prog = td.X  # no propensity score: a randomized trial
    features = FeatureMap.fit(
        X_prog, prognosis=prognosis, modifiers=modifiers, n_basis=6, n_modifier_columns=td.p
    )
    spec = m.ModelSpec(
        p=X_prog.shape[1],
        n_sites=td.n_sites,
        priors=HierarchicalPriors(),
        likelihood=likelihood,
        outcome=outcome,
        q=td.p + (len(features.pairs) if features.modifier_pairs else 0),
        n_smooth=len(features.smooth),
        n_basis=features.n_basis,
        n_effect_smooth=len(features.effect_smooth),
    )
    data = model_data(td, X_prog, spec, features, y_center, y_scale)
    return Case(td, features, spec, data, y_center)


# -- (1) the exact guard: equal log densities ------------------------------------------------
LOGP_CASES = {
    "continuous-rows": dict(outcome="continuous", likelihood="rows"),
    "continuous-sufficient": dict(outcome="continuous", likelihood="sufficient"),
    "binary": dict(outcome="binary", likelihood="rows"),
    "continuous-sufficient-additive-interactions": dict(
        outcome="continuous",
        likelihood="sufficient",
        prognosis="additive",
        modifiers="interactions",
    ),
    "binary-additive-interactions-no-sites": dict(
        outcome="binary",
        likelihood="rows",
        prognosis="additive",
        modifiers="interactions",
        sites=False,
    ),
    "continuous-sufficient-smooth-effects": dict(
        outcome="continuous", likelihood="sufficient", modifiers="additive_interactions"
    ),
    "continuous-rows-smooth-effects": dict(
        outcome="continuous", likelihood="rows", modifiers="additive"
    ),
    "binary-smooth-effects": dict(
        outcome="binary", likelihood="rows", modifiers="additive_interactions", sites=False
    ),
    "continuous-sufficient-no-sites-no-covariates": dict(
        outcome="continuous", likelihood="sufficient", sites=False, covariates=False
    ),
}


@pytest.mark.parametrize("name", list(LOGP_CASES))
def test_log_density_matches_numpyro(name):
    """At 5 random points, in float64: PyMC's log density equals NumPyro's.

    Checked twice: on the constrained values without Jacobians (``log_density``), and in the
    unconstrained space with Jacobians (``-potential_energy``, what NUTS explores), which also
    pins the transforms (log for every positive variable on both sides). Tolerance: PyTensor's
    "custom" cast policy stores Python floats that are exact in float32 (0.5, 3.0, ...) as
    float32 constants, so constant-folded terms such as ``log(0.5)`` or ``gammaln(0.5)`` carry
    float32 rounding (~1e-8 each; 1.2e-7 in total measured); a real mismatch is O(0.1) or more.
    """
    case = _case(**LOGP_CASES[name])
    model_args = (case.data, case.spec)
    with jax.enable_x64(True):
        numpyro_trace = trace(seed(m.hierarchical_model, 0)).get_trace(*model_args)
        pm_model = build_pymc_model(case.data, case.spec)
        assert isinstance(pm_model, pymc.Model)
        latent = {
            k: s for k, s in numpyro_trace.items() if s["type"] == "sample" and not s["is_observed"]
        }
        deterministic = {k for k, s in numpyro_trace.items() if s["type"] == "deterministic"}
        assert {rv.name for rv in pm_model.free_RVs} == set(latent)
        assert {v.name for v in pm_model.deterministics} == deterministic
        pymc_logps = pm_model.compile_fn(
            [pm_model.logp(jacobian=False), pm_model.logp(jacobian=True)], mode="JAX"
        )
        numpyro_logps = jax.jit(
            lambda x, z: (
                log_density(m.hierarchical_model, model_args, {}, x)[0],
                -potential_energy(m.hierarchical_model, model_args, {}, z),
            )
        )
        rng = np.random.default_rng(sum(map(ord, name)))
        for _ in range(5):
            z = {k: rng.normal(size=np.shape(s["value"])) for k, s in latent.items()}
            x = {k: np.asarray(biject_to(latent[k]["fn"].support)(v)) for k, v in z.items()}
            point = {}
            for rv in pm_model.free_RVs:
                value_name = pm_model.rvs_to_values[rv].name
                # the same transform on both sides: NumPyro's bijection is PyMC's backward map
                log_transformed = value_name == f"{rv.name}_log__"
                expected = np.exp(z[rv.name]) if log_transformed else z[rv.name]
                np.testing.assert_allclose(x[rv.name], expected, rtol=1e-12)
                point[value_name] = z[rv.name]
            np.testing.assert_allclose(
                pymc_logps(point), numpyro_logps(x, z), rtol=1e-12, atol=1e-5
            )


def test_sample_pymc_knows_only_the_hierarchical_model():
    case = _case("continuous", "sufficient")
    with pytest.raises(ValueError, match="hierarchical_model"):
        sample_pymc(jax.random.key(0), lambda data, spec: None, case.data, case.spec, NUTSConfig())


# -- (2) the agreement test: the same posterior from both backends ---------------------------
AGREEMENT_CFG = NUTSConfig(
    num_warmup=500, num_samples=500, num_chains=4, target_accept=0.99, chain_method="parallel"
)


def _patient_effects(result, case: Case) -> np.ndarray:
    """(chain, draw, patient) effects of the training patients, on the model's effect scale."""
    chains, draws = result.params["tau0"].shape
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v.reshape(chains * draws, *v.shape[2:]), jnp.float64)
                  for k, v in result.params.items()}  # fmt: skip
        X = jnp.asarray(case.trial_data.X, jnp.float64)
        Z = jnp.asarray(case.features.modifiers(case.trial_data.X), jnp.float64)
        site = jnp.asarray(case.trial_data.site)
        if case.spec.outcome == "binary":
            prognosis, effect = m.linear_predictors(params, X, site, None, modifiers=Z)
            out = m.risk_difference(prognosis, effect, jnp.asarray(case.offset))
        else:
            out = m.effect_draws(params, X, site, None, modifiers=Z)
    return np.asarray(out).reshape(chains, draws, -1)


@pytest.mark.parametrize(
    ("outcome", "likelihood"), [("continuous", "sufficient"), ("binary", "rows")]
)
def test_backends_agree_on_every_patients_posterior_mean(outcome, likelihood):
    """NumPyro and PyMC give the same per-patient posterior mean effect, within Monte Carlo error.

    The two runs are independent MCMC estimates of one posterior mean, so for each patient
    ``(mean_numpyro - mean_pymc) / sqrt(mcse_numpyro^2 + mcse_pymc^2)`` is ~N(0, 1). Tolerance 4:
    one patient fails falsely with probability 6.3e-5. The 200 (continuous) / 400 (binary)
    patients' effects are functions of ~12 parameters (tau0, 5 site effects, 6 modifiers), so
    the comparisons are strongly dependent: the Bonferroni bound is 1.3% / 2.5%, and simulating
    ``max|Z| > 4`` with the correlation of the patients' draws in these very fits gives 0.34% /
    0.79% (2e5 Gaussian draws), about 1.1% for the two together. Measured here: max |z| = 1.19 /
    2.20. A wrong model (a prior scale off by 2x, a missing term) moves means by many MCSEs.
    """
    case = _case(outcome, likelihood, seed_=3)
    key = jax.random.key(2024)
    numpyro_run = sample_nuts(key, m.hierarchical_model, case.data, case.spec, AGREEMENT_CFG)
    pymc_run = sample_pymc(key, m.hierarchical_model, case.data, case.spec, AGREEMENT_CFG)

    assert not jax.config.jax_enable_x64, "the PyMC backend must not switch JAX to x64 globally"
    assert pymc_run.params.keys() == numpyro_run.params.keys()
    assert pymc_run.stats.keys() == numpyro_run.stats.keys()
    for group in ("params", "stats"):
        ours, theirs = getattr(numpyro_run, group), getattr(pymc_run, group)
        assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}

    means, mcses = [], []
    for run in (numpyro_run, pymc_run):
        effects = _patient_effects(run, case)
        means.append(effects.mean(axis=(0, 1)))
        mcses.append(array_stats.mcse(effects, chain_axis=0, draw_axis=1, method="mean"))
    z = (means[0] - means[1]) / np.hypot(mcses[0], mcses[1])
    worst = int(np.argmax(np.abs(z)))
    assert np.all(np.abs(z) <= 4), (
        f"patient {worst}: numpyro {means[0][worst]:.4f} +- {mcses[0][worst]:.4f}, "
        f"pymc {means[1][worst]:.4f} +- {mcses[1][worst]:.4f} (z = {z[worst]:.2f})"
    )
    # sanity: the comparison is informative (Monte Carlo error well below the posterior spread)
    assert np.median(mcses[1]) < 0.1 * np.median(np.abs(means[1]) + 1e-3)


def test_estimator_backend_pymc_returns_the_same_kind_of_posterior():
    trial = multisite_rct(n=120, seed=9, n_sites=3)
    est = HierarchicalITE(
        backend="pymc", num_warmup=150, num_samples=100, num_chains=2, random_state=1
    )
    with pytest.warns(ConvergenceWarning):  # 200 draws: ESS < 400 by construction
        est.fit(**trial.fit_kwargs())
    post = est.effect()
    assert post.draws().shape == (2, 100, trial.n)
    assert list(post.patient_ids[:2]) == list(trial.data.index[:2])
    assert np.all(np.isfinite(post.draws()))
    with pytest.raises(ValueError, match="backend"):
        HierarchicalITE(backend="stan").fit(**trial.fit_kwargs())
