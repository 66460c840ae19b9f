"""``HierarchicalITE``: per-patient effect posteriors from a hierarchical model, NUTS on JAX."""

from __future__ import annotations

from dataclasses import asdict, replace
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from itelib import _params
from itelib.data import TrialData
from itelib.estimators.base import FitInputs, ITEEstimator
from itelib.estimators.fitted import Fit
from itelib.estimators.sites import unseen_sites
from itelib.estimators.survival_state import (
    fitted_survival,
    restore_survival,
    saved_survival,
)
from itelib.inference.advice import hierarchical_advice
from itelib.inference.blas import single_threaded_blas
from itelib.inference.compile_cache import enable_compilation_cache
from itelib.inference.diagnostics import Diagnostics, diagnose
from itelib.inference.nuts import NUTSConfig, resolve_chain_method, sample_nuts
from itelib.inference.progress import show_progress
from itelib.inference.svi import SVIConfig, VariationalDiagnostics, fit_svi
from itelib.model_check import MAX_ROWS, ModelCheck, check_model
from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.design import (
    LIKELIHOODS,
    TREATMENT_CODINGS,
    choose_likelihood,
    model_data,
    outcome_scale,
    treatment_centre,
)
from itelib.models.hierarchical.features import (
    MODIFIERS,
    PROGNOSIS,
    FeatureMap,
    resolve_options,
)
from itelib.models.hierarchical.local_scales import collapsed_gibbs
from itelib.models.hierarchical.marginal import resolved_precision
from itelib.models.hierarchical.modifiers import exact_modifiers, site_effects
from itelib.models.hierarchical.posterior_tree import check_finite, posterior_tree
from itelib.models.hierarchical.predictive import fitted_outcome
from itelib.models.hierarchical.priors import HierarchicalPriors
from itelib.models.hierarchical.survival_effects import (
    check_survival_options,
    needs_prognosis,
    survival_chunk,
)

__all__ = ["HierarchicalITE"]

_CHUNK = 4096  # patients per compiled effect evaluation
_MONITORED_PATIENTS = 200  # training patients whose effects enter R-hat / ESS
_COEFFICIENT_KEY = 0x636F6566  # folded into the seed: the marginal model's coefficient draws
# target_accept=None: the scales alone (marginal) have no funnels; with every coefficient
# sampled the horseshoe needs 0.995 (see the class docstring).
DEFAULT_TARGET_ACCEPT = {"marginal": 0.9, "sufficient": 0.995, "rows": 0.995}


