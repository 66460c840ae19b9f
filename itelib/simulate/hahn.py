"""The four simulation designs of Hahn, Murray & Carvalho (2020), section 6."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import ndtr

from itelib.simulate.registry import DataGenerator, register
from itelib.simulate.trial import SeedLike, SimulatedTrial, _as_rng, _build_trial, _check_int

__all__ = ["hahn2020", "hahn_mu", "hahn_tau"]

_G = {1: 2.0, 2: -1.0, 3: -4.0}  # g(x5)
_MU = ("linear", "nonlinear")
_TAU = ("homogeneous", "heterogeneous")


def hahn2020(
    n: int = 500,
    seed: SeedLike = None,
    *,
    mu: Literal["linear", "nonlinear"] = "linear",
    tau: Literal["homogeneous", "heterogeneous"] = "homogeneous",
    noise_sd: float = 1.0,
) -> SimulatedTrial:
    r"""Simulate one of the four designs of Hahn, Murray & Carvalho (2020), section 6.

    Covariates: :math:`x_1, x_2, x_3 \sim N(0, 1)`, :math:`x_4 \sim \text{Bernoulli}(0.5)`
    (numeric 0/1 column) and :math:`x_5` uniform on :math:`\{1, 2, 3\}` (a pandas categorical,
    listed in ``categorical``), all independent. With :math:`g(1) = 2, g(2) = -1, g(3) = -4`:

    .. math::

        \mu_\text{linear}(x) &= 1 + g(x_5) + x_1 x_3 \\
        \mu_\text{nonlinear}(x) &= -6 + g(x_5) + 6 |x_3 - 1| \\
        \tau_\text{homogeneous}(x) &= 3 \\
        \tau_\text{heterogeneous}(x) &= 1 + 2 x_2 x_4 \\
        \pi(x) &= 0.8\, \Phi(3 \mu(x) / s - 0.5 x_1) + 0.05 + u / 10,
            \quad u \sim U(0, 1),\ s = \mathrm{sd}(\mu(x_{1:n})) \\
        z &\sim \text{Bernoulli}(\pi(x)), \quad y = \mu(x) + \tau(x) z + \varepsilon,
            \quad \varepsilon \sim N(0, 1).

    ``s`` is the sample standard deviation (``ddof=1``, R's ``sd``) of :math:`\mu` over the
    simulated patients, so :math:`\pi \in (0.05, 0.95)`; ``propensity`` holds the true
    :math:`\pi` including the patient's :math:`u`. ``mu0`` is :math:`\mu`, ``mu1`` is
    :math:`\mu + \tau`.

    **Which of x4 and x5 is which.** The printed paper swaps :math:`x_4` and :math:`x_5` in
    two places, the argument of :math:`g` and the modifier in :math:`\tau_\text{het}`; read
    literally it would apply the three-level :math:`g` to the binary variable. We follow the
    authors' own software (stochtree's simulation scripts, bcf's examples): :math:`g` takes the
    three-valued :math:`x_5`, and the binary :math:`x_4` modifies the effect.

    Parameters
    ----------
    n : int, default 500
        Number of patients (the paper uses 250 and 500); at least 2.
    seed : int, numpy.random.Generator, numpy.random.SeedSequence or None
        Seed for :func:`numpy.random.default_rng`.
    mu : {"linear", "nonlinear"}, default "linear"
        Prognostic function.
    tau : {"homogeneous", "heterogeneous"}, default "homogeneous"
        Treatment-effect function.
    noise_sd : float, default 1.0
        Residual sd (1 in the paper).

    Returns
    -------
    SimulatedTrial
        Named ``f"hahn_{mu}_{tau}"``; ``data`` columns ``y, t, x1, x2, x3, x4, x5``.

    References
    ----------
    P. R. Hahn, J. S. Murray and C. M. Carvalho (2020). Bayesian regression tree models for
    causal inference: regularization, confounding, and heterogeneous effects. *Bayesian
    Analysis* 15(3), 965-1056, section 6.
    """
    params: dict[str, Any] = {"n": n, "seed": seed, "mu": mu, "tau": tau, "noise_sd": noise_sd}
    n = _check_int(n, "n", 2)
    if mu not in _MU:
        raise ValueError(f"`mu` must be one of {_MU}; got {mu!r}")
    if tau not in _TAU:
        raise ValueError(f"`tau` must be one of {_TAU}; got {tau!r}")
    if not noise_sd >= 0:
        raise ValueError(f"`noise_sd` must be a number >= 0; got {noise_sd}")

    rng = _as_rng(seed)
    x = rng.standard_normal((n, 3))
    x4 = rng.binomial(1, 0.5, size=n).astype(np.float64)
    x5 = rng.integers(1, 4, size=n)
    u = rng.uniform(size=n)
    covariates = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "x4": x4})
    covariates["x5"] = pd.Categorical(x5, categories=[1, 2, 3])

    mu_x = hahn_mu(covariates, mu)
    tau_x = hahn_tau(covariates, tau)
    propensity = 0.8 * ndtr(3.0 * mu_x / np.std(mu_x, ddof=1) - 0.5 * x[:, 0]) + 0.05 + u / 10
    z = (rng.uniform(size=n) < propensity).astype(np.int64)
    y = mu_x + tau_x * z + rng.normal(0.0, noise_sd, size=n)
    return _build_trial(
        name=f"hahn_{mu}_{tau}",
        params=params,
        covariates=covariates,
        t=z,
        y=y,
        mu0=mu_x,
        tau=tau_x,
        propensity=propensity,
        categorical=("x5",),
    )


def hahn_mu(covariates: pd.DataFrame, kind: str) -> np.ndarray:
    """Prognostic function :math:`\\mu(x)` of Hahn et al. (2020) for columns ``x1, x3, x5``.

    Parameters
    ----------
    covariates : pandas.DataFrame
        Columns ``x1``, ``x3`` (numeric) and ``x5`` (values 1, 2, 3; categorical or numeric).
    kind : {"linear", "nonlinear"}

    Returns
    -------
    numpy.ndarray
    """
    if kind not in _MU:
        raise ValueError(f"`kind` must be one of {_MU}; got {kind!r}")
    g = covariates["x5"].astype(np.int64).map(_G).to_numpy(dtype=np.float64)
    x1 = covariates["x1"].to_numpy(dtype=np.float64)
    x3 = covariates["x3"].to_numpy(dtype=np.float64)
    if kind == "linear":
        return 1.0 + g + x1 * x3
    return -6.0 + g + 6.0 * np.abs(x3 - 1.0)


def hahn_tau(covariates: pd.DataFrame, kind: str) -> np.ndarray:
    """Effect function :math:`\\tau(x)` of Hahn et al. (2020): 3, or ``1 + 2 x2 x4``.

    Parameters
    ----------
    covariates : pandas.DataFrame
        Columns ``x2`` and ``x4`` (numeric).
    kind : {"homogeneous", "heterogeneous"}

    Returns
    -------
    numpy.ndarray
    """
    if kind not in _TAU:
        raise ValueError(f"`kind` must be one of {_TAU}; got {kind!r}")
    if kind == "homogeneous":
        return np.full(len(covariates), 3.0)
    x2 = covariates["x2"].to_numpy(dtype=np.float64)
    x4 = covariates["x4"].to_numpy(dtype=np.float64)
    return 1.0 + 2.0 * x2 * x4


def _variant(mu: str, tau: str) -> DataGenerator:
    """A registered generator with ``mu`` and ``tau`` fixed."""
    name = f"hahn_{mu}_{tau}"

    def generator(n: int = 500, seed: SeedLike = None, **kwargs: Any) -> SimulatedTrial:
        return hahn2020(n, seed, mu=mu, tau=tau, **kwargs)  # type: ignore[arg-type]

    generator.__name__ = generator.__qualname__ = name
    generator.__doc__ = (
        f"Hahn, Murray & Carvalho (2020) design with {mu} prognosis and {tau} effect.\n\n"
        f"Same as ``hahn2020(n, seed, mu={mu!r}, tau={tau!r}, **kwargs)``; see :func:`hahn2020`."
    )
    return register(name)(generator)


hahn_linear_homogeneous = _variant("linear", "homogeneous")
hahn_linear_heterogeneous = _variant("linear", "heterogeneous")
hahn_nonlinear_homogeneous = _variant("nonlinear", "homogeneous")
hahn_nonlinear_heterogeneous = _variant("nonlinear", "heterogeneous")
