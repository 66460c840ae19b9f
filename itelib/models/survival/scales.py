r"""Effect scales of an AFT survival outcome in JAX: survival, RMST, time ratio.

JAX twins of :func:`itelib.simulate.aft.survival_probability` and
:func:`~itelib.simulate.aft.restricted_mean` (the simulator's NumPy closed forms, which its tests
check against quadrature), written to stay finite and accurate in float32 over posterior draws
× patients. With :math:`z = (\log L - \eta)/\sigma` at horizon :math:`L`:

- log-normal: :math:`\mathrm{RMST}(L) = e^{\eta + \sigma^2/2}\,\Phi(z - \sigma) + L\,\Phi(-z)`,
  the first term formed as ``exp(eta + sigma**2/2 + log_ndtr(z - sigma))`` so that neither a
  large :math:`e^{\eta}` nor a tiny :math:`\Phi` over- or underflows;
- Weibull (:math:`\lambda = e^\eta`, :math:`x = (L/\lambda)^{1/\sigma} = e^z`):
  :math:`\mathrm{RMST}(L) = \lambda\,\Gamma(1+\sigma)\,P(\sigma, x)`, :math:`P` the regularized
  lower incomplete gamma function. For :math:`x < 1` (horizon early in the survival curve) it is
  evaluated through :math:`\lambda x^\sigma = L` and Kummer's series
  :math:`\gamma(s, x) = x^s e^{-x} \sum_n x^n / \{s (s+1) \cdots (s+n)\}` (DLMF 8.7.1), i.e.
  :math:`\mathrm{RMST} = L e^{-x} \sum_n x^n / \{(s+1)\cdots(s+n)\}`: no :math:`e^{\eta}` times a
  vanishing :math:`P`, which loses everything once :math:`x` underflows (e.g. :math:`\eta = 10`,
  :math:`\sigma = 0.2`, :math:`L < e^{-7}` in float32).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammainc, gammaln, log_ndtr

from itelib.models.survival.likelihood import log_survival
from itelib.simulate.aft import check_family

__all__ = ["EffectScales", "effect_scales", "rmst", "survival_probability"]

# x < 1: the n-th term is below 1/n!, so 18 terms leave a relative error under 1/18! ~ 2e-16.
_SERIES_TERMS = 18


def survival_probability(t: jax.Array, eta: jax.Array, sigma: jax.Array, family: str) -> jax.Array:
    r"""Survival function :math:`S(t) = P(T > t)`: ``exp(-exp(z))`` or ``Phi(-z)``.

    Parameters
    ----------
    t : array_like
        Times :math:`t > 0`.
    eta : array_like
        Locations :math:`\eta` of :math:`\log T`, e.g. shape (draws, patients).
    sigma : array_like
        Scales :math:`\sigma > 0`, broadcast against ``eta`` (``sigma[:, None]`` for one per draw).
    family : {"weibull", "lognormal"}

    Returns
    -------
    jax.Array
        :math:`S(t)`, broadcast over the arguments.
    """
    return jnp.exp(log_survival((jnp.log(t) - eta) / sigma, family))


def _weibull_rmst(log_horizon: jax.Array, eta: jax.Array, sigma: jax.Array) -> jax.Array:
    """Weibull RMST: Kummer's series for x < 1, ``e^eta Gamma(1+sigma) P(sigma, x)`` above."""
    log_x = (log_horizon - eta) / sigma
    early = log_x < 0.0
    # Each branch sees only arguments in its own range, so the other's inf never reaches a
    # gradient through jnp.where.
    x_small = jnp.exp(jnp.where(early, log_x, 0.0))
    term = jnp.ones_like(x_small)
    total = term
    for n in range(1, _SERIES_TERMS):
        term = term * x_small / (sigma + n)
        total = total + term
    series = jnp.exp(log_horizon - x_small) * total
    x_large = jnp.exp(jnp.where(early, 0.0, log_x))
    direct = jnp.exp(eta + gammaln(1.0 + sigma)) * gammainc(sigma, x_large)
    return jnp.where(early, series, direct)


