"""Property-based fuzzing of ``fit`` and ``effect`` for every estimator.

Hypothesis draws a valid small multi-site trial and breaks it in up to three random ways (the
outcome, the treatment, a covariate, the site, the index, the new patients given to
``effect``). Whatever it draws, an estimator may only

- raise ``DataValidationError`` (the documented answer to bad data; the fuzz never breaks
  an argument, so ``TypeError`` and bare ``ValueError`` count as failures), or
- warn with one of itelib's warnings and return a posterior whose draws are finite and shaped
  (chain, draw, patient) with one patient per row given.

Any other exception (a raw ``KeyError``, a JAX error, a NumPy ``RuntimeWarning`` turned into an
error) fails the test. The examples are derandomized so CI runs the same cases every time (and
in bounded time: fits keep one shape, so each estimator compiles a handful of programs).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import itelib
from itelib.exceptions import (
    ConvergenceWarning,
    DataValidationError,
    DataWarning,
    OverlapWarning,
    RandomizationWarning,
)

N = 48
SITES = ["oslo", "bergen", "tromso", "bodo"]
DOCUMENTED = (DataValidationError,)  # the fuzz breaks data only, never arguments
ITELIB_WARNINGS = (DataWarning, RandomizationWarning, OverlapWarning, ConvergenceWarning)
TINY = {
    "HierarchicalITE": lambda: itelib.HierarchicalITE(
        num_warmup=30, num_samples=20, num_chains=1, progress_bar=False
    ),
    "BayesianCausalForest": lambda: itelib.BayesianCausalForest(
        num_trees_mu=10,
        num_trees_tau=5,
        num_warmup=5,
        num_samples=20,
        num_chains=1,
        progress_bar=False,
    ),  # fmt: skip
    "CausalForest": lambda: itelib.CausalForest(n_estimators=40, cv=2),
}


def valid_trial(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:02d}" for i in range(N)], name="patient")
    X = pd.DataFrame(
        {
            "age": rng.normal(60, 10, N),
            "bmi": rng.normal(27, 4, N),
            "smoker": rng.integers(0, 2, N),
        },
        index=ids,
    )
    t = pd.Series(np.resize([0, 1], N), index=ids, name="treated")
    y = pd.Series(0.05 * X["age"] + t + rng.normal(size=N), index=ids, name="sbp")
    site = pd.Series(np.repeat(SITES, N // len(SITES)), index=ids, name="clinic")
    return {"Y": y, "T": t, "X": X, "site": site}


# -- the breaks: each a plain function of (trial, kind, rows), so that every kind can also be
# -- run alone (test_every_single_break) and combined at random (the hypothesis test)
def break_outcome(kw: dict[str, Any], how: str, rows: list[int], column: str) -> None:
    y = kw["Y"].astype(object)
    if how == "constant":
        kw["Y"] = kw["Y"] * 0 + 1.0
    elif how == "binary":
        kw["Y"] = (kw["Y"] > kw["Y"].median()).astype(int)
    elif how == "text":
        kw["Y"] = y.astype(str)
    else:
        y.iloc[rows] = {"nan": np.nan, "inf": np.inf, "none": None, "word": "high"}[how]
        kw["Y"] = y


def break_treatment(kw: dict[str, Any], how: str, rows: list[int], column: str) -> None:
    t = kw["T"].astype(object)
    if how == "three":
        t.iloc[rows] = 2
    elif how == "one_arm":
        t[:] = 1
    elif how == "fraction":
        t.iloc[rows] = 0.5
    elif how == "nan":
        t.iloc[rows] = np.nan
    elif how == "labels":
        t = t.map({0: "placebo", 1: "drug"})
    else:
        t = t.astype(bool)
    kw["T"] = t


def break_covariate(kw: dict[str, Any], how: str, rows: list[int], column: str) -> None:
    X = kw["X"].copy()
    at = X.columns.get_loc(column)
    if how == "no_columns":
        X = X.iloc[:, :0]
    elif how == "constant":
        X[column] = 3.0
    elif how == "huge":
        X[column] = X[column].astype(float)
        X.iloc[rows, at] = 1e300
    elif how == "nullable":
        X[column] = pd.array(np.round(X[column].to_numpy()), dtype="Int64")
        X.iloc[rows, at] = pd.NA
    elif how == "bool":
        X[column] = X[column] > X[column].median()
    elif how == "category":
        X[column] = pd.cut(X[column].astype(float), 3, labels=["lo", "mid", "hi"])
    elif how == "datetime":
        X[column] = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(N), unit="D")
    elif how == "text":
        X[column] = X[column].astype(str)
    else:
        values = X[column].astype(object)
        values.iloc[rows] = {"nan": np.nan, "inf": -np.inf, "word": "unknown"}[how]
        X[column] = values
    kw["X"] = X


def break_site(kw: dict[str, Any], how: str, rows: list[int], column: str) -> None:
    site = kw["site"].astype(object)
    if how == "nan":
        site.iloc[rows] = np.nan
    elif how == "single":
        site[:] = "oslo"
    elif how == "one_patient":
        site.iloc[rows[0]] = "narvik"
    elif how == "numeric":
        site = site.map({s: i for i, s in enumerate(SITES)})
    else:
        site = None
    kw["site"] = site


def _present(kw: dict[str, Any]) -> list[str]:
    return [k for k in ("Y", "T", "X", "site") if kw[k] is not None]


def break_index(kw: dict[str, Any], how: str, rows: list[int], column: str) -> None:
    if how == "duplicate":
        ids = list(kw["X"].index)
        ids[1] = ids[0]
        for k in _present(kw):
            kw[k] = kw[k].set_axis(ids)
    elif how == "shuffled_X":
        kw["X"] = kw["X"].sample(frac=1.0, random_state=0)
    elif how == "short_X":
        kw["X"] = kw["X"].iloc[:-1]
    elif how == "arrays":
        for k in _present(kw):
            kw[k] = kw[k].to_numpy()
    else:
        index = pd.MultiIndex.from_arrays([np.resize(SITES, N), np.arange(N)])
        for k in _present(kw):
            kw[k] = kw[k].set_axis(index)


BREAKS = {  # applied in this order: the index last, as it may leave arrays
    break_outcome: ("nan", "inf", "text", "constant", "binary", "word", "none"),
    break_treatment: ("three", "one_arm", "fraction", "nan", "labels", "bool"),
    break_covariate: ("nan", "inf", "text", "word", "nullable", "constant", "huge", "bool",
                      "no_columns", "category", "datetime"),
    break_site: ("nan", "single", "one_patient", "numeric", "drop"),
    break_index: ("duplicate", "shuffled_X", "short_X", "arrays", "multiindex"),
}  # fmt: skip
NEW_PATIENTS = ("fine", "missing_column", "extra_column", "nan", "text", "new_site", "no_site",
                "empty", "reordered")  # fmt: skip


def new_patients(how: str) -> tuple[Any, Any]:
    kw = valid_trial(99)
    X, site = kw["X"].iloc[:7].copy(), kw["site"].iloc[:7].copy()
    if how == "missing_column":
        X = X.drop(columns="bmi")
    elif how == "extra_column":
        X = X.assign(height=170.0)
    elif how == "nan":
        X.iloc[2, 0] = np.nan
    elif how == "text":
        X["age"] = X["age"].astype(str)
    elif how == "new_site":
        site.iloc[0] = "narvik"
    elif how == "no_site":
        site = None
    elif how == "empty":
        X, site = X.iloc[:0], site.iloc[:0]
    elif how == "reordered":
        X = X[["smoker", "age", "bmi"]]
    return X, site


@st.composite
def malformed_trials(draw: Any) -> dict[str, Any]:
    kw = valid_trial(draw(st.integers(0, 3)))
    chosen = draw(st.lists(st.sampled_from(list(BREAKS)), min_size=1, max_size=3, unique=True))
    for break_ in sorted(chosen, key=list(BREAKS).index):
        how = draw(st.sampled_from(BREAKS[break_]))
        rows = sorted(draw(st.sets(st.integers(0, N - 1), min_size=1, max_size=5)))
        break_(kw, how, rows, draw(st.sampled_from(["age", "bmi", "smoker"])))
    return kw


def _check_posterior(post: Any, n_rows: int) -> None:
    draws = post.draws()
    assert draws.ndim == 3 and draws.shape[2] == n_rows, draws.shape
    assert np.all(np.isfinite(draws)), "non-finite effect draws"


def _fuzz(name: str, kw: dict[str, Any], new: tuple[Any, Any], note: Any = lambda _: None) -> None:
    """Fit and score; ``note``: hypothesis' ``event`` inside a property test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for category in ITELIB_WARNINGS:
            warnings.simplefilter("ignore", category)
        try:
            est = TINY[name]().fit(**kw)
        except DOCUMENTED:
            note("fit refused")  # `pytest --hypothesis-show-statistics` shows the shares
            return
        note("fit ran")
        _check_posterior(est.effect(), len(kw["Y"]))
        X_new, site_new = new
        try:
            post = est.effect(X_new, site=site_new)
        except DOCUMENTED:
            note("effect(X) refused")
            return
        note("effect(X) ran")
        _check_posterior(post, len(X_new))


FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", list(TINY))
def test_fit_and_effect_on_malformed_trials(name: str) -> None:
    @FUZZ_SETTINGS
    @given(kw=malformed_trials(), new=st.sampled_from(NEW_PATIENTS).map(new_patients))
    def check(kw: dict[str, Any], new: tuple[Any, Any]) -> None:
        _fuzz(name, kw, new, note=event)

    check()


SINGLE_BREAKS = [
    (break_, how, column)
    for break_, kinds in BREAKS.items()
    for how in kinds
    for column in (("age", "smoker") if break_ is break_covariate else ("age",))
]


@pytest.mark.parametrize("name", list(TINY))
def test_every_single_break(name: str) -> None:
    """Each kind of break alone, and each kind of bad new patient, for certain (hypothesis
    draws combinations but may miss a kind in its bounded number of examples)."""
    failures = []
    for break_, how, column in SINGLE_BREAKS:
        kw = valid_trial(0)
        break_(kw, how, [3, 10], column)
        try:
            _fuzz(name, kw, new_patients("fine"))
        except Exception as err:  # collect all, report together
            failures.append(f"{break_.__name__}({how!r}, {column!r}): {type(err).__name__}: {err}")
    for how in NEW_PATIENTS:
        try:
            _fuzz(name, valid_trial(0), new_patients(how))
        except Exception as err:
            failures.append(f"new patients {how!r}: {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", list(TINY))
def test_the_valid_trial_fits_and_scores_new_patients(name: str) -> None:
    """The fuzz's starting point is valid: without a break every estimator returns numbers."""
    kw = valid_trial(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = TINY[name]().fit(**kw)
    _check_posterior(est.effect(), N)
    X_new, site_new = new_patients("fine")
    _check_posterior(est.effect(X_new, site=site_new), 7)
