"""Quick start: per-patient treatment-effect posteriors from a multi-site trial.

Run it as ``python examples/quickstart.py`` (about a minute on 2 cores), or
``python examples/quickstart.py --smoke`` for a seconds-long check with tiny settings.
"""

from __future__ import annotations

import argparse
import os

# Four XLA CPU devices so the four chains run in parallel (must precede JAX's start).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import itelib  # noqa: E402
from itelib.calibration import metrics  # noqa: E402


def main(smoke: bool = False) -> None:
    # 1. Data: a pandas DataFrame, one row per patient, patient ids in the index.
    trial = itelib.simulate.simulate("multisite_rct", n=300 if smoke else 1000, seed=7)
    df = trial.data
    print(df.head())

    # 2. Fit: outcome, treatment, covariates and the site column, all from the frame.
    sampler = dict(num_warmup=200, num_samples=200) if smoke else {}
    est = itelib.HierarchicalITE(random_state=0, progress_bar=not smoke, **sampler)
    est.fit(df["y"], df["t"], X=df[list(trial.covariates)], site=df["site"])
    print(est.diagnostics_.to_dict())

    # 3. Per-patient posteriors: point estimate, 95% interval, probability of benefit.
    post = est.effect()
    print(post.summary().head())

    # 4. A new patient at a clinic the model has never seen: wider interval (site uncertainty).
    new = df[list(trial.covariates)].iloc[:2].rename(index=lambda i: f"new-{i}")
    print(est.effect(new, site=["Clinic Z", "Clinic Z"]).summary())

    # 5. Average effect and calibration against the simulation's known truth.
    print("ATE", est.ate().mean(), "95% interval", est.ate().interval(0.95), "true", trial.ate)
    m = metrics(post.draws(), trial.tau.to_numpy())
    print(f"sqrt-PEHE {m.sqrt_pehe:.3f} (root mean squared error of the patients' posterior means)")
    for level, share in m.coverage.items():
        print(f"coverage of the {level:.0%} intervals: {share:.3f}")
    # Coverage: the share of patients whose true effect lies inside their interval. One
    # trial's patients share the model's estimation error (of the average effect, of each
    # site's effect), so in one trial coverage swings well away from its long-run value.
    print(
        "Coverage is the share of these patients whose true effect lies inside their interval. "
        "The patients of one trial share the model's estimation errors, so it varies from "
        "trial to trial: over 5 replications of this design (n = 1000) the 95% intervals "
        "covered 0.909 +/- 0.031 of the patients (benchmarks/results/full/report.md), a "
        "little under the nominal 0.95. `itelib bench` measures it over many trials."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny settings for a fast check")
    main(smoke=parser.parse_args().smoke)
