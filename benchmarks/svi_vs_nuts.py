"""The variational option for binary outcomes, calibrated against NUTS on the same trials.

    python benchmarks/svi_vs_nuts.py --n 10000 --seeds 0 1 2 --out svi_vs_nuts.csv

On ``binary_multisite_rct`` trials (20 sites; the true effects are risk differences), fits
``HierarchicalITE`` with NUTS at its defaults (row-wise Bernoulli likelihood, 4 chains x
(1000 + 1000)) and with ``inference="svi"`` for each ``--guides`` entry (low-rank or full-rank
Gaussian guide) and each ``--batch-sizes`` entry (patients per step; 0: all), with
``--svi-steps`` steps and 4,000 draws. Per
fit: seconds (a fresh fit, compilation included), sqrt-PEHE, coverage of the true effects at
50/80/90/95 %, mean 95 % width, CRPS, and against NUTS on the same trial: the median over
patients of SVI's posterior sd over NUTS's (1 = as wide) and of |mean difference| / NUTS's sd.
With ``--out`` a ``# machine ...`` line and the rows are appended (``pd.read_csv(path,
comment="#")``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent / "speed"))
from hierarchical import append_results, environment, markdown  # noqa: E402

COLUMNS = [
    "n", "seed", "inference", "guide", "batch_size", "svi_steps", "fit_s", "sqrt_pehe",
    "cov50", "cov80", "cov90", "cov95", "width95", "crps", "sd_ratio_to_nuts",
    "mean_shift_in_nuts_sd", "converged",
]  # fmt: skip


def fit(trial, **options):
    import itelib

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = itelib.HierarchicalITE(progress_bar=False, **options).fit(**trial.fit_kwargs())
    seconds = time.perf_counter() - start
    draws = est.effect().draws()  # (chain, draw, patient), risk differences
    return draws.reshape(-1, draws.shape[-1]), seconds, est.diagnostics_


def row(trial, draws, seconds, reference=None) -> dict:
    from itelib.calibration.metrics import metrics

    truth = trial.tau.to_numpy()
    m = metrics(draws, truth)
    out = {"fit_s": seconds, "sqrt_pehe": m.sqrt_pehe, "width95": m.width95, "crps": m.crps}
    out |= {f"cov{round(level * 100)}": c for level, c in m.coverage.items()}
    if reference is not None:
        sd_ref = reference.std(axis=0)
        out["sd_ratio_to_nuts"] = float(np.median(draws.std(axis=0) / sd_ref))
        shift = np.abs(draws.mean(axis=0) - reference.mean(axis=0)) / sd_ref
        out["mean_shift_in_nuts_sd"] = float(np.median(shift))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--guides", nargs="+", default=["low_rank", "full_rank"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[0, 1000])
    parser.add_argument("--svi-steps", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpyro

    numpyro.set_host_device_count(4)  # NUTS's chains on host devices, as the CLI runs them
    from itelib.simulate import simulate

    header = environment(("jax", "numpyro"))
    print(header, flush=True)
    rows = []
    for seed in args.seeds:
        trial = simulate("binary_multisite_rct", n=args.n, seed=seed)
        nuts, seconds, diag = fit(trial, random_state=seed)
        base = {"n": args.n, "seed": seed}
        rows.append(
            base
            | {"inference": "nuts", "converged": diag.max_rhat <= 1.01 and diag.n_divergent == 0}
            | row(trial, nuts, seconds)
        )
        print(f"seed {seed} NUTS: {seconds:.0f} s", flush=True)
        for guide in args.guides:
            for batch in args.batch_sizes:
                draws, seconds, diag = fit(
                    trial, inference="svi", svi_guide=guide, svi_steps=args.svi_steps,
                    batch_size=batch or None, num_samples=4000, random_state=seed,
                )  # fmt: skip
                svi = {"inference": "svi", "guide": guide, "batch_size": batch or args.n,
                       "svi_steps": args.svi_steps, "converged": diag.converged}  # fmt: skip
                rows.append(base | svi | row(trial, draws, seconds, reference=nuts))
                print(
                    f"seed {seed} SVI {guide}, batch {svi['batch_size']}: {seconds:.0f} s",
                    flush=True,
                )
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    append_results(args.out, header, table)
    print()
    print(markdown(table))


if __name__ == "__main__":
    main()
