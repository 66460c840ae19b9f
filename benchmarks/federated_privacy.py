"""What differential privacy of the site summaries costs (issue 26, item 3; experimental).

``multisite_rct`` (n = 2,000, 4 sites, 4 covariates, linear model), each site's
cross-products released with the analytic Gaussian mechanism (:mod:`itelib.federated.privacy`,
delta = 1e-6, clip = 3 sd) at several epsilon, then fitted by ``fit_summaries`` as if exact.
Prints 95 % coverage of the true effects and sqrt-PEHE (mean and se over replications).

    python benchmarks/federated_privacy.py [--reps 3]
"""

from __future__ import annotations

import argparse
import platform
import warnings

import numpy as np

from itelib import HierarchicalITE
from itelib.calibration.metrics import coverage, sqrt_pehe
from itelib.federated import FederatedSpec, agree, site_moments, site_summary
from itelib.federated.privacy import PrivacyBudget
from itelib.simulate import multisite_rct

EPSILONS = (None, 30.0, 10.0, 3.0, 1.0)


def one(seed: int, epsilon: float | None) -> tuple[float, float]:
    trial = multisite_rct(n=2000, seed=seed, n_sites=4, p=4, min_site_size=300)
    kw = trial.fit_kwargs()
    df = kw["X"].assign(y=kw["Y"], t=kw["T"], site=kw["site"])
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site")
    parts = [g for _, g in df.groupby("site")]
    agreement = agree([site_moments(g, spec) for g in parts])
    budget = None if epsilon is None else PrivacyBudget(epsilon)
    rng = np.random.default_rng([seed, 26])
    summaries = [site_summary(g, agreement, privacy=budget, rng=rng) for g in parts]
    est = HierarchicalITE(prognosis="linear", effect_modifiers="linear", prognostic_score=False,
                          num_warmup=300, num_samples=300, num_chains=2, random_state=seed,
                          progress_bar=False)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit_summaries(summaries)
    draws = est.effect(kw["X"], site=kw["site"]).draws()
    draws = draws.reshape(-1, draws.shape[-1])
    truth = np.asarray(trial.tau)
    return coverage(draws, truth, (0.95,))[0.95], sqrt_pehe(draws.mean(0), truth)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    print(f"machine: {platform.processor() or platform.machine()}, reps {reps}")
    print("| epsilon | 95 % coverage | sqrt-PEHE |\n| --- | --- | --- |")
    for eps in EPSILONS:
        rows = np.array([one(seed, eps) for seed in range(reps)])
        mean, se = rows.mean(0), rows.std(0, ddof=1) / np.sqrt(reps)
        label = "none (exact)" if eps is None else f"{eps:g}"
        print(f"| {label} | {mean[0]:.3f} ± {se[0]:.3f} | {mean[1]:.3f} ± {se[1]:.3f} |")


if __name__ == "__main__":
    main()
