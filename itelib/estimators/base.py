"""The estimator lifecycle, written once (EconML's vocabulary, scikit-learn's habits).

``__init__`` stores parameters only; :meth:`ITEEstimator.fit` validates, learns and returns
``self``; fitted state ends in ``_``; ``effect`` returns an
:class:`~itelib.posterior.EffectPosterior`. ``fit``, ``effect`` and ``ate`` are template
methods: every estimator goes through the same steps and fills in a few hooks::

    fit:    options -> seed -> TrialData -> outcome kind -> propensity (_inputs) -> _sample
            -> record_fit
            -> _diagnose (ConvergenceWarning)
    effect: fitted? -> scale -> patients (training, or new ones encoded like the training data)
            -> memory budget -> _training_effect_draws / _new_effect_draws -> EffectPosterior
"""

from __future__ import annotations

import gc
import os
from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, Self

import numpy as np
from sklearn.base import BaseEstimator

from itelib.data import TrialData, outcome_kind, require_covariates
from itelib.estimators.fitted import Fit, record_fit
from itelib.estimators.imputed import has_missing
from itelib.estimators.support import warn_outside_support, warn_patients_outside_support
from itelib.exceptions import NotFittedError
from itelib.posterior import EffectPosterior
from itelib.propensity import check_propensity_option, propensity_for_fit
from itelib.survival_outcome import (
    SURVIVAL_SCALES,
    looks_like_survival,
    parse_scale,
    read_survival,
    scale_key,
)

__all__ = ["COLLECT_ABOVE_GB", "EFFECT_MAX_GB", "FitInputs", "ITEEstimator", "resolve_seed"]

EFFECT_MAX_GB = 4.0  # default budget of effect(X): the float64 draws it returns for new patients
COLLECT_ABOVE_GB = 0.05  # effect(X) requests above this run the cyclic garbage collector first


class FitInputs(NamedTuple):
    """What every fit starts from: validated data, outcome kind, propensity, seed, options."""

    data: TrialData
    kind: str  # "continuous", "binary" or "survival"
    score: Any  # PropensityFeature, or None for a randomized trial
    seed: int
    options: Any  # whatever the estimator's _validated_options returned
    survival: Any = None  # SurvivalOutcome (times and events) of a survival fit


