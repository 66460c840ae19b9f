"""``BayesianCausalForest``: Hahn, Murray & Carvalho's (2020) BCF with site random effects, on JAX.

    y_i = mu(x_i, pihat_i) + a_s + b_{z_i} (tau0 + c_s + tau(x_i)) + e_i

mu is a sum of ``num_trees_mu`` trees (the propensity score, when there is one, is a split
variable), tau a sum of ``num_trees_tau`` trees (BART's tree prior with small leaves for
continuous outcomes, Hahn et al.'s shallower trees for binary and survival ones; see
``_TAU_TREE_PRIOR``); a_s and c_s are site random intercepts and effect slopes with half-Cauchy
scales. Binary outcomes use a probit link (Albert & Chib data augmentation), with each patient's
effect reported per draw as a risk difference. Survival outcomes are the same model on log time,
y = log T, with normal errors (AFT-BCF, Henderson et al. 2020): each censored log time is
imputed from its truncated normal conditional in every sweep
(:mod:`itelib.models.forest.censored`), and the effects are RMST differences,
survival-probability differences or time ratios of the log-normal law. The
forests come from bartz (see :mod:`itelib.models.forest._bartz`); the sweep is
:mod:`itelib.models.forest.gibbs`.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

from itelib import _params
from itelib.data import TrialData
from itelib.estimators.base import FitInputs, ITEEstimator
from itelib.estimators.fitted import Fit
from itelib.estimators.sites import unseen_sites
from itelib.estimators.survival_state import fitted_survival, restore_survival, saved_survival
from itelib.exceptions import DataValidationError
from itelib.inference.advice import forest_advice
from itelib.inference.compile_cache import enable_compilation_cache
from itelib.inference.diagnostics import Diagnostics, diagnose
from itelib.inference.progress import show_progress
from itelib.models.forest import _bartz, gibbs
from itelib.models.survival.scales import effect_on_scale
from itelib.propensity import propensity_for_fit
from itelib.survival_outcome import parse_scale

__all__ = ["BayesianCausalForest"]

_MONITORED_PATIENTS = 50  # R-hat/ESS over effects of this many patients spread over the data
_CHUNK = 2048  # new patients evaluated per batch
# The effect forest's tree prior P(split at depth d) = base / (1 + d)^power and the prior mean
# of its leaf variance (times 1 / num_trees_tau, standardized outcome). Hahn et al.'s (0.25, 3)
# with 0.5 made the chains disagree on where an interaction's cut sits (max R-hat 1.3-1.75 on
# their heterogeneous designs at the default sweeps); BART's (0.95, 2) with leaves ten times
# smaller mixes (1.05-1.13) and keeps the shrinkage toward a constant effect in the leaves
# (docs/decisions.md, issue 24). Continuous outcomes only: on the survival designs (log time,
# censored times imputed) it was less accurate (sqrt-PEHE +0.09 and +0.10) and mixed no better,
# so survival keeps Hahn et al.'s prior and leaves, and binary outcomes their tree prior (with
# their own, risk-difference-sized leaves; not measured with the new one).
_TAU_TREE_PRIOR = (0.95, 2.0)
_TAU_LEAF_VARIANCE = 0.05
_HAHN_TAU_TREE_PRIOR = (0.25, 3.0)
_HAHN_TAU_LEAF_VARIANCE = 0.5


def _tau_priors(kind: str) -> tuple[tuple[float, float], float]:
    """The effect forest's tree prior (base, power) and leaf-variance prior mean (times
    1 / num_trees_tau) for an outcome kind; binary outcomes size their leaves apart."""
    if kind == "continuous":
        return _TAU_TREE_PRIOR, _TAU_LEAF_VARIANCE
    return _HAHN_TAU_TREE_PRIOR, _HAHN_TAU_LEAF_VARIANCE


class _Start(NamedTuple):
    """The sampler's initial state and what turns its trace back into effects."""

    state: Any
    key: jax.Array
    binner: Any
    center: float
    scale: float
    site_active: tuple[bool, bool]


