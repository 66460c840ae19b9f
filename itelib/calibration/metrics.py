"""Accuracy and calibration metrics for posterior draws of individual treatment effects.

Pure NumPy. ``draws`` has shape ``(..., n_samples, n_patients)``: ``(chain, draw, patient)``
or ``(sample, patient)``; leading sample dimensions are flattened. ``truth`` has shape
``(n_patients,)``. Anything :func:`numpy.asarray` accepts works (pandas, xarray).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from itelib.exceptions import DataValidationError

__all__ = [
    "DEFAULT_LEVELS",
    "CalibrationMetrics",
    "ate_error",
    "coverage",
    "crps",
    "interval_width",
    "metrics",
    "pit",
    "sqrt_pehe",
]

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)
"""Nominal levels of the central intervals whose coverage is reported by default."""

FloatArray = NDArray[np.float64]


class CalibrationMetrics(NamedTuple):
    """Accuracy and calibration of one set of effect draws against the true effects.

    Attributes
    ----------
    sqrt_pehe : float
        Root mean squared error of the posterior mean effect over patients (sqrt-PEHE).
    ate_error : float
        Posterior mean of the sample average effect minus the true sample average effect.
    coverage : dict of float to float
        Share of patients whose true effect lies in the central equal-tailed interval,
        by nominal level.
    width95 : float
        Mean width of the central 95 % intervals.
    crps : float
        Mean continuous ranked probability score over patients (lower is better).
    pit_ks : float
        Kolmogorov-Smirnov distance between the patients' mid-rank PIT values and U(0, 1).
    """

    sqrt_pehe: float
    ate_error: float
    coverage: dict[float, float]
    width95: float
    crps: float
    pit_ks: float


def sqrt_pehe(estimate: ArrayLike, truth: ArrayLike) -> float:
    """Root of the precision in estimating heterogeneous effects (PEHE).

    Parameters
    ----------
    estimate : array_like
        Point estimates, shape ``(n_patients,)``, or draws of shape ``(..., n_samples,
        n_patients)``, in which case the posterior mean is used.
    truth : array_like
        True effects, shape ``(n_patients,)``.

    Returns
    -------
    float
        ``sqrt(mean((estimate - truth) ** 2))``.
    """
    t = _truth(truth)
    return _sqrt_pehe(_point(estimate, t.size), t)


def ate_error(draws_or_estimate: ArrayLike, truth: ArrayLike) -> float:
    """Signed error of the estimated sample average effect.

    Parameters
    ----------
    draws_or_estimate : array_like
        Draws ``(..., n_samples, n_patients)`` or point estimates ``(n_patients,)``.
    truth : array_like
        True effects, shape ``(n_patients,)``.

    Returns
    -------
    float
        Posterior mean of the sample average effect minus ``mean(truth)`` (positive:
        overestimate).
    """
    t = _truth(truth)
    return _ate_error(_point(draws_or_estimate, t.size, name="draws_or_estimate"), t)


def coverage(
    draws: ArrayLike, truth: ArrayLike, levels: Iterable[float] = DEFAULT_LEVELS
) -> dict[float, float]:
    """Share of patients whose true effect lies in their central posterior interval.

    Intervals are equal-tailed, from the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles
    of the draws (linear interpolation), closed at both ends.

    Parameters
    ----------
    draws : array_like
        Shape ``(..., n_samples, n_patients)``.
    truth : array_like
        Shape ``(n_patients,)``.
    levels : iterable of float, default (0.5, 0.8, 0.9, 0.95)
        Nominal levels, each in (0, 1).

    Returns
    -------
    dict of float to float
        Coverage by level, in the order given.
    """
    t = _truth(truth)
    return _coverage(_draws(draws, t.size), t, _levels(levels))


def interval_width(draws: ArrayLike, level: float = 0.95) -> float:
    """Mean width of the central equal-tailed posterior intervals.

    Parameters
    ----------
    draws : array_like
        Shape ``(..., n_samples, n_patients)``.
    level : float, default 0.95
        Nominal level in (0, 1).

    Returns
    -------
    float
    """
    d = _draws(draws, None)
    (lev,) = _levels([level], name="level")
    lower, upper = _bounds(d, (lev,))
    return float(np.mean(upper[0] - lower[0]))


def crps(draws: ArrayLike, truth: ArrayLike, *, per_patient: bool = False) -> float | FloatArray:
    """Continuous ranked probability score of the draws' empirical distribution.

    Uses the energy form ``CRPS = E|X - y| - 0.5 E|X - X'|`` with ``X, X'`` independent
    draws from the empirical distribution (all ``S**2`` pairs, so it is exactly the CRPS of
    the empirical CDF; a point mass at ``x`` scores ``|x - y|``). ``E|X - X'|`` is computed
    from the sorted draws as ``2 / S**2 * sum_k k (S - k) (x_(k+1) - x_(k))``, which costs
    ``O(S log S)`` per patient instead of ``O(S**2)``.

    Parameters
    ----------
    draws : array_like
        Shape ``(..., n_samples, n_patients)``.
    truth : array_like
        Shape ``(n_patients,)``.
    per_patient : bool, default False
        Return the score of every patient instead of their mean.

    Returns
    -------
    float or numpy.ndarray
        Mean CRPS over patients (same units as the effect; lower is better), or the
        ``(n_patients,)`` scores.
    """
    t = _truth(truth)
    scores = _crps(_draws(draws, t.size), t)
    return scores if per_patient else float(scores.mean())


def pit(draws: ArrayLike, truth: ArrayLike, rng: np.random.Generator | None = None) -> FloatArray:
    """Probability integral transform of each true effect under its posterior draws.

    ``PIT = (#{draws < truth} + V * #{draws == truth}) / S``, with ``V = 0.5`` (mid-rank)
    by default, or ``V ~ U(0, 1)`` per patient (randomized PIT) when ``rng`` is given. For a
    calibrated posterior the values are close to uniform on [0, 1].

    Parameters
    ----------
    draws : array_like
        Shape ``(..., n_samples, n_patients)``.
    truth : array_like
        Shape ``(n_patients,)``.
    rng : numpy.random.Generator, optional
        Source of the tie-breaking uniforms; None uses mid-ranks (deterministic).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_patients,)``, values in [0, 1].
    """
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator or None; got {type(rng).__name__}")
    t = _truth(truth)
    return _pit(_draws(draws, t.size), t, rng)


def metrics(
    draws: ArrayLike, truth: ArrayLike, levels: Iterable[float] = DEFAULT_LEVELS
) -> CalibrationMetrics:
    """All metrics of one set of effect draws against the true effects.

    Parameters
    ----------
    draws : array_like
        Shape ``(..., n_samples, n_patients)``, e.g. ``(chain, draw, patient)``.
    truth : array_like
        True effects, shape ``(n_patients,)``.
    levels : iterable of float, default (0.5, 0.8, 0.9, 0.95)
        Nominal levels for ``coverage``.

    Returns
    -------
    CalibrationMetrics
        ``sqrt_pehe``, ``ate_error``, ``coverage``, ``width95``, ``crps`` and ``pit_ks``
        (the PIT uses mid-ranks, so the result is deterministic).
    """
    t = _truth(truth)
    d = _draws(draws, t.size)
    point = d.mean(axis=0)
    lower, upper = _bounds(d, (0.95,))
    return CalibrationMetrics(
        sqrt_pehe=_sqrt_pehe(point, t),
        ate_error=_ate_error(point, t),
        coverage=_coverage(d, t, _levels(levels)),
        width95=float(np.mean(upper[0] - lower[0])),
        crps=float(_crps(d, t).mean()),
        pit_ks=_ks_uniform(_pit(d, t, None)),
    )


# --- computations on validated arrays: draws (S, n), truth (n,) ---------------------------


def _sqrt_pehe(point: FloatArray, t: FloatArray) -> float:
    return float(np.sqrt(np.mean((point - t) ** 2)))


def _ate_error(point: FloatArray, t: FloatArray) -> float:
    return float(np.mean(point) - np.mean(t))


def _bounds(d: FloatArray, levels: tuple[float, ...]) -> tuple[FloatArray, FloatArray]:
    """Lower and upper central-interval bounds, each of shape ``(len(levels), n)``."""
    lev = np.asarray(levels)
    q = np.quantile(d, np.concatenate([(1.0 - lev) / 2.0, (1.0 + lev) / 2.0]), axis=0)
    return q[: lev.size], q[lev.size :]


def _coverage(d: FloatArray, t: FloatArray, levels: tuple[float, ...]) -> dict[float, float]:
    lower, upper = _bounds(d, levels)
    inside = (lower <= t) & (t <= upper)
    return {lev: float(frac) for lev, frac in zip(levels, inside.mean(axis=1), strict=True)}


def _crps(d: FloatArray, t: FloatArray) -> FloatArray:
    s = d.shape[0]
    abs_error = np.abs(d - t).mean(axis=0)
    if s == 1:
        return abs_error
    ordered = np.sort(d, axis=0)
    k = np.arange(1, s, dtype=np.float64)[:, None]
    mean_pair = 2.0 / s**2 * np.sum(k * (s - k) * np.diff(ordered, axis=0), axis=0)
    # the exact value is >= 0; the clip only removes round-off when the two terms nearly cancel
    return np.maximum(abs_error - 0.5 * mean_pair, 0.0)


def _pit(d: FloatArray, t: FloatArray, rng: np.random.Generator | None) -> FloatArray:
    below = np.count_nonzero(d < t, axis=0)
    ties = np.count_nonzero(d == t, axis=0)
    v = 0.5 if rng is None else rng.uniform(size=t.size)
    return (below + v * ties) / d.shape[0]


def _ks_uniform(values: FloatArray) -> float:
    """Kolmogorov-Smirnov distance ``sup |F_n(u) - u|`` of values in [0, 1] from U(0, 1)."""
    u = np.sort(values)
    n = u.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


# --- validation -------------------------------------------------------------------------------


def _as_finite(value: ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(
            f"`{name}` must be a numeric array; got {type(value).__name__} that NumPy cannot "
            "convert to float"
        ) from exc
    bad = arr.size - np.count_nonzero(np.isfinite(arr))
    if bad:
        raise DataValidationError(
            f"`{name}` contains {bad} non-finite value(s) (NaN or inf) out of {arr.size}; "
            "drop or fix them (non-finite draws usually mean a failed fit)"
        )
    return arr


def _truth(truth: ArrayLike) -> FloatArray:
    t = _as_finite(truth, "truth")
    if t.ndim != 1 or t.size == 0:
        raise DataValidationError(
            f"`truth` must be a non-empty 1-d array of per-patient effects; got shape {t.shape}"
        )
    return t


def _draws(draws: ArrayLike, n_patients: int | None, name: str = "draws") -> FloatArray:
    d = _as_finite(draws, name)
    if d.ndim < 2 or d.size == 0:
        raise DataValidationError(
            f"`{name}` must have shape (..., n_samples, n_patients), e.g. (chain, draw, "
            f"patient), with at least one draw; got shape {d.shape}"
        )
    if n_patients is not None and d.shape[-1] != n_patients:
        raise DataValidationError(
            f"`{name}` has {d.shape[-1]} patients on its last axis (shape {d.shape}) but "
            f"`truth` has {n_patients}; put patients last and pass matching truth"
        )
    return d.reshape(-1, d.shape[-1])


def _point(value: ArrayLike, n_patients: int, name: str = "estimate") -> FloatArray:
    """A point estimate per patient: the array itself if 1-d, else the posterior mean."""
    arr = np.asarray(value)
    if arr.ndim >= 2:
        return _draws(arr, n_patients, name).mean(axis=0)
    est = _as_finite(arr, name)
    if est.shape != (n_patients,):
        raise DataValidationError(
            f"`{name}` has shape {est.shape} but `truth` has {n_patients} patients; pass one "
            "estimate per patient or draws of shape (..., n_samples, n_patients)"
        )
    return est


def _levels(levels: Iterable[float], name: str = "levels") -> tuple[float, ...]:
    try:
        seq = [levels] if isinstance(levels, numbers.Real) else list(levels)
        out = tuple(float(level) for level in seq)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"`{name}` must be numbers in (0, 1); got {levels!r}") from exc
    if not out or not all(0.0 < level < 1.0 for level in out):
        raise DataValidationError(f"`{name}` must be non-empty numbers in (0, 1); got {levels!r}")
    return out
