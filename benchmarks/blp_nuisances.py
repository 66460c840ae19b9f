"""Where validate()'s false alarms come from (issue 21): the BLP test on the same cross-fitted
estimates with other nuisance models, the true nuisances among them.

    OMP_NUM_THREADS=1 python benchmarks/blp_nuisances.py \
        --out benchmarks/results/heterogeneity_checks/nuisances_n500.csv

Input: ``results/heterogeneity_checks/crossfit_estimates_n500.csv.gz``, the held-out
posterior-mean effects and folds that ``benchmarks/heterogeneity_checks.py`` got from
``validate`` (3 estimators x 3 designs x seeds 0-9, n = 500), so no estimator is refitted. Per
trial the nuisances are refitted on the same folds; per variant, the one-sided p-value of "no
heterogeneity":

- ``aipw``: validate's test, the BLP of cross-fitted doubly robust scores (outcome models per
  arm: the default lasso + boosted-trees stack; estimated propensity);
- ``aipw_poly``: the same with the lasso on all pairwise products in the stack;
- ``robinson``, ``robinson_poly``: the BLP in Robinson's form, as grf's ``test_calibration``:
  ``y - m(x)`` regressed on ``(t - e(x))`` and ``(t - e(x)) (tau_hat - mean)`` (HC3), with
  ``m = E[y | x]`` one cross-fitted model on both arms (default or product stack);
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


def product_stack(random_state: int):
    """The default stack with its lasso on the covariates and all their pairwise products."""
    from sklearn.ensemble import StackingRegressor
    from sklearn.linear_model import LassoCV, LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from itelib.prognostic_score import default_outcome_regressor

    lasso = make_pipeline(PolynomialFeatures(2, include_bias=False), StandardScaler(),
                          LassoCV(cv=3, max_iter=20_000, random_state=random_state))  # fmt: skip
    return StackingRegressor(
        [("lasso2", lasso), ("trees", default_outcome_regressor(random_state))],
        final_estimator=LinearRegression(positive=True), cv=3,
    )  # fmt: skip


def _pooled_mean(y: np.ndarray, X: np.ndarray, folds: np.ndarray, model) -> np.ndarray:
    out = np.empty(len(y))
    with one_thread():
        for k in np.unique(folds):
            test = folds == k
            out[test] = clone(model).fit(X[~test], y[~test]).predict(X[test])
    return out


def robinson_p(y, t, m, e, tau_hat, folds) -> float:
    """One-sided p-value of the slope in Robinson's form of the BLP."""
    d = t - e
    coef, cov = _hc3(np.column_stack([d, d * centre_within_folds(tau_hat, folds)]), y - m)
    return float(special.ndtr(-coef[1] / np.sqrt(cov[1, 1])))


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
        "m_poly": _pooled_mean(y, X, folds, product_stack(seed)),
        "gamma": dr_scores(y, t, X, e, folds, random_state=seed),
        "gamma_poly": dr_scores(y, t, X, e, folds, regressor=product_stack(seed),
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
                "aipw": blp(nu["gamma"], tau_hat, f).p_heterogeneity,
                "aipw_poly": blp(nu["gamma_poly"], tau_hat, f).p_heterogeneity,
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
