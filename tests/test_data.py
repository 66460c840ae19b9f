"""Tests for itelib.data: the data contract (TrialData, CovariateEncoder, SiteIndex)."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itelib.data import CovariateEncoder, SiteIndex, TrialData
from itelib.exceptions import DataValidationError, DataWarning


def make_frame(n: int = 12, seed: int = 0) -> pd.DataFrame:
    """A small trial with every kind of column, indexed by string patient ids."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sbp": rng.normal(140.0, 15.0, n),
            "arm": np.resize([0, 1, 1, 0, 1, 0], n),  # both arms in every centre
            "age": rng.normal(60.0, 10.0, n),
            "sex": pd.Categorical(np.tile(["F", "F", "M", "M"], n // 4)),  # not collinear
            "smoker": np.tile([True, False, False, True], n // 4),
            "stage": np.tile(["I", "II", "III"], n // 3),
            "centre": np.tile(["oslo", "bergen", "oslo", "tromso"], n // 4),
        },
        index=pd.Index([f"p{i:02d}" for i in range(n)], name="patient"),
    )


def fit_frame(df: pd.DataFrame, **kwargs) -> TrialData:
    args = dict(outcome="sbp", treatment="arm", site="centre", categorical=["stage"])
    return TrialData.from_frame(df, **{**args, **kwargs})


def raises(match_all: list[str], fn, *args, **kwargs) -> str:
    """Call ``fn`` expecting a DataValidationError whose message contains every string."""
    with pytest.raises(DataValidationError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for part in match_all:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- behaviour
def test_from_frame_encodes_and_standardizes():
    df = make_frame()
    data = fit_frame(df)
    assert data.feature_names == ("age", "sex[M]", "smoker", "stage[II]", "stage[III]")
    assert (data.n, data.p, data.n_sites) == (12, 5, 3)
    assert data.X.dtype == np.float64 and data.X.shape == (12, 5)
    np.testing.assert_allclose(data.X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.X.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(data.y, df["sbp"].to_numpy())
    np.testing.assert_array_equal(data.t, df["arm"].to_numpy(dtype=float))
    assert data.patient_ids.equals(df.index)
    assert data.site_index.levels == ("bergen", "oslo", "tromso")
    assert data.site.dtype == np.int32 and data.site[:4].tolist() == [1, 0, 1, 2]
    assert (data.outcome_name, data.treatment_name) == ("sbp", "arm")
    assert data.treatment_labels == (0, 1)
    assert data.encoder.categorical == {"sex": ("F", "M"), "stage": ("I", "II", "III")}


def test_bool_covariate_is_zero_one_before_scaling():
    data = fit_frame(make_frame())
    j = data.feature_names.index("smoker")
    raw = data.X[:, j] * data.encoder.scale[j] + data.encoder.center[j]
    np.testing.assert_allclose(raw, make_frame()["smoker"].astype(float), atol=1e-12)


def test_bool_covariate_keeps_its_name_and_new_patients_may_give_it_as_0_1():
    """A bool column is a numeric 0/1 feature under its own name (not one-hot, not
    categorical): new patients' True/False and 1/0 give the same features; text is refused,
    as for every numeric column."""
    data = fit_frame(make_frame())
    assert "smoker" in data.feature_names and not any(
        n.startswith("smoker") and n != "smoker" for n in data.feature_names
    )
    new = make_frame().iloc[:4]
    as_bool, _, _ = data.transform(new)
    as_int, _, _ = data.transform(new.assign(smoker=new["smoker"].astype(int)))
    np.testing.assert_array_equal(as_bool, as_int)
    assert len(set(as_bool[:, data.feature_names.index("smoker")])) == 2  # never all 1.0
    raises(["'smoker'", "True/False stored as text", "== 'true'"], data.transform,
           new.assign(smoker=new["smoker"].astype(str)))  # fmt: skip


def test_declared_categorical_numeric_column_is_one_hot():
    df = make_frame().assign(grade=np.resize([3, 1, 2, 1, 2, 2], 12))
    data = fit_frame(df, categorical=["stage", "grade"])
    assert data.encoder.categorical["grade"] == (1, 2, 3)
    assert "grade[2]" in data.feature_names and "grade[3]" in data.feature_names


def test_covariates_subset_and_default_excludes_roles():
    data = fit_frame(make_frame(), covariates=["age"], categorical=())
    assert data.feature_names == ("age",)
    assert fit_frame(make_frame()).encoder.columns == ("age", "sex", "smoker", "stage")


def test_constant_covariate_gets_scale_one_and_a_warning():
    df = make_frame().assign(const=7.5)
    with pytest.warns(DataWarning, match=r"\['const'\] are constant"):
        data = fit_frame(df)
    j = data.feature_names.index("const")
    assert data.encoder.scale[j] == 1.0
    assert np.all(data.X[:, j] == 0.0)


def test_transform_training_frame_reproduces_X_and_ignores_extra_columns():
    df = make_frame()
    data = fit_frame(df)
    X, site, ids = data.transform(df, df["centre"])
    np.testing.assert_array_equal(X, data.X)
    np.testing.assert_array_equal(site, data.site)
    assert ids.equals(df.index)


def test_transform_uses_training_statistics():
    df = make_frame()
    data = fit_frame(df)
    new = df.iloc[:2].assign(age=[1000.0, 60.0])
    X, _, _ = data.transform(new)
    j = data.feature_names.index("age")
    expected = (np.array([1000.0, 60.0]) - df["age"].mean()) / df["age"].std(ddof=0)
    np.testing.assert_allclose(X[:, j], expected, rtol=1e-12)


def test_transform_sites_unseen_and_missing():
    data = fit_frame(make_frame())
    new = make_frame().iloc[:3]
    _, site, _ = data.transform(new, ["bergen", "narvik", "oslo"])
    assert site.tolist() == [0, -1, 1] and site.dtype == np.int32
    _, site, _ = data.transform(new)
    assert site.tolist() == [-1, -1, -1]
    raises(
        ["site 'centre'", "['narvik']", "not seen in training", "1 patient", "'p01'"],
        data.transform,
        new,
        pd.Series(["bergen", "narvik", "oslo"], index=new.index),
        allow_new_sites=False,
    )
    raises(["site is missing", "3 patients", "'p00'"], data.transform, new, allow_new_sites=False)


def test_sites_given_as_numbers_for_text_training_sites_are_refused_not_all_unseen():
    """site=[1, 2] against sites trained as "1", "2" would match none: refused, with the
    astype that fixes it; a genuinely new text label is still an unseen site."""
    df = make_frame().assign(centre=np.tile(["1", "2", "1", "3"], 3))
    data = fit_frame(df)
    new = df.iloc[:2]
    raises(["site 'centre'", "sites [1, 2] are numbers", "training sites ['1', '2', '3'] are "
            "text", "site=site.astype(str)"], data.transform, new, [1, 2])  # fmt: skip
    _, site, _ = data.transform(new, ["2", "narvik"])
    assert site.tolist() == [1, -1]
    numbers = fit_frame(make_frame().assign(centre=np.tile([10, 20, 10, 30], 3)))
    raises(["sites ['10', 'x'] are text", "site=site.astype(int)"], numbers.transform,
           new, ["10", "x"])  # fmt: skip


def test_transform_without_training_sites():
    data = fit_frame(make_frame(), site=None, covariates=["age", "stage"])
    X, site, ids = data.transform(make_frame().iloc[:2])
    assert site is None and X.shape == (2, data.p) and list(ids) == ["p00", "p01"]
    raises(["site was given", "no site"], data.transform, make_frame().iloc[:2], ["a", "b"])


def test_transform_array_is_positional_and_width_checked():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 2))
    data = TrialData.from_arrays(rng.normal(size=10), np.tile([0, 1], 5), X=X)
    got, site, ids = data.transform(X[:4])
    np.testing.assert_array_equal(got, data.X[:4])
    assert site is None and isinstance(ids, pd.RangeIndex)
    raises(["3 columns", "trained on 2", "'x0', 'x1'"], data.transform, np.zeros((2, 3)))


def test_from_arrays_numpy_inputs():
    rng = np.random.default_rng(2)
    data = TrialData.from_arrays(
        rng.normal(size=8),
        np.tile([0, 1], 4),
        X=rng.normal(size=(8, 3)),
        site=np.tile([2, 2, 1, 1], 2),
    )
    assert data.feature_names == ("x0", "x1", "x2")
    assert isinstance(data.patient_ids, pd.RangeIndex)
    assert (data.outcome_name, data.treatment_name) == ("Y", "T")
    assert data.site_index.levels == (1, 2) and data.site.tolist() == [1, 1, 0, 0] * 2


def test_from_arrays_ids_from_first_pandas_input():
    rng = np.random.default_rng(3)
    ids = pd.Index([f"id{i}" for i in range(6)])
    t = pd.Series([0, 1] * 3, index=ids, name="treat")
    data = TrialData.from_arrays(rng.normal(size=6), t, X=pd.DataFrame({"a": range(6)}, ids))
    assert data.patient_ids.equals(ids) and data.treatment_name == "treat"
    only_x = TrialData.from_arrays(np.arange(6.0), [0, 1] * 3, X=pd.DataFrame({"a": range(6)}, ids))
    assert only_x.patient_ids.equals(ids)


def test_from_arrays_one_column_frame_outcome_and_no_covariates():
    y = pd.DataFrame({"bp": np.arange(6.0)})
    data = TrialData.from_arrays(y, np.tile([0, 1], 3), X=np.empty((6, 0)))
    assert data.outcome_name == "bp" and data.p == 0 and data.X.shape == (6, 0)


@pytest.mark.parametrize(
    "treatment, labels, expected",
    [
        ([0.0, 1.0] * 3, None, (0, 1)),
        ([False, True] * 3, None, (False, True)),
        (["placebo", "drug"] * 3, ("placebo", "drug"), ("placebo", "drug")),
        ([2, 1] * 3, (2, 1), (2, 1)),
    ],
)
def test_treatment_codings(treatment, labels, expected):
    data = TrialData.from_arrays(
        np.arange(6.0), treatment, X=np.arange(6.0)[:, None] ** 2, treatment_labels=labels
    )
    assert data.treatment_labels == expected
    assert data.t.tolist() == [0.0, 1.0] * 3


def test_nullable_dtypes_without_missing_are_accepted():
    df = make_frame()
    df = df.assign(
        sbp=df["sbp"].astype("Float64"), arm=df["arm"].astype("Int64"), age=df["age"].round()
    )
    df["age"] = df["age"].astype("Int64")
    data = fit_frame(df)
    assert np.isfinite(data.X).all() and data.t.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0] * 2


def test_arrays_are_read_only():
    data = fit_frame(make_frame())
    for arr in (data.y, data.t, data.X, data.site, data.encoder.center):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1.0


def test_caller_frame_is_never_mutated():
    df = make_frame()
    df.loc["p03", "age"] = np.nan
    before = df.copy(deep=True)
    fit_frame(df.dropna())
    with pytest.raises(DataValidationError):
        fit_frame(df)
    good = df.dropna()
    good_before = good.copy(deep=True)
    data = fit_frame(good)
    data.transform(good, good["centre"])
    pd.testing.assert_frame_equal(df, before)
    pd.testing.assert_frame_equal(good, good_before)


def test_encoder_dict_round_trip_through_json():
    data = fit_frame(
        make_frame().assign(grade=np.resize([3, 1, 2, 1, 2, 2], 12)), categorical=["stage", "grade"]
    )
    d = json.loads(json.dumps(data.encoder.to_dict()))
    encoder = CovariateEncoder.from_dict(d)
    assert encoder == data.encoder
    np.testing.assert_array_equal(
        encoder.transform(make_frame().assign(grade=np.resize([3, 1, 2, 1, 2, 2], 12))), data.X
    )
    raises(
        ["CovariateEncoder.from_dict", "'scale'", "to_dict()"],
        CovariateEncoder.from_dict,
        {k: val for k, val in d.items() if k != "scale"},
    )


def test_site_index_round_trip_and_codes():
    index = SiteIndex.fit(pd.Series([3, 1, 3, 2]), name="clinic")
    assert index.levels == (1, 2, 3) and index.n_sites == 3
    again = SiteIndex.from_dict(json.loads(json.dumps(index.to_dict())))
    assert again == index
    assert again.codes(np.array([2, 3, 9]), allow_new=True).tolist() == [1, 2, -1]
    raises(
        ["site 'clinic'", "[9]", "not seen", "1 patient (patient ids: 2)"],
        index.codes,
        [2, 3, 9],
        allow_new=False,
    )


def test_encoder_fit_directly_with_category_dtype():
    X = pd.DataFrame({"g": pd.Categorical(["b", "a", "c", "a"]), "x": [1.0, 2.0, 3.0, 4.0]})
    encoder = CovariateEncoder.fit(X)
    assert encoder.categorical == {"g": ("a", "b", "c")}
    assert encoder.feature_names == ("g[b]", "g[c]", "x")
    assert encoder.n_features == 3


# --------------------------------------------------------------------------- error cases
@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(outcome="bp"), "outcome='bp'"),
        (dict(treatment="group"), "treatment='group'"),
        (dict(site="hospital"), "site='hospital'"),
        (dict(covariates=["age", "weight"]), "covariates"),
    ],
)
def test_error_named_column_does_not_exist(kwargs, argument):
    missing = next(iter(v for v in kwargs.values()))
    missing = missing[-1] if isinstance(missing, list) else missing
    raises(
        [argument, f"['{missing}'] not found", "available columns are ['sbp', 'arm', 'age'", "Fix"],
        fit_frame,
        make_frame(),
        **kwargs,
    )


