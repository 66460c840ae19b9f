"""Convergence diagnostics of sampled fits: R-hat, bulk and tail ESS (arviz-stats' estimators,
vectorized in :mod:`.convergence`) and divergences."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from arviz_base import rcParams

from itelib.exceptions import ConvergenceWarning
from itelib.inference.advice import Advisor, more_samples
from itelib.inference.convergence import ess_bulk, ess_tail, rhat_rank

__all__ = ["Diagnostics", "Thresholds", "diagnose"]


@dataclass(frozen=True)
class Thresholds:
    """Where a fit stops being trusted (Vehtari et al. 2021 recommend R-hat <= 1.01, ESS >= 400)."""

    max_rhat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0


# split R-hat and ESS halve each chain and need two draws per half (convergence.py)
MIN_DRAWS_PER_CHAIN = 4


@dataclass(frozen=True)
class Diagnostics:
    """Summary of a sampled fit.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per monitored scalar (``name[index]``) with ``r_hat``, ``ess_bulk``, ``ess_tail``.
    n_divergent : int
        Divergent transitions after warmup, all chains together.
    n_chains, n_draws : int
        Chains and kept draws per chain.
    """

    table: pd.DataFrame
    n_divergent: int
    n_chains: int
    n_draws: int

    @property
    def max_rhat(self) -> float:
        return float(self.table["r_hat"].max())

    @property
    def min_ess_bulk(self) -> float:
        return float(self.table["ess_bulk"].min())

    @property
    def min_ess_tail(self) -> float:
        return float(self.table["ess_tail"].min())

    def to_dict(self) -> dict[str, float | int]:
        """The headline numbers (JSON-safe)."""
        return {
            "max_rhat": self.max_rhat,
            "min_ess_bulk": self.min_ess_bulk,
            "min_ess_tail": self.min_ess_tail,
            "n_divergent": self.n_divergent,
            "n_chains": self.n_chains,
            "n_draws": self.n_draws,
        }

    def problems(
        self, thresholds: Thresholds = Thresholds(), advice: Advisor | None = None
    ) -> list[str]:
        """Plain-language descriptions of every threshold crossed, each with what to try.

        ``advice``: the estimator's advisor (:mod:`itelib.inference.advice`), which names the
        concrete next setting from the fit's own settings; without one, the advice is generic.
        """
        out = []
        if self.n_draws < MIN_DRAWS_PER_CHAIN:  # R-hat and ESS are NaN, and NaN > x is False
            enough = more_samples(self.n_draws, self.n_chains * self.n_draws, thresholds.min_ess)
            out.append(
                f"{self.n_draws} draw(s) per chain: too few to compute R-hat or the effective "
                f"sample size (they need {MIN_DRAWS_PER_CHAIN}), so nothing shows that these "
                f"draws describe the posterior, and intervals from them mean little. Set "
                f"num_samples={enough} (now {self.n_draws})."
            )
        if self.n_divergent > thresholds.max_divergences:
            out.append(
                f"{self.n_divergent} divergent transitions after warmup: the sampler met "
                "curvature it could not follow, so the draws may be biased. "
                + _advise(advice, "divergences", self, thresholds)
            )
        if self.max_rhat > thresholds.max_rhat:
            worst = self.table["r_hat"].idxmax()
            out.append(
                f"R-hat {self.max_rhat:.3f} > {thresholds.max_rhat} (worst: {worst}): chains "
                "disagree. " + _advise(advice, "r_hat", self, thresholds)
            )
        if self.min_ess_bulk < thresholds.min_ess or self.min_ess_tail < thresholds.min_ess:
            worst = self.table[["ess_bulk", "ess_tail"]].min(axis=1).idxmin()
            low = min(self.min_ess_bulk, self.min_ess_tail)
            out.append(
                f"effective sample size {low:.0f} < {thresholds.min_ess:.0f} (worst: {worst}): "
                "intervals are noisy. " + _advise(advice, "ess", self, thresholds)
            )
        return out

    def warn(
        self,
        thresholds: Thresholds = Thresholds(),
        *,
        advice: Advisor | None = None,
        stacklevel: int = 3,
    ) -> None:
        """Issue one :class:`ConvergenceWarning` listing every problem, if any."""
        problems = self.problems(thresholds, advice)
        if problems:
            warnings.warn(" ".join(problems), ConvergenceWarning, stacklevel=stacklevel)


_GENERIC = {
    "divergences": "Try a higher target_accept, tighter priors, or check for outliers.",
    "r_hat": "Run longer (more num_warmup and num_samples) or check the model.",
    "ess": "Increase num_samples.",
}


def _advise(advice: Advisor | None, problem: str, diag: Diagnostics, th: Thresholds) -> str:
    return _GENERIC[problem] if advice is None else advice(problem, diag, th)


def diagnose(draws: dict[str, np.ndarray], diverging: np.ndarray) -> Diagnostics:
    """Diagnostics of draws shaped ``(chain, draw, ...)``.

    Parameters
    ----------
    draws : dict of str to ndarray
        Monitored quantities; trailing dimensions are flattened into ``name[i]`` rows.
    diverging : ndarray of bool, shape (chain, draw)
    """
    n_chains, n_draws = diverging.shape
    flat = {name: np.asarray(v).reshape(n_chains, n_draws, -1) for name, v in draws.items()}
    x = np.concatenate(list(flat.values()), axis=2)
    table = pd.DataFrame(
        {
            "r_hat": rhat_rank(x),
            "ess_bulk": ess_bulk(x),
            "ess_tail": ess_tail(x, rcParams["stats.ci_prob"]),
        },
        index=[
            _label(n, np.asarray(v).shape[2:], i)
            for n, v in draws.items()
            for i in range(flat[n].shape[2])
        ],
    )
    return Diagnostics(table, int(np.sum(diverging)), n_chains, n_draws)


def _label(name: str, shape: tuple[int, ...], i: int) -> str:
    return name if shape == () else f"{name}[{i}]"
