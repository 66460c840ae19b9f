"""HierarchicalITE with 200 effect modifiers (issue 24): the local scales by the collapsed Gibbs
sweep (``itelib/models/hierarchical/local_scales.py``, the default from
``COLLAPSED_MIN_MODIFIERS`` modifiers on) against NUTS on every scale (the sampler before it),
same trial, same settings, same process, one after the other.

    python benchmarks/speed/many_modifiers.py --n 1000 --warmup 400 --draws 400 \
        --out benchmarks/results/speed/many_modifiers.csv
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/speed/many_modifiers.py \
        --n 1000 --warmup 500 --draws 1000 --out benchmarks/results/speed/many_modifiers.csv

The second runs the two chains in parallel on two XLA devices (``chain_method="auto"`` picks
that when there are as many devices as chains; ``itelib fit --chain-method parallel`` gives one
device per chain); each row records the devices and the chain method.

Per sampler: wall seconds of the fit (compilation included), minimum and median bulk ESS and
maximum R-hat over the modifiers ``gamma`` and over the patients' effects, divergences, leapfrog
steps per iteration, and ESS per second; then the agreement of the two posteriors: the largest
|difference of the patients' posterior means| over its Monte Carlo standard error.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import arviz_stats as azs
import jax
import numpy as np
import pandas as pd

import itelib
from itelib.inference.nuts import resolve_chain_method
from itelib.models.hierarchical import local_scales
from itelib.simulate import simulate


def _columns(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column of (chain, draw, k): bulk ESS, R-hat, mean, MCSE of the mean."""
    cols = range(draws.shape[-1])
    ess = np.array([float(azs.ess(draws[..., k])) for k in cols])
    rhat = np.array([float(azs.rhat(draws[..., k])) for k in cols])
    mcse = np.array([float(azs.mcse(draws[..., k], method="mean")) for k in cols])
    return ess, rhat, draws.mean(axis=(0, 1)), mcse


def run(sampler: str, args: argparse.Namespace) -> tuple[dict, np.ndarray, np.ndarray]:
    local_scales.COLLAPSED_MIN_MODIFIERS = 100 if sampler == "collapsed" else 10**9
    trial = simulate("high_dimensional_rct", args.n, seed=args.seed)
    est = itelib.HierarchicalITE(num_chains=args.chains, num_warmup=args.warmup,
                                 num_samples=args.draws, random_state=args.seed,
                                 progress_bar=False)  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(**trial.fit_kwargs())
    wall = time.perf_counter() - start
    post = est.posterior_["posterior"].to_dataset()
    stats = est.posterior_["sample_stats"].to_dataset()
    row = {"n": args.n, "modifiers": est.model_spec_.n_modifiers, "sampler": sampler,
           "chains": args.chains, "devices": jax.local_device_count(),
           "chain_method": resolve_chain_method("auto", args.chains),
           "warmup": args.warmup, "draws": args.draws, "wall_s": round(wall, 1)}  # fmt: skip
    for name, draws in (("gamma", post["gamma"].values), ("effect", est.effect().draws())):
        ess, rhat, mean, mcse = _columns(draws)
        row |= {f"{name}_min_ess": round(ess.min()), f"{name}_median_ess": round(np.median(ess)),
                f"{name}_max_rhat": round(rhat.max(), 4),
                f"{name}_min_ess_per_s": round(ess.min() / wall, 2)}  # fmt: skip
        if name == "effect":
            means, errors = mean, mcse
    row |= {"divergences": int(stats["diverging"].sum()),
            "steps_per_iteration": round(float(stats["n_steps"].mean()), 1),
            "sqrt_pehe": round(float(np.sqrt(np.mean((means - trial.tau.to_numpy()) ** 2))), 4),
            "warnings": len(caught)}  # fmt: skip
    return row, means, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = {s: run(s, args) for s in ("nuts_every_scale", "collapsed")}
    rows = [r for r, _, _ in results.values()]
    (_, m_a, e_a), (_, m_b, e_b) = results.values()
    z = np.abs(m_a - m_b) / np.sqrt(e_a**2 + e_b**2)
    base = rows[0]
    for r in rows:
        r["ess_per_s_ratio"] = round(r["gamma_min_ess_per_s"] / base["gamma_min_ess_per_s"], 2)
        r["wall_ratio"] = round(r["wall_s"] / base["wall_s"], 2)
        r["max_z_effect_means"] = round(float(z.max()), 2)
    df = pd.DataFrame(rows)
    print(df.T.to_string())
    if args.out:
        new = not args.out.exists()
        with args.out.open("a") as f:
            f.write(f"# machine: {platform.machine()}, {platform.node()}\n")
            df.to_csv(f, index=False, header=new)


if __name__ == "__main__":
    main()
