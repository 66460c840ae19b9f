"""Where BayesianCausalForest mixes slowly (issue 24): long chains at stationarity.

    python benchmarks/forest_mixing.py --design hahn_nonlinear_heterogeneous --seed 1 \
        --draws 8000 --out benchmarks/results/forest_mixing/hahn_nonlinear_heterogeneous_1.csv

Fits the default forest (4 chains, 1000 burn-in sweeps) with ``--draws`` kept sweeps per chain,
then reports, over windows of the kept sweeps, the maximum R-hat and the minimum and median bulk
ESS of the 50 monitored patients' effects (the estimator's own diagnostics), and per monitored
patient the bulk ESS over all kept sweeps with its covariates, true effect and posterior sd. If
the slowest patients' ESS stays small over thousands of sweeps the chains are slow at
stationarity, which a better start (warm-start sweeps) cannot fix.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import arviz_stats as azs
import numpy as np

import itelib
from itelib.simulate import simulate

_MONITORED = 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--design", default="hahn_nonlinear_heterogeneous")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--draws", type=int, default=8000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    trial = simulate(args.design, args.n, seed=args.seed)
    propensity = None if trial.site is not None else "estimate"
    est = itelib.BayesianCausalForest(num_samples=args.draws, forest_memory_gb=1e-6,
                                      random_state=args.seed, progress_bar=False)  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(**trial.fit_kwargs(), propensity=propensity)
    print(f"fit {time.perf_counter() - start:.0f} s")
    rows = np.arange(0, args.n, max(1, args.n // _MONITORED))[:_MONITORED]
    effect = est.posterior_["posterior"]["effect"].values[:, :, rows]
    edges = [0, 1000, 2000, args.draws // 2, args.draws]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        part = effect[:, lo:hi]
        ess = np.array([float(azs.ess(part[..., k])) for k in range(len(rows))])
        rhat = np.array([float(azs.rhat(part[..., k])) for k in range(len(rows))])
        print(f"kept sweeps {lo}-{hi}: max R-hat {rhat.max():.3f}, bulk ESS min {ess.min():.0f} "
              f"median {np.median(ess):.0f} (of {4 * (hi - lo)} draws)")  # fmt: skip
    table = trial.X.iloc[rows].reset_index(drop=True)
    table.insert(0, "patient", rows)
    table["true_effect"] = trial.tau.to_numpy()[rows]
    table["posterior_sd"] = effect.std(axis=(0, 1))
    table["ess_bulk"] = [float(azs.ess(effect[..., k])) for k in range(len(rows))]
    table["chain_means"] = [" ".join(f"{m:.2f}" for m in effect[:, :, k].mean(axis=1))
                            for k in range(len(rows))]  # fmt: skip
    table = table.sort_values("ess_bulk")
    print(table.head(10).round(3).to_string(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.round(4).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
