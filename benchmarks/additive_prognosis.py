"""HierarchicalITE(prognosis="additive") under the marginal likelihood against "sufficient",
and the default linear prognosis, on nonlinear-prognosis designs and a multi-site RCT.

    PYTHONPATH=. python benchmarks/additive_prognosis.py [--seeds 1 2 3] [--out file.csv]

Per fit: seconds, max R-hat over the effects and scalar parameters, divergences, mean NUTS
step size, 95 % coverage of the true patient effects and sqrt-PEHE. Default sampler settings
(4 chains x 1000 + 1000), one fit at a time; observational designs get propensity="estimate"
as in the calibration studies.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from itelib import HierarchicalITE
from itelib.calibration.metrics import coverage, sqrt_pehe
from itelib.simulate import simulate

DESIGNS = {  # name: (n, propensity)
    "hahn_nonlinear_homogeneous": (500, "estimate"),
    "hahn_nonlinear_heterogeneous": (500, "estimate"),
    "nie_wager_c": (500, "estimate"),
    "multisite_rct": (1000, None),
}
CONFIGS = {
    "additive-marginal": dict(prognosis="additive", likelihood="marginal"),
    "additive-sufficient": dict(prognosis="additive", likelihood="sufficient"),
    "linear-marginal": dict(prognosis="linear", likelihood="marginal"),
}


def one(design: str, seed: int, config: str) -> dict:
    n, propensity = DESIGNS[design]
    trial = simulate(design, n, seed)
    est = HierarchicalITE(**CONFIGS[config], random_state=seed, progress_bar=False)
    fit = {} if propensity is None else {"propensity": propensity}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(**trial.fit_kwargs(), **fit)
    seconds = time.perf_counter() - start
    draws = est.effect().draws()
    truth = trial.tau.to_numpy()
    ss = est.posterior_["sample_stats"]
    return {
        "design": design, "n": n, "seed": seed, "config": config,
        "likelihood": est.model_spec_.likelihood, "fit_s": round(seconds, 1),
        "max_rhat": float(np.nanmax(est.diagnostics_.table["r_hat"])),
        "divergences": int(est.diagnostics_.n_divergent),
        "step_size": float(np.asarray(ss["step_size"]).mean()),
        "cov95": coverage(draws, truth, levels=(0.95,))[0.95],
        "sqrt_pehe": sqrt_pehe(draws.mean(axis=tuple(range(draws.ndim - 1))), truth),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--out", default="additive_prognosis.csv")
    args = ap.parse_args()
    rows = []
    for design in args.designs:
        for seed in args.seeds:
            for config in args.configs:
                rows.append(one(design, seed, config))
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    print(table.groupby(["design", "config"])[
        ["fit_s", "max_rhat", "divergences", "step_size", "cov95", "sqrt_pehe"]
    ].mean().round(3).to_string())  # fmt: skip


if __name__ == "__main__":
    main()
