"""How chains should run on the CPU, and what one BLAS thread buys.

    python benchmarks/speed/chain_methods.py --p 10 20 --out chain_methods.csv

One ``multisite_rct`` trial (n = 500, 20 sites) per p, HierarchicalITE's model and defaults
(the marginal model, 4 chains x (1000 + 1000)), sampled by ``itelib.inference.nuts.sample_nuts``
with each chain method:

- ``parallel``: one chain per XLA host device (4 devices on however many cores);
- ``sequential``: one chain after another on one device;
- ``vectorized``: the 4 chains vmapped into one program on one device;

each with one BLAS thread (what itelib does: ``itelib/inference/blas.py``) and with the BLAS
library's default (one thread per core; ``single_threaded_blas`` replaced by a no-op here).
Each configuration runs twice in this process and the second run is timed, so compilation is
left out. One row per configuration: seconds, leapfrog steps, microseconds per step, the ratio
to the same method with one BLAS thread and to ``parallel`` with one BLAS thread. With
``--out`` a ``# machine ...`` line and the rows are appended (``pd.read_csv(path, comment="#")``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from hierarchical import append_results, environment, markdown, model_inputs  # noqa: E402

METHODS = ("parallel", "sequential", "vectorized")
COLUMNS = [
    "p", "chain_method", "blas_threads", "seconds", "leapfrog_steps", "us_per_step",
    "ratio_to_one_blas_thread", "ratio_to_parallel",
]  # fmt: skip


def timed(p: int, method: str, one_blas_thread: bool, args) -> tuple[float, int]:
    import jax

    from itelib.inference import nuts
    from itelib.models.hierarchical.model import hierarchical_model
    from itelib.simulate import simulate

    trial = simulate("multisite_rct", n=args.n, seed=0, n_sites=args.sites, p=p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, spec, cfg = model_inputs(trial, {"progress_bar": False})
    cfg = dataclasses.replace(cfg, chain_method=method)
    limit = nuts.single_threaded_blas
    if not one_blas_thread:
        nuts.single_threaded_blas = contextlib.nullcontext
    try:
        for seed in range(2):  # the first run compiles
            start = time.perf_counter()
            result = nuts.sample_nuts(jax.random.key(seed), hierarchical_model, data, spec, cfg)
            seconds = time.perf_counter() - start
    finally:
        nuts.single_threaded_blas = limit
    # n_steps is recorded for kept draws only; warmup's trees are about as deep
    return seconds, 2 * int(np.sum(result.stats["n_steps"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpyro

    numpyro.set_host_device_count(4)  # before JAX starts
    header = environment(("jax", "numpyro", "threadpoolctl", "scipy"))
    print(header, flush=True)
    rows = []
    for p in args.p:
        for method in args.methods:
            for one in (True, False):
                seconds, steps = timed(p, method, one, args)
                row = {"p": p, "chain_method": method, "blas_threads": 1 if one else "default",
                       "seconds": seconds, "leapfrog_steps": steps,
                       "us_per_step": 1e6 * seconds / steps}  # fmt: skip
                rows.append(row)
                print(f"p = {p} {method} blas {row['blas_threads']}: {seconds:.1f} s", flush=True)
    table = pd.DataFrame(rows)
    base = table.set_index(["p", "chain_method", "blas_threads"])["seconds"]
    table["ratio_to_one_blas_thread"] = [
        r.seconds / base[(r.p, r.chain_method, 1)] for r in table.itertuples()
    ]
    if "parallel" in args.methods:
        table["ratio_to_parallel"] = [
            r.seconds / base[(r.p, "parallel", 1)] for r in table.itertuples()
        ]
    table = table.reindex(columns=COLUMNS)
    append_results(args.out, header, table)
    print()
    print(markdown(table))


if __name__ == "__main__":
    main()
