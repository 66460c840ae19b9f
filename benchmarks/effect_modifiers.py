"""Flexible effect modifiers for HierarchicalITE (issue 19): does an additive (HSGP) effect part
fix the coverage of the patient effects where the true effect is nonlinear?

    PYTHONPATH=. python benchmarks/effect_modifiers.py [--seeds 1 2] [--out file.csv]

Every config has prognosis="additive" (the marginal likelihood) and one of the
``effect_modifiers`` options; "linear-linear" (prognosis and modifiers linear, only on
multisite_rct) is the cost reference. Per fit: seconds, max R-hat over the effects and scalar
parameters, divergences, 95 % coverage of the true patient effects and sqrt-PEHE. Shortened
sampler runs (4 chains x 500 warmup + 500 draws) to fit the budget; observational designs get
propensity="estimate" as in the calibration studies. Resumable: rows already in ``--out`` are
skipped. Seeds run outermost, so an interrupted run has whole seeds.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

from itelib import HierarchicalITE
from itelib.calibration.metrics import coverage, sqrt_pehe
from itelib.simulate import simulate

DESIGNS = {  # name: (n, propensity)
    "hahn_nonlinear_heterogeneous": (500, "estimate"),
    "hahn_linear_heterogeneous": (500, "estimate"),
    "nie_wager_a": (500, "estimate"),
    "nie_wager_b": (500, None),
    "nie_wager_d": (500, "estimate"),
    "multisite_rct": (1000, None),
}
CONFIGS = {
    "additive-linear": dict(prognosis="additive", effect_modifiers="linear"),
    "additive-interactions": dict(prognosis="additive", effect_modifiers="interactions"),
    "additive-additive": dict(prognosis="additive", effect_modifiers="additive"),
    "additive-additive_interactions": dict(
        prognosis="additive", effect_modifiers="additive_interactions"
    ),
    "linear-linear": dict(prognosis="linear", effect_modifiers="linear"),
}
ONLY = {"linear-linear": ("multisite_rct",)}  # the cost reference, where n = 1000
SAMPLER = dict(num_warmup=500, num_samples=500, num_chains=4)


def one(design: str, seed: int, config: str) -> dict:
    n, propensity = DESIGNS[design]
    trial = simulate(design, n=n, seed=seed)
    est = HierarchicalITE(**CONFIGS[config], **SAMPLER, random_state=seed, progress_bar=False)
    fit = {} if propensity is None else {"propensity": propensity}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(**trial.fit_kwargs(), **fit)
    seconds = time.perf_counter() - start
    draws = est.effect().draws()
    truth = trial.tau.to_numpy()
    return {
        "design": design, "n": n, "seed": seed, "config": config, "fit_s": round(seconds, 1),
        "max_rhat": float(np.nanmax(est.diagnostics_.table["r_hat"])),
        "divergences": int(est.diagnostics_.n_divergent),
        "cov95": coverage(draws, truth, levels=(0.95,))[0.95],
        "sqrt_pehe": sqrt_pehe(draws.mean(axis=tuple(range(draws.ndim - 1))), truth),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--out", default="effect_modifiers.csv")
    args = ap.parse_args()
    old = pd.read_csv(args.out) if os.path.exists(args.out) else pd.DataFrame()
    rows = old.to_dict("records")
    done = {(r["design"], r["seed"], r["config"]) for r in rows}
    for seed in args.seeds:
        for design in args.designs:
            for config in args.configs:
                if (design, seed, config) in done or design not in ONLY.get(config, (design,)):
                    continue
                rows.append(one(design, seed, config))
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    print(table.groupby(["design", "config"])[
        ["fit_s", "max_rhat", "divergences", "cov95", "sqrt_pehe"]
    ].agg(["mean", "min", "max"]).round(3).to_string())  # fmt: skip


if __name__ == "__main__":
    main()
