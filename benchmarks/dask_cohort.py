"""A cohort too large for one process, fitted on Dask (issue 26, part 4: beyond one machine).

Each partition of the cohort is generated on a worker from its own seed (``dask.delayed``), so
the cohort is never held in memory at once; ``HierarchicalITE.fit`` on the Dask DataFrame runs
the two rounds (moments, then per-site cross-products) as one task per partition and each
round re-generates the partitions; only summaries come back; NUTS then samples the marginal
model on the client. Reported per size: the wall time of the data pass (both rounds), of the
fit (NUTS + coefficient draws), the peak resident memory of each worker and of the client.

Model: 20 sites, 4 standard-normal covariates, half treated, ``y = a_s + x·beta + t·(1 + 0.5
x1 + b_s) + N(0, 1)``; ``prognosis="linear", effect_modifiers="linear",
prognostic_score=False``, NUTS 4 chains x 1,000 + 1,000.

    python benchmarks/dask_cohort.py --rows 1e6 1e7 [--partition-rows 2.5e5] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd

N_SITES = 20
P = 4
BETA = np.array([0.8, -0.5, 0.3, 0.0])


def site_effects(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sites' intercepts a_s and effects b_s, shared by every partition."""
    rng = np.random.default_rng([seed, 10**9])
    return rng.normal(0, 0.5, N_SITES), rng.normal(0, 0.3, N_SITES)


def make_partition(index: int, rows: int, seed: int) -> pd.DataFrame:
    """Partition ``index`` of the cohort, from its own seed (the same on any worker)."""
    a, b = site_effects(seed)
    rng = np.random.default_rng([seed, index])
    x = rng.standard_normal((rows, P))
    site = rng.integers(0, N_SITES, rows)
    t = rng.integers(0, 2, rows).astype(np.float64)
    y = a[site] + x @ BETA + t * (1.0 + 0.5 * x[:, 0] + b[site]) + rng.standard_normal(rows)
    frame = pd.DataFrame(x, columns=[f"x{j + 1}" for j in range(P)])
    frame["y"], frame["t"], frame["site"] = y, t, site
    frame.index = pd.RangeIndex(index * rows, (index + 1) * rows, name="patient")
    return frame


def cohort(n: int, partition_rows: int, seed: int):
    import dask
    import dask.dataframe as dd

    n_parts = max(1, n // partition_rows)
    meta = make_partition(0, 2, seed).iloc[:0]
    parts = [dask.delayed(make_partition)(i, n // n_parts, seed) for i in range(n_parts)]
    return dd.from_delayed(parts, meta=meta, verify_meta=False), n_parts


def _peak_rss_mb() -> float:
    """This process's peak resident memory (Linux's VmHWM: ru_maxrss would carry over the
    parent's peak into a worker started by fork + exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm() -> None:
    import itelib.federated.dask_fit  # noqa: F401  (imports JAX: once per worker, not timed)


def run(n: int, partition_rows: int, workers: int, precision: str, seed: int = 0) -> dict:
    import distributed

    from itelib import HierarchicalITE
    from itelib.federated import dask_fit

    ddf, n_parts = cohort(n, partition_rows, seed)
    timing = {}
    original = dask_fit.partition_summary

    def timed(*args, **kwargs):  # the data pass, as HierarchicalITE.fit runs it
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timing["data"] = time.perf_counter() - start

    dask_fit.partition_summary = timed
    est = HierarchicalITE(prognosis="linear", effect_modifiers="linear", prognostic_score=False,
                          precision=precision, random_state=seed, progress_bar=False)  # fmt: skip
    covariates = [f"x{j + 1}" for j in range(P)]
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            client.run(_warm)
            start = time.perf_counter()
            failed = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence is the diagnostics' business
                try:
                    est.fit(ddf["y"], ddf["t"], X=ddf[covariates], site=ddf["site"],
                            scheduler=client)  # fmt: skip
                except FloatingPointError as err:  # reported, with the data pass's time
                    failed = f"fit failed: {type(err).__name__}"
            total = time.perf_counter() - start
            peaks = client.run(_peak_rss_mb)
    dask_fit.partition_summary = original
    fitted = failed is None
    return {
        "rows": n, "partitions": n_parts, "data_s": timing["data"],
        "fit_s": total - timing["data"], "total_s": total,
        "worker_peak_mb": sorted(peaks.values()), "client_peak_mb": _peak_rss_mb(),
        "tau0": float(est.posterior_["posterior"]["tau0"].mean()) * est.outcome_scale_
        if fitted else float("nan"),
        "target": 1.0 + site_effects(seed)[1].mean(),
        "divergences": int(est.diagnostics_.n_divergent) if fitted else failed,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--partition-rows", type=float, default=2.5e5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "float32", "float64"), default="auto")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, dask {version('dask')}, itelib {version('itelib')}; "
          f"LocalCluster of {args.workers} single-threaded worker processes; "
          f"precision {args.precision}")  # fmt: skip
    print(
        "| rows | partitions | data pass (s) | fit (s) | total (s) | rows/s (data pass) "
        "| peak RSS per worker (MB) | client peak RSS (MB) | tau0 | 1 + mean b_s | divergences |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for n in args.rows:
        r = run(int(n), int(min(args.partition_rows, n)), args.workers, args.precision)
        results.append(r)
        peaks = ", ".join(f"{x:.0f}" for x in r["worker_peak_mb"])
        print(f"| {r['rows']:.0e} | {r['partitions']} | {r['data_s']:.1f} | {r['fit_s']:.1f} | "
              f"{r['total_s']:.1f} | {r['rows'] / r['data_s']:.3g} | {peaks} | "
              f"{r['client_peak_mb']:.0f} | {r['tau0']:.4f} | {r['target']:.4f} | "
              f"{r['divergences']} |",
              flush=True)  # fmt: skip
    if len(results) > 1:
        a, b = results[-2], results[-1]
        slope = np.log(b["data_s"] / a["data_s"]) / np.log(b["rows"] / a["rows"])
        per_row = b["data_s"] / b["rows"]
        print(f"\ndata pass scaling from {a['rows']:.0e} to {b['rows']:.0e} rows: time ~ "
              f"rows^{slope:.2f}; at {per_row * 1e6:.2f} s per 10^6 rows on these "
              f"{args.workers} workers, 10^8 rows would take ~{per_row * 1e8 / 60:.0f} min "
              "(linear in rows, divided by the workers: partitions are independent)")  # fmt: skip


if __name__ == "__main__":
    main()
