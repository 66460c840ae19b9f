"""Peer estimators for calibration studies (``kind = "peer:<name>"`` in a study config).

Each adapter is ``f(trial, fit, params, seed) -> dict`` with either ``draws`` (chain, draw,
patient) and ``ate_draws``, or ``mean`` (point estimates per patient). The peers' own packages
are imported inside the adapters: itelib does not depend on them, and a study skips a peer whose
package is not installed (:func:`missing`), saying how to install it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = ["PEERS", "Peer", "adapter", "missing"]


class Peer(NamedTuple):
    function: str  # the adapter's name in this module
    needs: str  # the module it imports
    install: str  # how to get it
    outcome: str = "scalar"  # the designs it fits: "scalar" or "survival" (the registry's kinds)


def adapter(name: str) -> Callable[..., dict[str, Any]]:
    """The adapter of peer ``name``; ``ValueError`` naming the peers if there is none."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; itelib's peers are {sorted(PEERS)}")
    return globals()[PEERS[name].function]


def missing(name: str) -> str | None:
    """Why peer ``name`` cannot run here (its package is not installed), or None."""
    peer = PEERS[name]
    if importlib.util.find_spec(peer.needs) is None:
        return f"{peer.needs} is not installed ({peer.install})"
    return None


def _arrays(trial: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kw = trial.fit_kwargs()
    X = np.asarray(pd.get_dummies(kw["X"]), float)
    return np.asarray(kw["Y"], float), np.asarray(kw["T"], int), X


def _binary(y: np.ndarray) -> bool:
    return set(np.unique(y)) <= {0.0, 1.0}


def stochtree_bcf(trial: Any, fit: dict, params: dict, seed: int) -> dict[str, Any]:
    """stochtree's BCFModel at its defaults (it estimates the propensity with BART)."""
    from scipy.special import ndtr
    from stochtree import BCFModel, OutcomeModel

    y, t, X = _arrays(trial)
    general = {"random_seed": int(seed % 2**31), **params.get("general_params", {})}
    if _binary(y):
        general["outcome_model"] = OutcomeModel(outcome="binary", link="probit")
    model = BCFModel()
    model.sample(X, t.astype(float), y, general_params=general)
    if _binary(y):
        draws = (ndtr(model.mu_hat_train + model.tau_hat_train) - ndtr(model.mu_hat_train)).T
    else:
        draws = np.asarray(model.tau_hat_train).T
    return {"draws": draws[None], "ate_draws": draws.mean(axis=1)}


def _econml_learner(cls_name: str, trial: Any, params: dict, seed: int) -> dict[str, Any]:
    from econml import dr, metalearners
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    y, t, X = _arrays(trial)
    reg = HistGradientBoostingRegressor(max_depth=3, random_state=seed % 2**31)
    clf = HistGradientBoostingClassifier(max_depth=3, random_state=seed % 2**31)
    if cls_name == "DRLearner":
        model = dr.DRLearner(model_propensity=clf, model_regression=reg, model_final=reg,
                             random_state=seed % 2**31, **params)  # fmt: skip
    else:
        model = metalearners.XLearner(models=reg, propensity_model=clf, **params)
    model.fit(y, t, X=X)
    return {"mean": np.asarray(model.effect(X), float).ravel()}


def econml_drlearner(trial: Any, fit: dict, params: dict, seed: int) -> dict[str, Any]:
    """EconML's DRLearner with gradient-boosting nuisances (point estimates)."""
    return _econml_learner("DRLearner", trial, params, seed)


def econml_xlearner(trial: Any, fit: dict, params: dict, seed: int) -> dict[str, Any]:
    """EconML's XLearner with gradient-boosting models (point estimates)."""
    return _econml_learner("XLearner", trial, params, seed)


# -- survival peers: per-patient RMST differences up to the design's horizon -------------------
def _survival_arrays(trial: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    kw = trial.fit_kwargs()
    X = np.asarray(pd.get_dummies(kw["X"]), float)
    Y = kw["Y"]
    return Y.iloc[:, 0].to_numpy(float), Y.iloc[:, 1].to_numpy(bool), np.asarray(kw["T"], int), X


def _rmst_of_steps(times: np.ndarray, survival: np.ndarray, horizon: float) -> np.ndarray:
    """RMST up to ``horizon`` of right-continuous step survival curves: ``survival[i, k]`` is
    patient i's S on [times[k], times[k + 1]), and S = 1 before times[0]."""
    keep = times < horizon
    times, survival = times[keep], survival[:, keep]
    edges = np.append(times, horizon)
    before = times[0] if len(times) else horizon
    return before + survival @ np.diff(edges)


def sksurv_cox(trial: Any, fit: dict, params: dict, seed: int) -> dict[str, Any]:
    """scikit-survival's Cox model with treatment-by-covariate interactions: each patient's
    Breslow survival curve under both arms, integrated to the RMST difference (points).

    A small ridge, 0.01 per patient (``alpha = 0.01 n`` on the summed log partial likelihood,
    lifelines' ``penalizer=0.01``), keeps the 2p + 1 coefficients finite. lifelines would do
    the same but pins pandas < 3, which would downgrade a user's pandas."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    time, event, t, X = _survival_arrays(trial)
    horizon = float(trial.params["horizon"])

    def design(arm: np.ndarray) -> np.ndarray:
        return np.column_stack([arm, X, arm[:, None] * X])

    model = CoxPHSurvivalAnalysis(alpha=params.get("alpha", 0.01 * len(t)), ties="breslow")
    model.fit(design(t.astype(float)), Surv.from_arrays(event, time))
    rmst = []
    for arm in (0.0, 1.0):
        curves = model.predict_survival_function(design(np.full(len(t), arm)), return_array=True)
        rmst.append(_rmst_of_steps(model.unique_times_, curves, horizon))
    return {"mean": rmst[1] - rmst[0]}


def sksurv_rsf(trial: Any, fit: dict, params: dict, seed: int) -> dict[str, Any]:
    """A T-learner of scikit-survival's random survival forest: one forest per arm, each
    patient's two survival curves integrated to the RMST difference (points)."""
    from sksurv.ensemble import RandomSurvivalForest
    from sksurv.util import Surv

    time, event, t, X = _survival_arrays(trial)
    horizon = float(trial.params["horizon"])
    options = {"n_estimators": 200, "min_samples_leaf": 15, "n_jobs": 1} | params
    rmst = []
    for arm in (0, 1):
        rows = t == arm
        forest = RandomSurvivalForest(random_state=seed % 2**31, **options)
        forest.fit(X[rows], Surv.from_arrays(event[rows], time[rows]))
        curves = forest.predict_survival_function(X, return_array=True)
        rmst.append(_rmst_of_steps(forest.unique_times_, curves, horizon))
    return {"mean": rmst[1] - rmst[0]}


PEERS = {
    "stochtree_bcf": Peer("stochtree_bcf", "stochtree", 'pip install "itelib[bench]"'),
    "econml_drlearner": Peer("econml_drlearner", "econml", "installed with itelib"),
    "econml_xlearner": Peer("econml_xlearner", "econml", "installed with itelib"),
    "sksurv_cox": Peer("sksurv_cox", "sksurv", 'pip install "itelib[bench]"', "survival"),
    "sksurv_rsf": Peer("sksurv_rsf", "sksurv", 'pip install "itelib[bench]"', "survival"),
}
