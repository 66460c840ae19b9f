"""Calibration of effect posteriors against known truth: accuracy and calibration metrics."""

from __future__ import annotations

from itelib.calibration.metrics import (
    DEFAULT_LEVELS,
    CalibrationMetrics,
    ate_error,
    coverage,
    crps,
    interval_width,
    metrics,
    pit,
    sqrt_pehe,
)

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
