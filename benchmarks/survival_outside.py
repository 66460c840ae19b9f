"""Survival estimators on a trial written outside itelib's registry: another law, unequal spreads
and censoring that depends on the covariates.

    python benchmarks/survival_outside.py --seeds 1 2 3 4 5 6 7 8 9 10 --n 1000 \\
        --out benchmarks/results/survival/outside.csv

The design (written for this check, not used anywhere else): x ~ U(0, 1)^6, t ~ Bernoulli(1/2),

    log T = 1.2 + 0.8 * 1(x1 < 0.5) + 0.7 * sqrt(x2) - 0.3 * x3
            + t * (0.6 - 0.5 * 1(x1 < 0.5) + 0.4 * x4 ** 2) + s(x) * eps,
    s(x) = 0.4 + 0.4 * x3,   eps ~ standard logistic,

so the errors are neither normal nor extreme-value and their spread varies by patient (every
itelib survival model assumes one spread). Censoring times are exponential with a rate that
grows with x5 (covariate-dependent, independent given x), scaled to censor ~30 %. The truth is
each patient's RMST difference up to the horizon (the 0.75 quantile of the event times), by
numerical integration of the two survival curves S(u) = 1 / (1 + exp((log u - loc) / s(x))).
Prints, per seed, 95 % coverage of the per-patient RMST differences, sqrt-PEHE, and whether the
ATE's 95 % interval covers the sample's average; then the means.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import integrate

from itelib import BayesianCausalForest, HierarchicalITE
from itelib.calibration import coverage, sqrt_pehe


def trial(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 6))
    t = rng.integers(0, 2, n)
    low = (X[:, 0] < 0.5).astype(float)
    loc0 = 1.2 + 0.8 * low + 0.7 * np.sqrt(X[:, 1]) - 0.3 * X[:, 2]
    effect = 0.6 - 0.5 * low + 0.4 * X[:, 3] ** 2
    spread = 0.4 + 0.4 * X[:, 2]
    T = np.exp(loc0 + t * effect + spread * rng.logistic(size=n))
    horizon = float(np.quantile(T, 0.75))
    rate = 1.0 / np.exp(loc0.mean()) * (0.5 + X[:, 4])
    scale = _censoring_scale(T, rate, 0.3)
    C = rng.exponential(1.0 / (scale * rate))
    Y = pd.DataFrame({"time": np.minimum(T, C), "event": (T <= C).astype(int)})

    def rmst(loc: float, s: float) -> float:
        return integrate.quad(lambda u: 1.0 / (1.0 + np.exp((np.log(u) - loc) / s)),
                              0.0, horizon, limit=200)[0]  # fmt: skip

    tau = np.array(
        [rmst(a + b, s) - rmst(a, s) for a, b, s in zip(loc0, effect, spread, strict=True)]
    )
    return Y, t, pd.DataFrame(X, columns=[f"x{j + 1}" for j in range(6)]), tau, horizon


def _censoring_scale(T: np.ndarray, rate: np.ndarray, share: float) -> float:
    """The factor k with mean P(C < T) = mean(1 - exp(-k rate T)) = share (bisection)."""
    lo, hi = 1e-6, 1e3
    for _ in range(100):
        k = np.sqrt(lo * hi)
        lo, hi = (k, hi) if np.mean(1 - np.exp(-k * rate * T)) < share else (lo, k)
    return float(np.sqrt(lo * hi))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--estimators", nargs="+", default=["BayesianCausalForest"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        Y, t, X, tau, horizon = trial(args.n, seed)
        for name in args.estimators:
            cls = {"BayesianCausalForest": BayesianCausalForest, "HierarchicalITE": HierarchicalITE}
            est = cls[name](outcome="survival", horizon=horizon, progress_bar=False,
                            random_state=0)  # fmt: skip
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(Y, t, X=X)
            draws = est.effect().draws()
            lo, hi = est.ate().interval(0.95)
            rows.append({
                "estimator": name, "seed": seed, "n": args.n,
                "censored": 1 - Y["event"].mean(),
                "coverage95": coverage(draws, tau, levels=(0.95,))[0.95],
                "sqrt_pehe": sqrt_pehe(draws, tau), "sd_truth": tau.std(),
                "ate_covered": bool(lo <= tau.mean() <= hi),
                "max_rhat": float(est.diagnostics_.table["r_hat"].max()),
                "seconds": time.perf_counter() - start,
            })  # fmt: skip
            print(pd.DataFrame(rows[-1:]).to_string(header=len(rows) == 1, index=False), flush=True)
            if args.out:
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    columns = ["coverage95", "sqrt_pehe", "sd_truth", "ate_covered", "censored", "seconds"]
    print(table.groupby("estimator")[columns].mean().to_string())


if __name__ == "__main__":
    main()
