"""A study's many same-shape fits: naive NumPyro loop, itelib looped, parallel and vectorized.

    python benchmarks/speed/replications.py --n 500 --replications 32 \
        --modes naive looped parallel vectorized --out replications.csv

One ``multisite_rct`` trial per replication (20 sites, 10 covariates, seeds 0..R-1), each
fitted with the same hierarchical model (the same posterior) and 4 chains x (1000 + 1000) by

- ``naive``: what a NumPyro user writes: a fresh ``numpyro.infer.MCMC(NUTS(model))`` and
  ``run`` per data set, chains in parallel on 4 host devices, on itelib's own
  ``hierarchical_model`` with every coefficient sampled and the per-patient likelihood
  (``--naive-likelihood``), at target acceptance 0.995 (what that parameterization needs).
  ``MCMC.run`` recompiles on every call, so only the first ``--naive-fits`` data sets are
  fitted;
- ``looped``: ``HierarchicalITE.fit`` at its defaults in one process, one data set after
  another: compiled once (the first fit pays it), the marginal model (coefficients integrated
  out, drawn exactly afterwards) at target acceptance 0.9, chains on 4 host devices;
- ``parallel``: the same fits spread over a Dask ``LocalCluster`` of one single-threaded
  worker process per core (as ``itelib bench`` runs a study), chains one after another in
  each worker; each worker compiles once;
- ``vectorized``: every data set's chains in one vmapped program
  (``itelib.inference.nuts.sample_nuts_datasets``), on the data ``HierarchicalITE`` builds.

JAX's on-disk compilation cache is off (``ITELIB_JAX_CACHE=off`` unless set), so every mode
pays its compilation as a fresh process without the cache would. One row per mode: fits, wall
seconds (including compilation and, for ``parallel``, starting the workers), fits per minute,
the ratio to the naive loop's fits per minute from the same run, the median over fits of the
minimum bulk ESS of the global parameters and the total divergences (the modes must do the same
statistical work). With ``--out`` a ``# machine ...`` line and each row are appended as they
finish (read with ``pd.read_csv(path, comment="#")``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from hierarchical import KEY_PARAMS, environment, markdown, model_inputs  # noqa: E402

MODES = ("naive", "looped", "parallel", "vectorized")
COLUMNS = [
    "n", "mode", "fits", "wall_s", "fits_per_min", "ratio_to_naive", "median_min_ess_bulk",
    "divergences", "note",
]  # fmt: skip


def trials(args) -> list:
    from itelib.simulate import simulate

    return [
        simulate("multisite_rct", n=args.n, seed=s, n_sites=args.sites, p=args.p)
        for s in range(args.replications)
    ]


def options(args, **extra) -> dict:
    return {
        "num_warmup": args.warmup,
        "num_samples": args.draws,
        "num_chains": args.chains,
        "target_accept": args.target_accept,
        "chain_method": args.chain_method,
        "progress_bar": False,
    } | extra


def quality(draws: dict, diverging) -> tuple[float, int]:
    from itelib.inference.diagnostics import diagnose

    diag = diagnose({k: np.asarray(draws[k]) for k in KEY_PARAMS}, np.asarray(diverging))
    return diag.min_ess_bulk, diag.n_divergent


def fit_one(trial, opts: dict, seed: int) -> tuple[float, int]:
    """One HierarchicalITE fit (in this process or a Dask worker): (min bulk ESS, divergences)."""
    import itelib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = itelib.HierarchicalITE(**opts, random_state=seed).fit(**trial.fit_kwargs())
    post = est.posterior_
    return quality(post["posterior"], post["sample_stats"]["diverging"])


def run_naive(args, data_sets) -> list[tuple[float, int]]:
    import jax
    from numpyro.infer import MCMC, NUTS

    from itelib.models.hierarchical.model import hierarchical_model

    out = []
    for seed, trial in enumerate(data_sets[: args.naive_fits]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, spec, cfg = model_inputs(trial, options(args, likelihood=args.naive_likelihood))
        kernel = NUTS(hierarchical_model, target_accept_prob=cfg.target_accept)
        mcmc = MCMC(
            kernel,
            num_warmup=cfg.num_warmup,
            num_samples=cfg.num_samples,
            num_chains=cfg.num_chains,
            chain_method="parallel",
            progress_bar=False,
        )
        mcmc.run(jax.random.key(seed), data, spec, extra_fields=("diverging",))
        draws = mcmc.get_samples(group_by_chain=True)
        diverging = mcmc.get_extra_fields(group_by_chain=True)["diverging"]
        out.append(quality(_deterministics(draws, data, spec), diverging))
    return out


def _deterministics(draws: dict, data, spec) -> dict:
    """MCMC returns latent sites only; the global parameters of KEY_PARAMS are among them
    or deterministic sites, recomputed here as itelib does."""
    import jax
    from numpyro.infer.util import Predictive

    from itelib.models.hierarchical.model import hierarchical_model

    flat = {k: np.asarray(v).reshape(-1, *v.shape[2:]) for k, v in draws.items()}
    pred = Predictive(hierarchical_model, posterior_samples=flat, condition_deterministic=True)
    sites = pred(jax.random.key(0), data, spec)
    chains = next(iter(draws.values())).shape[0]
    return {k: np.asarray(v).reshape(chains, -1, *v.shape[1:]) for k, v in (flat | sites).items()}


def run_looped(args, data_sets) -> list[tuple[float, int]]:
    return [fit_one(trial, options(args), seed) for seed, trial in enumerate(data_sets)]


def run_parallel(args, data_sets) -> list[tuple[float, int]]:
    from distributed import Client, LocalCluster

    workers = args.workers or os.cpu_count()
    opts = options(args, chain_method="sequential")  # one core per worker: chains in turn
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        with Client(cluster) as client:
            futures = [
                client.submit(fit_one, trial, opts, seed, pure=False)
                for seed, trial in enumerate(data_sets)
            ]
            return client.gather(futures)


def run_vectorized(args, data_sets) -> list[tuple[float, int]]:
    import jax

    from itelib.inference.nuts import sample_nuts_datasets
    from itelib.models.hierarchical.model import (
        coefficient_draws,
        hierarchical_model,
        initial_inverse_mass,
    )

    with warnings.catch_warnings():  # data warnings (e.g. a one-arm site), as in fit_one
        warnings.simplefilter("ignore")
        inputs = [model_inputs(trial, options(args)) for trial in data_sets]
    spec, cfg = inputs[0][1], inputs[0][2]
    data = jax.tree.map(lambda *leaves: np.stack(leaves), *[d for d, _, _ in inputs])
    keys = jax.random.split(jax.random.key(0), len(inputs))
    mass = initial_inverse_mass(spec, args.n)  # as HierarchicalITE.fit
    results = sample_nuts_datasets(keys, hierarchical_model, data, spec, cfg, mass)
    out = []
    for i, r in enumerate(results):
        params = r.params
        if spec.likelihood == "marginal":  # as HierarchicalITE.fit: exact coefficient draws
            one = jax.tree.map(lambda leaf, i=i: leaf[i], data)
            params = params | coefficient_draws(jax.random.key(i), params, one, spec)
        out.append(quality(params, r.stats["diverging"]))
    return out


RUNNERS = {
    "naive": run_naive, "looped": run_looped, "parallel": run_parallel,
    "vectorized": run_vectorized,
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--replications", type=int, default=32)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--naive-fits", type=int, default=4)
    parser.add_argument("--naive-likelihood", default="rows", choices=["rows", "sufficient"])
    parser.add_argument("--workers", type=int, default=None, help="parallel: default one per core")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument(
        "--target-accept", type=float, default=None,
        help="default: itelib's (0.9 for its marginal model, 0.995 for the row-wise naive one)",
    )  # fmt: skip
    parser.add_argument(
        "--chain-method", default="auto", help="looped: HierarchicalITE's (on a GPU: vectorized)"
    )
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--p", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpyro

    numpyro.set_host_device_count(args.chains)  # before JAX starts: chains on host devices
    os.environ.setdefault("ITELIB_JAX_CACHE", "off")  # every mode pays its compilation
    header = environment()
    print(header)
    print(f"multisite_rct n = {args.n}, {args.replications} replications, {args.sites} sites, "
          f"p = {args.p}; {args.chains} chains x ({args.warmup} + {args.draws}), target_accept "
          f"{args.target_accept or 'default'}", flush=True)  # fmt: skip
    new_file = args.out is not None and not args.out.exists()
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(f"# {header}\n")
    data_sets = trials(args)
    rows, naive_rate = [], np.nan
    for mode in sorted(dict.fromkeys(args.modes), key=MODES.index):  # naive first: the ratio
        start = time.perf_counter()
        results = RUNNERS[mode](args, data_sets)
        wall = time.perf_counter() - start
        rate = 60 * len(results) / wall
        naive_rate = rate if mode == "naive" else naive_rate
        ess, div = zip(*results, strict=True)
        note = f"{args.naive_likelihood} likelihood" if mode == "naive" else "marginal"
        row = {
            "n": args.n, "mode": mode, "fits": len(results), "wall_s": wall, "fits_per_min": rate,
            "ratio_to_naive": rate / naive_rate, "median_min_ess_bulk": float(np.median(ess)),
            "divergences": int(sum(div)), "note": note,
        }  # fmt: skip
        rows.append(row)
        print(f"{mode}: {len(results)} fits in {wall:.0f} s, {rate:.2f} fits/min", flush=True)
        if args.out is not None:
            pd.DataFrame([row], columns=COLUMNS).to_csv(
                args.out, mode="a", header=new_file, index=False
            )
            new_file = False
    print()
    print(markdown(pd.DataFrame(rows, columns=COLUMNS)))


if __name__ == "__main__":
    main()
