"""Saving a :class:`~itelib.CausalForest` without pickle: the data, the recipe, a fingerprint.

EconML's ``CausalForestDML`` exists only as Python objects; the one way to store the objects
themselves is pickle, and unpickling a file can run any code written into it. itelib never
unpickles. A saved ``CausalForest`` is instead the project's ordinary estimator file
(:mod:`itelib.estimators.persistence`: netCDF4 behind a SHA-256 header, written atomically)
holding

- the training patients exactly as the forest saw them (covariates, treatment, outcome, site
  codes, patient ids, the column names and encoding): **patient-level rows**;
- the recipe: every constructor option, the seed the fit used (``random_state_``) and the
  EconML, scikit-learn, NumPy and SciPy versions it ran under;
- a fingerprint: every training patient's effect estimate and standard error, and the doubly
  robust ATE with its standard error.

Loading refits the forest from that recipe on those rows (so a load takes as long as the fit)
and compares the fingerprint: a refit that differs beyond :data:`FINGERPRINT_TOL` (other
EconML / scikit-learn versions that grow other trees, a nuisance model without a fixed seed)
is refused with :class:`~itelib.exceptions.RefitMismatchError`, naming both sets of versions.
Refits with the same seed on one machine agree to about 1e-15: the trees are the same (each
is seeded from ``random_state`` before the threads start, so ``n_jobs`` does not change them),
only the threaded averaging over trees may sum in another order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from itelib.estimators.base import FitInputs
from itelib.exceptions import RefitMismatchError

__all__ = ["FINGERPRINT_TOL", "restore_state", "saved_state", "versions"]

# Relative to the largest saved |estimate| or stderr: refits on one machine differ by ~1e-15
# (summation order over trees), a forest with other trees by ~1e-2.
FINGERPRINT_TOL = 1e-9
_PACKAGES = ("econml", "sklearn", "numpy", "scipy")
_NAMES = {"sklearn": "scikit-learn"}


def versions() -> dict[str, str]:
    """The versions of the packages a refit's trees depend on."""
    import importlib

    return {_NAMES.get(p, p): str(importlib.import_module(p).__version__) for p in _PACKAGES}


def fingerprint(model: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """The training patients' effects and standard errors, and the doubly robust ATE."""
    inference = model.effect_inference(X)
    ate = model.ate__inference()
    return {
        "point_estimate": np.asarray(inference.point_estimate, float).reshape(-1),
        "stderr": np.asarray(inference.stderr, float).reshape(-1),
        "ate_point_estimate": np.asarray(ate.point_estimate, float).reshape(-1)[:1],
        "ate_stderr": np.asarray(ate.stderr, float).reshape(-1)[:1],
    }


def saved_state(est: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipe (JSON) and the fingerprint (a netCDF group) of a fitted CausalForest."""
    prints = fingerprint(est.model_, est.data_.X)
    dims = {"point_estimate": "patient", "stderr": "patient"}
    group = xr.Dataset({k: (dims.get(k, "ate"), v) for k, v in prints.items()})
    recipe = {
        "refit": "CausalForestDML refitted on the group 'training' with random_state",
        "versions": versions(),
    }
    return recipe, {"fingerprint": group}


def restore_state(est: Any, fitted: dict[str, Any], groups: dict[str, Any]) -> None:
    """Refit the forest on the saved training patients with the saved seed, and check it."""
    saved = {k: np.asarray(v.values, float) for k, v in groups["fingerprint"].data_vars.items()}
    then = {str(k): str(v) for k, v in dict(fitted["versions"]).items()}
    inputs = FitInputs(
        data=est.data_, kind=est.outcome_, score=None, seed=est.random_state_,
        options=est._validated_options(None),
    )  # fmt: skip
    model = est._sample(inputs).state["model_"]
    _compare(saved, fingerprint(model, est.data_.X), then, est.data_.patient_ids)
    est.model_ = model
    est.diagnostics_ = None
    est.model_check_ = None


def _compare(
    saved: dict[str, np.ndarray], refit: dict[str, np.ndarray], then: dict[str, str], ids: Any
) -> None:
    if set(saved) != set(refit) or any(saved[k].shape != refit[k].shape for k in refit):
        raise ValueError("its fingerprint does not have the training patients' shape")
    if not all(np.isfinite(v).all() for v in saved.values()):  # an inf would void the tolerance
        raise ValueError("its fingerprint holds values that are not finite")
    scale = max(float(np.max(np.abs(v), initial=0.0)) for v in saved.values())
    tol = FINGERPRINT_TOL * max(scale, np.finfo(float).tiny)
    worst, where = 0.0, ""
    for name, values in refit.items():
        diff = np.abs(values - saved[name])
        diff[np.isnan(diff)] = np.inf
        if diff.size and diff.max() > worst:
            i = int(np.argmax(diff))
            worst = float(diff[i])
            where = (
                f"the ATE's {name[4:]}"
                if name.startswith("ate")
                else f"the {name} of patient {ids[i]!r}"
            )
    if worst <= tol:
        return
    now = versions()
    same = then == now
    raise RefitMismatchError(
        "the CausalForest refitted from the training patients in this file differs from the "
        f"one that was saved (largest difference {worst:.3g}, in {where}; allowed {tol:.1g}), "
        "so it is not loaded: its effects would not be the saved model's. It was saved under "
        f"{_listed(then)}; this environment has {'the same' if same else _listed(now)}. "
        + (
            "With the same versions this means a model_y / model_t whose fit is random "
            "(random_state=None), or a file edited with its checksums recomputed. "
            if same
            else "Other versions grow other trees. "
        )
        + "Fix: refit CausalForest on your data (any model_y / model_t of your own with a "
        "fixed random_state) and save it again"
        + ("." if same else f", or load the file where {_listed(then)} are installed.")
    )


def _listed(vs: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(vs.items()))
