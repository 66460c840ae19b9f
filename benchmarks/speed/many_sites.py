"""Seconds and memory of the marginal model's preprocessing with many sites (issue 23).

    python benchmarks/speed/many_sites.py --sites 1000 10000 --dense-max 2000

For each number of sites S, one ``multisite_rct`` trial of 2 patients per site (n = 2S, the
default six covariates) goes through ``model_arrays`` of the marginal model at the estimator's
default features (pairwise products and the prognostic score column: k = 45 shared columns):

- ``block``: ``block_statistics``, the statistics in block form (the shared block, the
  shared-site cross-products, each site's 2 x 2 block), used above ``DENSE_MAX_SITES`` sites;
- ``dense``: ``gaussian_sufficient_statistics`` then ``marginal_statistics``, the dense
  (k + 2S)-square matrix (every number of sites before issue 23), run only up to
  ``--dense-max`` sites (it is cubic in S: ~27 minutes projected at 10,000).

One row each: sites, n, path, seconds, and the megabytes of the statistics' arrays. The row
statistics' time excludes simulating the trial and building the features.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from itelib.models.hierarchical import marginal as mg
from itelib.models.hierarchical import model as m
from itelib.simulate import simulate


def _inputs(n_sites: int, seed: int):
    trial = simulate("multisite_rct", 2 * n_sites, seed=seed, n_sites=n_sites, min_site_size=2)
    rng = np.random.default_rng(seed)
    x = trial.X.to_numpy()
    x = (x - x.mean(0)) / x.std(0)
    pairs = np.column_stack([x[:, i] * x[:, j] for i in range(6) for j in range(i + 1, 6)])
    X = np.column_stack([x, pairs, rng.standard_normal(len(x))])  # 6 + 15 + a score column
    t = trial.data[trial.treatment].to_numpy(float)
    y = trial.data[trial.outcome].to_numpy(float)
    t, y = t - t.mean(), (y - y.mean()) / y.std()
    codes = np.unique(trial.data[trial.site].to_numpy(), return_inverse=True)[1]
    return y, t, X, np.column_stack([x, pairs]), codes


def run(n_sites: int, path: str, seed: int = 0) -> dict:
    y, t, X, modifiers, codes = _inputs(n_sites, seed)
    effect_column = 1 + X.shape[1]
    start = time.perf_counter()
    if path == "block":
        design = m.gaussian_design(y, t, X, None, modifiers)
        stats = mg.block_statistics(design, y, codes, n_sites, effect_column)
    else:
        gs = m.gaussian_sufficient_statistics(y, t, X, codes, n_sites, modifiers=modifiers)
        stats = mg.marginal_statistics(*gs, effect_column, n_sites)
    seconds = time.perf_counter() - start
    size = sum(np.asarray(a).nbytes for a in stats if a is not None) / 1e6
    return {"sites": n_sites, "n": len(y), "path": path, "seconds": round(seconds, 3),
            "stats_mb": round(size, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--dense-max", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"# machine {platform.machine()} {platform.processor()} python {platform.python_version()}"
    )
    print("sites,n,path,seconds,stats_mb")
    for n_sites in args.sites:
        paths = ["block"] + (["dense"] if n_sites <= args.dense_max else [])
        for path in paths:
            row = run(n_sites, path)
            print(",".join(str(v) for v in row.values()), flush=True)


if __name__ == "__main__":
    main()
