"""CausalForest.ate(): old interval (EconML's ate_inference, stderr_mean: a conservative bound)
vs new (ate__inference, doubly robust), width and coverage of the sample ATE, same fits.

    PYTHONPATH=. python benchmarks/causal_forest_ate.py [--designs multisite_rct nie_wager_b]
        [--n 1000] [--seeds 10]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from itelib import CausalForest
from itelib.simulate import simulate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--designs", nargs="+", default=["multisite_rct", "nie_wager_b"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    print("design         seed  true_ate  old_lo  old_hi  new_lo  new_hi  width_ratio old/new")
    for design in args.designs:
        rows = []
        for seed in range(args.seeds):
            trial = simulate(design, n=args.n, seed=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = CausalForest(n_jobs=1, random_state=seed).fit(
                    **trial.fit_kwargs(), propensity="estimate"
                )
            old = np.ravel(est.model_.ate_inference(est.data_.X).conf_int_mean(alpha=0.05))
            new = np.array(est.ate().interval(0.95))
            truth = trial.ate
            rows.append((np.ptp(old), np.ptp(new), old[0] <= truth <= old[1],
                         new[0] <= truth <= new[1]))  # fmt: skip
            print(f"{design:14s} {seed:4d} {truth:9.3f} {old[0]:7.3f} {old[1]:7.3f} "
                  f"{new[0]:7.3f} {new[1]:7.3f}  {np.ptp(old) / np.ptp(new):.2f}")  # fmt: skip
        w_old, w_new, c_old, c_new = map(np.array, zip(*rows, strict=True))
        print(f"{design}: mean width old {w_old.mean():.3f} new {w_new.mean():.3f} "
              f"(ratio {np.mean(w_old / w_new):.2f}); coverage of the sample ATE "
              f"old {c_old.sum()}/{len(c_old)} new {c_new.sum()}/{len(c_new)}")  # fmt: skip


if __name__ == "__main__":
    main()