class BayesianCausalForest(ITEEstimator):
    """Bayesian causal forest with site random effects; per-patient effect posteriors.

    Parameters
    ----------
    num_trees_mu, num_trees_tau : int
        Trees in the prognostic and the effect forest (Hahn et al.: 200 and 50).
    max_depth_mu, max_depth_tau : int
        Maximum depth of each tree counting the root as depth 1 (bartz's convention). The tree
        priors (alpha, beta) = (0.95, 2) for both forests (tau: Hahn et al.'s (0.25, 3) for
        binary and survival outcomes) rarely reach depth 5.
    num_warmup, num_samples, num_chains : int
        Burn-in sweeps, kept sweeps per chain, chains (run vectorized in one program).
    treatment_coding : {"centered", "binary", "adaptive"}
        How the effect enters the outcome, y = mu(x) + b_z (tau0 + tau(x)): "centered" (default)
        b = (-1/2, 1/2) fixed, so the effect forest sees both arms with opposite signs and
        cannot absorb prognostic misfit the arms share; "binary" b = (0, 1) (the effect forest
        sees only treated patients; stochtree's default); "adaptive" b0, b1 ~ N(0, 1/2) learned
        (Hahn et al. sec. 5.2). The effect is (b1 - b0)(tau0 + tau(x)) in every case.
    tau_leaf_variance : {"sampled", "fixed"}
        The effect forest's leaf variance: "sampled" (default) from an inverse-gamma prior
        IG(3, 0.1 / num_trees_tau) with mean 0.05 / num_trees_tau on the standardized outcome
        (survival: 0.5 / num_trees_tau on standardized log time), so
        the data can shrink or grow effect heterogeneity, or "fixed" at that mean (stochtree's
        default). With "binary" + "fixed" the forest invented heterogeneity on a nonlinear
        constant-effect design, which the two defaults avoid (``docs/decisions.md``).
    site_effects : {"auto", True, False}
        Random site intercepts and effect slopes; "auto": on when ``fit`` gets two or more
        sites.
    outcome : {"auto", "continuous", "binary", "survival"}
        "auto" treats a 0/1 outcome as binary (probit link, risk differences). "survival": a
        right-censored time-to-event outcome, ``Y`` = (time, event)
        (:mod:`itelib.survival_outcome`), fitted on log time with normal errors; ``effect``'s
        scales are ``"rmst"`` (the default), ``"survival"`` with ``time=`` and
        ``"time_ratio"``.
    horizon : float, optional
        ``outcome="survival"``: horizon of the RMST, in the time unit of the data; None: the
        0.9 quantile of the observed times (``horizon_``).
    propensity_classifier : scikit-learn classifier, optional
        Used by ``fit(propensity="estimate")``.
    propensity_cross_fit : bool
        False (default): ``fit(propensity="estimate")`` uses the classifier's in-sample scores,
        as Hahn et al. (2020) and stochtree do: the score is a split variable of the
        prognostic forest, not a weight, and cross-fitted scores are noisier, which cost ATE
        coverage (``docs/decisions.md``).
    max_bins : int
        Candidate split points per covariate (quantiles of its unique values).
    forest_memory_gb : float
        Budget for the trees kept to score new patients (``effect(X)``): 4 chains x 1000 draws
        of the default effect forest take about 0.05 GB; binary outcomes also keep the
        prognostic forest (about 0.25 GB). Over budget, no trees are kept and ``effect(X)``
        for new patients raises; training patients' effects are always kept.
    progress_bar : bool, optional
        Default: on in terminals and notebooks.
    missing : {"refuse", "impute"}
        Missing covariates: ``"refuse"`` names every incomplete column; ``"impute"`` fits once
        per imputed data set (chained equations with posterior draws, using the outcome and
        the treatment) and pools the draws (:mod:`itelib.estimators.imputed`).
    n_imputations : int
        ``missing="impute"``: imputed data sets M (at least 2; default 5, see
        ``docs/decisions.md``).
    random_state : int, optional
        Seed (None: 0, recorded in ``random_state_``).

    Attributes
    ----------
    data_ : TrialData
    posterior_ : xarray.DataTree
        ``posterior`` group: tau0, sigma, b, site effects and their sds, and ``effect`` (chain,
        draw, patient) of the training patients on the outcome (or risk-difference) scale.
    diagnostics_ : Diagnostics
    propensity_ : PropensityFeature or None
    """

    def __init__(
        self,
        *,
        num_trees_mu: int = 200,
        num_trees_tau: int = 50,
        max_depth_mu: int = 6,
        max_depth_tau: int = 5,
        num_warmup: int = 1000,
        num_samples: int = 1000,
        num_chains: int = 4,
        treatment_coding: str = "centered",
        tau_leaf_variance: str = "sampled",
        site_effects: Any = "auto",
        outcome: str = "auto",
        horizon: float | None = None,
        propensity_classifier: Any = None,
        propensity_cross_fit: bool = False,
        max_bins: int = 100,
        forest_memory_gb: float = 1.0,
        progress_bar: bool | None = None,
        missing: str = "refuse",
        n_imputations: int = 5,
        random_state: int | None = None,
    ) -> None:
        self.num_trees_mu = num_trees_mu
        self.num_trees_tau = num_trees_tau
        self.max_depth_mu = max_depth_mu
        self.max_depth_tau = max_depth_tau
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.treatment_coding = treatment_coding
        self.tau_leaf_variance = tau_leaf_variance
        self.site_effects = site_effects
        self.outcome = outcome
        self.horizon = horizon
        self.propensity_classifier = propensity_classifier
        self.propensity_cross_fit = propensity_cross_fit
        self.max_bins = max_bins
        self.forest_memory_gb = forest_memory_gb
        self.progress_bar = progress_bar
        self.missing = missing
        self.n_imputations = n_imputations
        self.random_state = random_state

    _TAKES_SURVIVAL = True

    # -- fitting (the lifecycle is ITEEstimator.fit) ----------------------------------------
    def _validated_options(self, propensity: Any) -> dict[str, Any]:
        return self._config()

    def _convergence_advice(self, inputs: FitInputs) -> Any:
        hahn = _tau_priors(inputs.kind)[0] == _HAHN_TAU_TREE_PRIOR
        return forest_advice(inputs.options, deep_trees_rare=hahn)

    def _check_data(self, data: TrialData, options: Any) -> None:
        self._site_active(data)  # site_effects=True needs two or more sites

    def _propensity(self, propensity: Any, data: TrialData, seed: int, options: Any) -> Any:
        """In-sample scores unless ``propensity_cross_fit``; a split variable of mu only."""
        return propensity_for_fit(
            propensity, data, classifier=self.propensity_classifier, random_state=seed,
            cross_fit=options["propensity_cross_fit"],
        )  # fmt: skip

    def _sample(self, inputs: FitInputs) -> Fit:
        cfg, data, kind = inputs.options, inputs.data, inputs.kind
        start = self._start(inputs)
        trace = gibbs.sample(
            start.key, start.state,
            n_burn=cfg["num_warmup"], n_keep=cfg["num_samples"],
            store=self._forests_to_store(kind, cfg),
            progress_bar=show_progress(self.progress_bar), description=type(self).__name__,
        )  # fmt: skip
        trace = jax.tree.map(np.asarray, trace)
        _check_finite(trace)
        state = {
            "site_effects_": start.site_active,
            "binner_": start.binner,
            "leaf_units_": tuple(float(u) for u in _bartz.leaf_units(start.state)),
            "forests_": {k: trace.pop(k) for k in ("tau_trees", "mu_trees") if k in trace},
        }
        if kind == "survival":
            state |= fitted_survival(self.horizon, data.y, inputs.survival)
        return Fit(
            posterior=_posterior_tree(trace, data, kind, start.center, start.scale),
            outcome_center=start.center,
            outcome_scale=start.scale,
            state=state,
        )

    # -- saving (see itelib.estimators.persistence) -------------------------------------
    def _saved_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        import xarray as xr

        forests = {
            f"{forest}__{field}": (
                ("chain", "draw", f"{forest}_tree", f"{field}_{forest}_node"),
                values,
            )
            for forest, fields in self.forests_.items()
            for field, values in fields.items()
        }
        cuts = np.asarray(_bartz.cutpoints(self.binner_))
        fitted = {
            "site_effects": [bool(a) for a in self.site_effects_],
            "leaf_units": list(self.leaf_units_),
        }
        groups = {
            "forests": xr.Dataset(forests),
            "binner": xr.Dataset({"cutpoints": (("split_variable", "cut"), cuts)}),
        }
        if self.outcome_ == "survival":
            saved, survival_groups = saved_survival(self)
            fitted |= saved
            groups |= survival_groups
        return fitted, groups

    def _restore_state(self, fitted: dict[str, Any], groups: dict[str, Any]) -> None:
        self.site_effects_ = tuple(bool(a) for a in fitted["site_effects"])
        self.leaf_units_ = tuple(float(u) for u in fitted["leaf_units"])
        self.forests_ = {}
        for name, var in groups["forests"].data_vars.items():
            forest, field = str(name).split("__")
            self.forests_.setdefault(forest, {})[field] = var.values
        cuts = groups["binner"]["cutpoints"].values
        self.binner_ = _bartz.binner_from_cutpoints(np.zeros((cuts.shape[0], 1)), cuts)
        restore_survival(self, fitted, groups)
        self.diagnostics_ = self._diagnose()

    def _start(self, inputs: FitInputs) -> _Start:
        """Bin the covariates (and score) and build the initial sampler state."""
        cfg, data, kind, score = inputs.options, inputs.data, inputs.kind, inputs.score
        active = self._site_active(data)
        X_unified = data.X if score is None else np.column_stack([data.X, score.feature()])
        enable_compilation_cache()
        key_bin, key_run = jax.random.split(jax.random.key(inputs.seed))
        binner = _bartz.fit_binner(X_unified.T, cfg["max_bins"], key_bin)
        X_binned = _bartz.bin_covariates(binner, X_unified.T)
        y = np.log(data.y) if kind == "survival" else data.y  # survival: log times, as observed
        if kind == "binary":
            center, scale = 0.0, 1.0
        else:
            center, scale = float(np.mean(y)), float(np.std(y))
        y = (y - center) / scale
        censored_at = None
        if kind == "survival":  # standardized log censoring times; -inf where the event was seen
            censored_at = np.where(inputs.survival.event.astype(bool), -np.inf, y)
        state = _initial_state(
            data,
            kind,
            y,
            X_binned,
            binner,
            score is not None,
            active,
            cfg,
            censored_at,
        )
        return _Start(state, key_run, binner, center, scale, tuple(bool(a) for a in active))

    def _config(self) -> dict[str, Any]:
        name = type(self).__name__
        cfg = {
            key: _params.check_int(name, key, getattr(self, key), minimum=minimum)
            for key, minimum in (
                ("num_trees_mu", 1), ("num_trees_tau", 1), ("max_depth_mu", 2),
                ("max_depth_tau", 2), ("num_warmup", 0), ("num_samples", 1),
                ("num_chains", 1), ("max_bins", 2),
            )
        }  # fmt: skip
        if cfg["num_samples"] < 4 or cfg["num_chains"] < 1:
            raise ValueError(f"{name}: num_samples must be at least 4 to summarize draws.")
        if cfg["max_depth_mu"] > 12 or cfg["max_depth_tau"] > 12:
            raise ValueError(
                f"{name}: max_depth above 12 allocates 2^depth nodes per tree; use <= 12."
            )
        cfg["forest_memory_gb"] = _params.check_real(
            name, "forest_memory_gb", self.forest_memory_gb, low=0.0, high=math.inf
        )
        _params.check_choice(
            name, "outcome", self.outcome, ("auto", "continuous", "binary", "survival")
        )
        if self.outcome == "survival" and self.horizon is not None:
            _params.check_real(name, "horizon", self.horizon, low=0.0, high=math.inf)
        _params.check_choice(name, "site_effects", self.site_effects, ("auto", True, False))
        cfg["treatment_coding"] = _params.check_choice(
            name, "treatment_coding", self.treatment_coding, ("centered", "binary", "adaptive")
        )
        cfg["tau_leaf_variance"] = _params.check_choice(
            name, "tau_leaf_variance", self.tau_leaf_variance, ("fixed", "sampled")
        )
        if not isinstance(self.propensity_cross_fit, bool | np.bool_):
            raise TypeError(f"{name}: propensity_cross_fit must be True or False.")
        cfg["propensity_cross_fit"] = bool(self.propensity_cross_fit)
        return cfg

    def _site_active(self, data: TrialData) -> tuple[bool, bool]:
        if self.site_effects is False or data.n_sites < 2:
            if self.site_effects is True:
                raise DataValidationError(
                    "site_effects=True needs a site column with at least two sites. Fix: pass "
                    "site=..., or use site_effects='auto'."
                )
            return (False, False)
        return (True, True)

    def _forests_to_store(self, kind: str, cfg: dict) -> tuple[str, ...]:
        per_draw = _forest_bytes(cfg["num_trees_tau"], cfg["max_depth_tau"])
        needed = ("tau",)
        if kind in ("binary", "survival"):  # their effects need the patient's prognosis too
            per_draw += _forest_bytes(cfg["num_trees_mu"], cfg["max_depth_mu"])
            needed = ("tau", "mu")
        total = per_draw * cfg["num_chains"] * cfg["num_samples"]
        return needed if total <= cfg["forest_memory_gb"] * 1e9 else ()

    def _diagnose(self) -> Diagnostics:
        post = self.posterior_["posterior"]
        step = max(1, self.data_.n // _MONITORED_PATIENTS)
        rows = np.arange(0, self.data_.n, step)[:_MONITORED_PATIENTS]
        # tau0 is not monitored: the effect forest's root leaves trade off against it (only
        # their sum is identified), so its R-hat says nothing about the effects' convergence.
        monitored = {
            "ate": post["effect"].values.mean(axis=2),
            "effect": post["effect"].values[:, :, rows],
        }
        if self.outcome_ != "binary":
            monitored["sigma"] = post["sigma"].values
        on = np.asarray(self.site_effects_)
        if on.any():
            monitored["site_sd"] = post["site_sd"].values[:, :, on]
        n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
        return diagnose(monitored, np.zeros((n_chains, n_draws), bool))

    # -- effects (the template is ITEEstimator.effect) --------------------------------------
    def _training_effect_draws(self, scale: str) -> np.ndarray:
        post = self.posterior_["posterior"]
        if self.outcome_ != "survival":
            return post["effect"].values
        return self._survival_effects(scale, post["untreated"].values, post["effect"].values)

    def _survival_effects(
        self, scale: str, untreated: np.ndarray, effect: np.ndarray
    ) -> np.ndarray:
        """(chain, draw, m) effects on a survival ``scale`` from the log-normal law of each
        patient's log T: untreated location, log-time effect (both in log time units) and the
        draw's sigma; computed in chunks of patients."""
        name, time = parse_scale(scale)
        sigma = jnp.asarray(self.posterior_["posterior"]["sigma"].values[..., None])
        horizon = self.horizon_
        out = np.empty(effect.shape)
        for start in range(0, effect.shape[-1], _CHUNK):
            part = slice(start, start + _CHUNK)
            out[..., part] = effect_on_scale(
                name, jnp.asarray(untreated[..., part]), jnp.asarray(effect[..., part]), sigma,
                "lognormal", horizon, time or horizon,
            )  # fmt: skip
        return out

    def _new_effect_draws(
        self, X: np.ndarray, codes: np.ndarray | None, labels: Any, scale: str
    ) -> np.ndarray:
        kind = self.outcome_
        needed = ("tau_trees",) if kind == "continuous" else ("tau_trees", "mu_trees")
        if any(k not in self.forests_ for k in needed):
            raise MemoryError(
                "the forests were not kept (they exceeded forest_memory_gb="
                f"{self.forest_memory_gb}), so new patients cannot be scored. Fix: refit with a "
                "larger forest_memory_gb, or fewer num_samples."
            )
        post = self.posterior_["posterior"]
        n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
        flat = jax.tree.map(
            lambda v: jnp.asarray(v.reshape(n_chains * n_draws, *v.shape[2:])), self.forests_
        )
        y_scale, flat_draws = self.outcome_scale_, n_chains * n_draws
        params = {
            "tau0": post["tau0"].values.reshape(-1) / y_scale,
            "b": post["b"].values.reshape(-1, 2),
            "site_intercept": post["site_intercept"].values.reshape(flat_draws, -1) / y_scale,
            "site_slope": post["site_slope"].values.reshape(flat_draws, -1) / y_scale,
        }
        site_draws = self._site_draws(codes, labels, n_chains * n_draws, X.shape[0])
        X_unified = X
        if self.propensity_ is not None:
            X_unified = (
                np.column_stack([X, self.propensity_.feature(X)])
                if kind != "continuous"  # the prognosis splits on it
                else np.column_stack([X, np.zeros(len(X))])
            )
        X_binned = _bartz.bin_covariates(self.binner_, X_unified.T)
        parts = 2 if kind == "survival" else 1  # survival: untreated location and effect
        out = np.empty((n_chains * n_draws, parts, X.shape[0]))
        for start in range(0, X.shape[0], _CHUNK):
            stop = min(start + _CHUNK, X.shape[0])
            out[:, :, start:stop] = np.asarray(
                _score_chunk(
                    X_binned[:, start:stop],
                    flat,
                    {k: jnp.asarray(v) for k, v in params.items()},
                    {k: v[:, start:stop] for k, v in site_draws.items()},
                    jnp.asarray(self.leaf_units_, jnp.float32),
                    kind=kind,
                )
            ).reshape(n_chains * n_draws, parts, stop - start)
        out = out.reshape(n_chains, n_draws, parts, X.shape[0])
        if kind == "binary":
            return out[:, :, 0]
        if kind == "continuous":
            return out[:, :, 0] * y_scale
        untreated = self.outcome_center_ + y_scale * out[:, :, 0]
        return self._survival_effects(scale, untreated, y_scale * out[:, :, 1])

    def _site_effects(self, scale: str, keep: np.ndarray) -> Any:
        """Each site's effect deviation ``(b1 - b0) c_s`` in outcome units (continuous)."""
        if self.outcome_ != "continuous" or not self.site_effects_[1]:
            return None
        from itelib.explain.modifiers import SiteTerms

        post = self.posterior_["posterior"]
        b = post["b"].values[:, keep]
        draws = (b[..., 1] - b[..., 0])[..., None] * post["site_slope"].values[:, keep]
        labels = tuple(str(v) for v in post["site_slope"].coords["site"].values)
        return SiteTerms(labels, draws, np.bincount(self.data_.site, minlength=len(labels)))

    def _site_draws(
        self, codes: np.ndarray | None, labels: Any, n_draws: int, m: int
    ) -> dict[str, np.ndarray]:
        """(draw, patient) site intercepts and slopes of new patients on the model scale.

        Known sites use their posterior draws; an unseen site (or no site) gets fresh draws
        from N(0, sd^2) per draw, one per distinct unseen label.
        """
        post = self.posterior_["posterior"]
        if not any(self.site_effects_):
            return {"intercept": np.zeros((n_draws, m)), "slope": np.zeros((n_draws, m))}
        if codes is None:
            raise ValueError("internal: codes are None for a model with sites")
        scale = self.outcome_scale_
        sd = post["site_sd"].values.reshape(n_draws, 2) / scale
        fresh = unseen_sites(codes, labels, n_draws, self.random_state_)
        known = ~fresh.unseen
        normals = np.asarray(fresh.normals)
        out = {}
        for j, name in enumerate(("intercept", "slope")):
            draws = post[f"site_{name}"].values.reshape(n_draws, -1) / scale
            values = np.zeros((n_draws, m))
            values[:, known] = draws[:, np.asarray(codes)[known]]
            if fresh.n_fresh:
                values[:, ~known] = normals[:, fresh.fresh_index, j] * sd[:, j : j + 1]
            out[name] = values
        return out


def _posterior_tree(
    trace: dict[str, np.ndarray], data: TrialData, kind: str, center: float, scale: float
) -> Any:
    """ArviZ DataTree of the trace on the outcome's scale (effects of the training patients).

    Survival: ``effect`` is on log time (the log time ratio) and ``untreated`` the location of
    each patient's log T without treatment, both in log time units; ``sigma`` is log T's sd.
    """
    from arviz_base import from_dict

    effect = trace["effect_train"] * scale
    if kind == "binary":
        effect = trace["risk_difference_train"]
    extra, extra_dims = {}, {}
    if kind == "survival":
        extra = {"untreated": center + scale * trace["untreated_train"]}
        extra_dims = {"untreated": ["patient"]}
    posterior = {
        "tau0": trace["tau0"] * scale,
        "sigma": trace["sigma"] * scale,
        "b": trace["b"],
        "site_intercept": trace["site_intercept"] * scale,
        "site_slope": trace["site_slope"] * scale,
        "site_sd": trace["site_sd"] * scale,
        "effect": effect,
        "latent_effect": trace["effect_train"] * scale,
        **extra,
    }
    dims = {
        "b": ["arm"],
        "site_intercept": ["site"],
        "site_slope": ["site"],
        "site_sd": ["site_component"],
        "effect": ["patient"],
        "latent_effect": ["patient"],
        **extra_dims,
    }
    coords = {
        "arm": ["control", "treated"],
        "site": (
            [str(s) for s in data.site_index.levels] if data.site_index is not None else ["all"]
        ),
        "site_component": ["intercept", "slope"],
        "patient": list(data.patient_ids),
    }
    return from_dict({"posterior": posterior}, dims=dims, coords=coords)


def _forest_bytes(num_trees: int, depth: int) -> int:
    """Bytes of one draw of a forest: float32 leaves (2^d) plus uint8/16 split tables (2^(d-1))."""
    return num_trees * (4 * 2**depth + 2 * 2 * 2 ** (depth - 1))


@partial(jax.jit, static_argnames=("kind",))
def _score_chunk(
    X_binned: jax.Array,
    forests: dict[str, dict[str, jax.Array]],
    params: dict[str, jax.Array],
    sites: dict[str, jax.Array],
    units: jax.Array,
    *,
    kind: str,
) -> jax.Array:
    """(draw, m) effects of new patients on the model scale (continuous), risk differences
    (binary), or (draw, 2, m) untreated locations and effects on standardized log time
    (survival)."""
    mu_unit, mu_offset, tau_unit = units[0], units[1], units[2]

    def one(tau_tree, mu_tree, tau0, b, intercept, slope):
        tau_all = tau0 + slope + _bartz.evaluate_trees(X_binned, tau_tree, tau_unit)
        if kind == "continuous":
            return (b[1] - b[0]) * tau_all
        base = mu_offset + intercept + _bartz.evaluate_trees(X_binned, mu_tree, mu_unit)
        if kind == "survival":
            return jnp.stack([base + b[0] * tau_all, (b[1] - b[0]) * tau_all])
        cdf = jax.scipy.stats.norm.cdf
        return cdf(base + b[1] * tau_all) - cdf(base + b[0] * tau_all)

    mu = forests.get("mu_trees", forests["tau_trees"])
    return jax.lax.map(
        lambda a: one(*a),
        (forests["tau_trees"], mu, params["tau0"], params["b"], sites["intercept"], sites["slope"]),
        batch_size=64,
    )


def _initial_state(
    data: TrialData,
    kind: str,
    y: np.ndarray,
    X_binned: jax.Array,
    binner: Any,
    has_score: bool,
    active: tuple[bool, bool],
    cfg: dict,
    censored_at: np.ndarray | None,
) -> _bartz.SiteBCFState:
    """bartz's BCF state with our priors (Hahn et al. 2020; stochtree's defaults where they agree).

    On the standardized outcome: mu leaves N(0, s2_mu) with s2_mu ~ IG(3, 1/m_mu) started at
    1/m_mu; tau leaves N(0, s2_tau) with s2_tau ~ IG(3, 0.1/m_tau) (or fixed) at 0.05/m_tau
    (``_TAU_LEAF_VARIANCE``; survival: 0.5/m_tau); tau0 ~ N(0, 1); sigma^2 ~ IG(3/2, 3/2)
    (harmonic mean 1); site sds ~ C+(0, 1) (intercepts) and C+(0, 0.5) (slopes). Probit: mu
    leaves N(0, 1/m_mu), tau leaves sized so |risk difference| < 0.9 with prior probability
    ~0.68 (stochtree's delta_max), offset at the probit of the event rate. Survival: the
    continuous priors on standardized log time but Hahn et al.'s effect prior
    (:func:`_tau_priors`), censored patients starting at their censoring times.
    """
    m_mu, m_tau = cfg["num_trees_mu"], cfg["num_trees_tau"]
    tau_tree_prior, tau_leaf_variance = _tau_priors(kind)
    max_split = jnp.asarray(binner.max_split)
    max_split_tau = max_split.at[-1].set(0) if has_score else max_split  # pihat: mu only
    common: dict[str, Any] = {}
    if kind != "binary":
        offset = 0.0
        mu_prec = _bartz.Wishart(nu=6.0, rate=2.0 / m_mu, value=float(m_mu))
        sigma2_tau = tau_leaf_variance / m_tau
        common["error_cov_inv"] = _bartz.Wishart(nu=3.0, rate=3.0, value=1.0)
    else:
        rate = float(np.clip(np.mean(data.y), 1e-3, 1 - 1e-3))
        offset = float(ndtri(rate))
        mu_prec = _bartz.Wishart(nu=None, rate=None, value=float(m_mu))
        delta_max, q = 0.9, float(ndtri((0.6827 + 1) / 2))
        sigma2_tau = (delta_max / (q / math.sqrt(2 * math.pi))) ** 2 / m_tau
    if cfg["tau_leaf_variance"] == "sampled":  # IG(3, 2 sigma2_tau): prior mean sigma2_tau
        tau_prec = _bartz.Wishart(nu=6.0, rate=4.0 * sigma2_tau, value=1.0 / sigma2_tau)
    else:
        tau_prec = _bartz.Wishart(nu=None, rate=None, value=1.0 / sigma2_tau)
    site = np.zeros(data.n, np.int32) if data.site is None else np.asarray(data.site, np.int32)
    state = _bartz.init_state(
        X_binned=X_binned,
        trt=jnp.asarray(data.t.astype(bool)),
        y=jnp.asarray(y, jnp.float32),
        site=jnp.asarray(site),
        n_sites=max(1, data.n_sites),
        site_scale=jnp.asarray([1.0, 0.5]),
        site_active=jnp.asarray(active),
        num_chains=cfg["num_chains"],
        censored_at=None if censored_at is None else jnp.asarray(censored_at, jnp.float32),
        outcome_type="binary" if kind == "binary" else "continuous",
        offset=offset,
        max_split_mu=jnp.copy(max_split),
        max_split_tau=jnp.copy(max_split_tau),
        num_trees_mu=m_mu,
        num_trees_tau=m_tau,
        p_nonterminal_mu=_bartz.make_p_nonterminal(cfg["max_depth_mu"], 0.95, 2.0),
        p_nonterminal_tau=_bartz.make_p_nonterminal(cfg["max_depth_tau"], *tau_tree_prior),
        leaf_prior_cov_inv_mu=mu_prec,
        leaf_prior_cov_inv_tau=tau_prec,
        min_points_per_leaf_mu=5,
        min_points_per_leaf_tau=5,
        filter_splitless_vars_mu=int(jnp.sum(max_split == 0)),
        filter_splitless_vars_tau=int(jnp.sum(max_split_tau == 0)),
        tau_0_prior_var=1.0,
        adaptive_coding=cfg["treatment_coding"] == "adaptive",
        **common,
    )
    if cfg["treatment_coding"] == "centered":
        state = _bartz.with_fixed_coding(state, (-0.5, 0.5))
    return state


def _check_finite(trace: dict[str, Any]) -> None:
    for name, values in trace.items():
        if isinstance(values, dict) or name.endswith("trees"):
            continue
        if not np.all(np.isfinite(values)):
            raise FloatingPointError(
                f"the sampler produced non-finite values of {name}. This usually means an "
                "extreme outcome or covariate scale; check for outliers or rescale."
            )
