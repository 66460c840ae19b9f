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


PEERS = {
    "stochtree_bcf": Peer("stochtree_bcf", "stochtree", 'pip install "itelib[bench]"'),
    "econml_drlearner": Peer("econml_drlearner", "econml", "installed with itelib"),
    "econml_xlearner": Peer("econml_xlearner", "econml", "installed with itelib"),
}
