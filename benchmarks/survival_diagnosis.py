"""Why do HierarchicalITE(outcome="survival")'s per-patient RMST intervals under-cover?

    PYTHONPATH=. python benchmarks/survival_diagnosis.py --design survival_weibull --seed 1 \
        --variants default oracle_m additive oracle_both cens0 --n 1000 --out diag.csv

One fit per (variant); each row: RMST coverage, time-ratio coverage (truth ``time_ratio``),
sqrt-PEHE of the RMST difference and of the log time ratio, the fit's seconds, and the OLS
slopes of the posterior-mean log time ratio on x1, x2 (and of the truth, same regression) so
shrinkage or misspecification of the effect modifiers shows. Variants:

* ``default``      as benchmarks/survival_coverage.py
* ``oracle_m``     X plus the true prognosis m(x) as one more covariate (an oracle score)
* ``additive``     prognosis="additive" (smooth terms)
* ``oracle_both``  X plus m(x) and 1(x1 > 0) (the effect's step) as covariates
* ``oracle_step``  X plus 1(x1 > 0) only; ``step_p0_K`` the same with expected_modifiers=K
* ``lin_p0_K``     effect_modifiers="linear" (5 candidates) with expected_modifiers=K
* ``eff_additive`` effect_modifiers="additive"
* ``cens0``        the same design simulated with censoring=0 (all events observed)
* ``p0_2``, ``p0_3`` priors=HierarchicalPriors(expected_modifiers=2 or 3): the horseshoe's
  global scale; default p0 = max(1, p/5) = 1 for p = 5
* ``continuous``   censoring=0, HierarchicalITE continuous default (centred coding, cross-fitted
  prognostic score, interactions) on log(time): time-ratio columns only (RMST is NaN)
* ``continuous_ind`` the same with the survival fit's choices: indicator coding, no score,
  linear prognosis and modifiers
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from itelib import HierarchicalITE
from itelib.calibration import coverage, sqrt_pehe
from itelib.models.hierarchical.priors import HierarchicalPriors
from itelib.simulate import simulate
from itelib.simulate.survival import survival_prognosis

FAMILY = {"survival_weibull": "weibull", "survival_lognormal": "lognormal"}


def slopes(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones(len(y)), x])
    return np.linalg.lstsq(design, y, rcond=None)[0][1:]


def one(design: str, n: int, seed: int, variant: str, args: argparse.Namespace) -> dict:
    uncensored = variant in ("cens0", "continuous", "continuous_ind")
    trial = simulate(design, n=n, seed=seed, censoring=0.0 if uncensored else 0.3)
    kw = trial.fit_kwargs()
    X = kw["X"].copy()
    x = X[["x1", "x2", "x3", "x4", "x5"]].to_numpy()
    options = {}
    if variant in ("oracle_m", "oracle_both"):
        X["m_oracle"] = survival_prognosis(x)
    if variant in ("oracle_both", "oracle_step") or variant.startswith("step_p0_"):
        X["x1_pos"] = (x[:, 0] > 0).astype(float)
    if variant == "additive":
        options["prognosis"] = "additive"
    if variant.startswith("lin_"):
        options["effect_modifiers"] = "linear"
    if variant == "eff_additive":
        options["effect_modifiers"] = "additive"
    if "p0_" in variant:
        options["priors"] = HierarchicalPriors(expected_modifiers=float(variant.split("p0_")[1]))
    kw["X"] = X
    common = dict(num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                  progress_bar=False, random_state=0)  # fmt: skip
    continuous = variant.startswith("continuous")
    if continuous:
        kw["Y"] = np.log(trial.data["time"].to_numpy())
        if variant == "continuous_ind":
            options |= dict(treatment_coding="indicator", prognostic_score=False,
                            prognosis="linear", effect_modifiers="linear")  # fmt: skip
        est = HierarchicalITE(outcome="continuous", **common, **options)
    else:
        est = HierarchicalITE(
            outcome="survival", survival_family=FAMILY[design],
            horizon=trial.params["horizon"], **common, **options,
        )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(**kw)
    seconds = time.perf_counter() - start
    rmst_true = trial.tau.to_numpy()
    tr_true = trial.truth["time_ratio"].to_numpy()
    if continuous:
        tr = np.exp(est.effect().draws())
        rmst = None
    else:
        rmst = est.effect().draws()
        tr = est.effect(scale="time_ratio").draws()
    ltr = np.log(tr).reshape(-1, tr.shape[-1])  # (draws, patients)
    ltr_mean = ltr.mean(axis=0)
    fit_sl = slopes(ltr_mean, x[:, :2])
    # the truth's projection on the interactions basis (1, x, pairwise products): the best the
    # default modifier model can represent; its coverage says whether the intervals are calibrated
    # for the model's own target
    z = (x - x.mean(0)) / x.std(0)
    pairs = [z[:, i] * z[:, j] for i in range(5) for j in range(i + 1, 5)]
    basis = np.column_stack([np.ones(len(z)), z, *pairs])
    proj = basis @ np.linalg.lstsq(basis, np.log(tr_true), rcond=None)[0]
    lo, hi = np.quantile(ltr, [0.025, 0.975], axis=0)
    true_sl = slopes(np.log(tr_true), x[:, :2])
    return {
        "design": design, "seed": seed, "variant": variant, "n": n,
        "cov_rmst": np.nan if rmst is None else coverage(rmst, rmst_true, levels=(0.95,))[0.95],
        "cov_tr": coverage(tr, tr_true, levels=(0.95,))[0.95],
        "cov_tr_proj": float(np.mean((lo <= proj) & (proj <= hi))),
        "misfit_sd": float(np.std(np.log(tr_true) - proj)),
        "pehe_rmst": np.nan if rmst is None else sqrt_pehe(rmst, rmst_true),
        "pehe_logtr": float(np.sqrt(np.mean((ltr_mean - np.log(tr_true)) ** 2))),
        "width_logtr": float(np.mean(np.diff(np.quantile(ltr, [0.025, 0.975], axis=0), axis=0))),
        "x1_fit": fit_sl[0], "x1_true": true_sl[0], "x2_fit": fit_sl[1], "x2_true": true_sl[1],
        "modifiers": f"{est.effect_modifiers_}:{est.model_spec_.n_modifiers}",
        "max_rhat": float(est.diagnostics_.table["r_hat"].max()), "seconds": seconds,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--designs", nargs="+", default=["survival_weibull"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for design in args.designs:
        for seed in args.seeds:
            for variant in args.variants:
                rows.append(one(design, args.n, seed, variant, args))
                print(
                    pd.DataFrame(rows[-1:]).round(3).to_string(header=len(rows) == 1, index=False),
                    flush=True,
                )
                if args.out:
                    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
