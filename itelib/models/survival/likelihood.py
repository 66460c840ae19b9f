r"""Right-censored accelerated-failure-time (AFT) log-likelihood in JAX.

The model is :math:`\log T = \eta + \sigma \varepsilon` (see :mod:`itelib.simulate.aft`, whose
family names and parametrization this module shares). With the standardized residual
:math:`z = (\log u - \eta)/\sigma` at an observed time :math:`u`, a patient contributes

.. math::

    \ell = \delta \log f_T(u) + (1 - \delta) \log S(u),

:math:`\delta = 1` for an event and 0 for a censored time (Kalbfleisch & Prentice 2002, *The
Statistical Analysis of Failure Time Data*, 2nd ed., eq. 3.2). The density is that of
:math:`T`, not of :math:`\log T`: :math:`f_T(u) = f_\varepsilon(z) / (\sigma u)`, so
:math:`\log f_T` carries the Jacobian :math:`-\log u`. That term is constant in the parameters
(it does not change a posterior), but it makes the values equal to ``scipy.stats``' and
comparable with any other model of :math:`T` (LOO, WAIC). Per family:

- ``"weibull"`` (:math:`\varepsilon` minimum extreme value):
  :math:`\log f_T = z - e^z - \log\sigma - \log u`, :math:`\log S = -e^z`;
- ``"lognormal"``: :math:`\log f_T = -z^2/2 - \tfrac12\log 2\pi - \log\sigma - \log u`,
  :math:`\log S = \log\Phi(-z)` via ``log_ndtr``, whose asymptotic series keeps it finite and
  accurate far in the upper tail (where ``log(1 - ndtr(z))`` is ``-inf`` from
  :math:`z \approx 5.5` in float32).

Every term is closed form with no ``log`` of a difference, so nothing cancels in the tails.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import promote_shapes, validate_sample

from itelib.simulate.aft import FAMILIES, check_family

__all__ = ["FAMILIES", "CensoredAFT", "aft_log_likelihood", "log_survival"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_survival(z: jax.Array, family: str) -> jax.Array:
    r"""Log survival :math:`\log S` as a function of the standardized residual ``z``.

    ``-exp(z)`` (Weibull) or ``log_ndtr(-z)`` (log-normal); shared by the likelihood and
    :mod:`itelib.models.survival.scales`.
    """
    if check_family(family) == "weibull":
        return -jnp.exp(z)
    return log_ndtr(-z)


def aft_log_likelihood(
    log_time: jax.Array,
    event: jax.Array,
    eta: jax.Array,
    sigma: jax.Array,
    family: str,
) -> jax.Array:
    r"""Per-patient right-censored log-likelihood of the time :math:`T` (module docstring).

    Pure and elementwise, so it jits and vmaps; ``family`` is static (a Python string).

    Parameters
    ----------
    log_time : array_like
        :math:`\log u`, the log of the observed (event or censoring) time. Taking the log
        rather than the time keeps very long or short times representable in float32.
    event : array_like
        1 (or True) where the event was observed, 0 where the time is censored.
    eta : array_like
        Location :math:`\eta` of :math:`\log T`.
    sigma : array_like
        Scale :math:`\sigma > 0` of the log-time error.
    family : {"weibull", "lognormal"}

    Returns
    -------
    jax.Array
        :math:`\ell`, broadcast over the arguments, in their floating dtype.

    Raises
    ------
    ValueError
        If ``family`` is not one of :data:`FAMILIES`.

    Notes
    -----
    Array values are not checked (they may be traced): ``sigma <= 0`` gives NaN. The data
    (finite log times, 0/1 events) are to be validated once, where the model's arrays are built.
    """
    family = check_family(family)
    log_sigma = jnp.log(sigma)
    z = (log_time - eta) / sigma
    if family == "weibull":
        log_error_density = z - jnp.exp(z)
    else:
        log_error_density = -0.5 * z * z - _HALF_LOG_2PI
    log_density = log_error_density - log_sigma - log_time  # - log u: Jacobian of T = e^{log T}
    return jnp.where(jnp.asarray(event, dtype=bool), log_density, log_survival(z, family))


class CensoredAFT(Distribution):
    r"""Right-censored AFT law of an observed time, for ``numpyro.sample(..., obs=time)``.

    ``log_prob(time)`` is :func:`aft_log_likelihood` at ``log(time)``, with the event
    indicator given at construction, as in NumPyro's own ``RightCensoredDistribution``
    (value = time, censoring flags = a parameter). Why a distribution rather than
    ``numpyro.factor``: the observed site then holds the data, so ``numpyro.infer.log_likelihood``
    returns per-patient terms for LOO/WAIC and ``Predictive`` draws event times from
    :meth:`sample`. Why not ``RightCensoredDistribution(Weibull(...))``: it takes
    ``log(1 - cdf)`` with a clamped cdf, which in float32 sticks at about -15.9 from
    :math:`z \approx 5.3` (log-normal) or :math:`z \approx 2.8` (Weibull) on, so a long-censored
    patient stops informing :math:`\eta`; the closed forms here do not saturate. A tuple
    ``(time, event)`` as the value would not fit NumPyro's one-array observed sites (support
    checks, batching, ``Predictive``).

    Parameters
    ----------
    eta : array_like
        Location :math:`\eta` of :math:`\log T`.
    sigma : array_like
        Scale :math:`\sigma > 0`.
    family : {"weibull", "lognormal"}
        Static (part of the pytree's structure, not a traced leaf).
    event : array_like, default True
        1 where the event was observed, 0 where the time is censored.
    validate_args : bool, optional

    Notes
    -----
    :meth:`sample` draws the uncensored event time :math:`T = e^{\eta + \sigma\varepsilon}`
    (a posterior predictive of when the event happens); censoring is not simulated.
    """

    arg_constraints = {
        "eta": constraints.real,
        "sigma": constraints.positive,
        "event": constraints.boolean,
    }
    support = constraints.positive
    pytree_data_fields = ("eta", "sigma", "event")
    pytree_aux_fields = ("family",)

    def __init__(
        self,
        eta: jax.Array,
        sigma: jax.Array,
        family: str,
        event: jax.Array = True,
        *,
        validate_args: bool | None = None,
    ) -> None:
        self.family = check_family(family)
        self.eta, self.sigma, event = promote_shapes(eta, sigma, event)
        self.event = jnp.asarray(event, dtype=bool)
        batch_shape = jax.lax.broadcast_shapes(
            jnp.shape(self.eta), jnp.shape(self.sigma), jnp.shape(self.event)
        )
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Uncensored event times, shape ``sample_shape + batch_shape``."""
        shape = sample_shape + self.batch_shape
        dtype = jnp.result_type(self.eta, self.sigma, float)
        if self.family == "weibull":  # log of a unit exponential: minimum extreme value
            error = jnp.log(jax.random.exponential(key, shape, dtype=dtype))
        else:
            error = jax.random.normal(key, shape, dtype=dtype)
        return jnp.exp(self.eta + self.sigma * error)

    @validate_sample
    def log_prob(self, value: jax.Array) -> jax.Array:
        """:func:`aft_log_likelihood` at ``log(value)`` with this law's ``event`` flags."""
        return aft_log_likelihood(jnp.log(value), self.event, self.eta, self.sigma, self.family)
