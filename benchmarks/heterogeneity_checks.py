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

``--estimates-out FILE`` also appends each cell's held-out estimates; ``--rescore FILE`` recomputes
the checks on stored estimates with validate()'s current nuisances and tests (no refits):

    OMP_NUM_THREADS=1 python benchmarks/heterogeneity_checks.py \
        --rescore benchmarks/results/heterogeneity_checks/crossfit_estimates_n500.csv.gz \
        --fits OLD_RESULTS.csv --out benchmarks/results/heterogeneity_checks/n500.csv

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

import numpy as np
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


def check_row(name: str, trial, seed: int, folds: int, fit, table, ranks) -> dict:
    """One result row: the BLP test and RATE with their true values."""
    true_autoc, true_qini = rate_estimates(trial.tau.to_numpy(), ranks)
    row = {
        "estimator": name, "design": trial.name, "n": len(ranks), "seed": seed, "folds": folds,
        "blp_slope": fit.slope, "blp_se": fit.slope_se, "p_heterogeneity": fit.p_heterogeneity,
        "reject": bool(fit.p_heterogeneity < 0.05), "p_calibration": fit.p_calibration,
    }  # fmt: skip
    for stat, truth in (("AUTOC", true_autoc), ("Qini", true_qini)):
        lo, hi = table.loc[stat, "lower"], table.loc[stat, "upper"]
        key = stat.lower()
        row |= {key: table.loc[stat, "estimate"], f"{key}_lower": lo, f"{key}_upper": hi,
                f"{key}_true": truth, f"{key}_covered": bool(lo <= truth <= hi)}  # fmt: skip
    return row


def run_cell(name: str, design: str, n: int, seed: int, folds: int,
             estimates_out: Path | None = None) -> dict:
    trial = simulate(design, n, seed=seed)
    est = getattr(itelib, name)(random_state=seed, **SETTINGS[name])
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = itelib.validate(est, **trial.fit_kwargs(), propensity="estimate", folds=folds,
                              random_state=seed, progress_bar=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if estimates_out is not None:  # the held-out estimates, for rescoring without refits
        held_out = res.patients[["fold", "estimate"]].rename_axis("patient").reset_index()
        held_out.insert(0, "seed", seed)
        held_out.insert(0, "design", design)
        held_out.insert(0, "estimator", name)
        held_out.to_csv(estimates_out, mode="a", header=not estimates_out.exists(), index=False)
    row = check_row(name, trial, seed, folds, res.blp, res.table, res.patients["rank"].to_numpy())
    machine = f"{platform.node()}-OMP{os.environ.get('OMP_NUM_THREADS', '?')}"
    row |= {"warnings": len(caught), "seconds": round(seconds, 1),
            "settings": repr(SETTINGS[name]).replace(",", ";"), "machine": machine}  # fmt: skip
    return row


def rescore(estimates: Path, fits: Path | None) -> pd.DataFrame:
    """validate()'s checks, with today's nuisances and tests, on stored held-out estimates (no
    estimator refitted): the nuisances are refitted on the stored folds, exactly as validate
    fits them. ``fits``: an earlier result file whose ``warnings``, ``seconds``, ``settings``
    and ``machine`` (the estimators' fits) are carried over."""
    from itelib.answers.checks import checks_from_estimates
    from itelib.answers.scores import fit_nuisances
    from itelib.data import TrialData, outcome_kind

    est = pd.read_csv(estimates)
    fit_cols = ["warnings", "seconds", "settings", "machine"]
    old = None
    if fits:  # the last row of a cell wins if a file holds it twice
        old = pd.read_csv(fits).drop_duplicates(["estimator", "design", "seed"], keep="last")
        old = old.set_index(["estimator", "design", "seed"])[fit_cols]
    rows = []
    for (design, seed), cells in est.groupby(["design", "seed"], sort=True):
        trial = simulate(design, cells["patient"].nunique(), seed=int(seed))
        kw = trial.fit_kwargs()
        data = TrialData.from_arrays(kw["Y"], kw["T"], X=kw["X"], site=kw["site"])
        nuisances = None
        for name, cell in cells.groupby("estimator", sort=False):
            cell = cell.set_index("patient").loc[data.patient_ids]
            fold_ids, tau_hat = cell["fold"].to_numpy(), cell["estimate"].to_numpy()
            if nuisances is None:  # validate's folds depend on the seed only: shared per trial
                folds0 = fold_ids
                nuisances = fit_nuisances(data.y, data.t, data.X, fold_ids, propensity="estimate",
                                          patient_ids=data.patient_ids, random_state=int(seed),
                                          binary=outcome_kind("auto", data) == "binary")
            if not np.array_equal(fold_ids, folds0):
                raise ValueError(f"{name} {design} {seed}: folds differ between estimators")
            table, fit, _, _, ranks = checks_from_estimates(
                data.y, data.t, nuisances, tau_hat, fold_ids, rng=np.random.default_rng(int(seed))
            )
            row = check_row(name, trial, int(seed), int(fold_ids.max()) + 1, fit, table, ranks)
            if old is not None and (name, design, seed) in old.index:
                row |= old.loc[(name, design, seed)].to_dict()
            rows.append(row)
            print(f"{name:22s} {design:28s} {seed:3d} p = {fit.p_heterogeneity:.4f}", flush=True)
    return pd.DataFrame(rows)


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
    parser.add_argument("--estimates-out", type=Path, default=None,
                        help="append each cell's held-out estimates here (csv or csv.gz)")
    parser.add_argument("--rescore", type=Path, default=None, metavar="ESTIMATES",
                        help="no refits: the checks on these stored held-out estimates, written "
                             "to --out (replaced)")
    parser.add_argument("--fits", type=Path, default=None,
                        help="with --rescore: an earlier result file to carry the fits' "
                             "warnings and seconds from")
    args = parser.parse_args()
    if args.rescore is not None:
        table = rescore(args.rescore, args.fits)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(summarize(table).to_string())
        return
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
                row = run_cell(name, design, args.n, seed, args.folds, args.estimates_out)
                frame = pd.DataFrame([row])
                frame.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
                print(frame.drop(columns=["settings", "machine"]).to_string(header=False),
                      flush=True)  # fmt: skip
    print(summarize(pd.read_csv(args.out)).to_string())


if __name__ == "__main__":
    main()