def test_error_categorical_not_a_covariate():
    raises(
        ["categorical", "['stagee'] not found", "'age', 'sex', 'smoker', 'stage'"],
        fit_frame,
        make_frame(),
        categorical=["stagee"],
    )


@pytest.mark.parametrize(
    "column, value, label",
    [
        ("sbp", np.nan, "outcome 'sbp'"),
        ("sbp", np.inf, "outcome 'sbp'"),
        ("arm", np.nan, "treatment 'arm'"),
        ("age", np.nan, "covariate 'age'"),
        ("age", -np.inf, "covariate 'age'"),
        ("stage", None, "covariate 'stage'"),
        ("centre", None, "site 'centre'"),
    ],
)
def test_error_missing_or_nonfinite_values(column, value, label):
    df = make_frame()
    df[column] = df[column].astype(object if value is None else float)
    df.loc[["p02", "p07"], column] = value
    raises(
        [label, "missing or non-finite", "2 patients (patient ids: 'p02', 'p07')", "Fix"],
        fit_frame,
        df,
    )


@pytest.mark.parametrize(
    "column, dtype, label",
    [
        ("sbp", "Float64", "outcome 'sbp'"),
        ("arm", "Int64", "treatment 'arm'"),
        ("age", "Float64", "covariate 'age'"),
        ("smoker", "boolean", "covariate 'smoker'"),
        ("stage", "string", "covariate 'stage'"),
        ("sex", "category", "covariate 'sex'"),
        ("centre", "string", "site 'centre'"),
    ],
)
def test_error_pandas_na_in_nullable_dtypes(column, dtype, label):
    df = make_frame()
    df[column] = df[column].astype(object).where(df.index != "p05", pd.NA).astype(dtype)
    assert df[column].isna().sum() == 1
    raises([label, "missing", "1 patient (patient ids: 'p05')"], fit_frame, df)


