"""Missing covariate values: refused, every incomplete column named in one message.

itelib never imputes silently: ``missing="impute"`` on an estimator asks for multiple
imputation (:mod:`itelib.imputation`); otherwise this module refuses.

A table with gaps in several columns used to be refused one column per call, so a user needed
as many rounds as columns to learn what was missing; the check below looks at every covariate
first and reports them all, with the patient counts and the options.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from itelib._validation import MAX_IDS, format_ids, format_values, to_native
from itelib.exceptions import MissingCovariatesError

__all__ = ["missing_cells", "refuse_missing", "refuse_missing_categorical"]


def missing_cells(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Column -> boolean mask of its missing (NaN, NA, None) or infinite cells, for every
    column of ``columns`` that has any."""
    masks = {}
    for col in columns:
        series = frame[col]
        mask = series.isna().to_numpy(dtype=bool, copy=True)
        dtype = series.dtype
        if pd.api.types.is_float_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
            with np.errstate(invalid="ignore"):
                mask = mask | np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan))
        if mask.any():
            masks[col] = mask
    return masks


def refuse_missing(frame: pd.DataFrame, columns: Sequence[str], *, argument: str = "X") -> None:
    """Raise :class:`~itelib.exceptions.MissingCovariatesError` if any of ``columns`` has a
    missing or infinite value, naming every such column, its count and the options.

    Parameters
    ----------
    frame : pandas.DataFrame
        Covariates; the index holds the patient ids shown in the message.
    columns : sequence of str
        The covariate columns to look at (extra columns of ``frame`` are not covariates).
    argument : str
        What the frame is called in the message.
    """
    masks = missing_cells(frame, columns)
    if not masks:
        return
    ids = frame.index
    incomplete = np.logical_or.reduce(list(masks.values()))
    clauses = [
        f"covariate '{col}' has missing or non-finite values (NaN, NA, None or inf) for "
        f"{format_ids(ids, mask)}"
        for col, mask in masks.items()
    ]
    names = list(masks)
    n, n_complete = len(ids), int((~incomplete).sum())
    inf_note = (
        " (replace inf with NaN first: dropna keeps it)"
        if any(not frame[c].isna().to_numpy(dtype=bool)[m].all() for c, m in masks.items())
        else ""
    )
    subject = "1 covariate has" if len(names) == 1 else f"{len(names)} covariates have"
    message = (
        f"{argument}: {subject} missing values: {'; '.join(clauses)}. {n_complete} of {n} "
        f"patients have every covariate. itelib never imputes silently. Fix, one of: drop the "
        f"{n - n_complete} incomplete patients (e.g. df.dropna(subset={format_values(names)})"
        f"{inf_note}), which can bias the answer when missingness depends on what was "
        f"observed; leave {'this covariate' if len(names) == 1 else 'these covariates'} out "
        "of X; pass missing='impute' to the estimator (multiple imputation from the "
        "outcome, the treatment and the other covariates; every patient kept); or impute the "
        "values before calling itelib."
    )
    raise MissingCovariatesError(
        message,
        counts={col: int(mask.sum()) for col, mask in masks.items()},
        first_ids={col: [to_native(i) for i in ids[mask][:MAX_IDS]] for col, mask in masks.items()},
        n_patients=n,
        n_complete=n_complete,
    )


def refuse_missing_categorical(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """``missing="impute"`` imputes numeric covariates only: raise
    :class:`~itelib.exceptions.MissingCovariatesError` naming every categorical column of
    ``columns`` with missing cells, and the fix."""
    masks = missing_cells(frame, columns)
    if not masks:
        return
    ids = frame.index
    clauses = [
        f"categorical covariate '{c}' is missing for {format_ids(ids, m)}" for c, m in masks.items()
    ]
    names = list(masks)
    message = (
        f"X: {'; '.join(clauses)}. missing='impute' imputes numeric covariates only (a "
        "category has no Gaussian chained-equation model). Fix: make the missing cells their "
        f"own level (e.g. df[{names[0]!r}] = df[{names[0]!r}].cat.add_categories('missing')"
        f".fillna('missing'), or .fillna('missing') for a text column), or drop these "
        f"patients (df.dropna(subset={format_values(names)}))."
    )
    incomplete = np.logical_or.reduce(list(masks.values()))
    raise MissingCovariatesError(
        message,
        counts={col: int(mask.sum()) for col, mask in masks.items()},
        first_ids={col: [to_native(i) for i in ids[mask][:MAX_IDS]] for col, mask in masks.items()},
        n_patients=len(ids),
        n_complete=int((~incomplete).sum()),
    )
