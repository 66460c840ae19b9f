"""Which classifier should estimate the propensity score? Measured on every observational design.

    python benchmarks/propensity_models.py --n 500 --seeds 1 2 3 4 5 6 7 8

For each registered design whose true propensity varies, each candidate classifier gives
cross-fitted scores (5 folds, as ``fit(propensity="estimate")`` does) and is scored against the
truth: correlation of logit scores with the true logit (the propensity enters the models as a
prognostic covariate on the logit scale, so this is what matters there) and the mean
Kullback-Leibler divergence KL(true || estimated) of the Bernoulli assignment (a proper score).
Prints one row per design and candidate, means over seeds with standard errors.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd

from itelib.data import TrialData
from itelib.propensity import CANDIDATE_CLASSIFIERS, estimate_propensity
from itelib.simulate import available, simulate


def observational_designs(n: int) -> list[str]:
    """Designs whose true propensity is known and not constant."""
    out = []
    for name in available():
        p = simulate(name, n=n, seed=0).propensity
        if p is not None and np.isfinite(p).all() and np.std(p) > 0:
            out.append(name)
    return out


def kl_bernoulli(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))))


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--designs", nargs="+", default=None)
    args = parser.parse_args()
    designs = args.designs or observational_designs(args.n)
    rows = []
    for design in designs:
        for seed in args.seeds:
            trial = simulate(design, n=args.n, seed=seed)
            kw = trial.fit_kwargs()
            data = TrialData.from_arrays(kw["Y"], kw["T"], X=kw["X"], site=kw.get("site"))
            X, t = data.X, data.t  # exactly what the estimators' fit() sees
            truth = trial.propensity.to_numpy()
            for name, make in CANDIDATE_CLASSIFIERS.items():
                start = time.perf_counter()
                q = estimate_propensity(X, t, classifier=make(seed), random_state=seed)
                rows.append({
                    "design": design, "classifier": name, "seed": seed,
                    "logit_corr": np.corrcoef(logit(truth), logit(q))[0, 1],
                    "kl": kl_bernoulli(truth, q),
                    "seconds": time.perf_counter() - start,
                })  # fmt: skip
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["design", "classifier"]).agg(
        logit_corr=("logit_corr", "mean"),
        logit_corr_se=("logit_corr", lambda s: s.std(ddof=1) / np.sqrt(len(s))),
        kl=("kl", "mean"),
        kl_se=("kl", lambda s: s.std(ddof=1) / np.sqrt(len(s))),
        seconds=("seconds", "mean"),
    )
    print(summary.round(4).to_string())
    print("\nmean over designs:")
    print(summary.groupby("classifier")[["logit_corr", "kl", "seconds"]].mean().round(4))
    print(f"\nn = {args.n}, seeds {args.seeds}; {platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
