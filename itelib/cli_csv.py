"""``itelib fit``: from a CSV file and flags to ``fit``'s arguments, with errors in flags.

The library checks the data; what is checked here is what only the command line knows: which
column has which role, what ``--propensity`` and ``--treatment-labels`` name, a patient-id
column left among the covariates, and how to say "drop these rows" to someone holding a CSV.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from itelib._validation import MAX_IDS, format_values
from itelib.exceptions import DataValidationError, MissingCovariatesError

__all__ = [
    "covariates",
    "missing_message",
    "propensity",
    "read_csv",
    "refuse_id_like",
    "split",
    "treatment_labels",
]

_ID_NAME = re.compile(r"(?i)(.*[_\s])?(patient|subject|record|person)?[_\s]?id|pid|mrn")


def split(text: str | None) -> list[str]:
    """Comma-separated names, stripped."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def read_csv(path: Path, id_column: str | None) -> Any:
    """The CSV, indexed by ``--id`` or else by its row numbers as a spreadsheet shows them."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    frame = pd.read_csv(path)
    if id_column is not None:
        _require_column(frame, id_column, "--id", path)
        frame = frame.set_index(id_column)
    else:
        frame.index = pd.RangeIndex(2, len(frame) + 2, name="row")  # the header is row 1
    return frame


def _require_column(frame: Any, column: str, flag: str, path: Path) -> None:
    if column not in frame.columns:
        raise DataValidationError(
            f"{flag} column '{column}' is not in {path.name}; its columns are "
            f"{format_values(list(frame.columns), limit=30)}. Fix: check the spelling."
        )


def propensity(args: argparse.Namespace, frame: Any) -> Any:
    """``--propensity``: None (a randomized trial), ``"estimate"``, or a column's scores."""
    value = args.propensity
    if value is None or value == "estimate":
        return value
    if value not in frame.columns:
        raise DataValidationError(
            f"--propensity takes 'estimate' or a column of known propensity scores; '{value}' "
            f"is not a column of {args.csv.name} (columns: "
            f"{format_values(list(frame.columns), limit=30)}). Fix: --propensity estimate, or "
            "the column's name."
        )
    return frame[value]


def covariates(args: argparse.Namespace, frame: Any) -> list[str]:
    """``--covariates``, or every column without another role."""
    roles = {"--outcome": args.outcome, "--treatment": args.treatment, "--site": args.site,
             "--event": getattr(args, "event", None)}  # fmt: skip
    if args.propensity not in (None, "estimate"):
        roles["--propensity"] = args.propensity
    roles = {flag: col for flag, col in roles.items() if col is not None}
    for flag, col in roles.items():
        _require_column(frame, col, flag, args.csv)
    chosen = split(args.covariates)
    if not chosen:
        return [c for c in frame.columns if c not in set(roles.values())]
    unknown = [c for c in chosen if c not in frame.columns]
    if unknown:
        raise DataValidationError(
            f"--covariates: {format_values(unknown)} not in {args.csv.name} (columns: "
            f"{format_values(list(frame.columns), limit=30)}). Fix: check the spelling."
        )
    clash = [f"'{c}' ({flag})" for flag, c in roles.items() if c in chosen]
    if clash:
        raise DataValidationError(
            f"--covariates lists {', '.join(clash)}, which already have a role. Fix: leave "
            "them out of --covariates."
        )
    return chosen


def refuse_id_like(
    frame: Any, columns: list[str], categorical: list[str], args: argparse.Namespace
) -> None:
    """A covariate that differs on every row and is text, or named like an id, is a patient
    id left among the covariates: say to pass ``--id``, not to one-hot encode it."""
    import pandas as pd

    for col in columns:
        values = frame[col]
        if col in categorical or len(values) < 3 or values.isna().any() or not values.is_unique:
            continue
        text = not pd.api.types.is_numeric_dtype(values.dtype)
        if not (text or _ID_NAME.fullmatch(str(col).strip())):
            continue
        fix = (
            f"pass --id {col} (its values then label the output)"
            if args.id_column is None
            else "leave it out"
        )
        raise DataValidationError(
            f"column '{col}' of {args.csv.name} has a different value on every one of its "
            f"{len(values)} rows, like a patient id, so it cannot describe patients as a "
            f"covariate. Fix: {fix}, or list the covariates with --covariates."
        )


def treatment_labels(text: str | None, values: Any) -> tuple[Any, Any] | None:
    """``--treatment-labels control,treated`` as the column's own values (a CSV's numbers are
    numbers: ``1,2`` means the integers 1 and 2 when the column holds those)."""
    if text is None:
        return None
    labels = split(text)
    if len(labels) != 2:
        raise DataValidationError(
            f"--treatment-labels takes two labels, control first (e.g. --treatment-labels "
            f"placebo,drug); got {text!r}."
        )
    present = {str(v): v for v in values.dropna().unique()}
    return present.get(labels[0], labels[0]), present.get(labels[1], labels[1])


def missing_message(
    err: MissingCovariatesError, args: argparse.Namespace, chosen: list[str]
) -> str:
    """The refusal of missing covariates, in rows of the CSV and flags."""
    rows = args.id_column is None
    parts = []
    for col, count in err.counts.items():
        ids = err.first_ids[col]
        more = ", ..." if count > MAX_IDS else ""
        noun = ("row" if rows else "patient") + ("" if count == 1 else "s")
        parts.append(f"'{col}' on {count} {noun} ({', '.join(map(str, ids))}{more})")
    complete = [c for c in chosen if c not in err.counts]
    n_out = err.n_patients - err.n_complete
    options = [
        f"delete the {n_out} incomplete {'rows' if rows else 'patients'} from the CSV (which "
        "can bias the answer when missingness depends on what was observed)"
    ]
    if complete:
        options.append(f"leave the column(s) out: --covariates {','.join(complete)}")
    if not str(err).startswith("X: categorical covariate"):  # (not the imputer's refusal)
        options.append(
            "--missing impute (multiple imputation from the outcome, the treatment and the "
            "other covariates; every row kept; --imputations M sets how many, default 5)"
        )
    else:
        options.append(str(err).split("Fix: ", 1)[-1].rstrip("."))
    options.append("impute the values before running itelib")
    return (
        f"{len(err.counts)} covariate column(s) of {args.csv.name} have missing values: "
        f"{'; '.join(parts)}. {err.n_complete} of {err.n_patients} patients have every "
        f"covariate. itelib never imputes silently. Fix, one of: {'; '.join(options)}."
    )
