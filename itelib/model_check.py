"""A check of the fitted outcome model against its own residuals (issue 19).

A linear prognosis fitted to a nonlinear outcome does not fail loudly: the effect modifiers
absorb the misfit and the model reports heterogeneity that is not there, with clean sampler
diagnostics. :func:`check_model` looks for what such a model leaves behind in the residuals
``r = y - fitted``:

* **covariate rows** (one per covariate with more than two values): do a restricted cubic
  spline of the covariate (its nonlinear part) and the same spline times ``t`` (a nonlinear
  part that differs by arm) explain the residuals? An F-test after partialling out the linear
  design ``[1, X, t, t·X]`` (so shrinkage left in linear terms by the priors is not mistaken
  for misfit);
* **propensity row**: the same on the logit of the propensity (given, or cross-fitted from
  the covariates when none was given), linear part included (the default model has none);
* **fitted row**: Ramsey's RESET, squares and cubes of the fitted values;
* **flexible row**: gradient-boosted trees, cross-fitted (K folds) on the residuals from
  ``[X, t, propensity logit]``; does the model plus this out-of-fold correction predict the
  outcomes better? A one-sided paired test on the per-patient squared-error differences.
  The model's own fit is in-sample, so it is favoured: under a right model the test is
  conservative (the correction only adds noise).

A row is flagged when both (a) its Holm-adjusted p-value is below ``alpha`` (family-wise
error 1 % by default: on a right model about 1 check in 100 finds anything significant by
chance; measured 5 in 400) and (b) the structure is material: it explains at least a share
of the residual variance that depends on what a misfit can do there:

* **treatment predictable** from the covariates (cross-validated AUC of the propensity
  > 0.6, i.e. observational data): 10 %. There a prognostic misfit is correlated with ``t`` and
  ``t·x``, so the effect and its modifiers absorb it: a biased answer, not just a noisy one.
* **randomized** (AUC <= 0.6): 25 %. ``t`` is independent of the misfit by design, so it
  biases neither the average effect nor the modifiers; it acts as extra noise, and costs
  precision only: at 25 % the intervals are ``1 / sqrt(0.75) - 1 = 15 %`` wider than a right
  prognosis would give. ``multisite_rct`` (a mildly bent prognosis, about 15 % of the residual
  variance) is meant to pass; measured: flagged in 0 of 10 fits at n = 1,000.

(b) keeps large trials with a mildly bent prognosis quiet; (a) keeps small ones from flagging
noise: on a right linear model 0 of 400 checks flagged (n = 500), and 0 of 10 fits of
``multisite_rct`` with a linear prognosis. A linear-prognosis fit of
``hahn_nonlinear_homogeneous`` (n = 500) is flagged in 10 of 10 seeds, against ``x3``. The
numbers and their Monte Carlo error are in ``tests/test_model_check.py``. For 0/1 outcomes the
F-tests are approximate (the residuals' variance depends on the fitted risk).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from itelib._threads import one_thread
from itelib.exceptions import DataValidationError, ModelCheckWarning
from itelib.propensity import RANDOMIZED_AUC

__all__ = ["ModelCheck", "check_model"]

ALPHA = 0.01  # family-wise error rate of the check's tests (Holm) on a right model
MIN_SHARE = 0.10  # structure must explain >= 10 % of the residual variance to be flagged...
MIN_SHARE_RANDOMIZED = 0.25  # ...or >= 25 % where treatment is not predictable (randomized)
MAX_ROWS = 20_000  # larger data are checked on a random subsample (power is ample there)
_KNOT_QUANTILES = (0.05, 0.275, 0.5, 0.725, 0.95)  # Harrell's five knots
_PREDICTABLE_AUC = RANDOMIZED_AUC  # 0.6: above it, treatment is predictable (observational)


@dataclass(frozen=True, eq=False)  # a DataFrame field: compare tables, not checks
class ModelCheck:
    """The result of :func:`check_model`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per test, indexed by ``test`` (a covariate name, ``"propensity"``,
        ``"fitted values"`` or ``"flexible model"``), with columns ``kind``
        (``covariate`` / ``propensity`` / ``fitted`` / ``flexible``), ``statistic`` (F, or
        the paired z of the flexible model), ``df``, ``p_value``, ``p_adjusted`` (Holm),
        ``share`` (the share of the residual variance the structure explains; negative when
        the flexible model predicts worse) and ``flagged``.
    flagged : bool
        Whether any row is flagged.
    verdict : str
        One sentence: what was found and what to do.
    treatment_auc : float
        Cross-validated AUC of the propensity for the treatment (0.5: unpredictable).
    propensity_given : bool
        Whether the fit had a propensity score.
    alpha, min_share : float
        The thresholds used (``min_share``: the one that applied, see :func:`check_model`).
    worst : str or None
        The covariate with the most structure left (flagged first), if any was tested.
    """

    table: pd.DataFrame
    flagged: bool
    verdict: str
    treatment_auc: float
    propensity_given: bool
    alpha: float = ALPHA
    min_share: float = MIN_SHARE
    worst: str | None = field(default=None)

    def warn(self, stacklevel: int = 2) -> None:
        """Issue a :class:`~itelib.ModelCheckWarning` with the verdict if the check flagged."""
        if self.flagged:
            warnings.warn(self.verdict, ModelCheckWarning, stacklevel=stacklevel + 1)


def check_model(
    y: Any,
    t: Any,
    X: Any,
    fitted: Any,
    *,
    feature_names: Any = None,
    propensity: Any = None,
    alpha: float = ALPHA,
    min_share: float = MIN_SHARE,
    min_share_randomized: float = MIN_SHARE_RANDOMIZED,
    n_folds: int = 5,
    max_rows: int = MAX_ROWS,
    random_state: int = 0,
) -> ModelCheck:
    """Check a fitted outcome model for structure left in its residuals.

    Parameters
    ----------
    y : (n,) array
        Observed outcomes (continuous; for 0/1 outcomes the tests are approximate).
    t : (n,) array
        0/1 treatment.
    X : (n, p) array
        Covariates the model used (any scale; standardized internally).
    fitted : (n,) array
        The model's fitted ``E[y | x, t, site]`` of the same patients, e.g. the posterior
        mean from :func:`itelib.models.hierarchical.predictive.fitted_outcome`.
    feature_names : sequence of str, optional
        Names of the columns of ``X``; default ``x0, x1, ...``.
    propensity : (n,) array, optional
        The propensity scores the model was fit with. None: none was; the check then
        cross-fits one from ``X`` to test against and to tell whether treatment is predictable.
    alpha : float, default 0.01
        Family-wise error rate over the tests (Holm).
    min_share : float, default 0.10
        The share of the residual variance a structure must explain to be flagged when
        treatment is predictable from the covariates (AUC > 0.6: observational data).
    min_share_randomized : float, default 0.25
        The same when it is not (randomized data: a misfit costs precision, not bias).
    n_folds : int, default 5
        Folds of the cross-fitted flexible model (and of the propensity, when estimated).
    max_rows : int, default 20,000
        Above this many patients, a random subsample of this size is checked.
    random_state : int, default 0
        Seed of the subsample, the folds and the boosted trees.

    Returns
    -------
    ModelCheck
    """
    with one_thread():  # the check is small; see itelib/_threads.py
        return _check(y, t, X, fitted, feature_names, propensity, alpha, min_share,
                      min_share_randomized, n_folds, max_rows, random_state)  # fmt: skip


def _check(
    y: Any, t: Any, X: Any, fitted: Any, feature_names: Any, propensity: Any, alpha: float,
    min_share: float, min_share_randomized: float, n_folds: int, max_rows: int,
    random_state: int,
) -> ModelCheck:  # fmt: skip
    y, t, X, fitted = _arrays(y, t, X, fitted)
    n, p = X.shape
    names = (
        [f"x{j}" for j in range(p)] if feature_names is None else [str(s) for s in feature_names]
    )
    if len(names) != p:
        raise DataValidationError(f"feature_names has {len(names)} names for {p} columns of X.")
    if not 0 < alpha < 1 or not (0 <= min_share < 1 and 0 <= min_share_randomized < 1):
        raise ValueError(
            "need 0 < alpha < 1 and shares in [0, 1); got alpha, min_share, "
            f"min_share_randomized = {alpha}, {min_share}, {min_share_randomized}."
        )
    given = propensity is not None
    score = None if propensity is None else np.asarray(propensity, dtype=np.float64).ravel()
    if score is not None and (score.shape != (n,) or not np.all((score > 0) & (score < 1))):
        raise DataValidationError("propensity must hold one score in (0, 1) per patient.")
    rng = np.random.default_rng(random_state)
    if n > max_rows:
        keep = np.sort(rng.choice(n, max_rows, replace=False))
        y, t, X, fitted = y[keep], t[keep], X[keep], fitted[keep]
        score = None if score is None else score[keep]
    if score is None:
        score = _estimated_propensity(X, t, n_folds, random_state)
    auc = _auc(score, t)
    share = min_share if auc > _PREDICTABLE_AUC else min_share_randomized
    X = _standardize(X)
    r = y - fitted
    Z = _orthonormal(np.column_stack([np.ones(len(y)), X, t, t[:, None] * X]))
    rows = []
    for j, name in enumerate(names):
        H = _spline(X[:, j])
        if H.shape[1]:
            rows.append((name, "covariate", *_f_test(r, Z, np.column_stack([H, t[:, None] * H]))))
    logit = _standardize(np.log(score / (1 - score))[:, None])[:, 0]
    H = np.column_stack([logit, _spline(logit)])
    rows.append(("propensity", "propensity", *_f_test(r, Z, np.column_stack([H, t[:, None] * H]))))
    f = _standardize(fitted[:, None])[:, 0]
    rows.append(("fitted values", "fitted", *_f_test(r, Z, np.column_stack([f**2, f**3]))))
    features = np.column_stack([X, t, logit]) if given else np.column_stack([X, t])
    rows.append(("flexible model", "flexible", *_flexible(r, features, n_folds, random_state)))
    table = pd.DataFrame(
        rows, columns=["test", "kind", "statistic", "df", "p_value", "share"]
    ).set_index("test")
    table["p_adjusted"] = _holm(table["p_value"].to_numpy())
    table["flagged"] = (table["p_adjusted"] < alpha) & (table["share"] >= share)
    table = table[["kind", "statistic", "df", "p_value", "p_adjusted", "share", "flagged"]]
    flagged = bool(table["flagged"].any())
    worst = _worst_covariate(table)
    verdict = _verdict(table, flagged, worst, given, auc, alpha, share)
    return ModelCheck(table, flagged, verdict, auc, given, alpha, share, worst)


def _arrays(y: Any, t: Any, X: Any, fitted: Any) -> tuple[np.ndarray, ...]:
    y = np.asarray(y, dtype=np.float64).ravel()
    t = np.asarray(t, dtype=np.float64).ravel()
    fitted = np.asarray(fitted, dtype=np.float64).ravel()
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1) if X.ndim != 2 else X
    n = len(y)
    if not (len(t) == len(fitted) == X.shape[0] == n):
        raise DataValidationError(
            f"y, t, X and fitted must describe the same patients; got lengths {n}, {len(t)}, "
            f"{X.shape[0]} and {len(fitted)}."
        )
    for label, a in (("y", y), ("t", t), ("X", X), ("fitted", fitted)):
        if not np.all(np.isfinite(a)):
            raise DataValidationError(
                f"{label} holds non-finite values; the model check needs finite ones."
            )
    if not np.all((t == 0) | (t == 1)):
        raise DataValidationError("t must be 0/1.")
    return y, t, X, fitted


def _standardize(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _spline(x: np.ndarray) -> np.ndarray:
    """Nonlinear columns of a restricted (natural) cubic spline with knots at quantiles
    (Harrell 2015, sec. 2.4.5): ``k`` knots give ``k - 2`` columns, linear beyond the outer
    knots. A covariate with few values gets knots at its values; two or fewer values: none."""
    values = np.unique(x)
    if len(values) <= 2:
        return np.zeros((len(x), 0))
    knots = values if len(values) <= len(_KNOT_QUANTILES) else np.quantile(x, _KNOT_QUANTILES)
    knots = np.unique(knots)
    if len(knots) < 3:
        return np.zeros((len(x), 0))
    k = len(knots)
    scale = (knots[-1] - knots[0]) ** 2

    def cube(u: np.ndarray) -> np.ndarray:
        return np.maximum(u, 0.0) ** 3

    tail = (cube(x - knots[-2]) * (knots[-1] - knots[:, None][: k - 2])
            - cube(x - knots[-1]) * (knots[-2] - knots[:, None][: k - 2]))  # fmt: skip
    cols = [(cube(x - knots[i]) - tail[i] / (knots[-1] - knots[-2])) / scale for i in range(k - 2)]
    return np.column_stack(cols)


def _orthonormal(A: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Orthonormal basis of the column space of ``A``: directions with singular value below
    ``1e-8 * scale`` (default: the largest singular value) are dropped as collinear."""
    u, s, _ = np.linalg.svd(A, full_matrices=False)
    if not s.size:
        return u[:, :0]
    tol = 1e-8 * (s.max() if scale is None else scale)
    return u[:, s > tol] if tol > 0 else u[:, :0]


