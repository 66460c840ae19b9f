"""Least squares of log(time) on the survival designs with censoring=0: is the effect in the data?

    PYTHONPATH=. python benchmarks/survival_ols_check.py

Fits log T ~ 1 + x + m(x) + t + t*x (m the true prognosis) and
log T ~ 1 + x + m(x) + t + t*1(x1>0) + t*x2 and prints the interaction coefficients with their
standard errors (output: benchmarks/results/survival/diagnosis_ols.txt).
"""

import numpy as np

from itelib.simulate import simulate
from itelib.simulate.survival import survival_prognosis


def ols(y: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients, their standard errors and the residual sd."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    scale = resid @ resid / (len(y) - design.shape[1])
    se = np.sqrt(scale * np.diag(np.linalg.inv(design.T @ design)))
    return coef, se, float(np.sqrt(scale))


for name in ("survival_weibull", "survival_lognormal"):
    for seed in (1, 2, 3):
        trial = simulate(name, n=1000, seed=seed, censoring=0.0)
        x = trial.X[["x1", "x2", "x3", "x4", "x5"]].to_numpy()
        t = trial.data["t"].to_numpy()
        y = np.log(trial.data["time"].to_numpy())
        m = survival_prognosis(x)
        lin = np.column_stack([np.ones(len(y)), x, m, t, t[:, None] * x])
        step = np.column_stack([np.ones(len(y)), x, m, t, t * (x[:, 0] > 0), t * x[:, 1]])
        a, a_se, _ = ols(y, lin)
        b, b_se, sd = ols(y, step)
        print(
            f"{name} {seed} linear t*x1 {a[8]:.3f} (se {a_se[8]:.3f}) t*x2 {a[9]:.3f} "
            f"(se {a_se[9]:.3f}) | step t*1(x1>0) {b[8]:.3f} (se {b_se[8]:.3f}) t*x2 {b[9]:.3f} "
            f"| resid sd {sd:.3f}"
        )
