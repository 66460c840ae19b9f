"""Where validate()'s false alarms come from (issue 21): the BLP test on the same cross-fitted
estimates with other nuisance models, the true nuisances among them.

    OMP_NUM_THREADS=1 python benchmarks/blp_nuisances.py \
        --out benchmarks/results/heterogeneity_checks/nuisances_n500.csv

Input: ``results/heterogeneity_checks/crossfit_estimates_n500.csv.gz``, the held-out
posterior-mean effects and folds that ``benchmarks/heterogeneity_checks.py`` got from
``validate`` (3 estimators x 3 designs, n = 500; seeds 0-9 when ``nuisances_n500.csv`` was
made, 0-19 in the file since), so no estimator is refitted. Per
trial the nuisances are refitted on the same folds; per variant, the one-sided p-value of "no
heterogeneity":

- ``aipw``: validate's test until 2026-12-07, the BLP of cross-fitted doubly robust scores
  (outcome models per arm: the lasso + boosted-trees stack without products; estimated
  propensity);
- ``aipw_poly``: the same with the lasso on all pairwise products in the stack;
- ``robinson``, ``robinson_poly``: the BLP in Robinson's form, as grf's ``test_calibration``:
  ``y - m(x)`` regressed on ``(t - e(x))`` and ``(t - e(x)) (tau_hat - mean)`` (HC3), with
  ``m = E[y | x]`` one cross-fitted model on both arms (the stack without or with products);
  ``robinson_poly`` is validate's test since 2026-12-07;
- ``robinson_true``, ``robinson_true_m``, ``robinson_true_e``: with the true ``m`` and ``e``,
  the true ``m`` only, the true ``e`` only (product stack for the estimated one).

Prints the number of rejections at 5 % per estimator, design and variant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special
from sklearn.base import clone

from itelib._threads import one_thread
from itelib.answers.blp import _hc3, blp, centre_within_folds
from itelib.answers.scores import (
    PROPENSITY_CLIP,
    default_outcome_model,
    dr_scores,
    score_propensity,
)
from itelib.data import TrialData
from itelib.simulate import simulate

ESTIMATES = Path(__file__).parent / "results/heterogeneity_checks/crossfit_estimates_n500.csv.gz"


def product_stack(random_state: int, n_covariates: int):
    """The stack with its lasso on the covariates and all their pairwise products (validate's
    default outcome model since 2026-12-07)."""
    return default_outcome_model(random_state, n_covariates)


def aipw_p(gamma: np.ndarray, tau_hat: np.ndarray, folds: np.ndarray) -> float:
    """One-sided p-value of the slope of the BLP of doubly robust scores (validate until
    2026-12-07): ``gamma`` on ``[1, tau_hat - mean]``, HC3."""
    design = np.column_stack([np.ones(len(gamma)), centre_within_folds(tau_hat, folds)])
    coef, cov = _hc3(design, gamma)
    return float(special.ndtr(-coef[1] / np.sqrt(cov[1, 1])))


def _pooled_mean(y: np.ndarray, X: np.ndarray, folds: np.ndarray, model) -> np.ndarray:
    out = np.empty(len(y))
    with one_thread():
        for k in np.unique(folds):
            test = folds == k
            out[test] = clone(model).fit(X[~test], y[~test]).predict(X[test])
    return out


def robinson_p(y, t, m, e, tau_hat, folds) -> float:
    """One-sided p-value of the slope in Robinson's form of the BLP (validate's test before
    its cross-fitting inflation of the variance)."""
    return blp(y, t, m, e, tau_hat, folds).p_heterogeneity


def nuisances(design: str, seed: int, n: int, folds: np.ndarray) -> dict:
    trial = simulate(design, n, seed=seed)
    kw = trial.fit_kwargs()
    data = TrialData.from_arrays(kw["Y"], kw["T"], X=kw["X"], site=kw["site"])
    X, y, t = data.X, data.y, data.t
    e = score_propensity("estimate", X, t, data.patient_ids, seed)
    e_true = np.clip(trial.propensity.to_numpy(), *PROPENSITY_CLIP)
    m_true = trial.mu0.to_numpy() + trial.propensity.to_numpy() * trial.tau.to_numpy()
    return {
        "y": y, "t": t, "e": e, "e_true": e_true, "m_true": m_true,
        "m": _pooled_mean(y, X, folds, default_outcome_model(seed)),
        "m_poly": _pooled_mean(y, X, folds, product_stack(seed, X.shape[1])),
        "gamma": dr_scores(y, t, X, e, folds, regressor=default_outcome_model(seed),
                           random_state=seed),
        "gamma_poly": dr_scores(y, t, X, e, folds, regressor=product_stack(seed, X.shape[1]),
                                random_state=seed),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--estimates", type=Path, default=ESTIMATES)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    est = pd.read_csv(args.estimates)
    rows = []
    for (design, seed), trial_rows in est.groupby(["design", "seed"], sort=True):
        first = trial_rows[trial_rows["estimator"] == trial_rows["estimator"].iloc[0]]
        folds = first["fold"].to_numpy()
        nu = nuisances(design, int(seed), len(first), folds)
        y, t = nu["y"], nu["t"]
        for name, part in trial_rows.groupby("estimator"):
            f, tau_hat = part["fold"].to_numpy(), part["estimate"].to_numpy()
            if not np.array_equal(f, folds):
                raise ValueError(f"{name} {design} {seed}: folds differ between estimators")
            rows.append({
                "estimator": name, "design": design, "seed": int(seed),
                "aipw": aipw_p(nu["gamma"], tau_hat, f),
                "aipw_poly": aipw_p(nu["gamma_poly"], tau_hat, f),
                "robinson": robinson_p(y, t, nu["m"], nu["e"], tau_hat, f),
                "robinson_poly": robinson_p(y, t, nu["m_poly"], nu["e"], tau_hat, f),
                "robinson_true": robinson_p(y, t, nu["m_true"], nu["e_true"], tau_hat, f),
                "robinson_true_m": robinson_p(y, t, nu["m_true"], nu["e"], tau_hat, f),
                "robinson_true_e": robinson_p(y, t, nu["m_poly"], nu["e_true"], tau_hat, f),
            })  # fmt: skip
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    variants = [c for c in table.columns if c not in ("estimator", "design", "seed")]
    counts = table.groupby(["estimator", "design"])[variants].agg(lambda p: int((p < 0.05).sum()))
    print(counts.to_string())


if __name__ == "__main__":
    main()
