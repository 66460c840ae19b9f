"""OLS of log(time) on the survival designs with censoring=0: is the x1 effect in the data?

    PYTHONPATH=. python benchmarks/survival_ols_check.py

Fits log T ~ 1 + x + m(x) + t + t*x1 + t*x2 + ... (m the true prognosis) and
log T ~ ... + t*1(x1>0) + t*x2 and prints the interaction coefficients with their SEs.
"""

import numpy as np
import statsmodels.api as sm

from itelib.simulate import simulate
from itelib.simulate.survival import survival_prognosis

for design in ("survival_weibull", "survival_lognormal"):
    for seed in (1, 2, 3):
        trial = simulate(design, n=1000, seed=seed, censoring=0.0)
        x = trial.X[["x1", "x2", "x3", "x4", "x5"]].to_numpy()
        t = trial.data["t"].to_numpy()
        y = np.log(trial.data["time"].to_numpy())
        m = survival_prognosis(x)
        lin = np.column_stack([np.ones(len(y)), x, m, t, t[:, None] * x])
        step = np.column_stack([np.ones(len(y)), x, m, t, t * (x[:, 0] > 0), t * x[:, 1]])
        a = sm.OLS(y, lin).fit()
        b = sm.OLS(y, step).fit()
        print(design, seed, "linear t*x1 %.3f (se %.3f) t*x2 %.3f (se %.3f) | step t*1(x1>0) "
              "%.3f (se %.3f) t*x2 %.3f | resid sd %.3f"
              % (a.params[8], a.bse[8], a.params[9], a.bse[9], b.params[8], b.bse[8],
                 b.params[9], np.sqrt(b.scale)))