def test_error_treatment_with_three_values():
    df = make_frame().assign(arm=np.tile([0, 1, 2], 4))
    raises(
        ["treatment 'arm'", "3 distinct values [0, 1, 2]", "4 patients", "'p02', 'p05'", "Fix"],
        fit_frame,
        df,
    )


def test_error_treatment_single_value():
    raises(
        ["treatment 'arm'", "only one value (1)", "12 patients"],
        fit_frame,
        make_frame().assign(arm=1),
    )


def test_error_treatment_strings_without_labels():
    df = make_frame().assign(arm=np.tile(["ctrl", "drug"], 6))
    raises(
        ["treatment 'arm'", "not 0/1", "12 patients", "treatment_labels=('ctrl', 'drug')"],
        fit_frame,
        df,
    )


def test_error_arm_with_fewer_than_two_patients():
    df = make_frame().assign(arm=[1] + [0] * 11)
    raises(
        [
            "treatment 'arm'",
            "treated arm (1) has only 1 patient (patient ids: 'p00')",
            "at least 2",
        ],
        fit_frame,
        df,
    )


def test_error_lengths_differ():
    rng = np.random.default_rng(4)
    raises(
        ["Y has 10 rows but X has 9 rows", "Fix"],
        TrialData.from_arrays,
        rng.normal(size=10),
        np.tile([0, 1], 5),
        X=rng.normal(size=(9, 2)),
    )
    raises(
        ["Y has 10 rows but site has 3 rows"],
        TrialData.from_arrays,
        rng.normal(size=10),
        np.tile([0, 1], 5),
        X=rng.normal(size=(10, 2)),
        site=[1, 2, 3],
    )