class ITEEstimator(BaseEstimator, metaclass=ABCMeta):
    """Base class: per-patient treatment-effect posteriors from (Y, T, X, site).

    Subclasses provide ``__init__`` (parameters only) and the hooks: :meth:`_validated_options`,
    :meth:`_sample`, :meth:`_training_effect_draws`, :meth:`_new_effect_draws`; optionally
    :meth:`_propensity`, :meth:`_diagnose`, :meth:`_ate_draws` and the saving pair
    :meth:`_saved_state` / :meth:`_restore_state`.
    """

    _INFERENCE = "mcmc"  # what the draws are; an approximation says so here
    _BINARY_SCALES: tuple[str, ...] = ("risk_difference",)  # the first is the default
    _POOLS_SITES = True  # each site its own, partially pooled effect (the one-arm-site warning)
    _TAKES_SURVIVAL = False  # fits outcome="survival" (Y = time, event)

    # -- the lifecycle -----------------------------------------------------------------------
    def fit(
        self,
        Y: Any,
        T: Any,
        *,
        X: Any,
        site: Any = None,
        propensity: Any = None,
        categorical: tuple[str, ...] | list[str] = (),
        treatment_labels: tuple[Any, Any] | None = None,
    ) -> Self:
        """Learn the posterior of every patient's effect.

        Parameters
        ----------
        Y : pandas.Series or 1-d array
            Outcome: continuous, or binary (0/1 or bool). With ``outcome="survival"``
            (HierarchicalITE): time and event, as a two-column DataFrame, a scikit-survival
            structured array or an (n, 2) array (:mod:`itelib.survival_outcome`).
        T : pandas.Series or 1-d array
            Treatment: 0/1, bool, or two labels given in ``treatment_labels``.
        X : pandas.DataFrame or 2-d array
            Covariates; categorical columns (``category`` dtype or named in ``categorical``)
            are one-hot encoded. The index holds the patient ids.
        site : pandas.Series or 1-d array, optional
            Site or clinic of each patient.
        propensity : None, "estimate" or array
            None: a randomized trial (checked: a warning if treatment is predictable from the
            covariates). ``"estimate"``: scores from the estimator's propensity model. An
            array: known scores (where the estimator takes them). Patients outside
            [0.05, 0.95] get an :class:`~itelib.OverlapWarning`.
        categorical : sequence of str
            Object/string columns of ``X`` to one-hot encode.
        treatment_labels : (control, treated), optional
            Labels of ``T`` when they are not 0/1 or bool.

        Returns
        -------
        self

        Notes
        -----
        With ``missing="impute"`` (a parameter of every estimator) and missing covariates,
        the estimator is fitted once per imputed data set and the draws are pooled (see
        :mod:`itelib.estimators.imputed`); every patient with an outcome and a treatment is
        kept.
        """
        n_imputations = self._missing_option()
        if n_imputations and has_missing(X):
            from itelib.estimators.imputed import fit_imputed

            seed = resolve_seed(self.random_state)
            check_propensity_option(propensity, f"{type(self).__name__}.fit")
            self._validated_options(propensity)
            kwargs = dict(Y=Y, T=T, X=X, site=site, propensity=propensity,
                          categorical=categorical, treatment_labels=treatment_labels)  # fmt: skip
            fit_imputed(self, n_imputations, seed, kwargs)
            return self
        for stale in ("imputations_", "imputation_", "new_patient_imputer_", "privacy_"):
            self.__dict__.pop(stale, None)  # a refit on complete rows: not pooled, not noisy
        inputs = self._inputs(Y, T, X, site, propensity, categorical, treatment_labels)
        fit = self._sample(inputs)
        record_fit(
            self, data=inputs.data, outcome=inputs.kind, random_state=inputs.seed,
            propensity=inputs.score, fit=fit,
        )  # fmt: skip
        self.diagnostics_ = self._diagnose()
        if self.diagnostics_ is not None:
            self.diagnostics_.warn(advice=self._convergence_advice(inputs), stacklevel=3)
        self.model_check_ = self._model_check()
        if self.model_check_ is not None:
            self.model_check_.warn(stacklevel=2)
        return self

    def _refuse_survival(self) -> NoReturn:
        """Raise: this estimator does not take survival outcomes; name the ones that do."""
        from itelib.estimators.registry import survival_estimators

        raise ValueError(
            f"{type(self).__name__} does not take survival (time-to-event) outcomes. Fix: use "
            f'{" or ".join(survival_estimators())} with outcome="survival", '
            "accelerated-failure-time models of the censored times whose effects are RMST "
            "differences, survival-probability differences or time ratios."
        )

    def _missing_option(self) -> int:
        """``missing`` and ``n_imputations``, checked: M for ``"impute"``, 0 for ``"refuse"``."""
        from itelib import _params
        from itelib.imputation import MISSING_OPTIONS

        name = type(self).__name__
        missing = getattr(self, "missing", "refuse")
        if missing not in MISSING_OPTIONS:
            raise ValueError(
                f"{name}(missing={missing!r}) is not an option; choose one of "
                f"{list(MISSING_OPTIONS)}: 'refuse' (the default) stops at missing covariates "
                "and names them; 'impute' fits once per imputed data set and pools the draws."
            )
        m = _params.check_int(name, "n_imputations", getattr(self, "n_imputations", 5), minimum=2)
        if missing == "impute" and getattr(self, "outcome", None) == "survival":
            raise ValueError(
                f'{name}(outcome="survival", missing="impute") is not supported: survival '
                'outcomes are fitted on complete rows. Fix: missing="refuse" and complete '
                "covariates."
            )
        return m if missing == "impute" else 0

    @property
    def _pooled(self) -> bool:
        """Fitted by multiple imputation (one fit per imputed data set in ``imputations_``)."""
        return "imputations_" in self.__dict__

    def check(self) -> Any:
        """Does the fitted model leave structure in the outcomes it was fitted to?

        Tests the residuals of the posterior-mean fitted outcomes against each covariate, the
        propensity and the fitted values, and against a cross-fitted flexible model (see
        :func:`itelib.model_check.check_model`, which states the false-alarm rate). ``fit``
        runs it and issues a :class:`~itelib.ModelCheckWarning` naming the covariate and the
        fix when it flags.

        Returns
        -------
        itelib.model_check.ModelCheck
            ``table`` (one row per test), ``flagged``, ``verdict``.
        """
        self._check_fitted()
        if self._pooled:
            raise NotImplementedError(
                f"this {type(self).__name__} was fitted once per imputed data set "
                "(missing='impute'); check each fit: [fit.check() for fit in est.imputations_]."
            )
        result = self._model_check()
        if result is None and self.outcome_ == "survival":
            raise NotImplementedError(
                "check() tests the residuals of continuous and binary outcomes; censored survival "
                "times have none it can test yet. Fix: est.posterior_predictive() against the "
                "observed times (e.g. Kaplan-Meier curves per arm)."
            )
        if result is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no model check yet: its prognostic part is a forest, "
                "which the check's flexible comparison model would not outdo. HierarchicalITE "
                "has one."
            )
        return result

    def _inputs(
        self, Y: Any, T: Any, X: Any, site: Any = None, propensity: Any = None,
        categorical: Any = (), treatment_labels: Any = None,
    ) -> FitInputs:  # fmt: skip
        """The first half of :meth:`fit`: options, seed, validated data, outcome kind, score."""
        check_propensity_option(propensity, f"{type(self).__name__}.fit")
        options = self._validated_options(propensity)
        survival = None
        if self._TAKES_SURVIVAL and getattr(self, "outcome", None) == "survival":
            survival = read_survival(Y)  # the times go on as the outcome
            Y = survival.time
        elif looks_like_survival(Y):
            if not self._TAKES_SURVIVAL:
                self._refuse_survival()
            raise ValueError(
                f"Y has two columns: a survival outcome (time, event)? Fix: "
                f'{type(self).__name__}(outcome="survival"); else pass Y as one column.'
            )
        seed = resolve_seed(self.random_state)
        data = TrialData.from_arrays(
            Y, T, X=X, site=site, categorical=categorical, treatment_labels=treatment_labels,
            pooled_sites=self._POOLS_SITES,
        )  # fmt: skip
        require_covariates(data, type(self).__name__)
        kind = outcome_kind(self.outcome, data)
        self._check_data(data, options)
        score = self._propensity(propensity, data, seed, options)
        return FitInputs(data, kind, score, seed, options, survival)

    def effect(
        self,
        X: Any = None,
        *,
        site: Any = None,
        scale: str | None = None,
        max_gb: float = EFFECT_MAX_GB,
        time: float | None = None,
    ) -> EffectPosterior:
        """Posterior of each patient's treatment effect.

        Parameters
        ----------
        X : pandas.DataFrame or 2-d array, optional
            New patients (every training covariate column); None: the training patients.
            Every patient far outside the training covariates (beyond a covariate's range by
            half of it; :mod:`itelib.estimators.support`) is named in a
            :class:`~itelib.DataWarning`.
        site : pandas.Series, 1-d array or scalar, optional
            The new patients' sites. An unseen site, or ``site=None`` when the model has sites,
            gives the population-level effect with the between-site uncertainty.
        scale : str, optional
            Continuous outcomes: ``"outcome"``. Binary outcomes: ``"risk_difference"``
            (``P(y=1|t=1,x) - P(y=1|t=0,x)`` per draw), and ``"log_odds_ratio"`` where the
            model has one. Survival outcomes: ``"rmst"`` (difference in restricted mean
            survival time up to ``horizon_``), ``"survival"`` (difference in survival
            probability at ``time``) or ``"time_ratio"`` (``T`` treated over untreated: its
            ``prob_benefit`` threshold is 1). None: the first of these.
        max_gb : float
            Memory budget of the returned draws for new patients; a larger request raises
            ``MemoryError`` before anything is allocated, saying how to batch it.
        time : float, optional
            ``scale="survival"``: the time at which survival probabilities are compared.

        Returns
        -------
        EffectPosterior
            Draws with dims ``(chain, draw, patient)``, patient ids from ``X``'s index.
        """
        self._check_fitted()
        scale = self._check_scale(scale, time)
        _check_site_needs_X(X, site)
        if X is None:
            draws, ids = self._training_draws(scale), self.data_.patient_ids
        elif self._imputes_new(X):
            draws, ids, _ = self._imputed_new_draws(X, site, scale, max_gb)
        else:
            Xs, codes, ids = self.data_.transform(X, site)
            names = self.data_.feature_names
            warn_patients_outside_support(self._training_support(), Xs, names, ids)
            self._check_effect_memory(len(Xs), max_gb)
            draws = self._new_effect_draws(Xs, codes, site, scale)
        return EffectPosterior.from_draws(draws, patient_ids=ids, attrs=self._attrs(scale))

    def _training_support(self) -> np.ndarray:
        """Standardized training covariates whose ranges new patients are checked against
        (:mod:`itelib.estimators.support` reads only each column's minimum and maximum)."""
        return self.data_.X

    # -- multiple imputation (missing="impute"; itelib.estimators.imputed) -------------------
    def _training_draws(self, scale: str) -> np.ndarray:
        if self._pooled:
            return self._pool_draws([s._training_effect_draws(scale) for s in self.imputations_])
        return self._training_effect_draws(scale)

    def _imputes_new(self, X: Any) -> bool:
        """New patients go through the imputations: a pooled fit, or missing covariates
        with ``missing="impute"``."""
        return self._pooled or (
            getattr(self, "missing", "refuse") == "impute"
            and has_missing(X, self.data_.encoder.columns)
        )

    def _imputed_new_draws(
        self, X: Any, site: Any, scale: str, max_gb: float
    ) -> tuple[np.ndarray, Any, np.ndarray]:
        from itelib.estimators.imputed import new_patient_draws

        total = self._draws_per_patient() * (1 if self._pooled else self.n_imputations)
        self._check_effect_memory(len(X), max_gb, n_draws=total)
        draws, ids, covariates = new_patient_draws(self, X, site, scale)
        return self._pool_draws(draws), ids, covariates[0]

    def _pool_draws(self, draws: list[np.ndarray]) -> np.ndarray:
        """Pool the imputations' (chain, draw, ...) draws: concatenated along ``chain`` (a
        mixture of the completed-data posteriors; Zhou & Reiter 2010)."""
        return draws[0] if len(draws) == 1 else np.concatenate(draws, axis=0)

    def ate(
        self,
        X: Any = None,
        *,
        site: Any = None,
        scale: str | None = None,
        max_gb: float = EFFECT_MAX_GB,
        time: float | None = None,
    ) -> EffectPosterior:
        """Posterior of the average effect over a population of patients.

        Parameters
        ----------
        X : pandas.DataFrame or 2-d array, optional
            The target population's covariates (as in :meth:`effect`); None: the training
            patients. Patients outside the training covariates' support (see
            :mod:`itelib.estimators.support`) give a :class:`~itelib.DataWarning` when they
            are more than 5 % of the population.
        site : pandas.Series, 1-d array or scalar, optional
            The target patients' sites, as in :meth:`effect`.
        scale, max_gb, time
            As in :meth:`effect`.

        Returns
        -------
        EffectPosterior
            Dims ``(chain, draw)``: draw by draw, the mean of the population's effect draws;
            attributes ``quantity="ate"``, ``population`` (``"training"`` or ``"X"``) and
            ``n_patients``.
        """
        self._check_fitted()
        scale = self._check_scale(scale, time)
        _check_site_needs_X(X, site)
        if X is None:
            draws, population, n = self._pooled_ate_draws(scale), "training", self.data_.n
        elif self._imputes_new(X):
            draws, _, Xs = self._imputed_new_draws(X, site, scale, max_gb)
            warn_outside_support(self._training_support(), Xs, self.data_.feature_names)
            draws, population, n = draws.mean(axis=2), "X", len(Xs)
        else:
            Xs, codes, _ = self.data_.transform(X, site)
            warn_outside_support(self._training_support(), Xs, self.data_.feature_names)
            self._check_effect_memory(len(Xs), max_gb)
            draws = self._new_effect_draws(Xs, codes, site, scale).mean(axis=2)
            population, n = "X", len(Xs)
        attrs = {**self._attrs(scale, quantity="ate"), "population": population, "n_patients": n}
        return EffectPosterior.from_draws(draws, attrs=attrs)

    def att(self, *, scale: str | None = None, time: float | None = None) -> EffectPosterior:
        """Posterior of the average effect over the treated training patients (``T = 1``)."""
        return self._arm_average(1, "att", scale, time)

    def atc(self, *, scale: str | None = None, time: float | None = None) -> EffectPosterior:
        """Posterior of the average effect over the control training patients (``T = 0``)."""
        return self._arm_average(0, "atc", scale, time)

    def _arm_average(
        self, arm: int, quantity: str, scale: str | None, time: float | None = None
    ) -> EffectPosterior:
        self._check_fitted()
        scale = self._check_scale(scale, time)
        mask = self.data_.t == arm
        draws = self._training_draws(scale)[:, :, mask].mean(axis=2)
        attrs = {**self._attrs(scale, quantity=quantity), "population": "training",
                 "n_patients": int(mask.sum())}  # fmt: skip
        return EffectPosterior.from_draws(draws, attrs=attrs)

    def modifiers(
        self,
        *,
        prob: float = 0.95,
        tree_depth: int = 2,
        max_draws: int = 1000,
        scale: str | None = None,
    ) -> Any:
        """Which covariates modify the effect, and how sure: tables on the effect's scale.

        Each posterior draw of the training patients' effects is projected onto the
        covariates (least squares) and onto a shallow tree fitted to the posterior mean
        effect (Woody, Carvalho & Murray 2021), so the projection's coefficients, each
        covariate's importance and the share of the effects' variation the projection
        reproduces (summary R²) have posteriors. HierarchicalITE adds its own modifier
        coefficients (``exact``, pairwise products as pairs) and site effects (``sites``);
        BayesianCausalForest its site effects. CausalForest, whose per-patient draws are
        independent, gives the doubly robust best linear projection instead (a normal
        approximation; its R² are those of the point estimates, without intervals).

        Parameters
        ----------
        prob : float
            Probability of the equal-tailed intervals.
        tree_depth : int
            Depth of the summary tree (1 to 4).
        max_draws : int
            Draws projected (evenly thinned within chains); CausalForest: normal draws.
        scale : str, optional
            As in :meth:`effect`.

        Returns
        -------
        itelib.explain.modifiers.ModifierSummary
            ``table`` (per covariate column: per unit, per sd, intervals, P(>0), importance),
            ``importance``, ``r2``, ``tree``, ``exact``, ``sites`` and ``to_datatree()``.
        """
        from itelib.estimators.modifiers import modifier_summary

        return modifier_summary(
            self, prob=prob, tree_depth=tree_depth, max_draws=max_draws, scale=scale
        )

    def effect_interval(
        self, X: Any = None, *, site: Any = None, alpha: float = 0.05
    ) -> tuple[np.ndarray, np.ndarray]:
        """Central ``1 - alpha`` interval of each patient's effect, as EconML returns it.

        Returns
        -------
        lower, upper : ndarray
            One entry per patient, in the order of ``X``.
        """
        _check_alpha(alpha)
        interval = self.effect(X, site=site).interval(prob=1 - alpha)
        return interval["lower"].to_numpy(), interval["upper"].to_numpy()

    # -- the hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _validated_options(self, propensity: Any) -> Any:
        """Check every constructor option (and the kind of ``propensity``) before the data are
        touched; return whatever :meth:`_sample` needs of them."""

    def _check_data(self, data: TrialData, options: Any) -> None:
        """What this estimator needs of the data beyond :class:`TrialData`'s checks (e.g. enough
        sites for its options); raised before any model is fitted."""

    def _propensity(self, propensity: Any, data: TrialData, seed: int, options: Any) -> Any:
        """The propensity feature of the fit (None for a randomized trial)."""
        return propensity_for_fit(
            propensity, data, classifier=self.propensity_classifier, random_state=seed
        )

    @abstractmethod
    def _sample(self, inputs: FitInputs) -> Fit:
        """Learn from the validated data; return the draws and the estimator's own state."""

    @abstractmethod
    def _training_effect_draws(self, scale: str) -> np.ndarray:
        """(chain, draw, patient) effects of the training patients on ``scale``."""

    @abstractmethod
    def _new_effect_draws(
        self, X: np.ndarray, codes: np.ndarray | None, labels: Any, scale: str
    ) -> np.ndarray:
        """(chain, draw, patient) effects of new patients: standardized covariates ``X``, site
        ``codes`` (negative: unseen) and the site ``labels`` the user gave."""

    def _ate_draws(self, scale: str) -> np.ndarray:
        """(chain, draw) average effect over the training patients."""
        return self._training_effect_draws(scale).mean(axis=2)

    def _exact_modifiers(self, scale: str, keep: np.ndarray) -> Any:
        """The model's own modifier coefficients (``ExactTerms``, draws ``keep`` of each
        chain) on ``scale``; None: the model has none to report."""
        return None

    def _site_effects(self, scale: str, keep: np.ndarray) -> Any:
        """Each training site's effect deviation (``SiteTerms``) on ``scale``; None: none."""
        return None

    def _modifier_scores(self, scale: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Doubly robust scores and point effects of the training patients, for an estimator
        whose effect draws are not joint; None: project the draws."""
        return None

    def _pooled_ate_draws(self, scale: str) -> np.ndarray:
        if self._pooled:
            return self._pool_draws([s._ate_draws(scale) for s in self.imputations_])
        return self._ate_draws(scale)

    def _diagnose(self) -> Any:
        """Convergence diagnostics of the fit (None: nothing sampled to diagnose)."""
        return None

    def _convergence_advice(self, inputs: FitInputs) -> Any:
        """The advisor (:mod:`itelib.inference.advice`) whose advice a ConvergenceWarning gives:
        the next setting from this fit's own; None: generic advice."""
        return None

    def _model_check(self) -> Any:
        """The :class:`~itelib.model_check.ModelCheck` of this fit, or None where there is none."""
        return None

    def _draws_per_patient(self) -> int:
        if self._pooled:
            return sum(s._draws_per_patient() for s in self.imputations_)
        sizes = self.posterior_["posterior"].sizes
        return sizes["chain"] * sizes["draw"]

    # -- saving ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted estimator to one netCDF4 file, atomically; never pickles.

        The file holds the posterior, the training patients as the model saw them (so it is
        patient-level data: share it as you would the data set), the preprocessing and the
        parameters; :meth:`load` gives back an estimator with the same ``effect()``. See
        :mod:`itelib.estimators.persistence` for the layout.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        from itelib.estimators.persistence import save_estimator

        return save_estimator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read an estimator written by :meth:`save` (checked against its checksums).

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            If the file is unreadable, damaged, from an incompatible format version, or holds
            another estimator class.
        """
        from itelib.estimators.persistence import load_estimator

        return load_estimator(path, expected=cls)

    def _saved_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Estimator-specific fitted settings (JSON) and arrays (``xarray.Dataset`` groups)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved.")

    def _restore_state(self, fitted: dict[str, Any], groups: dict[str, Any]) -> None:
        """Inverse of :meth:`_saved_state`, on an estimator whose common state is restored."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded.")

    # -- shared checks -----------------------------------------------------------------------
    def _attrs(self, scale: str, quantity: str = "individual_effect") -> dict[str, Any]:
        """Root attributes of the posteriors this estimator returns."""
        scale, time = parse_scale(scale)
        attrs = {
            "estimator": type(self).__name__,
            "inference": self._INFERENCE,
            "scale": scale,
            "outcome": self.data_.outcome_name,
            "quantity": quantity,
            "random_state": self.random_state_,
        }
        if time is not None:  # scale="survival": the time of the survival probabilities
            attrs["time"] = time
        elif scale == "rmst":
            attrs["horizon"] = float(self.horizon_)
        if self._pooled:  # chain k of the draws belongs to imputation k // (chains per fit)
            info = self.imputation_
            attrs |= {
                "missing": "impute",
                "n_imputations": info.n_imputations,
                "missing_share": info.missing_share,
                "n_incomplete": info.n_incomplete,
            }
        return attrs

    def _check_scale(self, scale: str | None, time: float | None = None) -> str:
        """The scale's key (:func:`itelib.survival_outcome.scale_key`): the scale itself, or
        ``"survival@t"`` for survival probabilities at ``t``."""
        allowed = {"continuous": ("outcome",), "survival": SURVIVAL_SCALES}.get(
            self.outcome_, self._BINARY_SCALES
        )
        if scale is None:
            scale = allowed[0]
        if scale not in allowed:
            raise ValueError(
                f"scale={scale!r} is not available from a {type(self).__name__} fit to a "
                f"{self.outcome_} outcome; choose one of {list(allowed)}."
            )
        return scale_key(scale, time, f"{type(self).__name__}.effect")

    def _check_effect_memory(
        self, n_patients: int, max_gb: Any, n_draws: int | None = None
    ) -> None:
        """Refuse, before allocating, an ``effect(X)`` whose draws would exceed ``max_gb``."""
        from itelib import _params

        n_draws = self._draws_per_patient() if n_draws is None else n_draws
        budget = _params.check_real(type(self).__name__, "max_gb", max_gb, low=0.0, high=np.inf)
        needed = 8.0 * n_draws * n_patients / 1e9
        if needed > budget:
            batch = max(1, int(budget * 1e9 / (8.0 * n_draws)))
            raise MemoryError(
                f"effect(X) for {n_patients:,} patients returns {n_draws:,} float64 draws each: "
                f"{needed:.2f} GB, over max_gb={budget:g}. Fix: pass the patients in batches of "
                f"at most {batch:,} rows (e.g. X.iloc[i:i + {batch}]), or raise max_gb if the "
                "machine has the memory."
            )
        if needed > COLLECT_ABOVE_GB:
            # Earlier results' draws sit in DataTrees, which hold reference cycles, so CPython
            # frees them only when its cyclic collector runs, and that counts objects, not
            # bytes: batched effect(X) calls grew by one batch of draws per call (1.6 GB per
            # 50,000 patients x 4,000 draws) until the machine ran out. Collect first.
            gc.collect()

    def _check_fitted(self) -> None:
        if not hasattr(self, "data_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(Y, T, X=...) before "
                "asking for effects."
            )


MAX_SEED = 2**32 - 1  # NumPy's SeedSequence/legacy seeds and jax.random.key take uint32


def resolve_seed(random_state: Any) -> int:
    """``None`` means seed 0 (deterministic, recorded); otherwise a non-negative int."""
    if random_state is None:
        return 0
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise TypeError(
            f"random_state must be an int or None; got {type(random_state).__name__} "
            f"{random_state!r}."
        )
    if not 0 <= random_state <= MAX_SEED:
        raise ValueError(
            f"random_state must lie in [0, 2**32 - 1 = {MAX_SEED}], the seeds NumPy and JAX "
            f"take; got {random_state}. Fix: a smaller seed, e.g. random_state="
            f"{random_state % 2**32 if random_state > 0 else 0}."
        )
    return int(random_state)


def _check_site_needs_X(X: Any, site: Any) -> None:  # noqa: N802 (X is the covariates)
    """``effect(X=None, site=...)``: the training patients' sites are already known."""
    if X is None and site is not None:
        raise ValueError(
            "effect(X=None, site=...) is ambiguous: the training patients' sites are "
            "known. Fix: pass X with site, or neither."
        )


def _check_alpha(alpha: Any) -> None:
    if not isinstance(alpha, float | int) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}.")
