"""Missing covariates: refused with every incomplete column, its count and the options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from itelib.data import TrialData
from itelib.exceptions import DataValidationError, MissingCovariatesError
from itelib.missing import missing_cells


def _frame(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "y": np.linspace(0.0, 1.0, n) ** 2,
            "t": np.resize([0, 1], n),
            "age": np.linspace(40.0, 80.0, n),
            "stage": np.resize(["I", "II", "III"], n).astype(object),
            "bmi": np.resize([22.0, 31.0, 27.0, 24.0, 29.0], n),
        },
        index=pd.Index([f"p{i:02d}" for i in range(n)], name="patient"),
    )


def test_every_incomplete_column_and_its_count_in_one_message():
    df = _frame()
    df.loc[["p01", "p04"], "age"] = np.nan
    df.loc["p07", "stage"] = None
    df.loc[["p04", "p09", "p10"], "bmi"] = [np.nan, np.inf, np.nan]
    with pytest.raises(MissingCovariatesError) as info:
        TrialData.from_frame(df, outcome="y", treatment="t", categorical=["stage"])
    err = info.value
    assert isinstance(err, DataValidationError)  # what callers already catch
    msg = str(err)
    for part in (
        "3 covariates have missing values",
        "covariate 'age' has missing or non-finite values (NaN, NA, None or inf) for 2 patients "
        "(patient ids: 'p01', 'p04')",
        "covariate 'stage' has missing or non-finite values (NaN, NA, None or inf) for 1 patient "
        "(patient ids: 'p07')",
        "covariate 'bmi' has missing or non-finite values (NaN, NA, None or inf) for 3 patients",
        "7 of 12 patients have every covariate",
        "df.dropna(subset=['age', 'stage', 'bmi'])",
        "replace inf with NaN first",
        "leave these covariates out of X",
        "impute the values",
    ):
        assert part in msg, part
    assert err.counts == {"age": 2, "stage": 1, "bmi": 3}
    assert err.first_ids["age"] == ["p01", "p04"]
    assert (err.n_patients, err.n_complete) == (12, 7)


def test_one_column_keeps_the_single_column_wording():
    df = _frame()
    df.loc["p03", "age"] = np.nan
    with pytest.raises(MissingCovariatesError, match="1 covariate has missing values") as info:
        TrialData.from_frame(df, outcome="y", treatment="t", categorical=["stage"])
    assert "leave this covariate out of X" in str(info.value)
    assert "inf" not in str(info.value).split("Fix")[1]  # no inf, no word on replacing it


def test_new_patients_are_checked_the_same_way_and_only_on_covariates():
    df = _frame()
    data = TrialData.from_frame(df, outcome="y", treatment="t", categorical=["stage"])
    new = df.iloc[:4].assign(age=[np.nan, 50.0, np.nan, 60.0], stage=["I", None, "II", "I"])
    with pytest.raises(MissingCovariatesError) as info:
        data.transform(new)
    assert info.value.counts == {"age": 2, "stage": 1}
    # a gap in a column the model does not use is no gap
    X, _, _ = data.transform(df.iloc[:4].assign(notes=[None, "x", None, None]))
    assert X.shape == (4, data.p)


def test_missing_cells_masks_nan_na_none_and_inf_only():
    frame = pd.DataFrame(
        {
            "a": [1.0, np.nan, np.inf],
            "b": pd.array([1, pd.NA, 3], dtype="Int64"),
            "c": ["x", None, "z"],
            "d": [1.0, 2.0, 3.0],
        }
    )
    masks = missing_cells(frame, list(frame.columns))
    assert set(masks) == {"a", "b", "c"}
    assert masks["a"].tolist() == [False, True, True]
    assert masks["b"].tolist() == [False, True, False]
