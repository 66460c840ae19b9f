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
from itelib.calibration.sbc import (
    SBCResult,
    UniformityResult,
    ecdf_uniformity,
    hierarchical_sbc,
    plot_ecdf_difference,
    plot_rank_histograms,
    sbc_ranks,
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
    "SBCResult",
    "UniformityResult",
    "ecdf_uniformity",
    "hierarchical_sbc",
    "plot_ecdf_difference",
    "plot_rank_histograms",
    "sbc_ranks",
]