def test_error_indexes_differ():
    y = pd.Series(np.arange(6.0), index=list("abcdef"))
    x = pd.DataFrame({"a": np.arange(6.0)}, index=list("abcdez"))
    raises(
        ["Y and X have different indexes", "1 patient (patient ids: 'z')", "reset_index"],
        TrialData.from_arrays,
        y,
        np.tile([0, 1], 3),
        X=x,
    )


def test_error_object_column_not_declared_categorical():
    raises(
        [
            "covariate 'stage' must be numeric",
            "12 patients",
            "'p00'",
            "categorical=['stage']",
            "pd.to_numeric",
        ],
        fit_frame,
        make_frame(),
        categorical=(),
    )


def test_error_outcome_not_numeric():
    raises(
        ["outcome 'sbp' must be numeric", "'p00'", "numeric outcome"],
        fit_frame,
        make_frame().assign(sbp="high"),
    )


def test_error_duplicate_patient_ids():
    df = make_frame().set_axis(["a", "b", "a"] + [f"q{i}" for i in range(9)])
    raises(
        ["df has duplicate patient ids", "2 rows share 1 id(s) (patient ids: 'a')"], fit_frame, df
    )


def test_error_empty_frame_and_zero_length_arrays():
    raises(["df has 0 rows (0 patients)", "Fix"], fit_frame, make_frame().iloc[:0])
    raises(["Y has 0 rows"], TrialData.from_arrays, np.array([]), np.array([]), X=np.empty((0, 2)))