def _f_test(r: np.ndarray, Z: np.ndarray, H: np.ndarray) -> tuple[float, int, float, float]:
    """F-test of the columns ``H`` for the residuals ``r`` beyond the design with orthonormal
    basis ``Z``.

    Returns the F statistic, its numerator df, the p-value and the share of the (partialled)
    residual sum of squares that ``H`` explains.
    """
    r0 = r - Z @ (Z.T @ r)
    # tolerance on H's own scale: a column inside the span of Z leaves only rounding behind
    u = _orthonormal(H - Z @ (Z.T @ H), scale=float(np.linalg.norm(H, axis=0).max(initial=0)))
    rank = u.shape[1]
    rss0 = float(r0 @ r0)
    if rank == 0 or rss0 <= 0:
        return 0.0, 0, 1.0, 0.0
    explained = float(np.sum((u.T @ r0) ** 2))
    df2 = len(r) - Z.shape[1] - rank
    if df2 <= 0:
        return 0.0, rank, 1.0, 0.0
    F = (explained / rank) / ((rss0 - explained) / df2)
    return float(F), rank, float(stats.f.sf(F, rank, df2)), explained / rss0


def _flexible(
    r: np.ndarray, features: np.ndarray, n_folds: int, random_state: int
) -> tuple[float, int, float, float]:
    """Cross-fitted boosted trees on the residuals: paired z-test of the squared errors.

    ``d_i = r_i^2 - (r_i - rhat_i)^2`` with ``rhat_i`` from a model that never saw patient i;
    ``mean(d) > 0`` means the model plus the correction predicts better out of fold.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold

    if len(r) < 10 * n_folds:  # too few patients to cross-fit trees: no evidence either way
        return 0.0, 0, 1.0, 0.0
    rhat = np.zeros_like(r)
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    for train, test in folds.split(features):
        booster = HistGradientBoostingRegressor(
            max_depth=3, learning_rate=0.05, max_iter=150, min_samples_leaf=20,
            random_state=random_state,
        )  # fmt: skip
        rhat[test] = booster.fit(features[train], r[train]).predict(features[test])
    d = r**2 - (r - rhat) ** 2
    sd = float(d.std(ddof=1))
    z = float(np.sqrt(len(d)) * d.mean() / sd) if sd > 0 else 0.0
    return z, n_folds, float(stats.norm.sf(z)), float(d.mean() / np.mean(r**2))


def _estimated_propensity(X: np.ndarray, t: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    from itelib.propensity import estimate_propensity

    if min(t.sum(), len(t) - t.sum()) < n_folds:
        return np.full(len(t), np.clip(t.mean(), 0.01, 0.99))
    return estimate_propensity(X, t.astype(int), n_folds=n_folds, random_state=seed)


def _auc(score: np.ndarray, t: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(t, score)) if 0 < t.sum() < len(t) else 0.5


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def _worst_covariate(table: pd.DataFrame) -> str | None:
    cov = table[table["kind"] == "covariate"]
    if cov.empty:
        return None
    return str(cov.sort_values(["flagged", "share"], ascending=False).index[0])


def _verdict(
    table: pd.DataFrame,
    flagged: bool,
    worst: str | None,
    given: bool,
    auc: float,
    alpha: float,
    min_share: float,
) -> str:
    if not flagged:
        return (
            "model check passed: no structure explaining >= "
            f"{min_share:.0%} of the residual variance at family-wise level {alpha:g}."
        )
    hits = table[table["flagged"]]
    found = ", ".join(f"{name} {row.share:.0%}" for name, row in hits.iterrows())
    predictable = auc > _PREDICTABLE_AUC
    estimate = (
        f'fit(..., propensity="estimate") (treatment is predictable from the covariates, '
        f"AUC {auc:.2f})"
    )
    if (hits["kind"] == "covariate").any():
        where = f"nonlinear in {worst!r}"
        fix = 'refit with HierarchicalITE(prognosis="additive")'
        fix += f" and {estimate}" if predictable and not given else ""
    else:  # only the propensity, fitted values or the trees: not one covariate's curve
        top = table[table["kind"] == "covariate"]["share"]
        largest = f"; the most against one covariate: {worst!r}, {top.max():.0%}" if worst else ""
        where = f"not carried by any single covariate{largest}"
        fix = "compare with a flexible prognosis (BayesianCausalForest); "
        fix += 'prognosis="additive" may not remove an interaction'
        fix += f", and {estimate}" if predictable and not given else ""
    bias = (
        "the effect and its modifiers may have absorbed the misfit and report heterogeneity "
        "that is not there"
        if predictable
        else "in randomized data this costs precision, not bias"
    )
    return (
        f"the fitted prognosis leaves structure in the residuals, {where} (share of the "
        f"residual variance explained: {found}); {bias}. Fix: {fix}, and compare the effects. "
        "est.check() shows the table."
    )
