"""Forests on synthetic trials: itelib's BCF against stochtree's BCF and EconML, same seeds.

    python benchmarks/forest_coverage.py --designs hahn_linear_homogeneous --n 500 \
        --seeds 1 2 3 --estimators bcf stochtree --out results.csv

prints one row per (design, seed, estimator): sqrt-PEHE, coverage of the true effects at
50/80/90/95 %, mean 95 % width, ATE covered, max R-hat over monitored effects, fit seconds;
then mean and standard error per design and estimator, and paired PEHE differences against
stochtree on the same seeds. Rows are appended to ``--out`` as they finish.

Estimators: ``bcf`` (itelib defaults, propensity="estimate"), ``bcf_nosites`` (the same with
site_effects=False), ``--set KEY=VALUE ...`` (a ``bcf`` variant with those options, named
``bcf[KEY=VALUE,...]``), ``stochtree`` (stochtree.BCFModel at its defaults, which estimate the
propensity with BART), ``causal_forest`` (itelib.CausalForest, EconML's intervals).
``--tau-prior BASE POWER`` and ``--tau-leaf-variance V`` set the effect forest's tree prior
and leaf-variance prior mean as ``forest_tree_prior.py`` does (issue 24; Hahn et al.'s, the
default before: ``--tau-prior 0.25 3 --tau-leaf-variance 0.5``; continuous outcomes only, as
the library's); the ``bcf`` rows are then named after them.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

import itelib
from itelib.calibration import metrics
from itelib.simulate import available, simulate


def fit_itelib(trial, **options) -> tuple[np.ndarray, tuple[float, float], float]:
    propensity = None if trial.site is not None else "estimate"  # trials vs. Hahn's cohorts
    if options.pop("true_propensity", False):
        propensity = trial.propensity
    est = itelib.BayesianCausalForest(progress_bar=False, random_state=0, **options)
    est.fit(**trial.fit_kwargs(), propensity=propensity)
    lo, hi = est.ate().interval(0.95)
    return est.effect().draws(), (lo, hi), est.diagnostics_.max_rhat


def fit_stochtree(trial) -> tuple[np.ndarray, tuple[float, float], float]:
    from stochtree import BCFModel

    kw = trial.fit_kwargs()
    X = np.asarray(pd.get_dummies(kw["X"]), float)
    y = np.asarray(kw["Y"], float)
    binary = set(np.unique(y)) <= {0.0, 1.0}
    model = BCFModel()
    general = {"random_seed": 0}
    if binary:
        from stochtree import OutcomeModel

        general["outcome_model"] = OutcomeModel(outcome="binary", link="probit")
    model.sample(X, np.asarray(kw["T"], float), y, general_params=general)
    if binary:
        from scipy.special import ndtr

        mu = model.mu_hat_train
        tau = model.tau_hat_train
        draws = (ndtr(mu + tau) - ndtr(mu)).T[None]
    else:
        draws = model.tau_hat_train.T[None]  # (1, draws, n)
    ate = draws.mean(axis=2).ravel()
    return draws, tuple(np.quantile(ate, [0.025, 0.975])), float("nan")


def fit_causal_forest(trial) -> tuple[np.ndarray, tuple[float, float], float]:
    est = itelib.CausalForest(n_jobs=1, random_state=0)
    est.fit(**trial.fit_kwargs(), propensity="estimate")
    lo, hi = est.ate().interval(0.95)
    return est.effect().draws(), (lo, hi), float("nan")


ESTIMATORS = {
    "bcf": lambda trial: fit_itelib(trial),
    "bcf_nosites": lambda trial: fit_itelib(trial, site_effects=False),
    "stochtree": fit_stochtree,
    "causal_forest": fit_causal_forest,
}


def run_one(design: str, n: int, seed: int, estimator: str, options: dict | None = None) -> dict:
    trial = simulate(design, n=n, seed=seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if options:
            draws, (lo, hi), rhat = fit_itelib(trial, **options)
        else:
            draws, (lo, hi), rhat = ESTIMATORS[estimator](trial)
    seconds = time.perf_counter() - start
    m = metrics(draws, trial.tau.to_numpy())
    row = {"design": design, "n": n, "seed": seed, "estimator": estimator}
    row |= {"sqrt_pehe": m.sqrt_pehe, "width95": m.width95}
    row |= {f"cov{round(level * 100)}": c for level, c in m.coverage.items()}
    row |= {
        "ate_covered": bool(lo <= trial.ate <= hi),
        "max_rhat": rhat,
        "warnings": len(caught),
        "seconds": seconds,
    }
    return row


def summarize(table: pd.DataFrame) -> None:
    cols = ["sqrt_pehe", "cov50", "cov80", "cov90", "cov95", "width95", "ate_covered", "seconds"]
    grouped = table.groupby(["design", "n", "estimator"])[cols]
    print("\nmean over seeds")
    print(grouped.mean().astype(float).round(3).to_string())
    print("\nstandard error over seeds")
    print((grouped.std() / np.sqrt(grouped.count())).astype(float).round(3).to_string())
    if "stochtree" in set(table.estimator):
        wide = table.pivot_table(index=["design", "n", "seed"], columns="estimator",
                                 values="sqrt_pehe")  # fmt: skip
        print("\npaired sqrt-PEHE difference against stochtree (negative: better than stochtree)")
        for name in wide.columns.drop("stochtree"):
            diff = (wide[name] - wide["stochtree"]).groupby(level=["design", "n"])
            summary = pd.DataFrame({"mean": diff.mean(), "se": diff.std() / np.sqrt(diff.count())})
            print(f"{name}:\n{summary.round(3).to_string()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", default=["hahn_nonlinear_heterogeneous"],
                        choices=available())  # fmt: skip
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--estimators", nargs="+", default=["bcf", "stochtree"],
                        choices=sorted(ESTIMATORS))  # fmt: skip
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="options of BayesianCausalForest for a variant named 'bcf[...]' "
        "(true_propensity=True: fit with the simulator's propensity)",
    )
    parser.add_argument("--tau-prior", type=float, nargs=2, metavar=("BASE", "POWER"))
    parser.add_argument("--tau-leaf-variance", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    options = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    if options:
        args.estimators = ["bcf[" + ",".join(args.set) + "]"]
    if args.tau_prior or args.tau_leaf_variance is not None:
        if options or "bcf_nosites" in args.estimators:
            parser.error("--tau-prior/--tau-leaf-variance apply to the 'bcf' rows only")
        from forest_tree_prior import bcf_module, use_tau_prior

        prior = tuple(args.tau_prior or bcf_module._TAU_TREE_PRIOR)
        leaf = args.tau_leaf_variance
        leaf = bcf_module._TAU_LEAF_VARIANCE if leaf is None else leaf
        use_tau_prior(*prior, leaf)
        name = f"bcf[tau_prior={prior[0]:g}/{prior[1]:g},tau_leaf_variance={leaf:g}]"
        ESTIMATORS[name] = ESTIMATORS["bcf"]
        args.estimators = [name if e == "bcf" else e for e in args.estimators]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, itelib {itelib.__version__}, bartz {version('bartz')}, "
        f"stochtree {version('stochtree')}, econml {version('econml')}"
    )
    rows = []
    for design in args.designs:
        for seed in args.seeds:
            for estimator in args.estimators:
                rows.append(run_one(design, args.n, seed, estimator, options))
                line = pd.DataFrame(rows[-1:])
                print(line.round(4).to_string(index=False, header=len(rows) == 1), flush=True)
                if args.out is not None:
                    line.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
    summarize(pd.DataFrame(rows))


if __name__ == "__main__":
    main()
