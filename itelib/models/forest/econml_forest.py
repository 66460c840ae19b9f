"""``CausalForest``: EconML's ``CausalForestDML`` behind itelib's estimator API.

EconML's causal forest (Athey, Tibshirani & Wager 2019, with double machine learning nuisances)
gives frequentist, asymptotically normal intervals. ``effect()`` turns them into an
:class:`~itelib.EffectPosterior` of draws from N(estimate, stderr^2) per patient, labelled
``inference="normal_approximation"``: an approximate posterior, useful side by side with the
Bayesian estimators, not a posterior. ``effect_interval`` returns EconML's own intervals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from itelib import _params
from itelib._threads import one_thread
from itelib.data import TrialData
from itelib.estimators.base import (
    EFFECT_MAX_GB,
    FitInputs,
    ITEEstimator,
    _check_alpha,
    _check_site_needs_X,
    resolve_seed,
)
from itelib.estimators.fitted import Fit
from itelib.exceptions import DataValidationError
from itelib.imputation import rubin
from itelib.posterior import EffectPosterior
from itelib.propensity import check_propensity_option, propensity_for_fit

__all__ = ["CausalForest"]


def _check_model(owner: str, name: str, model: Any, methods: tuple[str, ...], what: str) -> None:
    """``model_y`` / ``model_t``: None (the default) or a scikit-learn estimator, never a name."""
    if model is None or all(callable(getattr(model, m, None)) for m in methods):
        return
    raise TypeError(
        f"{owner}({name}={model!r}) must be a scikit-learn {what} (an object with "
        f"{' and '.join(methods)}), or None for the default gradient boosting; got "
        f"{type(model).__name__}. Fix: e.g. {name}=sklearn.ensemble.HistGradientBoosting"
        f"{'Regressor' if what == 'regressor' else 'Classifier'}(), or leave it out."
    )


class CausalForest(ITEEstimator):
    """EconML's honest causal forest with cross-fitted nuisance models.

    Parameters
    ----------
    model_y, model_t : scikit-learn estimators, optional
        Outcome and treatment (propensity) models; any scikit-learn regressor / classifier.
        Defaults: gradient boosting (``HistGradientBoostingRegressor``, or ``...Classifier``
        for a binary outcome, and ``HistGradientBoostingClassifier`` for treatment).
    n_estimators : int
        Trees in the final forest (a multiple of 4, EconML's subforest size).
    min_samples_leaf : int
        Minimum patients per leaf of the final forest.
    max_depth : int, optional
    cv : int
        Cross-fitting folds: stratified by treatment, or by site (``GroupKFold``) when ``fit``
        gets sites, so a site never straddles folds.
    outcome : {"auto", "continuous", "binary"}
        Binary outcomes report risk differences (EconML's ``discrete_outcome``).
    num_draws : int
        Draws of the normal approximation in ``effect()``.
    n_jobs : int
        Threads for the forest (EconML's default -1 is all cores; 1 inside study workers).
    missing : {"refuse", "impute"}
        Missing covariates: ``"refuse"`` names every incomplete column; ``"impute"`` fits once
        per imputed data set (chained equations with posterior draws, using the outcome and
        the treatment) and pools the draws (:mod:`itelib.estimators.imputed`).
    n_imputations : int
        ``missing="impute"``: imputed data sets M (at least 2; default 5, see
        ``docs/decisions.md``).
    random_state : int, optional

    Attributes
    ----------
    model_ : econml.dml.CausalForestDML
    data_ : TrialData
    """

    _INFERENCE = "normal_approximation"
    _POOLS_SITES = False  # sites enter the nuisance models and the folds only

    def __init__(
        self,
        *,
        model_y: Any = None,
        model_t: Any = None,
        n_estimators: int = 400,
        min_samples_leaf: int = 5,
        max_depth: int | None = None,
        cv: int = 5,
        outcome: str = "auto",
        num_draws: int = 1000,
        n_jobs: int = -1,
        missing: str = "refuse",
        n_imputations: int = 5,
        random_state: int | None = None,
    ) -> None:
        self.model_y = model_y
        self.model_t = model_t
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.cv = cv
        self.outcome = outcome
        self.num_draws = num_draws
        self.n_jobs = n_jobs
        self.missing = missing
        self.n_imputations = n_imputations
        self.random_state = random_state

    # -- fitting (the lifecycle is ITEEstimator.fit) ----------------------------------------
    def _validated_options(self, propensity: Any) -> dict[str, Any]:
        """Every option, and the kind of ``propensity``: None (a randomized trial; checked) or
        ``"estimate"``; either way the forest's own ``model_t`` estimates it within the
        cross-fitting. Known scores cannot be passed to EconML's DML and get an error."""
        name = type(self).__name__
        n_estimators = _params.check_int(name, "n_estimators", self.n_estimators, minimum=4)
        if n_estimators % 4:
            raise ValueError(f"{name}(n_estimators={n_estimators}) must be a multiple of 4.")
        options = {
            "n_estimators": n_estimators,
            "min_samples_leaf": _params.check_int(
                name, "min_samples_leaf", self.min_samples_leaf, minimum=1
            ),
            "cv": _params.check_int(name, "cv", self.cv, minimum=2),
        }
        _params.check_int(name, "num_draws", self.num_draws, minimum=4)
        if self.outcome == "survival":
            self._refuse_survival()
        _params.check_choice(name, "outcome", self.outcome, ("auto", "continuous", "binary"))
        if self.max_depth is not None:
            _params.check_int(name, "max_depth", self.max_depth, minimum=1)
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int):
            raise TypeError(f"{name}(n_jobs=...) must be an int; got {self.n_jobs!r}.")
        if self.n_jobs == 0:
            raise ValueError(
                f"{name}(n_jobs=0) means no worker at all. Fix: n_jobs=1 (one thread), a "
                "positive count, or -1 (every core)."
            )
        _check_model(name, "model_y", self.model_y, ("fit", "predict"), "regressor")
        _check_model(name, "model_t", self.model_t, ("fit", "predict_proba"), "classifier")
        resolve_seed(self.random_state)
        check_propensity_option(propensity, f"{name}.fit")
        if propensity is not None and not (
            isinstance(propensity, str) and propensity == "estimate"
        ):
            raise DataValidationError(
                f"{name} estimates the propensity with its cross-fitted model_t; known scores "
                "cannot be passed to EconML. Fix: propensity='estimate' (or None for a trial), "
                "or use BayesianCausalForest / HierarchicalITE, which take known scores."
            )
        return options

    def _check_data(self, data: TrialData, options: Any) -> None:
        name, cv = type(self).__name__, options["cv"]
        if data.site is not None and data.n_sites < 2:
            raise DataValidationError(
                f"{name}: all patients are in one site, which cannot be split into site-disjoint "
                "cross-fitting folds. Fix: site=None (folds by patient), or data from two or "
                "more sites."
            )
        if data.site is not None and data.n_sites < cv:
            raise DataValidationError(
                f"{name}: {data.n_sites} sites cannot fill cv={cv} site-disjoint "
                f"folds. Fix: cv={data.n_sites} or fewer."
            )
        smallest = int(min(np.sum(data.t == 1), np.sum(data.t == 0)))
        if data.site is None and smallest < cv:
            raise DataValidationError(
                f"{name}: cv={cv} folds stratified by treatment need at least {cv} patients in "
                f"each arm; the smaller arm has {smallest}. Fix: cv={max(2, smallest)} or fewer"
                + (" (or more patients)." if smallest >= 2 else "; or more patients.")
            )

    def _propensity(self, propensity: Any, data: TrialData, seed: int, options: Any) -> None:
        """The checks every estimator makes: randomization (None) or overlap ("estimate").
        EconML fits its own cross-fitted model_t; these scores are only looked at."""
        propensity_for_fit(propensity, data, classifier=self.model_t, random_state=seed)
        return None

    def _sample(self, inputs: FitInputs) -> Fit:
        """Fit the nuisance models (cross-fitted) and the causal forest."""
        from econml.dml import CausalForestDML
        from sklearn.ensemble import (
            HistGradientBoostingClassifier,
            HistGradientBoostingRegressor,
        )

        data, seed, options = inputs.data, inputs.seed, inputs.options
        groups = data.site  # folds are site-disjoint (checked in _check_data)
        binary = inputs.kind == "binary"
        model_y = self.model_y
        if model_y is None:
            model_y = (
                HistGradientBoostingClassifier(max_depth=3, random_state=seed)
                if binary
                else HistGradientBoostingRegressor(max_depth=3, random_state=seed)
            )
        model_t = self.model_t
        if model_t is None:
            model_t = HistGradientBoostingClassifier(max_depth=3, random_state=seed)
        model = CausalForestDML(
            model_y=model_y,
            model_t=model_t,
            discrete_treatment=True,
            discrete_outcome=binary,
            cv=options["cv"],
            n_estimators=options["n_estimators"],
            min_samples_leaf=options["min_samples_leaf"],
            max_depth=self.max_depth,
            n_jobs=self.n_jobs,
            random_state=seed,
        )
        W = _site_dummies(data)
        with one_thread():  # its boosted-tree nuisance fits: 86 s -> 4.6 s at n = 1,000 (busy)
            model.fit(
                data.y.astype(int) if binary else data.y, data.t, X=data.X, W=W, groups=groups
            )
        return Fit(state={"model_": model})

    # -- effects (the template is ITEEstimator.effect) --------------------------------------
    def _training_effect_draws(self, scale: str) -> np.ndarray:
        return self._new_effect_draws(self.data_.X, None, None, scale)

    def _new_effect_draws(
        self, X: np.ndarray, codes: np.ndarray | None, labels: Any, scale: str
    ) -> np.ndarray:
        """Normal-approximation draws; the forest's effect depends on covariates only (sites
        enter the nuisance models and the fold split)."""
        inference = self.model_.effect_inference(X)
        mean = np.asarray(inference.point_estimate, float).reshape(-1)
        sd = np.asarray(inference.stderr, float).reshape(-1)
        return self._normal_draws(mean, sd)

    def _modifier_scores(self, scale: str) -> tuple[np.ndarray, np.ndarray]:
        """EconML's doubly robust scores of the training patients (out-of-bag forest effect
        plus the weighted residual), read from the fitted final model, and the forest's
        point effects. EconML keeps the scores only in a private attribute: it is checked
        against EconML's own doubly robust ATE (their mean) before use."""
        if self._pooled:
            raise NotImplementedError(
                "CausalForest.modifiers() after missing='impute': each imputation's forest has "
                "its own doubly robust scores on its own completed covariates, and itelib has "
                "no pooling rule for their projection that keeps its intervals honest. Fix: "
                "summarize each imputation, [fit.modifiers() for fit in est.imputations_], "
                "or use BayesianCausalForest or HierarchicalITE, whose imputed fits pool."
            )
        final = getattr(self.model_.ortho_learner_model_final_, "_model_final", None)
        scores = getattr(final, "_oob_preds", None)
        point = np.asarray(self.model_.effect(self.data_.X), float).reshape(-1)
        if scores is not None:
            scores = np.asarray(scores, float).reshape(len(point), -1)[:, 0]
            ate = float(np.asarray(self.model_.ate_, float).reshape(-1)[0])
            if scores.shape == point.shape and np.isclose(np.nanmean(scores), ate, atol=1e-8):
                return scores, point
        raise NotImplementedError(
            "CausalForest.modifiers() needs EconML's doubly robust scores, which this EconML "
            f"version does not keep where itelib reads them (econml {_econml_version()}). "
            "A projection of the forest's independent per-patient draws would report "
            "intervals far too narrow, so none is given. Fix: use BayesianCausalForest or "
            "HierarchicalITE, whose draws are joint."
        )

    def _draws_per_patient(self) -> int:
        return self.num_draws

    def _pool_draws(self, draws: list[np.ndarray]) -> np.ndarray:
        """Rubin's rules (the frequentist analogue of mixing draws): each imputation's normal
        approximation gives a mean and variance per patient; the pooled normal has the mean of
        the means and variance ``W + (1 + 1/M) B``, drawn with the same normals as one fit."""
        if len(draws) == 1:
            return draws[0]
        means = np.stack([d.mean(axis=(0, 1)) for d in draws])
        variances = np.stack([d.var(axis=(0, 1)) for d in draws])
        mean, total = rubin(means, variances)
        z = (draws[0] - means[0]) / np.sqrt(np.where(variances[0] > 0, variances[0], 1.0))
        return mean + np.sqrt(total) * z

    def effect_interval(
        self, X: Any = None, *, site: Any = None, alpha: float = 0.05
    ) -> tuple[np.ndarray, np.ndarray]:
        """EconML's own ``effect_interval`` (not the quantiles of the normal draws)."""
        _check_alpha(alpha)
        self._check_fitted()
        _check_site_needs_X(X, site)
        if self._pooled or (X is not None and self._imputes_new(X)):  # Rubin-pooled normal
            return super().effect_interval(X, site=site, alpha=alpha)
        Xs = self.data_.X if X is None else self.data_.transform(X, site)[0]
        lower, upper = self.model_.effect_interval(Xs, alpha=alpha)
        return np.asarray(lower, float).reshape(-1), np.asarray(upper, float).reshape(-1)

    def ate(
        self,
        X: Any = None,
        *,
        site: Any = None,
        scale: str | None = None,
        max_gb: float = EFFECT_MAX_GB,
    ) -> EffectPosterior:
        """EconML's doubly robust average effect over the training patients (``ate__inference``).

        A normal approximation (``attrs["method"] = "doubly_robust"``) whose ``interval()`` is
        exactly EconML's ``ate__inference().conf_int()``; not ``ate_inference().stderr_mean``,
        a conservative upper bound on the standard error (intervals 2-5x too wide). A target
        population (``X``) is refused: the forest has no joint posterior over new patients
        and no outcomes to make a doubly robust average of.
        """
        if X is not None or site is not None:
            raise ValueError(
                "CausalForest.ate(X) is not available: the forest's per-patient intervals are "
                "independent normal approximations, and averaging them ignores the correlation "
                "of its errors (intervals far too narrow). Fix: ate() for the training "
                "patients (doubly robust), or HierarchicalITE / BayesianCausalForest, whose "
                "draws are joint, for a target population."
            )
        return self._doubly_robust("ate", lambda: self.model_.ate__inference(), scale)

    def att(self, *, scale: str | None = None) -> EffectPosterior:
        """EconML's doubly robust average effect over the treated training patients."""
        return self._doubly_robust("att", lambda: self.model_.att__inference(T=1), scale)

    def atc(self, *, scale: str | None = None) -> EffectPosterior:
        """EconML's doubly robust average effect over the control training patients."""
        return self._doubly_robust("atc", lambda: self.model_.att__inference(T=0), scale)

    def _doubly_robust(self, quantity: str, inference: Any, scale: str | None) -> EffectPosterior:
        """A normal posterior whose ``interval()`` is EconML's doubly robust interval exactly."""
        self._check_fitted()
        scale = self._check_scale(scale)
        if self._pooled:  # Rubin's rules over the imputations' doubly robust estimates
            posts = [getattr(s, quantity)(scale=scale) for s in self.imputations_]
            mean_, var_ = rubin([p.mean() for p in posts], [p.sd() ** 2 for p in posts])
            mean, sd = float(mean_), float(np.sqrt(var_))
        else:
            result = inference()
            mean = float(np.asarray(result.point_estimate, float).reshape(-1)[0])
            sd = float(np.asarray(result.stderr, float).reshape(-1)[0])
        if not (np.isfinite(mean) and np.isfinite(sd)):
            raise FloatingPointError(f"EconML's doubly robust {quantity} is {mean} (se {sd}).")
        arm = {"ate": None, "att": 1, "atc": 0}[quantity]
        n = self.data_.n if arm is None else int(np.sum(self.data_.t == arm))
        attrs = {**self._attrs(scale, quantity=quantity), "method": "doubly_robust",
                 "population": "training", "n_patients": n}  # fmt: skip
        rng = np.random.default_rng(self.random_state_)
        return EffectPosterior.from_normal(mean, sd, num_draws=self.num_draws, rng=rng, attrs=attrs)

    # -- saving (see itelib.models.forest.econml_persistence): never pickle --------------
    def save(self, path: str | os.PathLike[str], *, allow_pickle: Any = None) -> Path:
        """Write the training data, the recipe and a fingerprint to one netCDF4 file.

        **The file holds patient-level rows**: the training patients' covariates, treatment,
        outcome, site and ids (EconML's forest cannot be stored without pickle, so
        :meth:`load` refits it from these rows). Share it only as you would share the data
        set. Besides the rows: every option, the seed, the EconML / scikit-learn versions,
        and each training patient's effect estimate and standard error, against which
        :meth:`load` checks its refit. Written atomically, behind a SHA-256 header
        (:mod:`itelib.estimators.persistence`); never pickles. A ``model_y`` / ``model_t`` of
        your own is saved as its scikit-learn class and parameters
        (:mod:`itelib.estimators.model_recipe`); its fit must not be random (fix its
        ``random_state``), or :meth:`load` refuses the file.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        allow_pickle : None
            No longer taken (itelib never pickles); anything but None is a ``TypeError``.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        _no_pickle(allow_pickle, "est.save(path)")
        return super().save(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, allow_pickle: Any = None) -> CausalForest:
        """Read a file written by :meth:`save` and refit the forest from it (as long as a fit).

        The refit uses the saved training patients, options and seed; if its effects or
        standard errors differ from those saved (other EconML / scikit-learn versions grow
        other trees) nothing is loaded.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        RefitMismatchError
            If the refit does not reproduce the saved effects (the message names the versions
            then and now).
        ValueError
            If the file is damaged, not an itelib file, or a pickle an earlier itelib
            wrote (refused without being unpickled: refit and save again).
        """
        _no_pickle(allow_pickle, "CausalForest.load(path)")
        return super().load(path)

    def _saved_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from itelib.models.forest import econml_persistence

        return econml_persistence.saved_state(self)

    def _restore_state(self, fitted: dict[str, Any], groups: dict[str, Any]) -> None:
        from itelib.models.forest import econml_persistence

        econml_persistence.restore_state(self, fitted, groups)

    def _normal_draws(self, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        if not (np.isfinite(mean).all() and np.isfinite(sd).all()):
            raise FloatingPointError(
                "EconML returned non-finite effects or standard errors; check for extreme "
                "covariates or an outcome without variation within an arm."
            )
        rng = np.random.default_rng(self.random_state_)
        z = rng.standard_normal((1, self.num_draws, mean.size))
        return mean + sd * z


def _no_pickle(allow_pickle: Any, fix: str) -> None:
    if allow_pickle is not None:
        raise TypeError(
            f"allow_pickle={allow_pickle!r}: CausalForest files are no longer pickles, so "
            "there is nothing to allow. The file holds the training data and the recipe, and "
            f"loading refits the forest. Fix: {fix}, without allow_pickle."
        )


def _econml_version() -> str:
    import econml

    return str(econml.__version__)


def _site_dummies(data: TrialData) -> np.ndarray | None:
    """One-hot sites (first dropped) as controls W of the nuisance models."""
    if data.site is None or data.n_sites < 2:
        return None
    return np.eye(data.n_sites)[data.site][:, 1:]
