"""Central input checks for itelib.

Every check raises :class:`~itelib.exceptions.DataValidationError` with a message that names
the argument or column, says what was received (a count and the first few offending patient
ids, taken from the index) and how to fix it. The functions are small and composable; the data
contract in :mod:`itelib.data` is built from them.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from itelib.exceptions import DataValidationError

MAX_IDS = 5
"""How many offending patient ids a message shows."""

_NUMERIC_INFERRED = frozenset(
    {"integer", "floating", "mixed-integer-float", "boolean", "decimal", "empty"}
)


# --------------------------------------------------------------------------- formatting
def to_native(value: Any) -> Any:
    """Return ``value`` as a plain Python scalar when it is a NumPy scalar."""
    return value.item() if isinstance(value, np.generic) else value


def format_values(values: Iterable[Any], limit: int = 10) -> str:
    """Format values as a short list: ``['a', 'b', ... (12 in all)]``."""
    items = [to_native(v) for v in values]
    shown = ", ".join(repr(v) for v in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def format_ids(ids: pd.Index, mask: np.ndarray | None = None) -> str:
    """Describe the patients a problem concerns: a count and the first ``MAX_IDS`` ids.

    Parameters
    ----------
    ids : pandas.Index
        Patient ids of all rows.
    mask : numpy.ndarray of bool, optional
        Which rows are concerned; all rows when omitted.

    Returns
    -------
    str
        For example ``"3 patients (patient ids: 4, 7, 9)"``.
    """
    selected = ids if mask is None else ids[np.asarray(mask, dtype=bool)]
    count = len(selected)
    shown = ", ".join(repr(to_native(v)) for v in selected[:MAX_IDS])
    more = f", ... and {count - MAX_IDS} more" if count > MAX_IDS else ""
    noun = "patient" if count == 1 else "patients"
    return f"{count} {noun} (patient ids: {shown}{more})"


def sorted_levels(values: Iterable[Hashable]) -> tuple:
    """Unique values as plain Python scalars, sorted (by ``repr`` when types are mixed)."""
    unique = list(dict.fromkeys(to_native(v) for v in values))
    try:
        return tuple(sorted(unique))
    except TypeError:
        return tuple(sorted(unique, key=repr))


# --------------------------------------------------------------------------- coercion
def as_series(obj: Any, *, argument: str) -> tuple[pd.Series, str, bool]:
    """Coerce a 1-d input (Series, one-column DataFrame, 1-d or (n, 1) array) to a Series.

    Returns
    -------
    series : pandas.Series
        The values; the caller's object is never modified.
    name : str
        The Series or column name, else ``argument``.
    is_pandas : bool
        Whether the input carried a pandas index.
    """
    if isinstance(obj, pd.DataFrame):
        if obj.shape[1] != 1:
            raise DataValidationError(
                f"{argument} must be one column; received a DataFrame with {obj.shape[1]} "
                f"columns {format_values(obj.columns)}. Fix: select the column, e.g. df['name']."
            )
        obj = obj.iloc[:, 0]
    if isinstance(obj, pd.Series):
        return obj, argument if obj.name is None else str(obj.name), True
    try:
        arr = np.asarray(obj)
    except ValueError as err:
        raise DataValidationError(
            f"{argument} could not be read as a 1-d array ({err}). "
            "Fix: pass a pandas Series or a 1-d NumPy array."
        ) from err
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataValidationError(
            f"{argument} must be 1-d (one value per patient); received shape {arr.shape}. "
            "Fix: pass a pandas Series or a 1-d array."
        )
    return pd.Series(arr), argument, False


def as_frame(
    obj: Any, *, argument: str, columns: Sequence[str] | None = None
) -> tuple[pd.DataFrame, bool]:
    """Coerce covariates (DataFrame or 2-d array) to a DataFrame with string column names.

    Arrays get the names ``columns`` when given (their width must match), else
    ``x0 .. x{p-1}``. Returns the frame and whether the input carried a pandas index.
    """
    if isinstance(obj, pd.DataFrame):
        names = [str(c) for c in obj.columns]
        dup = pd.Index(names).duplicated(keep=False)
        if dup.any():
            raise DataValidationError(
                f"{argument} has duplicate column names {format_values(set(np.array(names)[dup]))}."
                " Fix: rename the columns so that each name appears once."
            )
        return obj.set_axis(names, axis=1), True
    if isinstance(obj, pd.Series) or obj is None:
        raise DataValidationError(
            f"{argument} must be a DataFrame or a 2-d array (patients x covariates); received "
            f"{'None' if obj is None else 'a pandas Series'}. Fix: {_series_fix(obj, columns)}"
        )
    arr = np.asarray(obj)
    if arr.ndim != 2:
        raise DataValidationError(
            f"{argument} must be 2-d (patients x covariates); received a {arr.ndim}-d array of "
            f"shape {arr.shape}. Fix: pass a DataFrame or a 2-d array; for one covariate use "
            "X.reshape(-1, 1)."
        )
    if columns is None:
        columns = [f"x{j}" for j in range(arr.shape[1])]
    elif len(columns) != arr.shape[1]:
        raise DataValidationError(
            f"{argument} has {arr.shape[1]} columns but the model was trained on "
            f"{len(columns)} covariates {format_values(columns)}. Fix: pass a DataFrame with "
            "these columns, or an array with the columns in this order."
        )
    return pd.DataFrame(arr, columns=list(columns)), False


def _series_fix(obj: Any, columns: Sequence[str] | None) -> str:
    """How to turn a Series into covariates: one patient (a row, indexed by the covariate
    names) becomes a one-row frame; one covariate (a column) a one-column frame."""
    one_patient = "one patient (a row, e.g. df.iloc[0]): pass df.iloc[[0]] or row.to_frame().T"
    if obj is None:
        return "pass a DataFrame of covariates."
    if columns is not None and set(map(str, columns)) <= set(map(str, obj.index)):
        return f"this looks like {one_patient}."
    return f"for {one_patient}; for one covariate (a column): X.to_frame()."


# --------------------------------------------------------------------------- structure
def check_nonempty(n_rows: int, *, argument: str) -> None:
    """Raise when an input has zero rows."""
    if n_rows == 0:
        raise DataValidationError(
            f"{argument} has 0 rows (0 patients); itelib needs patients in both arms. "
            "Fix: pass non-empty data, and check any filtering step that ran before."
        )


def check_unique_ids(ids: pd.Index, *, argument: str) -> None:
    """Raise when patient ids (the index) repeat; the message lists the repeated ids."""
    dup = ids.duplicated(keep=False)
    if dup.any():
        repeated = ids[dup].unique()
        raise DataValidationError(
            f"{argument} has duplicate patient ids in its index: {int(dup.sum())} rows share "
            f"{len(repeated)} id(s) (patient ids: "
            f"{', '.join(repr(to_native(i)) for i in repeated[:MAX_IDS])}"
            f"{', ...' if len(repeated) > MAX_IDS else ''}). Each row must be one patient with "
            "a unique id. Fix: drop the duplicate rows, or call .reset_index(drop=True) if the "
            "index is not a patient id."
        )


def check_same_length(lengths: Mapping[str, int]) -> None:
    """Raise when the named inputs have different numbers of rows."""
    (first, n_first), *rest = lengths.items()
    for name, n in rest:
        if n != n_first:
            raise DataValidationError(
                f"{first} has {n_first} rows but {name} has {n} rows; they must describe the "
                "same patients, one row each. Fix: pass inputs of equal length, where row i "
                "of every argument is patient i."
            )


def check_same_index(indexes: Mapping[str, pd.Index]) -> None:
    """Raise when pandas inputs do not share one index (same ids, same order)."""
    (first, ref), *rest = indexes.items()
    for name, other in rest:
        if other.equals(ref):
            continue
        extra = ~other.isin(ref)
        if extra.any():
            detail = f"{format_ids(other, extra)} of {name} are not in the index of {first}"
        else:
            detail = "they hold the same ids in a different order"
        raise DataValidationError(
            f"{first} and {name} have different indexes (patient ids): {detail}. pandas inputs "
            f"must share one index so that rows line up. Fix: align them, e.g. "
            f"{name} = {name}.reindex({first}.index), or drop the indexes of all inputs with "
            ".reset_index(drop=True)."
        )


def check_columns_exist(
    available: Iterable[Any], requested: Sequence[Any], *, argument: str, fix: str | None = None
) -> None:
    """Raise when columns named in ``requested`` are not in ``available`` (listing those)."""
    present = list(available)
    missing = [c for c in requested if c not in set(present)]
    if missing:
        fix = fix or "check the spelling and pass names exactly as they appear in the columns."
        raise DataValidationError(
            f"{argument}: column(s) {format_values(missing)} not found ({len(missing)} "
            f"missing). The available columns are {format_values(present, limit=30)}. "
            f"Fix: {fix}"
        )


def align_ids(inputs: Mapping[str, tuple[pd.Series | pd.DataFrame, bool]]) -> pd.Index:
    """Check that inputs agree on their rows and return the patient ids.

    ``inputs`` maps argument names to ``(object, is_pandas)``. Lengths must match, pandas
    inputs must share one index (the ids; else a RangeIndex), there must be rows and the ids
    must be unique.
    """
    check_same_length({name: len(obj) for name, (obj, _) in inputs.items()})
    indexes = {name: obj.index for name, (obj, is_pd) in inputs.items() if is_pd}
    if indexes:
        check_same_index(indexes)
    first = next(iter(indexes or inputs))
    ids = indexes[first] if indexes else pd.RangeIndex(len(inputs[first][0]))
    check_nonempty(len(ids), argument=first)
    if isinstance(ids, pd.MultiIndex):
        raise DataValidationError(
            f"{first} has a MultiIndex (levels {format_values(list(ids.names))}): patient ids "
            "must be one level, to label results and to be saved. Fix: "
            "df.index = df.index.to_flat_index().map(lambda ids: '/'.join(map(str, ids))) "
            "(one text id per patient), or df.reset_index()."
        )
    check_unique_ids(ids, argument=first)
    check_id_kind(ids, label=f"{first}'s index (the patient ids)")
    return ids


ID_KINDS = ("string", "integer", "floating")  # what a posterior's patient coordinate can hold


def check_id_kind(ids: pd.Index, *, label: str) -> str:
    """Patient ids of one kind: all strings, all integers or all real numbers (the kinds a
    posterior's patient coordinate holds and a saved file keeps). Checked where the ids come
    in, at ``fit`` and at ``effect`` alike, so ``fit`` never runs to its end only to fail at
    building the posterior; returns pandas' inferred kind."""
    kind = "integer" if isinstance(ids, pd.RangeIndex) else ids.inferred_type
    if kind not in ID_KINDS:
        raise DataValidationError(
            f"{label} must be all integers or all strings (or all real numbers); got "
            f"{kind!r} ids {format_values(ids[:5])}. Fix: one kind of id on every input, e.g. "
            "df.index = df.index.astype(str)."
        )
    return kind


def require_keys(d: Mapping[str, Any], keys: Sequence[str], *, what: str) -> None:
    """Raise when a ``from_dict`` input lacks keys."""
    missing = [k for k in keys if k not in d]
    if missing:
        raise DataValidationError(
            f"{what}.from_dict: {len(missing)} key(s) {format_values(missing)} missing. "
            f"Fix: pass the dict returned by {what}.to_dict()."
        )


# --------------------------------------------------------------------------- values
def _missing_error(label: str, ids: pd.Index, mask: np.ndarray) -> DataValidationError:
    return DataValidationError(
        f"{label} has missing or non-finite values (NaN, NA, None or inf) for "
        f"{format_ids(ids, mask)}. itelib never imputes silently. Fix: drop these patients "
        "or impute the values before calling itelib."
    )


def check_no_missing(values: pd.Series, *, label: str) -> None:
    """Raise when ``values`` holds NaN, None or ``pd.NA``."""
    mask = values.isna().to_numpy(dtype=bool)
    if mask.any():
        raise _missing_error(label, values.index, mask)


def _is_numeric_like(values: pd.Series) -> bool:
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return True
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_complex_dtype(dtype):
        return False
    if pd.api.types.is_numeric_dtype(dtype):
        return True
    if pd.api.types.is_object_dtype(dtype):
        return pd.api.types.infer_dtype(values, skipna=True) in _NUMERIC_INFERRED
    return False


def _is_missing_scalar(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def as_float(values: pd.Series, *, label: str, fix: str) -> np.ndarray:
    """Convert numeric, bool or pandas nullable values to finite float64.

    Parameters
    ----------
    values : pandas.Series
        The values; the index supplies the patient ids in messages.
    label : str
        What the values are, e.g. ``"covariate 'age'"``.
    fix : str
        How to fix non-numeric values, appended to the message.

    Raises
    ------
    DataValidationError
        Non-numeric values, or missing / non-finite values.
    """
    if not _is_numeric_like(values):
        bad = np.fromiter(
            (not (isinstance(v, numbers.Real) or _is_missing_scalar(v)) for v in values),
            dtype=bool,
            count=len(values),
        )
        if not bad.any():
            bad = ~values.isna().to_numpy(dtype=bool)
        offending = values[bad]
        is_text = all(isinstance(x, str) for x in offending)
        if is_text and pd.to_numeric(offending, errors="coerce").notna().all():
            raise DataValidationError(
                f"{label} holds numbers stored as text (dtype {values.dtype}, e.g. "
                f"{format_values(values[bad].iloc[:3])}); itelib does not guess at conversions. "
                "Fix: convert the column with pd.to_numeric(...) before fitting."
            )
        if is_text and {str(x).strip().lower() for x in offending} <= {"true", "false"}:
            raise DataValidationError(
                f"{label} holds True/False stored as text (e.g. "
                f"{format_values(values[bad].iloc[:3])}); pd.to_numeric cannot read them and "
                "itelib does not guess. Fix: convert them to bool before fitting, e.g. "
                "df[col] = df[col].str.strip().str.lower() == 'true' (a bool column is a 0/1 "
                "feature)."
            )
        raise DataValidationError(
            f"{label} must be numeric but has dtype {values.dtype} with non-numeric values "
            f"such as {format_values(values[bad].iloc[:3])} for "
            f"{format_ids(values.index, bad)}. Fix: {fix}"
        )
    try:
        with np.errstate(all="ignore"):
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataValidationError(
            f"{label} could not be converted to float64 ({err}). Fix: {fix}"
        ) from err
    bad = ~np.isfinite(arr)
    if bad.any():
        raise _missing_error(label, values.index, bad)
    return arr


def level_codes(values: pd.Series, levels: Sequence[Hashable]) -> np.ndarray:
    """Position of each value in ``levels`` (int64), ``-1`` where the value is not a level."""
    return pd.Index(list(levels), dtype=object).get_indexer(values.to_numpy(dtype=object))


def check_known_levels(
    values: pd.Series, levels: Sequence[Hashable], *, label: str, fix: str, allow_new: bool = False
) -> np.ndarray:
    """Codes of ``values`` in the training ``levels``; raise on missing or unseen values.

    With ``allow_new`` unseen values get code ``-1`` instead of raising.
    """
    check_no_missing(values, label=label)
    codes = level_codes(values, levels)
    unseen = codes < 0
    if unseen.any() and not allow_new:
        new = sorted_levels(values[unseen].drop_duplicates())
        raise DataValidationError(
            f"{label} has {len(new)} value(s) {format_values(new)} not seen in training "
            f"(training values: {format_values(levels)}) for "
            f"{format_ids(values.index, unseen)}. Fix: {fix}"
        )
    return codes


def check_finite_features(values: np.ndarray, names: Sequence[str], *, when: str) -> None:
    """Raise when a column of ``values`` holds inf or NaN (overflow during scaling)."""
    bad = ~np.isfinite(values).all(axis=0)
    if bad.any():
        raise DataValidationError(
            f"covariate feature(s) {format_values(np.asarray(names)[bad])} overflow float64 "
            f"{when} ({int(bad.sum())} feature(s)). Fix: rescale these columns (change units "
            "or take logs) and check them for unit errors or extreme outliers."
        )


# --------------------------------------------------------------------------- treatment
def _label_pair(labels: Any, *, label: str) -> tuple:
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or len(labels) != 2:
        raise DataValidationError(
            f"treatment_labels for {label} must be a pair (control, treated); received "
            f"{labels!r}. Fix: pass e.g. treatment_labels=('placebo', 'drug')."
        )
    pair = tuple(to_native(v) for v in labels)
    if any(_is_missing_scalar(v) for v in pair) or pair[0] == pair[1]:
        raise DataValidationError(
            f"treatment_labels for {label} must be two distinct, non-missing values; received "
            f"{pair!r}. Fix: pass treatment_labels=(control, treated)."
        )
    return pair


def encode_treatment(
    values: pd.Series, *, label: str, labels: Sequence[Any] | None = None
) -> tuple[np.ndarray, tuple]:
    """Encode a binary treatment as float64 0/1.

    Without ``labels`` the values must be 0/1 (int or float) or bool. Other codings need
    ``labels=(control, treated)``.

    Returns
    -------
    t : numpy.ndarray
        float64 0/1, 1 for the treated label.
    labels : tuple
        ``(control_label, treated_label)``.
    """
    check_no_missing(values, label=label)
    if labels is not None:
        pair = _label_pair(labels, label=label)
    elif pd.api.types.is_bool_dtype(values.dtype):
        pair = (False, True)
    else:
        pair = (0, 1)
    matched = values
    if pair in ((0, 1), (False, True)) and _is_numeric_like(values):
        matched = pd.Series(as_float(values, label=label, fix="recode it to 0/1."), values.index)
    codes = level_codes(matched, pair)
    _check_treatment_values(values, codes, pair, label=label, explicit=labels is not None)
    t = codes.astype(np.float64)
    check_arm_sizes(t, values.index, label=label, labels=pair)
    return t, pair


def _check_treatment_values(
    values: pd.Series, codes: np.ndarray, pair: tuple, *, label: str, explicit: bool
) -> None:
    bad = codes < 0
    if not bad.any():
        return
    found = sorted_levels(values.unique())
    if explicit:
        problem = f"has {len(found)} distinct values {format_values(found)}, some outside "
        problem += f"treatment_labels={pair!r}"
        fix = "keep only the two arms, recode the treatment, or correct treatment_labels"
    elif len(found) > 2:
        problem = f"has {len(found)} distinct values {format_values(found)}; a treatment needs "
        problem += "exactly two (control and treated)"
        fix = "keep only two arms (drop the other patients) or recode the treatment to 0/1"
    else:
        problem = f"has values {format_values(found)}, which are not 0/1 or bool"
        hint = f"treatment_labels={found!r}" if len(found) == 2 else "treatment_labels"
        fix = f"recode it to 0/1, or pass {hint} as (control, treated)"
    raise DataValidationError(
        f"{label} {problem}; values not in {pair!r} for {format_ids(values.index, bad)}. "
        f"Fix: {fix}."
    )


def check_arm_sizes(
    t: np.ndarray, ids: pd.Index, *, label: str, labels: tuple = (0, 1), min_size: int = 2
) -> None:
    """Raise when the treatment has one value only or an arm has fewer than ``min_size``."""
    treated = np.asarray(t) == 1
    arms = (("control", labels[0], ~treated), ("treated", labels[1], treated))
    if treated.all() or not treated.any():
        present = labels[1] if treated.all() else labels[0]
        raise DataValidationError(
            f"{label} has only one value ({present!r}) across all {format_ids(ids)}; a trial "
            "needs two values (a control and a treated arm). Fix: include patients of both "
            "arms, or check the treatment column and treatment_labels."
        )
    for arm, value, mask in arms:
        if mask.sum() < min_size:
            raise DataValidationError(
                f"{label}: the {arm} arm ({value!r}) has only {format_ids(ids, mask)}; each "
                f"arm needs at least {min_size}. Fix: add patients to that arm or check the "
                "treatment coding."
            )
