"""Does the fit from summaries work harder as n grows? (issue 26: a 10^8-row Dask fit took 58 s
where 10^6 took 23 s, though the model's arrays are the same size.)

    PYTHONPATH=. python benchmarks/sampler_vs_n.py [--copies 1 100 10000]

One `multisite_rct` trial (20,000 patients, 20 sites, 4 covariates, linear model) is summarized
per site; its summaries times ``c`` are exactly those of ``c`` copies of the trial: the same
estimates with a posterior ``sqrt(c)`` times narrower. NUTS (4 x 1,000 + 1,000) samples the
marginal model from them; per c and precision: fit seconds, mean leapfrog steps per draw,
adapted step size, divergences. The cost per leapfrog step does not depend on n, so any growth
of the fit is the sampler's geometry.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

from itelib import HierarchicalITE
from itelib.federated import FederatedSpec, agree, site_moments, site_summary
from itelib.simulate import multisite_rct


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, nargs="+", default=[1, 100, 10000])
    args = ap.parse_args()
    kw = multisite_rct(n=20000, seed=0, n_sites=20, p=4).fit_kwargs()
    df = kw["X"].assign(y=kw["Y"], t=kw["T"], site=kw["site"])
    spec = FederatedSpec("y", "t", covariates=tuple(kw["X"].columns), site="site")
    sites = [rows for _, rows in df.groupby("site")]
    agreement = agree([site_moments(rows, spec) for rows in sites])
    summaries = [site_summary(rows, agreement) for rows in sites]
    print("| patients | precision | fit (s) | leapfrog steps per draw | step size | divergences |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c in args.copies:
        counts = {k: {kk: vv * c for kk, vv in v.items()} for k, v in agreement.sites.items()}
        agreed = dataclasses.replace(agreement, sites=counts)
        scaled = [
            dataclasses.replace(
                s, agreement=agreed, n=s.n * c, n_treated=s.n_treated * c, grams=s.grams * c
            )  # fmt: skip
            for s in summaries
        ]
        for precision in ("float32", "float64"):
            est = HierarchicalITE(prognosis="linear", effect_modifiers="linear",
                                  prognostic_score=False, precision=precision, random_state=0,
                                  progress_bar=False)  # fmt: skip
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit_summaries(scaled)
            except (FloatingPointError, ValueError) as e:
                print(f"| {20000 * c:.0e} | {precision} | failed: {type(e).__name__} | | | |")
                continue
            seconds = time.perf_counter() - start
            stats = est.posterior_["sample_stats"]
            print(f"| {20000 * c:.0e} | {precision} | {seconds:.1f} | "
                  f"{float(stats['n_steps'].mean()):.1f} | {float(stats['step_size'].mean()):.4f} "
                  f"| {int(stats['diverging'].sum())} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
