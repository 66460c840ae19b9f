"""Subgroup posteriors against their true averages (issue 21): does ``post.groupby(labels)``'s
95 % interval cover the true average effect of each subgroup, for each Bayesian estimator at
its defaults?

    OMP_NUM_THREADS=1 python benchmarks/subgroup_coverage.py --estimators HierarchicalITE \
        --out benchmarks/results/subgroups/n500.csv

Per estimator x design x seed (n = 500): one default fit, then for every covariate the two
halves split at its median (a binary covariate at its two values, a categorical one at its
levels) and, where the design has
sites, every site: the 95 % interval of the subgroup's average effect against the mean of the
true effects of its patients (the sample subgroup average, as ``post.average`` targets). One
row per subgroup, appended as each fit finishes (a rerun skips finished fits).
CausalForest is not here: its per-patient normal approximations are not joint, so it refuses
subgroup averages (``EffectPosterior.average``) and says why.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

import itelib
from itelib.simulate import simulate

DESIGNS = ("multisite_rct", "hahn_linear_heterogeneous", "nie_wager_b")
ESTIMATORS = ("HierarchicalITE", "BayesianCausalForest")
OUT = Path(__file__).parent / "results" / "subgroups" / "n500.csv"


def splits(trial) -> dict[str, pd.Series]:
    """Subgroup labels per split: each covariate's halves, and the sites."""
    out = {}
    for column in trial.X.columns:
        x = trial.X[column]
        if not pd.api.types.is_numeric_dtype(x):  # a categorical covariate: its levels
            out[column] = x.astype(str)
        else:
            out[column] = x > x.median() if x.nunique() > 2 else x == x.max()
    site = trial.fit_kwargs()["site"]
    if site is not None:
        out["site"] = site
    return out


def run_fit(name: str, design: str, n: int, seed: int) -> list[dict]:
    trial = simulate(design, n, seed=seed)
    est = getattr(itelib, name)(random_state=seed, progress_bar=False)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = est.fit(**trial.fit_kwargs()).effect()
    seconds = time.perf_counter() - start
    tau = trial.tau.reindex(post.patient_ids)
    rows = []
    for split, labels in splits(trial).items():
        labels = labels.reindex(post.patient_ids)
        table = post.groupby(labels).summary(0.95)
        for level in table.index:
            members = labels.to_numpy() == level
            truth = float(tau[members].mean())
            mean, lower, upper = table.loc[level, ["mean", "lower", "upper"]]
            rows.append({
                "estimator": name, "design": design, "n": n, "seed": seed, "split": split,
                "group": str(level), "size": int(members.sum()), "truth": truth,
                "mean": float(mean), "lower": float(lower), "upper": float(upper),
                "width": float(upper - lower),
                "covered": bool(lower <= truth <= upper), "warnings": len(caught),
                "seconds": round(seconds, 1),
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    done = set()
    if args.out.exists():
        old = pd.read_csv(args.out)
        done = set(zip(old.estimator, old.design, old.n, old.seed, strict=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for design in args.designs:
            for name in args.estimators:
                if (name, design, args.n, seed) in done:
                    continue
                frame = pd.DataFrame(run_fit(name, design, args.n, seed))
                frame.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
                print(f"{name} {design} seed {seed}: {frame['covered'].mean():.2f} of "
                      f"{len(frame)} covered", flush=True)  # fmt: skip
    df = pd.read_csv(args.out)
    print(df.groupby(["estimator", "design"]).agg(
        fits=("seed", "nunique"), subgroups=("covered", "size"), coverage=("covered", "mean"),
        mean_width=("width", "mean"),
    ).to_string())  # fmt: skip


if __name__ == "__main__":
    main()
