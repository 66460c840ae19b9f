"""validate() on trials not in the registry (issue 21): false alarms under a constant effect and
power under a step effect, on Friedman's #1 prognosis (scikit-learn's ``make_friedman1``: a
sine of a product, a square, two linear terms, five noise covariates) with confounded
assignment.

    OMP_NUM_THREADS=1 python benchmarks/validate_outside.py --estimators CausalForest \
        --out benchmarks/results/heterogeneity_checks/outside_n500.csv

Per estimator x effect x seed (n = 500, 10 covariates uniform on (0, 1)): ``y = friedman1(x) +
t tau(x) + N(0, 1)``, ``P(t = 1 | x) = logistic(3 (x1 + x4 - 1))`` (0.05-0.95), ``tau = 2``
(``constant``) or ``2 + 2 1(x4 > 0.5)`` (``step``: along the propensity and the prognosis, the
risk-based heterogeneity a control for either would hide). ``validate(est, propensity=
"estimate")``; one row per trial: the BLP slope's one-sided p-value and AUTOC's interval against
the true AUTOC (the true effects ranked as the estimates rank them).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from heterogeneity_checks import SETTINGS  # the registry study's sampler settings
from sklearn.datasets import make_friedman1

import itelib
from itelib.answers.rate import rate_estimates

OUT = Path(__file__).parent / "results" / "heterogeneity_checks" / "outside_n500.csv"


def friedman_trial(effect: str, n: int, seed: int):
    """(X, y, t, tau) of one confounded trial on Friedman's #1 prognosis."""
    X, mu0 = make_friedman1(n_samples=n, n_features=10, noise=0.0, random_state=seed)
    rng = np.random.default_rng(seed + 10_000)
    e = 1.0 / (1.0 + np.exp(-3.0 * (X[:, 0] + X[:, 3] - 1.0)))
    t = rng.binomial(1, e).astype(float)
    tau = np.full(n, 2.0) if effect == "constant" else 2.0 + 2.0 * (X[:, 3] > 0.5)
    y = mu0 + t * tau + rng.normal(size=n)
    ids = pd.Index([f"p{i:04d}" for i in range(n)], name="patient")
    frame = pd.DataFrame(X, index=ids, columns=[f"x{j + 1}" for j in range(10)])
    return frame, pd.Series(y, ids, name="y"), pd.Series(t, ids, name="t"), tau


def run(name: str, effect: str, n: int, seed: int) -> dict:
    X, y, t, tau = friedman_trial(effect, n, seed)
    est = getattr(itelib, name)(random_state=seed, **SETTINGS[name])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains warn; the checks use posterior means
        res = itelib.validate(est, X, y, t, propensity="estimate", random_state=seed,
                              progress_bar=False)  # fmt: skip
    true_autoc, _ = rate_estimates(tau, res.patients["rank"].to_numpy())
    lo, hi = res.table.loc["AUTOC", ["lower", "upper"]]
    return {
        "estimator": name, "effect": effect, "n": n, "seed": seed,
        "blp_slope": res.blp.slope, "blp_se": res.blp.slope_se,
        "p_heterogeneity": res.blp.p_heterogeneity,
        "reject": bool(res.blp.p_heterogeneity < 0.05),
        "autoc": res.rate.autoc, "autoc_true": true_autoc,
        "autoc_covered": bool(lo <= true_autoc <= hi),
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    parser.add_argument("--estimators", nargs="+", default=list(SETTINGS))
    parser.add_argument("--effects", nargs="+", default=["constant", "step"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    done = set()
    if args.out.exists():
        old = pd.read_csv(args.out)
        done = set(zip(old.estimator, old.effect, old.n, old.seed, strict=True))
    for seed in args.seeds:
        for effect in args.effects:
            for name in args.estimators:
                if (name, effect, args.n, seed) in done:
                    continue
                row = pd.DataFrame([run(name, effect, args.n, seed)])
                row.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
                print(row.to_string(header=False, index=False), flush=True)
    df = pd.read_csv(args.out)
    print(df.groupby(["estimator", "effect"]).agg(
        trials=("seed", "size"), rejections=("reject", "sum"),
        autoc_covered=("autoc_covered", "mean"), mean_seconds=("seconds", "mean"),
    ).to_string())  # fmt: skip


if __name__ == "__main__":
    main()