class HierarchicalITE(ITEEstimator):
    """Hierarchical Bayesian model of individual treatment effects, sampled with NumPyro NUTS.

    For patient ``i`` at site ``s``, on the standardized scale (outcome and covariates centred
    and scaled with the training statistics)::

        y_i = alpha + a_s + x_i·beta + (t_i - e_i)·(tau0 + b_s + z_i·gamma) + eps_i

    with ``eps_i ~ N(0, sigma)``, non-centred site intercepts ``a_s`` and site effects ``b_s``
    (partial pooling across sites) and a regularized horseshoe on the effect modifiers
    ``gamma``. By default (continuous outcomes) the treatment enters centred on its propensity
    ``e_i``, the prognostic part also holds a cross-fitted prognostic score and, up to 10
    covariates, their pairwise products, and the modifier candidates ``z_i`` include the covariates'
    pairwise products: each keeps a misfit of the prognosis from showing as heterogeneity
    (``docs/decisions.md``). The patient's effect is ``tau0 + b_s + z_i·gamma``, reported on
    the outcome's scale. A patient at a site not seen in training gets a fresh draw of ``b``
    from the population of sites, so the between-site uncertainty shows in the interval.
    Without a site column the site terms drop out.

    Parameters
    ----------
    priors : HierarchicalPriors, optional
        Prior scales; defaults documented in :class:`HierarchicalPriors`.
    num_warmup, num_samples : int
        NUTS warmup and kept iterations per chain.
    num_chains : int
        Independent chains (R-hat needs at least 2).
    target_accept : float, optional
        Step-size adaptation target. None: 0.9 for the marginal model (continuous outcomes by
        default), whose posterior over the scales alone has no funnels, and 0.995 otherwise,
        where the horseshoe's funnels diverged at lower targets (``docs/decisions.md``).
    max_tree_depth : int
        NUTS tree-depth cap.
    chain_method : {"auto", "parallel", "sequential", "vectorized"}
        How chains run; ``"auto"`` uses one XLA device per chain when there are enough devices.
    backend : {"numpyro", "pymc"}
        ``"pymc"`` builds the same model in PyMC and samples it through JAX
        (``nuts_sampler="numpyro"``), always in float64; needs ``pip install "itelib[pymc]"``.
    inference : {"nuts", "svi"}
        ``"svi"``: a variational approximation instead of MCMC, for binary outcomes (or
        ``likelihood="rows"``) too large for NUTS: a Gaussian guide fitted by NumPyro's SVI
        (:mod:`~itelib.inference.svi`), then ``num_samples`` independent draws from it
        (one chain; ``num_warmup``, ``num_chains`` and the NUTS options are unused). Its
        intervals are an approximation, labelled so in every posterior (``inference`` attribute
        ``"variational"``); ``benchmarks/svi_vs_nuts.py`` measures their calibration against
        NUTS. Continuous outcomes have the exact marginal model, which NUTS fits at any n.
    svi_steps : int
        ``inference="svi"``: optimizer steps.
    svi_guide : {"full_rank", "low_rank"}
        ``inference="svi"``: the Gaussian guide's covariance, full or low rank plus diagonal
        (for many parameters, e.g. hundreds of covariates).
    batch_size : int, optional
        ``inference="svi"``: patients per step (a random subsample, its log-likelihood scaled to
        n), so a step costs the same at any n; None: every patient at every step.
    likelihood : {"auto", "marginal", "sufficient", "rows"}
        Continuous outcomes. ``"marginal"`` integrates the regression coefficients out in
        closed form, so NUTS samples only the scales, and then draws the coefficients exactly
        from their Gaussian conditional (see :mod:`~itelib.models.hierarchical.marginal`): the
        same posterior with far fewer leapfrog steps, and the geometry does not tighten with
        n. ``"sufficient"`` samples every coefficient, the Gaussian likelihood evaluated exactly
        from per-site cross-products; ``"rows"`` sums over patients. Both keep a gradient's cost
        independent of n except ``"rows"``. ``"auto"``: marginal (sufficient with
        ``backend="pymc"``, whose twin of the model samples every coefficient).
        Binary outcomes are always row-wise.
    prognosis : {"auto", "linear", "additive", "interactions"}
        ``"additive"`` adds a smooth Hilbert-space GP term for every covariate with more than
        two values to the prognostic part (see :mod:`~itelib.models.hierarchical.features`);
        ``"interactions"`` adds the covariates' standardized pairwise products.
        ``"auto"``: interactions for continuous and survival outcomes with at most 10
        covariates (after encoding), linear otherwise; the chosen option is ``prognosis_``.
    effect_modifiers : str
        ``"auto"``, ``"linear"``, ``"interactions"``, ``"additive"``,
        ``"additive_interactions"`` or ``"piecewise"``. ``"interactions"`` lets the horseshoe
        also choose among pairwise products of covariates. ``"additive"`` adds to the effect a
        smooth Hilbert-space GP term for every covariate with more than two values (amplitude
        prior ``priors.effect_smooth_sd``); ``"additive_interactions"`` does both.
        ``"piecewise"``: the pairwise products and, for every covariate with more than two
        values, a step and a hinge at its training median (an effect that jumps or bends near
        the middle of a covariate's range; not one with a cut-off in a tail), all chosen by the
        horseshoe; measured on continuous outcomes only. ``"auto"``: interactions for
        continuous and survival outcomes with at most 10 covariates, linear otherwise; the
        chosen option is ``effect_modifiers_``.
    n_basis : int
        Basis functions per smooth term.
    treatment_coding : {"centered", "indicator"}
        Continuous and survival outcomes. ``"centered"`` enters the treatment as
        ``t - e(x)``, its propensity score (the share treated without one), so that no misfit
        of the prognostic part can be fitted as effect heterogeneity (Robinson 1988; see
        :func:`~itelib.models.hierarchical.design.treatment_centre`); ``"indicator"``: ``t``
        itself. The patient's effect means the same either way. Survival outcomes centre on
        the share treated alone (``survival_centre_``); binary outcomes keep ``t``.
    prognostic_score : bool
        Continuous outcomes: add a cross-fitted prognostic score, each patient's ``E[y | x]``
        from gradient-boosted trees that never saw them
        (:mod:`~itelib.prognostic_score`), to the prognostic part as one more linear
        column. The model's terms then only correct it, so a nonlinear prognosis no longer
        inflates the noise that sets every interval's width. New patients' effects do not
        need it.
    propensity_classifier : scikit-learn classifier, optional
        Used by ``fit(propensity="estimate")``; default gradient-boosted trees.
    outcome : {"auto", "continuous", "binary", "survival"}
        ``"binary"``: Bernoulli with a logit link, same hierarchical structure on the log-odds
        scale, effects reported as risk differences. ``"survival"``: a right-censored
        time-to-event outcome, ``Y`` = (time, event) (:mod:`itelib.survival_outcome`), fitted
        by an accelerated-failure-time model of the same structure on standardized log time
        (row-wise likelihood, treatment indicator coding); effects on ``scale="rmst"`` (the
        RMST difference up to ``horizon_``, the default), ``"survival"`` with ``time=`` or
        ``"time_ratio"``. ``"auto"``: binary when every outcome is 0 or 1 (or bool),
        continuous otherwise.
    survival_family : {"weibull", "lognormal"}
        ``outcome="survival"``: the law of the log-time error (:mod:`itelib.simulate.aft`).
    horizon : float, optional
        ``outcome="survival"``: horizon of the RMST, in the time unit of the data; None: the
        0.9 quantile of the observed times (``horizon_``).
    precision : {"auto", "float32", "float64"}
        Floating-point precision of the sampler. ``"auto"``: float32 up to 2,000,000 patients
        (:data:`~itelib.models.hierarchical.marginal.FLOAT32_MAX_PATIENTS`), float64 beyond,
        where the model's float32 statistics lose digits (divergences at 10^7 rows, non-finite
        draws at 10^8).
    progress_bar : bool or None
        None: shown when a person is probably watching (a terminal or a notebook).
    missing : {"refuse", "impute"}
        Missing covariates: ``"refuse"`` names every incomplete column; ``"impute"`` fits once
        per imputed data set (chained equations with posterior draws, using the outcome and
        the treatment) and pools the draws (:mod:`itelib.estimators.imputed`).
    n_imputations : int
        ``missing="impute"``: imputed data sets M (at least 2; default 5, see
        ``docs/decisions.md``).
    random_state : int or None
        Seed; None means 0 (recorded in ``random_state_``). Same seed, same machine, same draws.

    Attributes
    ----------
    posterior_ : xarray.DataTree
        Model parameters (standardized scale) in ``posterior`` and sampler statistics in
        ``sample_stats``, dims ``(chain, draw, ...)``.
    diagnostics_ : Diagnostics
        R-hat, bulk and tail ESS of the key parameters and of up to 200 patients' effects, and
        the number of divergences.
    data_ : TrialData
        The validated training data and its encoders.
    outcome_ : {"continuous", "binary"}
        The outcome kind that was fitted.
    outcome_center_, outcome_scale_ : float
        Continuous: the training mean and sd that standardize the outcome. Binary: the logit
        of the training event rate (an offset of the log-odds) and 1.
    """

    def __init__(
        self,
        priors: HierarchicalPriors | None = None,
        *,
        num_warmup: int = 1000,
        num_samples: int = 1000,
        num_chains: int = 4,
        target_accept: float | None = None,
        max_tree_depth: int = 10,
        chain_method: str = "auto",
        backend: str = "numpyro",
        inference: str = "nuts",
        svi_steps: int = 10_000,
        svi_guide: str = "full_rank",
        batch_size: int | None = None,
        likelihood: str = "auto",
        prognosis: str = "auto",
        effect_modifiers: str = "auto",
        n_basis: int = 10,
        treatment_coding: str = "centered",
        prognostic_score: bool = True,
        propensity_classifier: Any = None,
        outcome: str = "auto",
        precision: str = "auto",
        progress_bar: bool | None = None,
        missing: str = "refuse",
        n_imputations: int = 5,
        survival_family: str = "weibull",
        horizon: float | None = None,
        random_state: int | None = None,
    ) -> None:
        self.priors = priors
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.target_accept = target_accept
        self.max_tree_depth = max_tree_depth
        self.chain_method = chain_method
        self.backend = backend
        self.inference = inference
        self.svi_steps = svi_steps
        self.svi_guide = svi_guide
        self.batch_size = batch_size
        self.likelihood = likelihood
        self.prognosis = prognosis
        self.effect_modifiers = effect_modifiers
        self.n_basis = n_basis
        self.treatment_coding = treatment_coding
        self.prognostic_score = prognostic_score
        self.propensity_classifier = propensity_classifier
        self.outcome = outcome
        self.precision = precision
        self.progress_bar = progress_bar
        self.missing = missing
        self.n_imputations = n_imputations
        self.survival_family = survival_family
        self.horizon = horizon
        self.random_state = random_state

    # -- fitting (the lifecycle is ITEEstimator.fit) ----------------------------------------
    def fit(self, Y: Any, T: Any, *, X: Any, site: Any = None, propensity: Any = None,
            categorical: Any = (), treatment_labels: Any = None,
            scheduler: Any = None) -> HierarchicalITE:  # fmt: skip
        """Learn the posterior of every patient's effect (:meth:`ITEEstimator.fit
        <itelib.estimators.base.ITEEstimator.fit>`), from rows in memory or from a Dask
        DataFrame.

        With Dask inputs (``Y=ddf["y"], T=ddf["t"], X=ddf[covariates], site=ddf["site"]``)
        each partition is summarized where it lies and only summaries come back
        (:mod:`itelib.federated.dask_fit`): the posterior of the pooled fit, for a continuous
        outcome with ``prognostic_score=False`` and linear or additive ``prognosis`` and
        ``effect_modifiers``. ``scheduler``: a Dask scheduler's address or a
        ``distributed.Client``; None: the active Client, else a ``LocalCluster`` started and
        closed by this call. The fitted model holds no row: effects of the cohort's patients
        come from :func:`itelib.federated.effect_to_parquet`.
        """
        from itelib.federated.dask_fit import fit_dask, is_dask

        kwargs = dict(X=X, site=site, propensity=propensity, categorical=categorical,
                      treatment_labels=treatment_labels)  # fmt: skip
        if (is_dask(Y) or is_dask(X)) and self.outcome == "survival":
            raise ValueError(
                'HierarchicalITE(outcome="survival") fits rows in memory; a Dask fit takes '
                "continuous outcomes. Fix: pass Y, T, X as pandas objects (e.g. ddf.compute())."
            )
        if is_dask(Y) or is_dask(X):
            return fit_dask(self, Y, T, scheduler=scheduler, **kwargs)
        if scheduler is not None:
            raise TypeError(
                f"{type(self).__name__}.fit(scheduler=...) is for Dask inputs; these are in "
                "memory. Fix: drop scheduler=, or pass Dask collections."
            )
        return super().fit(Y, T, **kwargs)

    _TAKES_SURVIVAL = True

    def _sample(self, inputs: FitInputs) -> Fit:
        """NUTS (or SVI) on the model built from the data; the score's logit, when there is
        one, enters the prognostic part (against regularization-induced confounding, Hahn et
        al. 2020)."""
        data, kind, score, seed = inputs.data, inputs.kind, inputs.score, inputs.seed
        X_prog = data.X if score is None else np.column_stack([data.X, score.feature()])
        prog_score = None
        if self.prognostic_score and kind == "continuous" and data.p > 0:
            from itelib.prognostic_score import estimate_prognostic_score

            raw = estimate_prognostic_score(data.X, data.y, random_state=seed)
            prog_score = (raw - raw.mean()) / (raw.std() or 1.0)
            X_prog = np.column_stack([X_prog, prog_score])
        y_mean, y_scale = outcome_scale(data.y, kind)
        survival = kind == "survival"
        priors = self.priors if self.priors is not None else HierarchicalPriors()
        prognosis, modifiers = resolve_options(self.prognosis, self.effect_modifiers, data.p, kind)
        features = FeatureMap.fit(
            X_prog,
            prognosis=prognosis,
            modifiers=modifiers,
            n_basis=_params.check_int(type(self).__name__, "n_basis", self.n_basis, minimum=1),
            n_modifier_columns=data.p,
        )
        X_prog = features.prognostic(X_prog)
        likelihood = choose_likelihood(self.likelihood, kind, self.backend)
        svi = self.inference == "svi"
        if svi and likelihood != "rows":
            raise ValueError(
                'HierarchicalITE(inference="svi") is for binary outcomes (or likelihood="rows"): '
                "a continuous outcome has the exact marginal model, which NUTS samples at any n "
                '(a million patients in about 30 s). Drop inference="svi", or pass '
                'likelihood="rows" to approximate the row-wise model anyway.'
            )
        spec = m.ModelSpec(
            p=X_prog.shape[1],
            n_sites=data.n_sites,
            priors=priors,
            likelihood=likelihood,
            outcome=kind,
            q=features.n_modifiers(data.p),
            n_smooth=len(features.smooth),
            n_basis=features.n_basis,
            n_effect_smooth=len(features.effect_smooth),
            batch_size=min(self.batch_size, data.n) if svi and self.batch_size else None,
            survival_family=self.survival_family if survival else None,
        )
        centre = treatment_centre(
            data.t, kind, self.treatment_coding, None if score is None else score.scores
        )
        event = inputs.survival.event if survival else None
        arrays = model_data(data, X_prog, spec, features, y_mean, y_scale, centre, event)
        prognostic_names = data.feature_names + (("propensity_logit",) if score else ())
        prognostic_names += ("prognostic_score",) if prog_score is not None else ()
        state = {"prognostic_score_": prog_score}
        if survival:
            state |= fitted_survival(self.horizon, data.y, inputs.survival, centre)
        return self._sampled_fit(seed, arrays, spec, data, features, prognostic_names,
                                 (y_mean, y_scale), state)  # fmt: skip

    def _sampled_fit(self, seed: int, arrays: m.ModelData, spec: m.ModelSpec, data: TrialData,
                     features: FeatureMap, names: tuple[str, ...], y_scaling: tuple[float, float],
                     state: dict[str, Any]) -> Fit:  # fmt: skip
        """Sample the model from its arrays, built from rows (:meth:`_sample`) or from site
        summaries (:meth:`fit_summaries`): the same arrays and seed give the same draws."""
        config = self._sampler_config(spec.likelihood)
        svi = self.inference == "svi"
        if self.backend == "numpyro":  # many modifiers: their local scales by collapsed Gibbs
            config = replace(config, gibbs=collapsed_gibbs(spec, arrays))
        enable_compilation_cache()
        inputs = (jax.random.key(seed), m.hierarchical_model, arrays, spec)
        shown = {"progress_bar": show_progress(self.progress_bar), "description": "HierarchicalITE"}
        losses = None
        # one BLAS thread: PyMC's sampler and the coefficient draws call LAPACK too (see blas.py)
        n = data.n or int(np.asarray(arrays.marginal.n if arrays.marginal else arrays.stats.n))
        with jax.enable_x64(resolved_precision(self.precision, n) == "float64"), \
                single_threaded_blas():  # fmt: skip
            if svi:
                svi_config = SVIConfig(self.svi_steps, config.num_samples, guide=self.svi_guide)
                result, losses = fit_svi(*inputs, svi_config, **shown)
            else:
                result = self._sampler(spec, n)(*inputs, config, **shown)
            if spec.likelihood == "marginal":  # exact coefficient draws for each kept draw
                key = jax.random.fold_in(jax.random.key(seed), _COEFFICIENT_KEY)
                coefs = m.coefficient_draws(key, result.params, arrays, spec)
                result = result._replace(params=result.params | coefs)
        check_finite(result.params)
        prognostic_names = features.prognostic_names(names, data.p)
        prognosis, modifiers = resolve_options(self.prognosis, self.effect_modifiers, data.p,
                                               spec.outcome)  # fmt: skip
        return Fit(
            posterior=posterior_tree(result, data, features, prognostic_names, losses),
            outcome_center=y_scaling[0],
            outcome_scale=y_scaling[1],
            state={
                "priors_": spec.priors,
                "features_": features,
                "model_spec_": spec,
                "prognosis_": prognosis,
                "effect_modifiers_": modifiers,
            }
            | state,  # fmt: skip
        )

    def fit_summaries(self, summaries: Any, *, min_per_column: int | None = None) -> Any:
        """Fit from site summaries instead of patient rows (:mod:`itelib.federated`).

        Gives the posterior that :meth:`fit` gives on the pooled rows, with the same seed; no
        patient row is read. Then ``effect(X_site, site=label)`` gives a site's own patients'
        effects from the fitted posterior.

        Parameters
        ----------
        summaries : sequence of paths or :class:`~itelib.federated.SiteSummary`
            One or more summaries per site, from :func:`itelib.federated.site_summary`, all
            computed under one agreement (:func:`itelib.federated.agree`).
        min_per_column : int, optional
            Refuse a site with fewer than this many patients per summary column; None: the
            default rule (:data:`itelib.federated.MIN_PER_COLUMN`, DataSHIELD's 3).

        Returns
        -------
        self
            With ``privacy_``: site label -> the summaries' privacy setting (epsilon, delta,
            clip, sigma), or None for exact summaries. Noisy summaries are fitted as if exact,
            with a warning: their intervals are not calibrated.
        """
        from itelib.federated.fit import fit_from_summaries

        if self.outcome == "survival":
            raise ValueError(
                'HierarchicalITE(outcome="survival") fits patient rows; site summaries hold the '
                "Gaussian model's cross-products only. Fix: fit(Y, T, X=...) on the rows."
            )
        return fit_from_summaries(self, summaries, min_per_column=min_per_column)

    def _convergence_advice(self, inputs: FitInputs) -> Any:
        return hierarchical_advice(self._sampler_config(self.model_spec_.likelihood))

    def _check_rows(self, what: str) -> None:
        if self.data_.n == 0:
            raise ValueError(
                f"this {type(self).__name__} was fitted from site summaries (fit_summaries): "
                f"it holds no patient rows, so {what} cannot be computed here. Fix: at each "
                "site, effect(X_site, site=label) gives that site's own patients' effects."
            )

    def _training_support(self) -> np.ndarray:
        if self.data_.n == 0:  # fitted from summaries: the agreed ranges
            return self.covariate_range_
        return self.data_.X

    def _model_check(self) -> ModelCheck | None:
        if self.outcome_ == "survival":
            return None  # censored times have no residuals the check can test
        self._check_rows("the model check (residuals)")
        data, rows = self.data_, slice(None)
        if data.n > MAX_ROWS:  # the check's own subsample, drawn here so that only its rows'
            # fitted outcomes are computed (at n = 1e6 all of them cost as much as the fit)
            rng = np.random.default_rng(self.random_state_)
            rows = np.sort(rng.choice(data.n, MAX_ROWS, replace=False))
        score = None if self.propensity_ is None else self.propensity_.scores[rows]
        fitted = fitted_outcome(self, None if isinstance(rows, slice) else rows)
        return check_model(
            data.y[rows], data.t[rows], data.X[rows], fitted,
            feature_names=data.feature_names, propensity=score, random_state=self.random_state_,
        )  # fmt: skip

    @property
    def _INFERENCE(self) -> str:  # noqa: N802 (the base class's constant, per fit here)
        return "variational" if "variational" in getattr(self, "posterior_", {}) else "mcmc"

    # -- saving (see itelib.estimators.persistence) -------------------------------------
    # files written before these options existed hold models fitted without them
    _PARAMS_BEFORE_THEY_EXISTED = {"treatment_coding": "indicator", "prognostic_score": False}

    def _saved_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        spec = {k: v for k, v in asdict(self.model_spec_).items() if k != "priors"}
        groups = {}
        if self.prognostic_score_ is not None:  # the training patients' cross-fitted scores
            groups["prognostic_score"] = xr.Dataset({"score": ("patient", self.prognostic_score_)})
        if self.data_.n == 0:  # fitted from site summaries: the agreed covariate ranges
            bounds = ("bound", "covariate")
            groups["covariate_range"] = xr.Dataset({"range": (bounds, self.covariate_range_)})
        options = {"prognosis": self.prognosis_, "effect_modifiers": self.effect_modifiers_}
        if self.outcome_ == "survival":
            saved, survival_groups = saved_survival(self)
            options |= saved
            groups |= survival_groups
        return {"features": self.features_.to_dict(), "model_spec": spec} | options, groups

    def _restore_state(self, fitted: dict[str, Any], groups: dict[str, Any]) -> None:
        self.priors_ = self.priors if self.priors is not None else HierarchicalPriors()
        self.features_ = FeatureMap.from_dict(fitted["features"])
        self.prognosis_ = fitted.get("prognosis", self.prognosis)  # older files: as given
        self.effect_modifiers_ = fitted.get("effect_modifiers", self.effect_modifiers)
        self.model_spec_ = m.ModelSpec(priors=self.priors_, **fitted["model_spec"])
        score = groups.get("prognostic_score")
        self.prognostic_score_ = None if score is None else score["score"].values
        if "covariate_range" in groups:
            self.covariate_range_ = groups["covariate_range"]["range"].values
        restore_survival(self, fitted, groups)
        if "variational" in groups:  # an SVI fit's loss trace
            self.posterior_["variational"] = xr.DataTree(groups["variational"])
        self.diagnostics_ = self._diagnose()

    @staticmethod
    def _priors_from_dict(d: dict[str, Any]) -> HierarchicalPriors:
        priors = HierarchicalPriors(**d)
        if "effect_smooth_lengthscale_shape" in d:
            return priors
        # files from before the effect terms had a length-scale prior of their own: they were
        # fitted with the prognostic one for both
        return replace(
            priors,
            effect_smooth_lengthscale_shape=priors.smooth_lengthscale_shape,
            effect_smooth_lengthscale_scale=priors.smooth_lengthscale_scale,
        )

    def _validated_options(self, propensity: Any) -> None:
        """Every constructor option, checked before the data are touched."""
        name = type(self).__name__
        _params.check_choice(name, "likelihood", self.likelihood, LIKELIHOODS)
        _params.check_choice(name, "precision", self.precision, ("auto", "float32", "float64"))
        kinds = ("auto", "continuous", "binary", "survival")
        _params.check_choice(name, "outcome", self.outcome, kinds)
        if self.outcome == "survival":
            check_survival_options(self, name)
        _params.check_choice(name, "backend", self.backend, ("numpyro", "pymc"))
        _params.check_choice(name, "inference", self.inference, ("nuts", "svi"))
        _params.check_int(name, "svi_steps", self.svi_steps, minimum=1)
        _params.check_choice(name, "svi_guide", self.svi_guide, ("full_rank", "low_rank"))
        if self.batch_size is not None:
            _params.check_int(name, "batch_size", self.batch_size, minimum=1)
        if self.inference == "svi" and self.backend == "pymc":
            raise ValueError(
                f'{name}(inference="svi") runs on the NumPyro model; use backend="numpyro".'
            )
        _params.check_choice(name, "prognosis", self.prognosis, PROGNOSIS)
        _params.check_choice(name, "effect_modifiers", self.effect_modifiers, MODIFIERS)
        _params.check_choice(name, "treatment_coding", self.treatment_coding, TREATMENT_CODINGS)
        _params.check_bool(name, "prognostic_score", self.prognostic_score)
        if self.priors is not None and not isinstance(self.priors, HierarchicalPriors):
            raise TypeError(
                f"{name}(priors=...) must be a HierarchicalPriors; "
                f"got {type(self.priors).__name__}."
            )
        self._sampler_config("rows")  # checks the sampler options too

    def _sampler_config(self, likelihood: str) -> NUTSConfig:
        """NUTS settings; ``target_accept=None`` means the likelihood's own default."""
        name = type(self).__name__
        num_chains = _params.check_int(name, "num_chains", self.num_chains, minimum=1)
        if self.target_accept is None:
            target_accept = DEFAULT_TARGET_ACCEPT[likelihood]
        else:
            target_accept = _params.check_real(
                name, "target_accept", self.target_accept, low=0.0, high=1.0
            )
        return NUTSConfig(
            num_warmup=_params.check_int(name, "num_warmup", self.num_warmup, minimum=1),
            num_samples=_params.check_int(name, "num_samples", self.num_samples, minimum=1),
            num_chains=num_chains,
            target_accept=target_accept,
            max_tree_depth=_params.check_int(
                name, "max_tree_depth", self.max_tree_depth, minimum=1
            ),
            chain_method=resolve_chain_method(self.chain_method, num_chains),
        )

    def _sampler(self, spec: m.ModelSpec, n: int) -> Any:
        if self.backend == "pymc":
            from itelib.models.hierarchical.pymc_backend import sample_pymc

            return sample_pymc
        return partial(sample_nuts, inverse_mass=m.initial_inverse_mass(spec, n))

    def _diagnose(self) -> Diagnostics | VariationalDiagnostics:
        if "variational" in self.posterior_:
            loss = self.posterior_["variational"]["loss"].values
            n_draws = self.posterior_["posterior"].sizes["draw"]
            return VariationalDiagnostics.from_losses(loss, n_draws)
        post = self.posterior_["posterior"]
        keys = ("tau0", "sigma", "gamma", "sigma_site", "sigma_site_effect")
        monitored = {k: post[k].values for k in keys if k in post}
        diverging = self.posterior_["sample_stats"]["diverging"].values
        step = max(1, self.data_.n // _MONITORED_PATIENTS)
        rows = np.arange(0, self.data_.n, step)[:_MONITORED_PATIENTS]
        site = None if self.data_.site is None else self.data_.site[rows]
        scale = {"continuous": "outcome", "binary": "risk_difference"}.get(
            self.outcome_, "time_ratio"
        )
        if self.data_.n:  # a fit from site summaries has no training patients
            monitored["effect"] = self._effect_draws(self.data_.X[rows], site, scale,
                                                     train_rows=rows)  # fmt: skip
        return diagnose(monitored, diverging)

    # -- effects (the template is ITEEstimator.effect) --------------------------------------
    _BINARY_SCALES = ("risk_difference", "log_odds_ratio")

    def _training_effect_draws(self, scale: str) -> np.ndarray:
        self._check_rows("the training patients' effects (effect() without X, ate())")
        rows = np.arange(self.data_.n)
        return self._effect_draws(self.data_.X, self.data_.site, scale, train_rows=rows)

    def _new_effect_draws(
        self, X: np.ndarray, codes: np.ndarray | None, labels: Any, scale: str
    ) -> np.ndarray:
        return self._effect_draws(X, codes, scale, new_site_labels=labels)

    def _exact_modifiers(self, scale: str, keep: np.ndarray) -> Any:
        return exact_modifiers(self, scale, keep)

    def _site_effects(self, scale: str, keep: np.ndarray) -> Any:
        return site_effects(self, scale, keep)

    def posterior_predictive(self) -> Any:
        """Replicated outcomes of the training patients, one set per posterior draw.

        Returns
        -------
        xarray.DataTree
            Groups ``posterior_predictive`` (``y``: chain, draw, patient) and
            ``observed_data``, on the outcome's scale, for ArviZ's predictive checks.
        """
        from itelib.models.hierarchical.predictive import posterior_predictive

        self._check_fitted()
        return posterior_predictive(self)

    def prior_predictive(self, num_samples: int = 500) -> Any:
        """Outcomes of the training design drawn from the prior (groups ``prior``,
        ``prior_predictive`` and ``observed_data``): what the priors believe before the data."""
        from itelib.models.hierarchical.predictive import prior_predictive

        self._check_fitted()
        n = _params.check_int(type(self).__name__, "num_samples", num_samples, minimum=1)
        return prior_predictive(self, n)

    def _effect_draws(
        self,
        X: np.ndarray,
        site: np.ndarray | None,
        scale: str = "outcome",
        new_site_labels: Any = None,
        train_rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """(chain, draw, m) effects on ``scale``, computed in chunks of patients.

        ``train_rows``: the patients are these training rows (their propensity is known).
        """
        post = self.posterior_["posterior"]
        shape = (post.sizes["chain"], post.sizes["draw"])
        params = {
            v: jnp.asarray(post[v].values.reshape(-1, *post[v].shape[2:]))
            for v in _EFFECT_PARAMS
            if v in post
        }
        codes, fresh = self._site_codes(site, new_site_labels, shape[0] * shape[1])
        if self.outcome_ == "survival":
            params["sigma"] = jnp.asarray(post["sigma"].values.reshape(-1))
        offset = jnp.asarray(self.outcome_center_ if scale == "risk_difference" else np.nan)
        out = np.empty((shape[0] * shape[1], X.shape[0]), dtype=np.float64)
        for start in range(0, X.shape[0], _CHUNK):
            stop = min(start + _CHUNK, X.shape[0])
            rows = None if train_rows is None else train_rows[start:stop]
            feats = self._features(X[start:stop], scale, rows)
            out[:, start:stop] = _effect_chunk(
                params, feats, codes[start:stop], fresh, offset, scale, self
            )
        if scale == "outcome":
            out *= self.outcome_scale_
        return out.reshape(*shape, X.shape[0])

    def _features(self, X: np.ndarray, scale: str, rows: np.ndarray | None) -> dict:
        """The model's feature arrays for standardized covariates ``X``.

        Effects need only the modifiers; risk differences also need the prognostic features,
        which include the propensity score when the model has one.
        """
        feats = {"X": X, "modifiers": self.features_.modifiers(X)}
        if self.features_.effect_smooth:
            feats["effect_basis"] = self.features_.effect_basis(X)
        if scale != "risk_difference" and not needs_prognosis(scale):
            return feats
        if self.propensity_ is not None:
            score = self.propensity_.feature(None if rows is not None else X, rows)
            feats["X"] = np.column_stack([X, score])
        feats["X"] = self.features_.prognostic(feats["X"])
        if self.features_.smooth:
            feats["basis"] = self.features_.basis(feats["X"])
        return feats

    def _site_codes(
        self, site: np.ndarray | None, labels: Any, n_draws: int
    ) -> tuple[np.ndarray, jax.Array | None]:
        """Codes into [known sites, fresh sites] (:mod:`itelib.estimators.sites`)."""
        if site is None or "site_effect_z" not in self.posterior_["posterior"]:
            return np.zeros(0 if site is None else len(site), np.int32), None
        fresh = unseen_sites(site, labels, n_draws, self.random_state_)
        codes = np.asarray(site, np.int32).copy()
        codes[fresh.unseen] = self.data_.n_sites + fresh.fresh_index
        return codes, fresh.normals


_EFFECT_PARAMS = (
    "alpha", "beta", "tau0", "gamma", "smooth_coef", "effect_smooth_coef",
    "sigma_site", "sigma_site_effect", "site_intercept_z", "site_effect_z",
)  # fmt: skip


def _effect_chunk(
    params: dict, feats: dict, codes: np.ndarray, fresh: Any, offset: jax.Array, scale: str,
    est: Any,
) -> np.ndarray:  # fmt: skip
    """Evaluate one chunk, padded to a power of two so compiled shapes repeat."""
    m_rows = feats["X"].shape[0]
    size = min(_CHUNK, 1 << max(0, (m_rows - 1).bit_length()))
    padded = {k: jnp.asarray(np.pad(v, ((0, size - m_rows), (0, 0)))) for k, v in feats.items()}
    cp = np.pad(codes, (0, size - m_rows)) if codes.size else np.zeros(size, np.int32)
    if est.outcome_ == "survival":
        out = survival_chunk(est, params, padded, jnp.asarray(cp), fresh, scale)
    else:
        out = _effects_jit(params, padded, jnp.asarray(cp), fresh, offset, scale)
    return np.asarray(out)[:, :m_rows]


@partial(jax.jit, static_argnames=("scale",))
def _effects_jit(
    params: dict, feats: dict, codes: jax.Array, fresh: Any, offset: jax.Array, scale: str
) -> jax.Array:
    effect = m.effect_draws(
        params, feats["X"], codes, fresh, feats["modifiers"], feats.get("effect_basis")
    )
    if scale != "risk_difference":
        return effect
    prognosis = m.prognosis_draws(params, feats["X"], codes, fresh, basis=feats.get("basis"))
    return m.risk_difference(prognosis, effect, offset)
