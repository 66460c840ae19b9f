"""Published benchmark designs: Nie & Wager (2021) setups A-D, IHDP response surface B, and a
high-dimensional trial.

- Nie, X. & Wager, S. (2021). Quasi-oracle estimation of heterogeneous treatment effects.
  Biometrika 108(2), sec. 6: ``y = b(x) + (w - 1/2) tau(x) + sigma e``, so the control mean is
  ``b - tau/2``.
- Hill, J. (2011). Bayesian nonparametric modeling for causal inference. JCGS 20(1): response
  surface B on the IHDP covariates, exactly as EconML's ``econml.data.dgps.ihdp_surface_B``
  builds it from the covariate file EconML ships (no download).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from itelib.simulate.registry import register
from itelib.simulate.trial import SeedLike, SimulatedTrial, _as_rng, _build_trial, _check_int

__all__ = ["nie_wager", "ihdp_b", "high_dimensional_rct"]


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def nie_wager(
    setup: str, n: int = 500, seed: SeedLike = None, *, d: int = 6, sigma: float = 1.0
) -> SimulatedTrial:
    r"""Nie & Wager (2021) setup A, B, C or D with ``d`` covariates and noise sd ``sigma``.

    - A: :math:`x \sim U[0,1]^d`, :math:`b = \sin(\pi x_1 x_2) + 2(x_3 - 0.5)^2 + x_4 + 0.5 x_5`,
      :math:`e = \mathrm{trim}_{0.1}\{\sin(\pi x_1 x_2)\}`, :math:`\tau = (x_1 + x_2)/2`.
    - B: :math:`x \sim N(0, I)`, :math:`b = \max(0, x_1 + x_2, x_3) + \max(0, x_4 + x_5)`,
      :math:`e = 1/2`, :math:`\tau = x_1 + \log(1 + e^{x_2})`.
    - C: :math:`x \sim N(0, I)`, :math:`b = 2\log(1 + e^{x_1 + x_2 + x_3})`,
      :math:`e = 1/(1 + e^{x_2 + x_3})`, :math:`\tau = 1`.
    - D: :math:`x \sim N(0, I)`, :math:`b = \{\max(0, x_1 + x_2 + x_3) + \max(0, x_4 + x_5)\}/2`,
      :math:`e = 1/(1 + e^{-x_1} + e^{-x_2})`,
      :math:`\tau = \max(0, x_1 + x_2 + x_3) - \max(0, x_4 + x_5)`.
    """
    n = _check_int(n, "n", minimum=10)
    d = _check_int(d, "d", minimum=5)
    rng = _as_rng(seed)
    if setup == "A":
        x = rng.uniform(size=(n, d))
        b = np.sin(np.pi * x[:, 0] * x[:, 1]) + 2 * (x[:, 2] - 0.5) ** 2 + x[:, 3] + 0.5 * x[:, 4]
        e = np.clip(np.sin(np.pi * x[:, 0] * x[:, 1]), 0.1, 0.9)
        tau = (x[:, 0] + x[:, 1]) / 2
    else:
        x = rng.normal(size=(n, d))
        if setup == "B":
            b = np.maximum.reduce([np.zeros(n), x[:, 0] + x[:, 1], x[:, 2]]) + np.maximum(
                0, x[:, 3] + x[:, 4]
            )
            e = np.full(n, 0.5)
            tau = x[:, 0] + _softplus(x[:, 1])
        elif setup == "C":
            b = 2 * _softplus(x[:, 0] + x[:, 1] + x[:, 2])
            e = 1 / (1 + np.exp(x[:, 1] + x[:, 2]))
            tau = np.ones(n)
        elif setup == "D":
            b = (np.maximum(0, x[:, 0] + x[:, 1] + x[:, 2]) + np.maximum(0, x[:, 3] + x[:, 4])) / 2
            e = 1 / (1 + np.exp(-x[:, 0]) + np.exp(-x[:, 1]))
            tau = np.maximum(0, x[:, 0] + x[:, 1] + x[:, 2]) - np.maximum(0, x[:, 3] + x[:, 4])
        else:
            raise ValueError(f"setup must be 'A', 'B', 'C' or 'D'; got {setup!r}")
    w = (rng.uniform(size=n) < e).astype(np.int64)
    mu0 = b - 0.5 * tau
    y = mu0 + w * tau + sigma * rng.normal(size=n)
    covariates = pd.DataFrame(x, columns=[f"x{k + 1}" for k in range(d)])
    return _build_trial(
        name=f"nie_wager_{setup.lower()}",
        params={"setup": setup, "n": n, "d": d, "sigma": sigma},
        covariates=covariates, t=w, y=y, mu0=mu0, tau=tau, propensity=e,
    )  # fmt: skip


for _setup in "ABCD":
    register(f"nie_wager_{_setup.lower()}")(
        (lambda s: lambda n=500, seed=None, **kw: nie_wager(s, n, seed, **kw))(_setup)
    )


_IHDP_COLUMNS = [
    "bw", "b.head", "preterm", "birth.o", "nnhealth", "momage", "sex", "twin", "b.marr",
    "mom.lths", "mom.hs", "mom.scoll", "cig", "first", "booze", "drugs", "work.dur", "prenatal",
    "site1", "site2", "site3", "site4", "site5", "site6", "site7",
]  # fmt: skip


def _ihdp_covariates() -> tuple[np.ndarray, pd.DataFrame]:
    """IHDP treatment and covariates as EconML prepares them (its shipped file, no download)."""
    from pathlib import Path

    import econml.data

    raw = pd.read_csv(Path(econml.data.__file__).parent / "ihdp" / "sim.csv")
    raw = raw[~((raw["treat"] == 1) & (raw["momwhite"] == 0))]  # Hill's subset: 747 children
    frame = raw[_IHDP_COLUMNS].astype(float).reset_index(drop=True)
    numeric = frame.columns[:6]
    frame[numeric] = (frame[numeric] - frame[numeric].mean()) / frame[numeric].std(ddof=0)
    frame["first"] = frame["first"] + 1
    return raw["treat"].to_numpy(np.int64), frame


@register("ihdp_b")
def ihdp_b(n: int | None = None, seed: SeedLike = None) -> SimulatedTrial:
    r"""Hill's (2011) response surface B on the 747 IHDP children (real, confounded treatment).

    :math:`\beta_k \in \{0, .1, .2, .3, .4\}` with probabilities (.6, .1, .1, .1, .1);
    :math:`y(0) = \exp\{(x + W)\beta\} + e`, :math:`y(1) = x\beta - \omega + e`, with
    :math:`W = 0.5` offsets and :math:`\omega` making the effect on the treated 4 (EconML's
    construction, including its intercept column). ``n`` below 747 subsamples the children;
    the true propensity is unknown (NaN).
    """
    t, covariates = _ihdp_covariates()
    rng = _as_rng(seed)
    total = len(t)
    if n is not None:
        n = _check_int(n, "n", minimum=10)
        if n > total:
            raise ValueError(f"ihdp_b has {total} children; n={n} is too many.")
        keep = np.sort(rng.choice(total, size=n, replace=False))
        t, covariates = t[keep], covariates.iloc[keep].reset_index(drop=True)
    X = np.column_stack([np.ones(len(t)), covariates.to_numpy()])
    beta = rng.choice([0, 0.1, 0.2, 0.3, 0.4], size=X.shape[1], p=[0.6, 0.1, 0.1, 0.1, 0.1])
    offset = np.concatenate([np.zeros((len(t), 1)), np.full((len(t), X.shape[1] - 1), 0.5)], 1)
    y0_mean = np.exp((X + offset) @ beta)
    omega = np.mean((X @ beta - y0_mean)[t == 1]) - 4
    tau = X @ beta - omega - y0_mean
    y = y0_mean + t * tau + rng.normal(size=len(t))
    covariates.columns = [c.replace(".", "_") for c in covariates.columns]
    return _build_trial(
        name="ihdp_b", params={"n": len(t)}, covariates=covariates, t=t, y=y,
        mu0=y0_mean, tau=tau, propensity=np.full(len(t), np.nan),
    )  # fmt: skip


@register("high_dimensional_rct")
def high_dimensional_rct(
    n: int = 1000,
    seed: SeedLike = None,
    *,
    p: int = 200,
    block_size: int = 10,
    rho: float = 0.6,
    noise_sd: float = 1.0,
) -> SimulatedTrial:
    r"""A randomized trial with many correlated "omics-like" covariates and few modifiers.

    :math:`x \sim N(0, \Sigma)`, :math:`\Sigma` block-diagonal with blocks of ``block_size``
    equicorrelated (``rho``) covariates. Three effect modifiers in different blocks:
    :math:`\tau = 1 + 0.6 x_1 - 0.5 x_{11} + 0.5 \cdot 1\{x_{21} > 0\} - 0.25`;
    :math:`\mu_0 = x_1 + 0.5 x_2 - 0.5 x_{31} + 0.3 \sin(2 x_{41})`; 1:1 randomization.
    """
    n = _check_int(n, "n", minimum=10)
    p = _check_int(p, "p", minimum=41)
    rng = _as_rng(seed)
    shared = rng.normal(size=(n, -(-p // block_size)))
    own = rng.normal(size=(n, p))
    x = np.sqrt(rho) * np.repeat(shared, block_size, axis=1)[:, :p] + np.sqrt(1 - rho) * own
    tau = 1 + 0.6 * x[:, 0] - 0.5 * x[:, 10] + 0.5 * (x[:, 20] > 0) - 0.25
    mu0 = x[:, 0] + 0.5 * x[:, 1] - 0.5 * x[:, 30] + 0.3 * np.sin(2 * x[:, 40])
    t = rng.integers(0, 2, size=n)
    y = mu0 + t * tau + noise_sd * rng.normal(size=n)
    covariates = pd.DataFrame(x, columns=[f"g{k + 1:03d}" for k in range(p)])
    return _build_trial(
        name="high_dimensional_rct",
        params={"n": n, "p": p, "block_size": block_size, "rho": rho, "noise_sd": noise_sd},
        covariates=covariates, t=t, y=y, mu0=mu0, tau=tau, propensity=np.full(n, 0.5),
    )  # fmt: skip
