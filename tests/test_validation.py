"""Tests for itelib._validation: every check's message names the argument, the count, the
first patient ids and the fix."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itelib import _validation as v
from itelib.exceptions import DataValidationError

IDS = pd.Index([f"p{i}" for i in range(8)])


def _series(values, dtype=None, index=None):
    index = IDS[: len(values)] if index is None else index
    return pd.Series(values, index=index, dtype=dtype)


# --------------------------------------------------------------------------- formatting
def test_format_ids_shows_count_and_first_five_ids():
    mask = np.array([True, False, True, True, True, True, True, True])
    text = v.format_ids(IDS, mask)
    assert text.startswith("7 patients")
    assert "'p0', 'p2', 'p3', 'p4', 'p5'" in text
    assert "'p6'" not in text and "and 2 more" in text


def test_format_ids_singular_and_numpy_ids_are_plain():
    text = v.format_ids(pd.Index(np.array([10, 11], dtype=np.int64)), np.array([False, True]))
    assert text == "1 patient (patient ids: 11)"


def test_sorted_levels_natives_and_mixed_types():
    assert v.sorted_levels(np.array([3, 1, 3, 2])) == (1, 2, 3)
    assert all(type(x) is int for x in v.sorted_levels(np.array([3, 1])))
    mixed = v.sorted_levels([1, "a", 1])
    assert set(mixed) == {1, "a"} and len(mixed) == 2


# --------------------------------------------------------------------------- coercion
def test_as_series_accepts_one_column_frame_and_column_vector():
    s, name, is_pd = v.as_series(pd.DataFrame({"bp": [1.0, 2.0]}), argument="Y")
    assert (name, is_pd, s.tolist()) == ("bp", True, [1.0, 2.0])
    s, name, is_pd = v.as_series(np.array([[1.0], [2.0]]), argument="Y")
    assert (name, is_pd, s.tolist()) == ("Y", False, [1.0, 2.0])


def test_as_series_rejects_multi_column_frame_naming_columns():
    with pytest.raises(DataValidationError, match=r"Y must be one column.*2 columns.*'a', 'b'"):
        v.as_series(pd.DataFrame({"a": [1], "b": [2]}), argument="Y")


def test_as_series_rejects_2d_array_with_shape():
    with pytest.raises(DataValidationError, match=r"T must be 1-d.*\(3, 2\).*Fix"):
        v.as_series(np.zeros((3, 2)), argument="T")


def test_as_frame_rejects_1d_array():
    with pytest.raises(DataValidationError, match=r"X must be 2-d.*shape \(4,\).*reshape"):
        v.as_frame(np.zeros(4), argument="X")


@pytest.mark.parametrize("obj, got", [(None, "None"), (pd.Series([1.0]), "a pandas Series")])
def test_as_frame_rejects_series_and_none(obj, got):
    with pytest.raises(DataValidationError, match=f"X must be a DataFrame.*received {got}"):
        v.as_frame(obj, argument="X")


def test_as_frame_names_array_columns_and_checks_width():
    frame, is_pd = v.as_frame(np.zeros((2, 3)), argument="X")
    assert list(frame.columns) == ["x0", "x1", "x2"] and not is_pd
    frame, _ = v.as_frame(np.zeros((2, 2)), argument="X", columns=("age", "bmi"))
    assert list(frame.columns) == ["age", "bmi"]
    with pytest.raises(DataValidationError, match=r"3 columns.*trained on 2.*'age', 'bmi'"):
        v.as_frame(np.zeros((2, 3)), argument="X", columns=("age", "bmi"))


def test_as_frame_rejects_duplicate_column_names():
    df = pd.DataFrame([[1, 2, 3]], columns=["a", "a", "b"])
    with pytest.raises(DataValidationError, match=r"X has duplicate column names \['a'\]"):
        v.as_frame(df, argument="X")


def test_as_frame_stringifies_column_names_without_mutating():
    df = pd.DataFrame({0: [1.0], 1: [2.0]})
    frame, _ = v.as_frame(df, argument="X")
    assert list(frame.columns) == ["0", "1"]
    assert list(df.columns) == [0, 1]


# --------------------------------------------------------------------------- structure
def test_check_nonempty():
    with pytest.raises(DataValidationError, match=r"df has 0 rows \(0 patients\).*Fix"):
        v.check_nonempty(0, argument="df")
    v.check_nonempty(1, argument="df")


def test_check_unique_ids_lists_repeated_ids_and_count():
    ids = pd.Index(["a", "b", "a", "c", "b", "d"])
    with pytest.raises(DataValidationError) as info:
        v.check_unique_ids(ids, argument="df")
    msg = str(info.value)
    assert "df has duplicate patient ids" in msg
    assert "4 rows share 2 id(s) (patient ids: 'a', 'b')" in msg
    assert "reset_index(drop=True)" in msg


def test_check_same_length_names_both_and_lengths():
    with pytest.raises(DataValidationError, match=r"Y has 5 rows but X has 4 rows.*Fix"):
        v.check_same_length({"Y": 5, "T": 5, "X": 4})
    v.check_same_length({"Y": 3, "T": 3})


def test_check_same_index_reports_foreign_ids():
    a, b = pd.Index([1, 2, 3]), pd.Index([1, 2, 9])
    with pytest.raises(DataValidationError) as info:
        v.check_same_index({"Y": a, "X": b})
    msg = str(info.value)
    assert "Y and X have different indexes" in msg
    assert "1 patient (patient ids: 9) of X" in msg
    assert "reindex" in msg and "reset_index(drop=True)" in msg


def test_check_same_index_reports_reordering():
    with pytest.raises(DataValidationError, match="same ids in a different order"):
        v.check_same_index({"Y": pd.Index([1, 2]), "T": pd.Index([2, 1])})
    v.check_same_index({"Y": pd.RangeIndex(3), "T": pd.Index([0, 1, 2])})


def test_check_columns_exist_lists_missing_and_available():
    with pytest.raises(DataValidationError) as info:
        v.check_columns_exist(["y", "t", "age"], ["age", "sex", "bmi"], argument="covariates")
    msg = str(info.value)
    assert "['sex', 'bmi'] not found (2 missing)" in msg
    assert "available columns are ['y', 't', 'age']" in msg


def test_align_ids_takes_first_pandas_index_and_checks_it():
    y = np.zeros(3)
    t = pd.Series([0, 1, 0], index=["a", "b", "c"])
    ids = v.align_ids({"Y": (pd.Series(y), False), "T": (t, True)})
    assert list(ids) == ["a", "b", "c"]
    assert isinstance(v.align_ids({"Y": (pd.Series(y), False)}), pd.RangeIndex)
    dup = pd.Series([0, 1, 0], index=["a", "a", "c"])
    with pytest.raises(DataValidationError, match=r"T has duplicate patient ids.*'a'"):
        v.align_ids({"Y": (pd.Series(y), False), "T": (dup, True)})


# --------------------------------------------------------------------------- values
def test_as_float_converts_ints_bools_and_object_numbers():
    assert v.as_float(_series([1, 2]), label="x", fix="f").dtype == np.float64
    assert v.as_float(_series([True, False]), label="x", fix="f").tolist() == [1.0, 0.0]
    got = v.as_float(_series([1, 2.5], dtype=object), label="x", fix="f")
    assert got.tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([1, pd.NA, 3, pd.NA], "Int64"),
        ([1.0, pd.NA, 3.0, pd.NA], "Float64"),
        ([True, pd.NA, False, pd.NA], "boolean"),
        ([1.0, None, 2.0, None], object),
        ([1.0, np.nan, 2.0, np.inf], None),
        ([1.0, -np.inf, 2.0, np.nan], None),
    ],
)
def test_as_float_missing_and_nonfinite_name_label_count_ids(values, dtype):
    with pytest.raises(DataValidationError) as info:
        v.as_float(_series(values, dtype=dtype), label="covariate 'age'", fix="f")
    msg = str(info.value)
    assert msg.startswith("covariate 'age' has missing or non-finite values")
    assert "2 patients (patient ids: 'p1', 'p3')" in msg
    assert "Fix: drop these patients or impute" in msg


@pytest.mark.parametrize(
    "values",
    [["a", "b", "c"], pd.Series([1, "x", 2], dtype=object), pd.to_datetime(["2020"] * 3)],
)
def test_as_float_rejects_non_numeric_with_fix(values):
    series = pd.Series(list(values), index=IDS[:3])
    with pytest.raises(DataValidationError) as info:
        v.as_float(series, label="covariate 'stage'", fix="pass categorical=['stage']")
    msg = str(info.value)
    assert "covariate 'stage' must be numeric" in msg
    assert "patient" in msg and "'p" in msg
    assert msg.endswith("Fix: pass categorical=['stage']")


def test_as_float_non_numeric_lists_only_offending_rows():
    series = _series([1, "x", 2.0, "y"], dtype=object)
    with pytest.raises(DataValidationError, match=r"2 patients \(patient ids: 'p1', 'p3'\)"):
        v.as_float(series, label="outcome 'y'", fix="f")


def test_as_float_rejects_complex():
    with pytest.raises(DataValidationError, match="must be numeric.*complex"):
        v.as_float(_series([1 + 1j, 2j]), label="outcome 'y'", fix="f")


def test_check_no_missing_on_strings():
    with pytest.raises(DataValidationError, match=r"site 's' has missing.*1 patient.*'p1'"):
        v.check_no_missing(_series(["a", None, "b"]), label="site 's'")


def test_check_known_levels_unseen_and_allow_new():
    series = _series(["a", "z", "b", "z", "y"])
    with pytest.raises(DataValidationError) as info:
        v.check_known_levels(series, ("a", "b"), label="site 's'", fix="do X.")
    msg = str(info.value)
    assert "site 's' has 2 value(s) ['y', 'z'] not seen in training" in msg
    assert "(training values: ['a', 'b'])" in msg
    assert "3 patients (patient ids: 'p1', 'p3', 'p4')" in msg and msg.endswith("Fix: do X.")
    codes = v.check_known_levels(series, ("a", "b"), label="s", fix="f", allow_new=True)
    assert codes.tolist() == [0, -1, 1, -1, -1]


def test_check_finite_features_names_feature():
    values = np.array([[1.0, np.inf], [2.0, 3.0]])
    with pytest.raises(DataValidationError, match=r"\['bmi'\] overflow float64.*Fix"):
        v.check_finite_features(values, ("age", "bmi"), when="after scaling")


# --------------------------------------------------------------------------- treatment
@pytest.mark.parametrize(
    "values, labels",
    [([0, 1, 0, 1], (0, 1)), ([0.0, 1.0, 0.0, 1.0], (0, 1)), ([False, True] * 2, (False, True))],
)
def test_encode_treatment_default_codings(values, labels):
    t, got = v.encode_treatment(_series(values), label="treatment 't'")
    assert t.tolist() == [0.0, 1.0, 0.0, 1.0] and t.dtype == np.float64
    assert got == labels


def test_encode_treatment_explicit_labels():
    values = _series(["drug", "placebo", "drug", "placebo"])
    t, labels = v.encode_treatment(values, label="t", labels=("placebo", "drug"))
    assert t.tolist() == [1.0, 0.0, 1.0, 0.0] and labels == ("placebo", "drug")


def test_encode_treatment_two_strings_suggests_treatment_labels():
    values = _series(["A", "B", "A", "B"])
    with pytest.raises(DataValidationError) as info:
        v.encode_treatment(values, label="treatment 'arm'")
    msg = str(info.value)
    assert "treatment 'arm' has values ['A', 'B'], which are not 0/1 or bool" in msg
    assert "4 patients (patient ids: 'p0', 'p1', 'p2', 'p3')" in msg
    assert "treatment_labels=('A', 'B')" in msg


def test_encode_treatment_three_values():
    with pytest.raises(DataValidationError) as info:
        v.encode_treatment(_series([0, 1, 2, 1, 2, 0]), label="treatment 't'")
    msg = str(info.value)
    assert "has 3 distinct values [0, 1, 2]" in msg and "exactly two" in msg
    assert "2 patients (patient ids: 'p2', 'p4')" in msg


def test_encode_treatment_values_outside_explicit_labels():
    values = _series(["a", "b", "a", "B", "a"])
    pattern = r"3 distinct.*outside treatment_labels=\('a', 'c'\).*2 patients.*'p1', 'p3'"
    with pytest.raises(DataValidationError, match=pattern):
        v.encode_treatment(values, label="t", labels=("a", "c"))


@pytest.mark.parametrize("labels", ["AB", ("a",), ("a", "a"), ("a", None), 5])
def test_encode_treatment_bad_label_pair(labels):
    with pytest.raises(DataValidationError, match="treatment_labels .*Fix"):
        v.encode_treatment(_series(["a", "b"]), label="t", labels=labels)


def test_encode_treatment_single_value():
    with pytest.raises(DataValidationError) as info:
        v.encode_treatment(_series([1, 1, 1]), label="treatment 't'")
    msg = str(info.value)
    assert "only one value (1) across all 3 patients" in msg and "both" in msg


def test_encode_treatment_small_arm_names_patients():
    with pytest.raises(DataValidationError) as info:
        v.encode_treatment(_series([0, 0, 1, 0, 0]), label="treatment 't'")
    msg = str(info.value)
    assert "the treated arm (1) has only 1 patient (patient ids: 'p2')" in msg
    assert "at least 2" in msg


def test_encode_treatment_missing_values():
    with pytest.raises(DataValidationError, match=r"treatment 't' has missing.*'p1'"):
        v.encode_treatment(_series([0, pd.NA, 1, 0, 1], dtype="Int64"), label="treatment 't'")


# --------------------------------------------------------------------------- properties
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), bad=st.sampled_from(["nan", "inf", "-inf", "na"]))
def test_property_injected_missing_always_raises_with_ids(data, n, bad):
    values = data.draw(st.lists(finite, min_size=n, max_size=n))
    rows = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1)))
    ids = pd.Index(data.draw(st.lists(st.integers(), min_size=n, max_size=n, unique=True)))
    series = pd.Series(values, index=ids, dtype="Float64" if bad == "na" else "float64")
    series.iloc[rows] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "na": pd.NA}[bad]
    with pytest.raises(DataValidationError) as info:
        v.as_float(series, label="covariate 'col_z'", fix="f")
    msg = str(info.value)
    assert "covariate 'col_z'" in msg
    assert re.search(rf"\b{len(rows)} patients?\b", msg)
    assert f"patient ids: {ids[rows[0]]}" in msg


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40))
def test_property_finite_values_pass_unchanged(values):
    got = v.as_float(pd.Series(values), label="x", fix="f")
    assert got.dtype == np.float64 and np.array_equal(got, np.array(values, dtype=float))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.booleans(), min_size=4, max_size=40).filter(lambda b: 2 <= sum(b) <= len(b) - 2),
    st.sampled_from([("c", "t"), (0, 1), (5, 2), ("no", "yes")]),
)
def test_property_treatment_labels_round_trip(treated, labels):
    values = pd.Series([labels[1] if b else labels[0] for b in treated])
    t, got = v.encode_treatment(values, label="t", labels=labels)
    assert got == labels and t.tolist() == [float(b) for b in treated]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_property_format_ids_count_and_at_most_five(mask):
    ids = pd.RangeIndex(100, 100 + len(mask))
    text = v.format_ids(ids, np.array(mask))
    count = sum(mask)
    assert text.startswith(f"{count} patient")
    shown = re.search(r"patient ids: ([^)]*)\)", text).group(1)
    numbers = [int(x) for x in re.findall(r"\d+", shown.split("...")[0])]
    assert numbers == [i for i, m in zip(ids, mask, strict=True) if m][: v.MAX_IDS]