def test_error_transform_missing_covariate_column():
    data = fit_frame(make_frame())
    raises(
        ["X (covariates)", "['age', 'stage'] not found (2 missing)", "same names and coding"],
        data.transform,
        make_frame().drop(columns=["age", "stage"]),
    )


def test_error_transform_unseen_category_level():
    data = fit_frame(make_frame())
    new = make_frame().iloc[:4].assign(stage=["I", "IV", "V", "IV"])
    raises(
        [
            "covariate 'stage'",
            "['IV', 'V'] not seen in training",
            "3 patients (patient ids: 'p01', 'p02', 'p03')",
            "Fix",
        ],
        data.transform,
        new,
    )


def test_error_X_one_dimensional():
    raises(
        ["X must be 2-d", "shape (6,)", "DataFrame"],
        TrialData.from_arrays,
        np.arange(6.0),
        np.tile([0, 1], 3),
        X=np.arange(6.0),
    )


def test_error_outcome_listed_as_covariate():
    raises(["['sbp'] have two roles"], fit_frame, make_frame(), covariates=["age", "sbp"])
    raises(["['arm'] have two roles"], fit_frame, make_frame(), outcome="arm")


def test_error_from_frame_needs_dataframe():
    raises(
        ["df must be a pandas DataFrame", "ndarray", "from_arrays"],
        TrialData.from_frame,
        np.zeros((3, 3)),
        outcome="a",
        treatment="b",
    )


# --------------------------------------------------------------------------- properties
@st.composite
def trial_frames(draw):
    """Random valid trial frames: numeric, bool and categorical covariates, unique int ids."""
    n = draw(st.integers(4, 30))
    finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
    cols = {"y": draw(st.lists(finite, min_size=n, max_size=n)), "t": [i % 2 for i in range(n)]}
    for j in range(draw(st.integers(0, 3))):
        cols[f"num{j}"] = draw(st.lists(finite, min_size=n, max_size=n))
    if draw(st.booleans()):
        cols["flag"] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if draw(st.booleans()):
        cols["cat"] = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(-(10**6), 10**6), min_size=n, max_size=n, unique=True))
    return pd.DataFrame(cols, index=ids)


def _fit(df: pd.DataFrame) -> TrialData:
    return TrialData.from_frame(
        df, outcome="y", treatment="t", categorical=["cat"] if "cat" in df else ()
    )


