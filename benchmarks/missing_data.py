"""Missing covariates (issue 22): multiple imputation against complete-case analysis.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/missing_data.py \
        [--estimators hierarchical bcf] [--seeds 0 1 ...] [--out f.csv] [--report-only]

The multi-site trial (``multisite_rct``, n = 1000) with 30 % of its covariate cells missing at
random given the outcome and treatment (``missing_at_random``), 10 seeds, and not at random
(``missing_not_at_random``) for the first seeds. Per estimator and seed, two fits:
``impute`` (``missing="impute"``, M = 5, every patient) and ``complete_case`` (the patients
with every covariate; their effects scored against their own true effects). Also ``complete``,
the same trial before masking, on the first seeds, as the reference. Per fit: 95 % and 50 %
coverage of the true patient effects, sqrt-PEHE, mean 95 % width, patients kept, seconds, the
worst within-imputation R-hat.

Sampler settings are smaller than the defaults so that 120 fits run on a shared 2-core
machine (see SETTINGS); they are written into every row. Resumable: rows already in ``--out``
are skipped; seeds run outermost and each row is appended when it finishes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd

from itelib import BayesianCausalForest, HierarchicalITE
from itelib.calibration.metrics import coverage, sqrt_pehe
from itelib.simulate import simulate

N = 1000
SETTINGS = {
    "hierarchical": (HierarchicalITE, {"num_warmup": 500, "num_samples": 500, "num_chains": 2}),
    "bcf": (
        BayesianCausalForest,
        {"num_warmup": 200, "num_samples": 200, "num_chains": 2, "num_trees_mu": 100,
         "num_trees_tau": 25},
    ),
}  # fmt: skip
M = 5  # the estimators' default n_imputations; --imputations changes it


def _fit(name: str, design: str, seed: int, method: str, m: int = M) -> dict:
    cls, options = SETTINGS[name]
    base = "multisite_rct" if method == "complete" else design
    trial = simulate(base, n=N, seed=seed)
    kwargs = trial.fit_kwargs()
    truth = trial.tau.to_numpy()
    if method == "complete_case":
        keep = ~kwargs["X"].isna().any(axis=1).to_numpy()
        kwargs = {k: (None if v is None else v[keep]) for k, v in kwargs.items()}
        truth = truth[keep]
    est = cls(
        **options, missing="impute" if method == "impute" else "refuse", n_imputations=m,
        progress_bar=False, random_state=seed,
    )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is recorded in the row instead
        est.fit(**kwargs)
    seconds = time.perf_counter() - start
    draws = est.effect().draws()
    cov = coverage(draws, truth, levels=(0.5, 0.95))
    lo, hi = np.quantile(draws.reshape(-1, draws.shape[-1]), [0.025, 0.975], axis=0)
    return {
        "design": design if method != "complete" else "multisite_rct (before masking)",
        "estimator": name, "method": method, "seed": seed, "n_kept": len(truth),
        "coverage_95": cov[0.95], "coverage_50": cov[0.5], "sqrt_pehe": sqrt_pehe(draws, truth),
        "width_95": float(np.mean(hi - lo)), "seconds": seconds,
        "max_rhat": est.diagnostics_.max_rhat, "n_imputations": m if method == "impute" else 0,
        "settings": str(options), "machine": f"{platform.node()} ({os.cpu_count()} cores)",
    }  # fmt: skip


def report(rows: pd.DataFrame) -> str:
    """The study's table in markdown: per design, estimator and method (imputation beside
    complete-case analysis), mean over seeds with its standard error."""
    keys = ["design", "estimator", "method", "n_imputations"]
    order = {"impute": 0, "complete_case": 1, "complete": 2}
    lines = [
        "| design | estimator | method | M | seeds | 95 % coverage | 50 % coverage | sqrt-PEHE "
        "| 95 % width | patients kept | max R-hat |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups = sorted(rows.groupby(keys), key=lambda g: (g[0][0], g[0][1], order[g[0][2]], g[0][3]))
    for (design, name, method, m), g in groups:

        def mean_se(col: str, g: pd.DataFrame = g) -> str:
            se = g[col].std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else float("nan")
            return f"{g[col].mean():.3f}" + ("" if np.isnan(se) else f" +/- {se:.3f}")

        lines.append(
            f"| {design} | {name} | {method.replace('_', ' ')} | {m or ''} | {len(g)} "
            f"| {mean_se('coverage_95')} | {g['coverage_50'].mean():.3f} | {mean_se('sqrt_pehe')} "
            f"| {g['width_95'].mean():.2f} | {g['n_kept'].mean():.0f} | {g['max_rhat'].max():.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", nargs="+", default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--mnar-seeds", type=int, default=2, help="first seeds also run MNAR")
    parser.add_argument("--imputations", type=int, default=M, help="M of missing='impute'")
    parser.add_argument("--out", default="benchmarks/results/missing_data.csv")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from --out")
    args = parser.parse_args()
    if args.report_only:
        _write_report(args.out)
        return
    done = pd.read_csv(args.out) if os.path.exists(args.out) else pd.DataFrame()
    keys = set()
    if not done.empty:
        keys = set(zip(done.design, done.estimator, done.method, done.seed, done.n_imputations,
                        strict=True))  # fmt: skip
    for seed in args.seeds:
        cells = [("missing_at_random", m) for m in ("impute", "complete_case")]
        if seed < args.mnar_seeds:
            cells += [("missing_not_at_random", m) for m in ("impute", "complete_case")]
            cells += [("missing_at_random", "complete")]
        for name in args.estimators:
            for design, method in cells:
                label = design if method != "complete" else "multisite_rct (before masking)"
                m = args.imputations if method == "impute" else 0
                if (label, name, method, seed, m) in keys:
                    continue
                row = _fit(name, design, seed, method, args.imputations)
                pd.DataFrame([row]).to_csv(
                    args.out, mode="a", header=not os.path.exists(args.out), index=False
                )
                shown = ("design", "estimator", "method", "seed", "coverage_95", "sqrt_pehe")
                print({k: row[k] for k in shown}, flush=True)
    _write_report(args.out)


def _write_report(csv: str) -> None:
    """The table beside the CSV (``missing_data.md``), so the rows are read as a report."""
    path = os.path.splitext(csv)[0] + ".md"
    with open(path, "w") as handle:
        handle.write(report(pd.read_csv(csv)))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
