"""Seconds per Gibbs sweep: itelib's BayesianCausalForest against stochtree's BCF, n = 1e3..1e5.

    python benchmarks/speed/forest.py --n 1000 10000 100000 --out forest.csv

Data: ``hahn_nonlinear_heterogeneous`` (p = 5), both samplers given its true propensity (so
neither spends time estimating one). Each (n, sampler) runs in a fresh process, which reports
its peak RSS. Samplers:

- ``itelib``: ``BayesianCausalForest`` at its defaults (200 + 50 trees, depths 6 and 5
  counting the root as 1), ``--chains`` chains vectorized in one program. Fitted three times:
  ``W`` burn-in + ``S`` kept sweeps (compiles), the same again (``fit_s``: a compiled fit), and
  ``W + E`` burn-in sweeps (``--extra-sweeps E``); the per-sweep time is the difference of the
  last two fits over ``E`` (each the fastest of 3), so fixed costs (binning, diagnostics,
  effect summaries) cancel.
- ``stochtree``: ``BCFModel.sample`` with ``num_gfr=0`` at its defaults (250 + 100 trees,
  ``max_depth`` 10 and 5 in its counting), one chain, ``num_threads`` = cores; the per-sweep
  time is the same difference of two fits.
- ``stochtree-matched``: the same with itelib's tree counts and depths (200 and 50 trees,
  ``max_depth`` 5 and 4: stochtree counts the root as depth 0).

Reported per row: ``s_per_sweep`` (one sweep of all chains), ``chain_sweeps_per_s`` (chains /
s_per_sweep: the throughput that counts for equal effective samples per chain), ``fit_s``,
``peak_rss_gb`` and ``itelib_speedup`` (itelib's chain sweeps per second over the row's, same
n). With ``--out`` a ``# machine`` line and each row are appended as it finishes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLERS = ("itelib", "stochtree", "stochtree-matched")
COLUMNS = [
    "n", "sampler", "chains", "s_per_sweep", "chain_sweeps_per_s", "fit_s", "peak_rss_gb",
    "itelib_speedup", "note",
]  # fmt: skip


def _trial(n: int):
    from itelib.simulate import simulate

    return simulate("hahn_nonlinear_heterogeneous", n=n, seed=0)


REPEATS = 3


def _fastest(fit, sweeps: int) -> float:
    """The fastest of ``REPEATS`` timed fits: other load only ever adds time."""
    return min(fit(sweeps) for _ in range(REPEATS))


def _itelib(n: int, warmup: int, samples: int, extra: int, chains: int) -> dict:
    import warnings

    import itelib

    trial = _trial(n)

    def fit(num_warmup: int) -> float:
        est = itelib.BayesianCausalForest(
            num_warmup=num_warmup, num_samples=samples, num_chains=chains,
            progress_bar=False, random_state=0,
        )  # fmt: skip
        start = time.perf_counter()
        with warnings.catch_warnings():  # short chains: convergence warnings by design
            warnings.simplefilter("ignore")
            est.fit(**trial.fit_kwargs(), propensity=trial.propensity)
        return time.perf_counter() - start

    first = fit(warmup)
    base, longer = _fastest(fit, warmup), _fastest(fit, warmup + extra)
    per_sweep = (longer - base) / extra
    return {"chains": chains, "s_per_sweep": per_sweep, "fit_s": base,
            "note": f"first fit (compiling) {first:.0f} s"}  # fmt: skip


def _stochtree(n: int, warmup: int, samples: int, extra: int, matched: bool) -> dict:
    from stochtree import BCFModel

    trial = _trial(n)
    kw = trial.fit_kwargs()
    X = np.asarray(pd.get_dummies(kw["X"]), float)
    y, t = np.asarray(kw["Y"], float), np.asarray(kw["T"], float)
    pi = np.asarray(trial.propensity, float)
    mu = {"num_trees": 200, "max_depth": 5} if matched else {}
    tau = {"num_trees": 50, "max_depth": 4} if matched else {}
    threads = os.cpu_count()

    def fit(num_burnin: int) -> float:
        start = time.perf_counter()
        BCFModel().sample(
            X, t, y, propensity_train=pi, num_gfr=0, num_burnin=num_burnin, num_mcmc=samples,
            general_params={"random_seed": 0, "num_threads": threads},
            prognostic_forest_params=mu, treatment_effect_forest_params=tau,
        )  # fmt: skip
        return time.perf_counter() - start

    base, longer = _fastest(fit, warmup), _fastest(fit, warmup + extra)
    return {"chains": 1, "s_per_sweep": (longer - base) / extra, "fit_s": base,
            "note": f"num_threads {threads}"}  # fmt: skip


def measure(sampler: str, n: int, warmup: int, samples: int, extra: int, chains: int) -> dict:
    """One (n, sampler) in this (fresh) process; adds the process's peak RSS."""
    if sampler == "itelib":
        row = _itelib(n, warmup, samples, extra, chains)
    else:
        row = _stochtree(n, warmup, samples, extra, matched=sampler == "stochtree-matched")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    if sampler == "itelib":  # on a GPU, the accelerator's own peak (the CPU backend has none)
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            row["note"] += f"; peak {jax.default_backend()} memory "
            row["note"] += f"{stats['peak_bytes_in_use'] / 2**30:.2f} GB"
    return {"n": n, "sampler": sampler, **row, "peak_rss_gb": peak_kb / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--chains", type=int, default=4, help="itelib's chains")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--extra-sweeps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from hierarchical import environment

    header = environment(("jax", "jaxlib", "bartz", "stochtree"))
    print(header, flush=True)
    new_file = args.out is not None and not args.out.exists()
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(f"# {header}\n")
    rows = []
    samplers = sorted(dict.fromkeys(args.samplers), key=SAMPLERS.index)  # itelib first
    for n in args.n:
        group = []
        for sampler in samplers:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                job = (sampler, n, args.warmup, args.samples, args.extra_sweeps, args.chains)
                row = pool.submit(measure, *job).result()
            row["chain_sweeps_per_s"] = row["chains"] / row["s_per_sweep"]
            ref = next((r for r in group if r["sampler"] == "itelib"), row)
            row["itelib_speedup"] = (
                ref["chain_sweeps_per_s"] / row["chain_sweeps_per_s"]
                if ref["sampler"] == "itelib" else np.nan
            )  # fmt: skip
            group.append(row)
            print(f"n = {n}, {sampler}: {row['s_per_sweep']:.3f} s per sweep, "
                  f"{row['chain_sweeps_per_s']:.1f} chain-sweeps/s, peak RSS "
                  f"{row['peak_rss_gb']:.2f} GB", flush=True)  # fmt: skip
            if args.out is not None:
                pd.DataFrame([row], columns=COLUMNS).to_csv(
                    args.out, mode="a", header=new_file, index=False
                )
                new_file = False
        rows += group
    from hierarchical import markdown

    print()
    print(markdown(pd.DataFrame(rows, columns=COLUMNS)))


if __name__ == "__main__":
    main()
