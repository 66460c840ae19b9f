"""Choosing HierarchicalITE's default model (issue 19): which treatment coding, prognosis and
effect modifiers keep the patient intervals honest on every design of the full study?

    PYTHONPATH=. python benchmarks/default_model.py [--seeds 0 1] [--configs ...] [--out f.csv]

Each design at the smaller size of the full study (where coverage is worst), the sampler at its
defaults, observational designs with propensity="estimate" as in the study. Per fit: seconds,
max R-hat, divergences, 95 % coverage of the true patient effects, sqrt-PEHE, the spread
(sd over patients) of the posterior-mean effects beside the true spread, which shows invented
heterogeneity directly, and the average effect's error and posterior sd beside the coverage of
the patients' deviations from it (which of the two misses). ``--priors`` sets
HierarchicalPriors fields (JSON); rows record them. Resumable: rows already in ``--out`` are
skipped; seeds run outermost.

Configs are named ``coding-prognosis-modifiers[-score]`` (see :func:`_config`). The committed
``benchmarks/results/default_model.csv`` adds a ``machine`` column: rows from this project's
shared 2-core machine, or from 16 single-threaded processes on a GPU host's CPUs (JAX on CPU);
compare fit times only within one machine and one run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import pandas as pd

from itelib import HierarchicalITE, HierarchicalPriors
from itelib.calibration.metrics import coverage, sqrt_pehe
from itelib.simulate import simulate

DESIGNS = {  # name: (n, propensity)
    "hahn_linear_homogeneous": (250, "estimate"),
    "hahn_linear_heterogeneous": (250, "estimate"),
    "hahn_nonlinear_homogeneous": (250, "estimate"),
    "hahn_nonlinear_heterogeneous": (250, "estimate"),
    "nie_wager_a": (500, "estimate"),
    "nie_wager_b": (500, None),
    "nie_wager_c": (500, "estimate"),
    "nie_wager_d": (500, "estimate"),
    "observational_cohort": (1000, "estimate"),
    "ihdp_b": (747, "estimate"),
    "multisite_rct": (1000, None),
}


def _config(name: str) -> dict:
    """``coding-prognosis-modifiers[-score][-nbK][-wK][-sK]``, e.g.
    ``centered-additive-interactions-score`` (``-score``: the cross-fitted prognostic score in
    the prognostic part; ``-nb5``: 5 basis functions per smooth term instead of 10; ``-w500``,
    ``-s500``: NUTS warmup and kept draws per chain instead of the defaults)."""
    coding, prognosis, modifiers, *rest = name.split("-")
    numbered = {"nb": "n_basis", "w": "num_warmup", "s": "num_samples"}
    counts = {
        option: int(r[len(prefix):])
        for r in rest for prefix, option in numbered.items()
        if r.startswith(prefix) and r[len(prefix):].isdigit()
    }  # fmt: skip
    return dict(
        treatment_coding=coding, prognosis=prognosis, effect_modifiers=modifiers,
        prognostic_score="score" in rest, **counts,
    )  # fmt: skip


CONFIGS = [
    "indicator-linear-linear",  # the default before issue 19
    "centered-linear-interactions-score",
    "centered-linear-additive_interactions-score",
    "centered-interactions-interactions-score",  # the default since (up to 10 covariates)
]


def one(design: str, seed: int, config: str, priors: dict[str, float] | None = None) -> dict:
    n, propensity = DESIGNS[design]
    trial = simulate(design, n=n, seed=seed)
    options = _config(config) | ({"priors": HierarchicalPriors(**priors)} if priors else {})
    est = HierarchicalITE(**options, random_state=seed, progress_bar=False)
    fit = {} if propensity is None else {"propensity": propensity}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(**trial.fit_kwargs(), **fit)
    seconds = time.perf_counter() - start
    draws = est.effect().draws()
    draws = draws.reshape(-1, draws.shape[-1])
    mean = draws.mean(axis=0)
    truth = trial.tau.to_numpy()
    # the average effect's error apart from the patients' deviations from it: a miss of the
    # average shifts every patient's interval at once
    ate = draws.mean(axis=1)
    return {
        "design": design, "n": n, "seed": seed, "config": config, "fit_s": round(seconds, 1),
        "max_rhat": float(np.nanmax(est.diagnostics_.table["r_hat"])),
        "divergences": int(est.diagnostics_.n_divergent),
        "min_ess_bulk": round(est.diagnostics_.min_ess_bulk),
        "min_ess_tail": round(est.diagnostics_.min_ess_tail),
        "cov95": coverage(draws, truth, levels=(0.95,))[0.95],
        "sqrt_pehe": sqrt_pehe(mean, truth),
        "sd_est": float(np.std(mean)), "sd_true": float(np.std(truth)),
        "ate_error": float(ate.mean() - truth.mean()), "ate_sd": float(ate.std()),
        "deviation_cov95": coverage(
            draws - ate[:, None], truth - truth.mean(), levels=(0.95,)
        )[0.95],
        "priors": json.dumps(priors or {}, sort_keys=True),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS))
    ap.add_argument("--configs", nargs="+", default=CONFIGS)
    ap.add_argument("--out", default="default_model.csv")
    ap.add_argument(
        "--priors", default="{}",
        help='HierarchicalPriors fields as JSON, e.g. \'{"effect_smooth_sd": 0.1}\'',
    )  # fmt: skip
    args = ap.parse_args()
    priors = json.loads(args.priors)
    old = pd.read_csv(args.out) if os.path.exists(args.out) else pd.DataFrame()
    if len(old) and "priors" not in old:
        old["priors"] = "{}"  # rows from before the option: the default priors of their day
    rows = old.to_dict("records")
    done = {(r["design"], r["seed"], r["config"], r["priors"]) for r in rows}
    key = json.dumps(priors, sort_keys=True)
    for seed in args.seeds:
        for design in args.designs:
            for config in args.configs:
                if (design, seed, config, key) in done:
                    continue
                rows.append(one(design, seed, config, priors))
                print(rows[-1], flush=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    print(table.groupby(["design", "config", "priors"])[
        ["fit_s", "max_rhat", "cov95", "sqrt_pehe", "sd_est", "sd_true", "ate_error"]
    ].mean().round(3).to_string())  # fmt: skip


if __name__ == "__main__":
    main()