@settings(max_examples=50, deadline=None)
@given(trial_frames())
def test_property_valid_frames_encode_to_finite_standardized_arrays(df):
    with warnings.catch_warnings():  # valid frames may be weak (constant, collinear columns)
        warnings.simplefilter("ignore", DataWarning)
        data = _fit(df)
    n_levels = df["cat"].nunique() - 1 if "cat" in df else 0
    assert data.X.shape == (len(df), df.shape[1] - 2 - ("cat" in df) + n_levels)
    assert data.X.dtype == np.float64 and np.isfinite(data.X).all()
    assert np.all(data.encoder.scale > 0)
    raw = data.X * data.encoder.scale + data.encoder.center  # features before scaling
    varies = raw.std(axis=0) > 1e-6 * (1 + np.abs(raw).max(axis=0, initial=0.0))
    np.testing.assert_allclose(data.X.mean(axis=0)[varies], 0.0, atol=1e-6)
    np.testing.assert_allclose(data.X.std(axis=0)[varies], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(data.transform(df)[0], data.X)


@settings(max_examples=50, deadline=None)
@given(trial_frames(), st.data())
def test_property_injected_nan_always_names_column_and_ids(df, data):
    column = data.draw(st.sampled_from(list(df.columns)))
    rows = sorted(data.draw(st.sets(st.integers(0, len(df) - 1), min_size=1)))
    kind = data.draw(st.sampled_from(["nan", "na"]))
    bad = df.copy()
    if kind == "na":
        bad[column] = bad[column].astype("Float64" if column not in ("cat", "flag") else object)
    else:
        bad[column] = bad[column].astype(object if column in ("cat", "flag") else float)
    bad.iloc[rows, bad.columns.get_loc(column)] = pd.NA if kind == "na" else np.nan
    with pytest.raises(DataValidationError) as info:
        _fit(bad)
    msg = str(info.value)
    assert f"'{column}'" in msg
    assert re.search(rf"\b{len(rows)} patients?\b", msg)
    assert f"patient ids: {df.index[rows[0]]}" in msg


# --------------------------------------------------------------------------- rough edges (issue 22)
def test_category_dtype_reference_is_the_declared_first_level():
    df = make_frame()
    df["stage"] = pd.Categorical(df["stage"], categories=["III", "IV", "I", "II"])  # IV unused
    data = fit_frame(df, categorical=())
    assert data.encoder.categorical["stage"] == ("III", "I", "II")  # declared order, IV dropped
    assert "stage[I]" in data.feature_names and "stage[II]" in data.feature_names
    assert "stage[III]" not in data.feature_names  # the reference
    # an object column named in categorical= keeps the sorted rule
    assert fit_frame(make_frame()).encoder.categorical["stage"] == ("I", "II", "III")


def test_site_differing_only_in_case_or_spaces_warns_naming_the_match():
    data = fit_frame(make_frame())
    new = make_frame().iloc[:3]
    with pytest.warns(DataWarning, match=r"'Bergen ' \(training site 'bergen'\)") as record:
        _, site, _ = data.transform(new, ["Bergen ", "narvik", "oslo"])
    assert site.tolist() == [-1, -1, 1]  # still unseen: the user decides
    assert len(record) == 1 and "narvik" not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.transform(new, ["narvik", "narvik", "oslo"])  # a new site, no near match


def test_one_site_label_for_one_or_many_patients():
    df = make_frame()
    data = fit_frame(df)
    _, site, ids = data.transform(df.iloc[:3], "oslo")
    assert site.tolist() == [1, 1, 1] and ids.equals(df.index[:3])
    _, site, _ = data.transform(df.iloc[[5]], "narvik")
    assert site.tolist() == [-1]


def test_one_patient_as_a_series_gets_a_hint_that_works():
    df = make_frame()
    data = fit_frame(df)
    row = df.iloc[0]
    msg = raises(["a pandas Series", "df.iloc[[0]]", "row.to_frame().T"], data.transform, row)
    assert "X.to_frame()" not in msg  # the covariates are in its index: a row, not a column
    X, _, ids = data.transform(row.to_frame().T)  # the hint, followed
    np.testing.assert_allclose(X, data.transform(df.iloc[[0]])[0])
    assert list(ids) == ["p00"]
