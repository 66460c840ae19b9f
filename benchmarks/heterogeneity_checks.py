"""Checks without truth (issue 21): does ``itelib.validate`` find heterogeneity where there is
some, and only there, and does RATE's interval cover the true RATE?

    OMP_NUM_THREADS=1 python benchmarks/heterogeneity_checks.py --n 500 --seeds 0 1 2 3 4 5 6 7 8 9

For each estimator x design x seed: ``validate(est, ..., propensity="estimate", folds=5)`` on
``hahn_linear_heterogeneous`` (tau = 1 + 2 x2 x4), and two constant effects:
``hahn_linear_homogeneous`` (tau = 3; targeted selection, poor overlap) and ``nie_wager_c``
(tau = 1; logistic assignment in x2 + x3); all observational (propensity estimated,
cross-fitted). One row per cell, appended to
``--out`` as it finishes (a rerun skips finished cells): the BLP slope and its one-sided
rejection of "no heterogeneity" at 5 %, AUTOC and Qini with their 95 % intervals, and the true
AUTOC and Qini (the same within-fold ranking, the true effects in place of the scores; 0 on the
constant design), and whether the interval covers them.

Sampler settings are smaller than the defaults so the 60 cells x 5 folds fit on a shared CPU
(the checks use only posterior means, which these settings estimate well; convergence warnings
are counted in the ``warnings`` column): HierarchicalITE 2 chains x (400 warmup + 400 draws),
BayesianCausalForest 2 chains x (200 + 200), CausalForest 200 trees, n_jobs=1.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import pandas as pd

import itelib
from itelib.answers.rate import rate_estimates
from itelib.simulate import simulate

DESIGNS = ("hahn_linear_heterogeneous", "hahn_linear_homogeneous", "nie_wager_c")
SETTINGS = {
    "HierarchicalITE": {"num_chains": 2, "num_warmup": 400, "num_samples": 400,
                        "progress_bar": False},
    "BayesianCausalForest": {"num_chains": 2, "num_warmup": 200, "num_samples": 200,
                             "progress_bar": False},
    "CausalForest": {"n_estimators": 200, "n_jobs": 1},
}  # fmt: skip
OUT = Path(__file__).parent / "results" / "heterogeneity_checks" / "n500.csv"


def run_cell(name: str, design: str, n: int, seed: int, folds: int) -> dict:
    trial = simulate(design, n, seed=seed)
    est = getattr(itelib, name)(random_state=seed, **SETTINGS[name])
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = itelib.validate(est, **trial.fit_kwargs(), propensity="estimate", folds=folds,
                              random_state=seed, progress_bar=False)  # fmt: skip
    seconds = time.perf_counter() - start
    true_autoc, true_qini = rate_estimates(trial.tau.to_numpy(), res.patients["rank"].to_numpy())
    t = res.table
    row = {
        "estimator": name, "design": design, "n": n, "seed": seed, "folds": folds,
        "blp_slope": res.blp.slope, "blp_se": res.blp.slope_se,
        "p_heterogeneity": res.blp.p_heterogeneity,
        "reject": bool(res.blp.p_heterogeneity < 0.05),
        "p_calibration": res.blp.p_calibration,
    }  # fmt: skip
    for stat, truth in (("AUTOC", true_autoc), ("Qini", true_qini)):
        lo, hi = t.loc[stat, "lower"], t.loc[stat, "upper"]
        key = stat.lower()
        row |= {key: t.loc[stat, "estimate"], f"{key}_lower": lo, f"{key}_upper": hi,
                f"{key}_true": truth, f"{key}_covered": bool(lo <= truth <= hi)}  # fmt: skip
    machine = f"{platform.node()}-OMP{os.environ.get('OMP_NUM_THREADS', '?')}"
    row |= {"warnings": len(caught), "seconds": round(seconds, 1),
            "settings": repr(SETTINGS[name]).replace(",", ";"), "machine": machine}  # fmt: skip
    return row


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["estimator", "design"])
    return pd.DataFrame({
        "seeds": g.size(),
        "reject": g["reject"].sum(),
        "autoc_covered": g["autoc_covered"].sum(),
        "qini_covered": g["qini_covered"].sum(),
        "mean_slope": g["blp_slope"].mean(),
        "mean_seconds": g["seconds"].mean(),
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--estimators", nargs="+", default=list(SETTINGS))
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    done = set()
    if args.out.exists():
        old = pd.read_csv(args.out)
        done = set(zip(old.estimator, old.design, old.n, old.seed, strict=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # seeds outermost: a partial run covers every cell a little
        for design in args.designs:
            for name in args.estimators:
                if (name, design, args.n, seed) in done:
                    continue
                row = run_cell(name, design, args.n, seed, args.folds)
                frame = pd.DataFrame([row])
                frame.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
                print(frame.drop(columns=["settings", "machine"]).to_string(header=False),
                      flush=True)  # fmt: skip
    print(summarize(pd.read_csv(args.out)).to_string())


if __name__ == "__main__":
    main()