def _lognormal_rmst(log_horizon: jax.Array, eta: jax.Array, sigma: jax.Array) -> jax.Array:
    """Log-normal RMST, the partial-mean term in log space."""
    z = (log_horizon - eta) / sigma
    partial_mean = jnp.exp(eta + 0.5 * sigma * sigma + log_ndtr(z - sigma))
    return partial_mean + jnp.exp(log_horizon + log_ndtr(-z))


def rmst(eta: jax.Array, sigma: jax.Array, horizon: float | jax.Array, family: str) -> jax.Array:
    r"""Restricted mean survival time :math:`\int_0^L S(u)\,du = E\min(T, L)` in closed form.

    See the module docstring for the formulas and how they stay accurate in float32.

    Parameters
    ----------
    eta : array_like
        Locations :math:`\eta` of :math:`\log T`, e.g. shape (draws, patients).
    sigma : array_like
        Scales :math:`\sigma > 0`, broadcast against ``eta``.
    horizon : float or array_like
        Horizon :math:`L > 0`, in the time unit of the data.
    family : {"weibull", "lognormal"}

    Returns
    -------
    jax.Array
        RMST in (0, L], broadcast over the arguments.
    """
    family = check_family(family)
    log_horizon = jnp.log(horizon)
    if family == "weibull":
        return _weibull_rmst(log_horizon, eta, sigma)
    return _lognormal_rmst(log_horizon, eta, sigma)


class EffectScales(NamedTuple):
    r"""Per-draw, per-patient treatment effects of an AFT survival outcome (treated − control).

    Attributes
    ----------
    rmst_difference : jax.Array
        :math:`\mathrm{RMST}_1(L) - \mathrm{RMST}_0(L)`, in time units; > 0 is benefit.
    survival_difference : jax.Array
        :math:`S_1(t) - S_0(t)` at ``t_eval``; > 0 is benefit.
    time_ratio : jax.Array
        :math:`e^{\eta_1 - \eta_0}`: treatment multiplies every quantile of :math:`T` by it.
    """

    rmst_difference: jax.Array
    survival_difference: jax.Array
    time_ratio: jax.Array


def effect_scales(
    eta0: jax.Array,
    eta1: jax.Array,
    sigma: jax.Array,
    family: str,
    horizon: float | jax.Array,
    t_eval: float | jax.Array,
) -> EffectScales:
    r"""The three effect scales an ``EffectPosterior`` holds for a survival outcome.

    The same contrasts as the simulator's truth (:mod:`itelib.simulate.survival`), so a fit can
    be scored against it draw by draw.

    Parameters
    ----------
    eta0, eta1 : array_like
        Locations of :math:`\log T` untreated and treated, e.g. shape (draws, patients).
    sigma : array_like
        Scales :math:`\sigma > 0`, broadcast against ``eta0`` (``sigma[:, None]`` per draw).
    family : {"weibull", "lognormal"}
    horizon : float
        RMST horizon :math:`L > 0`.
    t_eval : float
        Time at which survival probabilities are compared.

    Returns
    -------
    EffectScales
    """
    family = check_family(family)
    return EffectScales(
        rmst_difference=rmst(eta1, sigma, horizon, family) - rmst(eta0, sigma, horizon, family),
        survival_difference=survival_probability(t_eval, eta1, sigma, family)
        - survival_probability(t_eval, eta0, sigma, family),
        time_ratio=jnp.exp(eta1 - eta0),
    )


def effect_on_scale(
    name: str,
    eta0: jax.Array,
    effect: jax.Array,
    sigma: jax.Array,
    family: str,
    horizon: float | jax.Array,
    t_eval: float | jax.Array,
) -> jax.Array:
    r"""One effect scale, by its name: ``"rmst"``, ``"survival"`` (at ``t_eval``) or
    ``"time_ratio"``, from the untreated location ``eta0`` and the log-time ``effect``
    (:math:`\eta_1 - \eta_0`), in the data's time units. The time ratio needs neither ``eta0``
    nor ``sigma``."""
    if name == "time_ratio":
        return jnp.exp(effect)
    scales = effect_scales(eta0, eta0 + effect, sigma, family, horizon, t_eval)
    return scales.rmst_difference if name == "rmst" else scales.survival_difference
