"""Variational inference: NumPyro SVI with a Gaussian guide, compiled once per shape.

For models too large for NUTS's row-wise gradient (binary outcomes at n ~ 1e6): the guide is a
multivariate normal in the unconstrained space with a full covariance
(``AutoMultivariateNormal``) or a low-rank-plus-diagonal one (``AutoLowRankMultivariateNormal``,
for hundreds of parameters), fitted by maximizing the ELBO with Adam, its step size decaying
tenfold over the run. With ``ModelSpec.batch_size`` the model's likelihood sees a random
subsample of patients at each step (scaled up to n), so a step's cost does not grow with n. The
draws are independent draws from the fitted guide: an approximation whose calibration is
measured (``benchmarks/svi_vs_nuts.py``), not assumed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoMultivariateNormal
from numpyro.infer.initialization import init_to_median
from numpyro.optim import ClippedAdam

from itelib.exceptions import ConvergenceWarning
from itelib.inference.blas import single_threaded_blas
from itelib.inference.nuts import NUTSResult
from itelib.inference.progress import maybe_report, progress

__all__ = ["SVIConfig", "VariationalDiagnostics", "elbo_converged", "fit_svi"]


@dataclass(frozen=True)
class SVIConfig:
    """Settings of a variational fit (hashable: part of the compile key).

    num_steps : Adam steps.
    num_draws : independent draws from the fitted guide.
    learning_rate : Adam's initial step size; it decays to a tenth by the last step.
    guide : ``"full_rank"`` or ``"low_rank"`` (covariance low rank plus diagonal; too narrow on
        ``binary_multisite_rct``: 0.8x NUTS's sds, ``benchmarks/results/svi``).
    rank : rank of the low-rank guide; None: NumPyro's default, sqrt(latent dimension).
    """

    num_steps: int = 10_000
    num_draws: int = 1000
    learning_rate: float = 0.01
    guide: str = "full_rank"
    rank: int | None = None


def _fit(
    key: jax.Array, token: jax.Array | None, data: Any, model: Callable, spec: Any, cfg: SVIConfig
) -> tuple[dict[str, jax.Array], jax.Array]:
    if cfg.guide == "full_rank":
        guide = AutoMultivariateNormal(model, init_loc_fn=init_to_median)
    else:
        guide = AutoLowRankMultivariateNormal(model, init_loc_fn=init_to_median, rank=cfg.rank)
    schedule = lambda i: cfg.learning_rate * 0.1 ** (i / cfg.num_steps)  # noqa: E731
    svi = SVI(model, guide, ClippedAdam(schedule), Trace_ELBO())
    k_init, k_draw, k_sites = jax.random.split(key, 3)
    state = svi.init(k_init, data, spec)

    def step(state: Any, i: jax.Array) -> tuple[Any, jax.Array]:
        maybe_report(token, i)
        state, loss = svi.update(state, data, spec)
        return state, loss

    state, losses = jax.lax.scan(step, state, jnp.arange(cfg.num_steps))
    params = svi.get_params(state)
    latent = guide.sample_posterior(k_draw, params, data, spec, sample_shape=(cfg.num_draws,))
    # deterministic sites (e.g. gamma) from the latent draws; the outcome site is left out
    sites = Predictive(model, posterior_samples=latent)(k_sites, data, spec)
    draws = latent | {k: v for k, v in sites.items() if k not in latent and k != "y"}
    return draws, losses


_fit_jit = jax.jit(_fit, static_argnames=("model", "spec", "cfg"))


def fit_svi(
    key: jax.Array,
    model: Callable,
    data: Any,
    spec: Any,
    cfg: SVIConfig,
    *,
    progress_bar: bool = False,
    description: str = "SVI",
) -> tuple[NUTSResult, np.ndarray]:
    """Fit the guide and draw from it.

    Returns
    -------
    result : NUTSResult
        ``params`` shaped ``(1, num_draws, ...)`` (one "chain" of independent draws), the
        layout of :func:`~itelib.inference.nuts.sample_nuts`; ``stats`` is empty (no sampler).
    losses : (num_steps,) ndarray
        The negative ELBO at every step (on the minibatch when the model subsamples).
    """
    with single_threaded_blas(), progress(progress_bar, cfg.num_steps, description) as token:
        draws, losses = _fit_jit(key, token, data, model=model, spec=spec, cfg=cfg)
        draws = {k: np.asarray(v)[None] for k, v in draws.items()}
    return NUTSResult(draws, {}), np.asarray(losses)


def elbo_converged(losses: np.ndarray, window: float = 0.1, tol: float = 0.01) -> bool:
    """Whether the loss has levelled off: the means of the last two ``window`` fractions of the
    run differ by less than ``tol`` of the last one (Stan's ADVI stops at a relative change of
    0.01, its ``tol_rel_obj``; means over windows because a minibatched loss is noisy)."""
    k = max(1, int(len(losses) * window))
    if len(losses) < 2 * k or not np.all(np.isfinite(losses[-2 * k :])):
        return False
    last, before = losses[-k:].mean(), losses[-2 * k : -k].mean()
    return bool(abs(before - last) <= tol * abs(last))


@dataclass(frozen=True)
class VariationalDiagnostics:
    """Summary of a variational fit. There are no chains to compare, so no R-hat: what can be
    checked is whether the optimizer had levelled off (:func:`elbo_converged`).

    Attributes
    ----------
    converged : bool
        The negative ELBO's mean changed by under 1 % between the last two tenths of the run.
    final_loss : float
        Mean negative ELBO over the last tenth of the run.
    num_steps, n_draws : int
        Optimizer steps; independent draws from the guide.
    """

    converged: bool
    final_loss: float
    num_steps: int
    n_draws: int

    @classmethod
    def from_losses(cls, losses: np.ndarray, n_draws: int) -> VariationalDiagnostics:
        tail = losses[-max(1, len(losses) // 10) :]
        return cls(elbo_converged(losses), float(np.mean(tail)), len(losses), int(n_draws))

    def to_dict(self) -> dict[str, float | int | bool]:
        """The headline numbers (JSON-safe)."""
        return {
            "converged": self.converged,
            "final_loss": self.final_loss,
            "num_steps": self.num_steps,
            "n_draws": self.n_draws,
        }

    def problems(self) -> list[str]:
        """Plain-language descriptions of what went wrong, each with what to try."""
        if not np.isfinite(self.final_loss):
            return ["the ELBO is not finite: check the inputs for extreme values."]
        if not self.converged:
            return [
                f"the ELBO had not levelled off after {self.num_steps} steps (its mean moved by "
                "more than 1 % over the last tenth of the run), so the approximation may be "
                "poor. Increase svi_steps."
            ]
        return []

    def warn(self, *, advice: Any = None, stacklevel: int = 3) -> None:
        """Issue one :class:`ConvergenceWarning` listing every problem, if any (``advice``, a
        NUTS advisor, does not apply to SVI and is ignored)."""
        problems = self.problems()
        if problems:
            warnings.warn(" ".join(problems), ConvergenceWarning, stacklevel=stacklevel)
