"""Coverage of HierarchicalITE's per-patient intervals over seeds of a registered design.

    python benchmarks/hierarchical_coverage.py --dgp multisite_rct --n 1000 --seeds 2026 1 2 3 4 5

prints one row per seed (sqrt-PEHE, coverage at 50/80/90/95 %, 95% width, ATE covered,
divergences, max R-hat, fit seconds) and the mean and standard error over seeds, with the
machine. This is where the bands of the seeded calibration tests come from.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import itelib  # noqa: E402
from itelib.calibration import metrics  # noqa: E402
from itelib.simulate import available, simulate  # noqa: E402


def run_seed(dgp: str, n: int, seed: int, propensity: str = "none", **estimator_kwargs) -> dict:
    trial = simulate(dgp, n=n, seed=seed)
    score = {"none": None, "estimate": "estimate", "true": trial.propensity.to_numpy()}[propensity]
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = itelib.HierarchicalITE(progress_bar=False, random_state=0, **estimator_kwargs)
        est.fit(**trial.fit_kwargs(), propensity=score)
    seconds = time.perf_counter() - start
    m = metrics(est.effect().draws(), trial.tau.to_numpy())
    lo, hi = est.ate().interval(0.95)
    row = {"seed": seed, "sqrt_pehe": m.sqrt_pehe, "width95": m.width95}
    row |= {f"cov{round(level * 100)}": c for level, c in m.coverage.items()}
    row |= {
        "ate_covered": bool(lo <= trial.ate <= hi),
        "divergences": est.diagnostics_.n_divergent,
        "max_rhat": est.diagnostics_.max_rhat,
        "warnings": len(caught),
        "seconds": seconds,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dgp", default="multisite_rct", choices=available())
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 1, 2, 3, 4, 5])
    parser.add_argument("--prognosis", default="linear", choices=["linear", "additive"])
    parser.add_argument("--effect-modifiers", default="linear", choices=["linear", "interactions"])
    parser.add_argument(
        "--propensity", default="none", choices=["none", "estimate", "true"],
        help="none: fit as a randomized trial; estimate: cross-fitted scores; true: the DGP's",
    )  # fmt: skip
    args = parser.parse_args()
    options = {"prognosis": args.prognosis, "effect_modifiers": args.effect_modifiers}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, itelib {itelib.__version__}"
    )
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(args.dgp, args.n, seed, args.propensity, **options))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1))
    table = pd.DataFrame(rows).set_index("seed").astype(float)
    summary = pd.DataFrame({"mean": table.mean(), "se": table.std() / np.sqrt(len(table))})
    print(
        f"\n{args.dgp}, n = {args.n}, {options}, propensity {args.propensity}, {len(rows)} "
        "seeds: mean and standard error"
    )
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
