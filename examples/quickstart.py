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
    print(metrics(post.draws(), trial.tau.to_numpy()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny settings for a fast check")
    main(smoke=parser.parse_args().smoke)
