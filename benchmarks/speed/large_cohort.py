"""A cohort of a million patients on one small machine: fit, then every patient's interval.

    python benchmarks/speed/large_cohort.py --n 1000000 --p 20 --out large_cohort.csv

One ``multisite_rct`` trial (20 sites, ``--p`` covariates, two effect modifiers), fitted by
``HierarchicalITE`` at its defaults (float32; the Gaussian likelihood through per-site
sufficient statistics, so no per-patient array enters the sampler), then each patient's
posterior mean and 95 % interval computed ``--batch`` patients at a time through
``effect(X_batch, site=site_batch)``, so at most batch x draws effect values exist at once.
Reported: seconds to simulate, fit and summarize, the process's peak RSS after each step,
min bulk ESS, max R-hat, divergences, and (a sanity check, not a benchmark) coverage of the
true effects and sqrt-PEHE. With ``--out`` a ``# machine`` line and the row are appended.

With ``--svi-batch B`` the trial is ``binary_multisite_rct`` and the fit variational
(``inference="svi"``, B patients per step, ``--draws`` draws from the guide), reported with
whether its ELBO levelled off instead of ESS and R-hat (write it to its own ``--out`` file):

    python benchmarks/speed/large_cohort.py --n 1000000 --p 20 --svi-batch 1000 \
        --out large_cohort_binary_svi.csv
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from hierarchical import append_results, environment  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--p", type=int, default=20)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--svi-batch", type=int, default=0,
        help="a binary trial (binary_multisite_rct) fitted with inference='svi' and this many "
        "patients per step, --draws draws from the guide",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpyro

    numpyro.set_host_device_count(args.chains)  # before JAX starts: chains in parallel
    import itelib
    from itelib.simulate import simulate

    header = environment()
    print(header, flush=True)
    design = "binary_multisite_rct" if args.svi_batch else "multisite_rct"
    row: dict = {"n": args.n, "p": args.p, "sites": args.sites, "batch": args.batch}
    start = time.perf_counter()
    trial = simulate(design, n=args.n, seed=args.seed, n_sites=args.sites, p=args.p)
    row |= {"simulate_s": time.perf_counter() - start, "rss_after_simulate_gb": peak_rss_gb()}
    print(f"simulated in {row['simulate_s']:.0f} s", flush=True)

    sampler = {"num_warmup": args.warmup, "num_chains": args.chains}
    if args.svi_batch:
        sampler = {"inference": "svi", "batch_size": args.svi_batch}
    est = itelib.HierarchicalITE(
        **sampler, num_samples=args.draws, random_state=args.seed, progress_bar=False
    )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(**trial.fit_kwargs())
    diag = est.diagnostics_
    row |= {
        "fit_s": time.perf_counter() - start, "rss_after_fit_gb": peak_rss_gb(),
        "fit_warnings": len(caught),
    }  # fmt: skip
    if args.svi_batch:
        row |= {"svi_converged": diag.converged}
    else:
        row |= {"min_ess_bulk": diag.min_ess_bulk, "max_rhat": diag.max_rhat,
                "divergences": diag.n_divergent}  # fmt: skip
    print(f"fitted in {row['fit_s']:.0f} s, peak RSS {row['rss_after_fit_gb']:.2f} GB", flush=True)

    X, site = trial.fit_kwargs()["X"], trial.fit_kwargs()["site"]
    mean = np.empty(args.n)
    lower, upper = np.empty(args.n), np.empty(args.n)
    start = time.perf_counter()
    for i in range(0, args.n, args.batch):
        post = est.effect(X.iloc[i : i + args.batch], site=site.iloc[i : i + args.batch])
        bounds = post.interval(0.95)
        mean[i : i + args.batch] = post.mean().to_numpy()
        lower[i : i + args.batch] = bounds["lower"].to_numpy()
        upper[i : i + args.batch] = bounds["upper"].to_numpy()
    truth = trial.tau.to_numpy()
    row |= {
        "effects_s": time.perf_counter() - start, "rss_after_effects_gb": peak_rss_gb(),
        "coverage95": float(np.mean((lower <= truth) & (truth <= upper))),
        "sqrt_pehe": float(np.sqrt(np.mean((mean - truth) ** 2))),
    }  # fmt: skip
    print(f"{args.n:,} patients' intervals in {row['effects_s']:.0f} s, peak RSS "
          f"{row['rss_after_effects_gb']:.2f} GB", flush=True)  # fmt: skip
    table = pd.DataFrame([row])
    print(table.T.to_string(header=False))
    append_results(args.out, header, table)


if __name__ == "__main__":
    main()
