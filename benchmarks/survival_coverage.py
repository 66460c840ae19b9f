"""The Bayesian estimators with outcome="survival" on the survival designs: RMST coverage.

    python benchmarks/survival_coverage.py --designs survival_weibull survival_lognormal \
        --n 400 --seeds 1 2 3 --warmup 300 --samples 300 --chains 2 --out survival.csv
    python benchmarks/survival_coverage.py --estimator BayesianCausalForest ...

prints one row per (design, seed): the ATE's 95 % interval on the RMST scale and whether it
covers the sample's true average RMST difference (``trial.tau.mean()``), the coverage of the
true per-patient RMST differences by their 95 % intervals, sqrt-PEHE, the max R-hat of the
monitored effects and the fit's seconds; then the means. HierarchicalITE's family is the
design's (``family=`` of the simulator); BayesianCausalForest's is always log-normal (the
Gaussian BCF on log time). The horizon is the design's (``trial.params["horizon"]``);
``--set prognosis=additive ...`` passes string options to the estimator.
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from itelib import BayesianCausalForest, HierarchicalITE
from itelib.calibration import coverage, sqrt_pehe
from itelib.simulate import simulate

FAMILY = {"survival_weibull": "weibull", "survival_lognormal": "lognormal"}


def one(design: str, n: int, seed: int, args: argparse.Namespace) -> dict:
    trial = simulate(design, n=n, seed=seed, censoring=args.censoring)
    options = dict(
        outcome="survival", horizon=trial.params["horizon"], num_warmup=args.warmup,
        num_samples=args.samples, num_chains=args.chains, progress_bar=False, random_state=0,
        **dict(kv.split("=", 1) for kv in args.set),
    )  # fmt: skip
    if args.estimator == "HierarchicalITE":
        est = HierarchicalITE(survival_family=FAMILY[design], **options)
    else:
        est = BayesianCausalForest(**options)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(**trial.fit_kwargs())
    seconds = time.perf_counter() - start
    lo, hi = est.ate().interval(0.95)
    truth = trial.tau.to_numpy()
    draws = est.effect().draws()
    return {
        "estimator": args.estimator, "design": design, "n": n, "seed": seed,
        "ate_true": truth.mean(), "ate_lo": lo, "ate_hi": hi,
        "ate_covered": bool(lo <= truth.mean() <= hi),
        "coverage95": coverage(draws, truth, levels=(0.95,))[0.95],
        "sqrt_pehe": sqrt_pehe(draws, truth), "censored": 1 - trial.data["event"].mean(),
        "max_rhat": float(est.diagnostics_.table["r_hat"].max()), "seconds": seconds,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--estimator", default="HierarchicalITE",
        choices=["HierarchicalITE", "BayesianCausalForest"],
    )  # fmt: skip
    parser.add_argument("--designs", nargs="+", default=list(FAMILY))
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--censoring", type=float, default=0.3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument(
        "--set", nargs="*", default=[], help="string options, e.g. prognosis=additive"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for design in args.designs:
        for seed in args.seeds:
            rows.append(one(design, args.n, seed, args))
            print(pd.DataFrame(rows[-1:]).to_string(header=len(rows) == 1, index=False),
                  flush=True)  # fmt: skip
            if args.out:
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    columns = ["ate_covered", "coverage95", "sqrt_pehe", "censored", "max_rhat", "seconds"]
    print(table.groupby(["estimator", "design"])[columns].mean().to_string())


if __name__ == "__main__":
    main()
