"""Stacking the linear and the flexible effect model by PSIS-LOO (issue 19): does the outcome's
leave-one-out fit pick the effect model that covers the patients' effects?

    PYTHONPATH=. python benchmarks/default_model_stacking.py nie_wager_d:0 nie_wager_b:2 \
        [--out default_model_stacking.csv]

Each ``design:seed`` at the size of :mod:`benchmarks.default_model`: today's default A
(``centered-interactions-interactions-score``) and the smooth-effect model B
(``...-additive_interactions-score-nb5``) fitted on the same trial, the pointwise log
likelihood of the outcome at each kept draw (the marginal model's exact coefficient draws),
PSIS-LOO and stacking weights (ArviZ's ``compare``), and the 95 % coverage and sqrt-PEHE of
A, B, their stacked mixture (draws resampled in the weights' proportions) and the model with
the higher elpd. Appends a row per trial to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import arviz_base
import arviz_stats
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer import log_likelihood

from benchmarks.default_model import DESIGNS, _config
from itelib import HierarchicalITE
from itelib.calibration.metrics import coverage, sqrt_pehe
from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.predictive import _design, posterior_samples
from itelib.simulate import simulate

MODELS = {
    "A": "centered-interactions-interactions-score",
    "B": "centered-interactions-additive_interactions-score-nb5",
}


def loo_tree(est: HierarchicalITE) -> object:
    """A DataTree with the outcome's pointwise log likelihood (standardized scale) per draw."""
    post = est.posterior_["posterior"]
    c, d = post.sizes["chain"], post.sizes["draw"]
    samples = posterior_samples(est)
    data, spec = _design(est)
    y = (np.asarray(est.data_.y, float) - est.outcome_center_) / est.outcome_scale_
    data = data._replace(y=jnp.asarray(y))
    ll = np.asarray(log_likelihood(m.hierarchical_model, samples, data, spec)["y"])
    return arviz_base.from_dict(
        {"posterior": {"sigma": samples["sigma"].reshape(c, d)},
         "log_likelihood": {"y": ll.reshape(c, d, -1)}},
        dims={"y": ["patient"]},
    )  # fmt: skip


def one(design: str, seed: int) -> dict:
    n, propensity = DESIGNS[design]
    trial = simulate(design, n=n, seed=seed)
    truth = trial.tau.to_numpy()
    draws, trees, seconds = {}, {}, {}
    for name, config in MODELS.items():
        est = HierarchicalITE(**_config(config), random_state=seed, progress_bar=False)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(**trial.fit_kwargs(), **({"propensity": propensity} if propensity else {}))
        seconds[name] = time.perf_counter() - start
        draws[name] = est.effect().draws().reshape(-1, n)
        trees[name] = loo_tree(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings: recorded below
        table = arviz_stats.compare(trees, method="stacking")
        loos = {k: arviz_stats.loo(t, pointwise=True) for k, t in trees.items()}
    weight_a = float(table.loc["A", "weight"])
    take_a = int(round(weight_a * 4000))
    rng = np.random.default_rng(seed)
    draws["stacked"] = np.concatenate([
        draws["A"][rng.integers(0, len(draws["A"]), take_a)],
        draws["B"][rng.integers(0, len(draws["B"]), 4000 - take_a)],
    ])  # fmt: skip
    draws["best_elpd"] = draws[table.index[0]]
    row = {
        "design": design, "n": n, "seed": seed, "weight_A": round(weight_a, 3),
        "elpd_A": round(float(loos["A"].elpd), 1), "elpd_B": round(float(loos["B"].elpd), 1),
        "elpd_diff_se": round(float(table["dse"].max()), 1),
        "max_pareto_k_A": round(float(np.max(loos["A"].pareto_k)), 2),
        "max_pareto_k_B": round(float(np.max(loos["B"].pareto_k)), 2),
        "fit_s_A": round(seconds["A"], 1), "fit_s_B": round(seconds["B"], 1),
    }  # fmt: skip
    for name, d in draws.items():
        row[f"cov95_{name}"] = round(coverage(d, truth, levels=(0.95,))[0.95], 3)
        row[f"sqrt_pehe_{name}"] = round(sqrt_pehe(d.mean(axis=0), truth), 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trials", nargs="+", help="design:seed")
    ap.add_argument("--out", default="default_model_stacking.csv")
    args = ap.parse_args()
    for item in args.trials:
        design, seed = item.rsplit(":", 1)
        row = one(design, int(seed))
        print(row, flush=True)
        old = pd.read_csv(args.out) if os.path.exists(args.out) else pd.DataFrame()
        pd.concat([old, pd.DataFrame([row])]).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
