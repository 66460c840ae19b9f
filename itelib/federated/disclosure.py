"""Small cells: the minimum count of patients behind every indicator (0/1) column.

A categorical level (or a value of a two-valued covariate) held by 1 or 2 patients of an arm
at a site, or by all but 1 or 2 of them, discloses those patients: the indicator column's
cross-products (its row of ``[D, y]' [D, y]``, and its first-round count) are then sums over
those few patients, their covariates, treatment and outcome. Every such column and its
complement therefore needs 0 or at least :data:`MIN_CELL` patients per arm, at the site (both
rounds) and again at the coordinator (DataSHIELD's ``nfilter.tab = 3``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from itelib.exceptions import DisclosureError

__all__ = ["MIN_CELL", "check_cell", "check_site_cells"]

MIN_CELL = 3  # patients per arm and per indicator cell (DataSHIELD's nfilter.tab = 3)


def check_cell(label: Any, column: str, arm: str, count: int, n_arm: int) -> None:
    """Refuse ``count`` (of ``n_arm``) patients of an arm in an indicator cell, or its
    complement, strictly between 0 and :data:`MIN_CELL`."""
    for k, what in ((count, "in"), (n_arm - count, "outside")):
        if 0 < k < MIN_CELL:
            raise DisclosureError(
                f"site {label!r} has {k} {arm} patient(s) {what} the cell {column}; every "
                f"level (or value of a 0/1 column) and its complement needs 0 or at least "
                f"{MIN_CELL} patients per arm (a smaller cell's cross-products are those "
                "patients' covariates, treatment and outcome). Fix: merge rare levels into "
                "another level (or drop the column), or merge the site with another."
            )


def check_site_cells(label: Any, values: Any, t: np.ndarray, column: str, *,
                     categorical: bool) -> None:  # fmt: skip
    """Check every level of one covariate at one site, per arm: a categorical column's levels,
    or a numeric column's two values when it has at most two (a 0/1 column)."""
    values = np.asarray(values, dtype=object if categorical else np.float64)
    levels = list(dict.fromkeys(values.tolist()))
    if not categorical and len(levels) > 2:
        return
    t = np.asarray(t)
    for arm, rows in (("treated", t == 1), ("control", t == 0)):
        n_arm = int(rows.sum())
        for level in levels:
            count = int(np.sum(values[rows] == level))
            check_cell(label, f"{column}={level!r}", arm, count, n_arm)
