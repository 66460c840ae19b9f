"""The estimator contract shared by every itelib estimator (EconML's vocabulary, sklearn's habits).

``__init__`` stores parameters only; ``fit`` validates, learns and returns ``self``; fitted state
ends in ``_``; ``effect`` returns an :class:`~itelib.posterior.EffectPosterior`.
"""

from __future__ import annotations

import gc
import os
import sys
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from itelib.exceptions import NotFittedError
from itelib.posterior import EffectPosterior

__all__ = ["ITEEstimator", "EFFECT_MAX_GB"]

EFFECT_MAX_GB = 4.0  # default budget of effect(X): the float64 draws it returns for new patients
COLLECT_ABOVE_GB = 0.05  # effect(X) requests above this run the cyclic garbage collector first


class ITEEstimator(BaseEstimator):
    """Base class: per-patient treatment-effect posteriors from (Y, T, X, site)."""

    @abstractmethod
    def fit(self, Y: Any, T: Any, *, X: Any, site: Any = None, propensity: Any = None):
        """Learn from outcomes ``Y``, 0/1 treatments ``T``, covariates ``X`` and sites."""

    @abstractmethod
    def effect(self, X: Any = None, *, site: Any = None) -> EffectPosterior:
        """Posterior of each patient's effect (``X=None``: the training patients)."""

    @abstractmethod
    def ate(self) -> EffectPosterior:
        """Posterior of the average effect over the training patients."""

    def effect_interval(
        self, X: Any = None, *, site: Any = None, alpha: float = 0.05
    ) -> tuple[np.ndarray, np.ndarray]:
        """Central ``1 - alpha`` interval of each patient's effect, as EconML returns it.

        Returns
        -------
        lower, upper : ndarray
            One entry per patient, in the order of ``X``.
        """
        if not isinstance(alpha, float | int) or not 0 < alpha < 1:
            raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}.")
        interval = self.effect(X, site=site).interval(prob=1 - alpha)
        return interval["lower"].to_numpy(), interval["upper"].to_numpy()

    # -- saving ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted estimator to one netCDF4 file, atomically; never pickles.

        The file holds the posterior, the training patients as the model saw them (so it is
        patient-level data: share it as you would the data set), the preprocessing and the
        parameters; :meth:`load` gives back an estimator with the same ``effect()``. See
        :mod:`itelib.persistence` for the layout.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        from itelib.persistence import save_estimator

        return save_estimator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ITEEstimator:
        """Read an estimator written by :meth:`save` (checked against its checksums).

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            If the file is unreadable, damaged, from an incompatible format version, or holds
            another estimator class.
        """
        from itelib.persistence import load_estimator

        return load_estimator(path, expected=cls)

    def _saved_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Estimator-specific fitted settings (JSON) and arrays (``xarray.Dataset`` groups)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved.")

    def _restore_state(self, fitted: dict[str, Any], groups: dict[str, Any]) -> None:
        """Inverse of :meth:`_saved_state`, on an estimator whose common state is restored."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded.")

    # -- helpers for subclasses ------------------------------------------------------------
    _INFERENCE = "mcmc"  # what the draws are; an approximation says so here

    def _attrs(self, scale: str, quantity: str = "individual_effect") -> dict[str, Any]:
        """Root attributes of the posteriors this estimator returns."""
        return {
            "estimator": type(self).__name__,
            "inference": self._INFERENCE,
            "scale": scale,
            "outcome": self.data_.outcome_name,
            "quantity": quantity,
            "random_state": self.random_state_,
        }

    def _trial_data(
        self, Y: Any, T: Any, X: Any, site: Any, categorical: Any, treatment_labels: Any
    ) -> Any:
        """Validated training data, with at least one covariate (effects are functions of x)."""
        from itelib.data import TrialData, require_covariates

        data = TrialData.from_arrays(
            Y, T, X=X, site=site, categorical=categorical, treatment_labels=treatment_labels
        )
        require_covariates(data, type(self).__name__)
        return data

    def _check_effect_memory(
        self, n_patients: int, max_gb: Any, n_draws: int | None = None
    ) -> None:
        """Refuse, before allocating, an ``effect(X)`` whose draws would exceed ``max_gb``.

        ``n_draws``: draws per patient; default chains x draws of ``posterior_``.
        """
        from itelib import _params

        if n_draws is None:
            sizes = self.posterior_["posterior"].sizes
            n_draws = sizes["chain"] * sizes["draw"]
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

    @staticmethod
    def _check_site_needs_X(X: Any, site: Any) -> None:
        """``effect(X=None, site=...)``: the training patients' sites are already known."""
        if X is None and site is not None:
            raise ValueError(
                "effect(X=None, site=...) is ambiguous: the training patients' sites are "
                "known. Fix: pass X with site, or neither."
            )

    def _check_fitted(self, attribute: str = "posterior_") -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(Y, T, X=...) before "
                "asking for effects."
            )

    @staticmethod
    def _resolve_seed(random_state: Any) -> int:
        """``None`` means seed 0 (deterministic, recorded); otherwise a non-negative int."""
        if random_state is None:
            return 0
        if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
            raise TypeError(
                f"random_state must be an int or None; got {type(random_state).__name__} "
                f"{random_state!r}."
            )
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0; got {random_state}.")
        return int(random_state)


def interactive() -> bool:
    """Whether a person is probably watching (a terminal or a notebook): default progress bars."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules
