"""The bad-input matrix: every kind of bad input, for every estimator, and exactly what it gets.

``docs/bad_inputs.md`` is this table for readers; ``test_docs_match_the_matrix`` keeps the two
one for one (ids, and the exception or warning each row names). ``python
tests/test_bad_inputs.py`` prints the table in the docs' format.

pytest turns warnings into errors here (pyproject's ``filterwarnings = error``), so a warning
case stops the fit at the warning, before any sampling: the whole matrix runs in seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import itelib
from itelib.exceptions import (
    ConvergenceWarning,
    DataValidationError,
    DataWarning,
    NotFittedError,
    OverlapWarning,
    RandomizationWarning,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
ESTIMATORS = {
    "HierarchicalITE": lambda **kw: itelib.HierarchicalITE(progress_bar=False, **kw),
    "BayesianCausalForest": lambda **kw: itelib.BayesianCausalForest(progress_bar=False, **kw),
    "CausalForest": lambda **kw: itelib.CausalForest(**kw),
}


def trial(n: int = 80, seed: int = 0) -> dict[str, Any]:
    """A valid small six-site trial: both arms in each site, two informative covariates."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient")
    X = pd.DataFrame({"age": rng.normal(60, 10, n), "bmi": rng.normal(27, 4, n)}, index=ids)
    t = pd.Series(np.resize([0, 1], n), index=ids, name="treated")
    y = pd.Series(0.05 * X["age"] + t * 1.0 + rng.normal(size=n), index=ids, name="sbp")
    clinics = ["oslo", "bergen", "tromso", "bodo", "molde", "alta"]  # enough for cv=5 by site
    site = pd.Series(np.repeat(clinics, -(-n // 6))[:n], index=ids, name="clinic")
    return {"Y": y, "T": t, "X": X, "site": site}


def with_X(**columns: Any) -> dict[str, Any]:
    kw = trial()
    kw["X"] = kw["X"].assign(**columns)
    return kw


MIXED_IDS = pd.Index([i if i % 2 else f"p{i}" for i in range(80)], dtype=object)


def with_ids(ids: pd.Index) -> dict[str, Any]:
    return {k: v.set_axis(ids) for k, v in trial().items()}


def binary_no_events_in_control() -> dict[str, Any]:
    kw = trial()
    kw["Y"] = (kw["T"] * (kw["X"]["age"] > 60)).astype(int).rename("event")
    return kw


def no_overlap() -> dict[str, Any]:
    kw = trial()
    kw["T"] = (kw["X"]["age"] > kw["X"]["age"].median()).astype(int).rename("treated")
    return kw


def multiindex() -> dict[str, Any]:
    kw = trial()
    index = pd.MultiIndex.from_arrays([kw["site"].to_numpy(), np.arange(80)], names=["c", "i"])
    return {k: v.set_axis(index) for k, v in kw.items()}


def changed(**parts: Callable[[dict[str, Any]], Any]) -> Callable[[], dict[str, Any]]:
    """A valid trial with some of its parts replaced: ``part=lambda kw: new_value``."""

    def build() -> dict[str, Any]:
        kw = trial()
        return kw | {name: f(kw) for name, f in parts.items()}

    return build


def as_arrays_one_short(kw: dict[str, Any]) -> dict[str, Any]:
    return {"Y": kw["Y"].to_numpy()[:-1], "T": kw["T"].to_numpy(), "X": kw["X"].to_numpy()}


@dataclass(frozen=True)
class Case:
    id: str
    where: str  # what the user called
    what: str  # the bad input, for the docs
    gets: type[BaseException] | type[Warning]
    match: str  # a regex the message must contain
    run: Callable[[Callable[..., Any]], Any]  # given an estimator factory, trigger it


def fit(kw: dict[str, Any] | Callable[[], dict[str, Any]], **fit_kw: Any):
    return lambda make: make().fit(**(kw() if callable(kw) else kw), **fit_kw)


TINY = {
    "HierarchicalITE": dict(num_warmup=20, num_samples=20, num_chains=1),
    "BayesianCausalForest": dict(
        num_trees_mu=10, num_trees_tau=5, num_warmup=5, num_samples=20, num_chains=1
    ),
    "CausalForest": dict(n_estimators=40, cv=2),
}
_FITTED: dict[str, Any] = {}


def fitted(make: Callable[..., Any]) -> Any:
    """A tiny fit of the estimator ``make`` builds (short chains: convergence is not the point)."""
    name = next(k for k, v in ESTIMATORS.items() if v is make)
    if name not in _FITTED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _FITTED[name] = make(**TINY[name]).fit(**trial())
    return _FITTED[name]


def effect(**effect_kw: Any):
    return lambda make: fitted(make).effect(**effect_kw)


CASES = [
    # -- the data contract ----------------------------------------------------------------
    Case("missing_outcome", "fit", "the outcome has NaN / None / pd.NA for some patients",
         DataValidationError, r"outcome 'sbp' has missing.*p001",
         fit(changed(Y=lambda kw: kw["Y"].mask(kw["Y"].index == "p001")))),
    Case("infinite_covariate", "fit", "a covariate is +/-inf",
         DataValidationError, r"covariate 'bmi' has missing or non-finite",
         fit(with_X(bmi=np.r_[np.inf, np.ones(79)]))),
    Case("nullable_na", "fit", "a pandas nullable column (Int64) holds pd.NA",
         DataValidationError, r"covariate 'visits' has missing.*itelib never imputes",
         fit(with_X(visits=pd.array([pd.NA] + list(range(79)), dtype="Int64")))),
    Case("numbers_as_text", "fit", "a covariate holds numbers as strings ('61.5')",
         DataValidationError, r"numbers stored as text.*pd.to_numeric",
         fit(lambda: with_X(age=trial()["X"]["age"].astype(str)))),
    Case("three_treatments", "fit", "the treatment has three values",
         DataValidationError, r"treatment 'treated' has 3 distinct values",
         fit(changed(T=lambda kw: kw["T"].where(kw["T"].index.str[-1] != "7", 2)))),
    Case("one_arm_only", "fit", "all patients in one site and one arm",
         DataValidationError, r"treatment 'treated' has only one value",
         fit(changed(T=lambda kw: kw["T"] * 0 + 1, site=lambda kw: kw["site"].str[:0] + "oslo"))),
    Case("length_mismatch", "fit", "Y and X have different lengths (arrays)",
         DataValidationError, r"Y has 79 rows but T has 80 rows",
         fit(lambda: as_arrays_one_short(trial()))),
    Case("duplicate_ids", "fit", "two patients share an id",
         DataValidationError, r"duplicate patient ids.*'p001'",
         fit(lambda: {k: v.set_axis(["p001"] + list(v.index[1:])) for k, v in trial().items()})),
    Case("multiindex", "fit", "the frames have a MultiIndex",
         DataValidationError, r"MultiIndex.*to_flat_index",
         fit(multiindex)),
    Case("mixed_id_kinds", "fit", "patient ids that mix numbers and text (1, 'p2', ...)",
         DataValidationError, r"Y's index \(the patient ids\) must be all integers or all strings"
         r".*'mixed-integer'.*Fix: one kind of id", fit(lambda: with_ids(MIXED_IDS))),
    Case("datetime_ids", "fit", "a DatetimeIndex as patient ids", DataValidationError,
         r"must be all integers or all strings.*'datetime64'.*astype\(str\)",
         fit(lambda: with_ids(pd.date_range("2020-01-01", periods=80, freq="D")))),
    Case("no_covariates", "fit", "X has no columns", DataValidationError,
         r"X has no columns.*at least one covariate",
         fit(changed(X=lambda kw: kw["X"].iloc[:, :0]))),
    Case("constant_outcome", "fit", "the outcome is the same for every patient",
         DataValidationError, r"constant",
         fit(changed(Y=lambda kw: kw["Y"] * 0 + 120.0))),
    # -- valid but weak data: a warning, then the fit runs -----------------------------------
    Case("constant_covariate", "fit", "a covariate is constant", DataWarning,
         r"\['smoker'\] are constant", fit(with_X(smoker=1.0))),
    Case("collinear_covariates", "fit", "a covariate is a linear combination of others",
         DataWarning, r"\['age', 'age_months'\] are perfectly collinear",
         fit(lambda: with_X(age_months=12 * trial()["X"]["age"]))),
    Case("extreme_covariate", "fit", "a covariate has a value of 1e12 among values near 27",
         DataWarning, r"'bmi' has extreme values \(e.g. 1e\+12",
         fit(lambda: with_X(bmi=np.r_[1e12, trial()["X"]["bmi"].to_numpy()[1:]]))),
    Case("single_patient_site", "fit", "a site with a single patient", DataWarning,
         r"\['narvik'\] have patients in only one arm",
         fit(changed(site=lambda kw: kw["site"].mask(kw["site"].index == "p000", "narvik")))),
    Case("binary_separation", "fit", "a 0/1 outcome that is 0 for every control patient",
         DataWarning, r"'event' is 0 for every control patient", fit(binary_no_events_in_control)),
    Case("no_overlap_randomized", "fit", "treatment decided by a covariate, propensity=None",
         RandomizationWarning, r"treatment is predictable", fit(no_overlap)),
    Case("no_overlap_estimated", "fit", "the same, propensity='estimate'",
         OverlapWarning, r"outside \[0.05, 0.95\]|almost perfectly predicted",
         fit(no_overlap, propensity="estimate")),
    Case("propensity_reordered", "fit", "known propensity scores as a Series in another order",
         DataValidationError,  # CausalForest takes no known scores at all, and says so
         r"Y and propensity have different indexes.*different order|known scores cannot",
         lambda make: make().fit(**trial(), propensity=pd.Series(
             np.linspace(0.3, 0.7, 80), index=trial()["Y"].index[::-1]))),
    Case("propensity_table", "fit", "known propensity scores as an (n/2, 2) array",
         DataValidationError, r"propensity must be 1-d|known scores cannot",
         lambda make: make().fit(**trial(), propensity=np.full((40, 2), 0.5))),
    # -- parameters and call order ----------------------------------------------------------
    Case("string_parameter", "fit", "a count given as a string, e.g. n_chains='4'",
         TypeError, r"must be an int", lambda make: None),  # filled per estimator below
    Case("seed_too_large", "fit", "random_state=2**40 (NumPy and JAX take 32-bit seeds)",
         ValueError, r"random_state must lie in \[0, 2\*\*32 - 1.*Fix: a smaller seed",
         lambda make: make(random_state=2**40).fit(**trial())),
    Case("propensity_typo", "fit", "propensity='estimated' (a typo of 'estimate')",
         DataValidationError,
         r"fit\(propensity='estimated'\) is not an option.*Fix: propensity='estimate'",
         fit(trial(), propensity="estimated")),
    Case("effect_before_fit", "effect", "effect() before fit()", NotFittedError,
         r"not fitted yet", lambda make: make().effect()),
    Case("effect_site_without_X", "effect", "effect(X=None, site=...)", ValueError,
         r"ambiguous", effect(site=["oslo"])),
    Case("effect_missing_column", "effect", "new patients lack a training covariate",
         DataValidationError, r"bmi", effect(X=trial()["X"].drop(columns="bmi"))),
    Case("effect_mixed_ids", "effect", "new patients whose ids mix numbers and text",
         DataValidationError, r"X's index \(the patient ids\) must be all integers or all strings",
         effect(X=trial()["X"].iloc[:4].set_axis([1, "p2", 3, "p4"]))),
    Case("effect_site_kind", "effect", "sites given as numbers (1, 2) for text training sites",
         DataValidationError, r"sites \[1, 2\] are numbers but the training sites \['alta', "
         r".*are text: none would match.*Fix: pass the training labels",
         effect(X=trial()["X"].iloc[:2], site=[1, 2])),
    Case("effect_far_outside", "effect", "a new patient's age in months (far outside training)",
         DataWarning, r"1 of 2 new patients lie far outside.*'age \(100%\)'.*'p000'",
         effect(X=trial()["X"].iloc[:2].assign(age=lambda d: d["age"].where(
             d.index != "p000", d["age"] * 12)))),
    Case("effect_over_memory_budget", "effect", "new patients whose draws exceed max_gb",
         MemoryError, r"over max_gb=1e-06. Fix: pass the patients in batches",
         effect(X=trial()["X"], max_gb=1e-6)),
]  # fmt: skip

STRING_PARAMETER = {
    "HierarchicalITE": {"num_chains": "4"},
    "BayesianCausalForest": {"num_chains": "4"},
    "CausalForest": {"n_estimators": "100"},
}


def run_case(case: Case, name: str) -> Any:
    make = ESTIMATORS[name]
    if case.id == "string_parameter":
        return ESTIMATORS[name](**STRING_PARAMETER[name]).fit(**trial())
    return case.run(make)


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_exactly_this(case: Case, name: str) -> None:
    with pytest.raises(case.gets, match=case.match):
        run_case(case, name)


@dataclass(frozen=True)
class OneCase:
    """A bad value of a parameter that only one estimator has."""

    id: str
    estimator: str
    what: str
    gets: type[BaseException]
    match: str
    params: dict[str, Any]
    data: Callable[[], dict[str, Any]] = trial


ONE_ESTIMATOR_CASES = [
    OneCase("cv_over_arm_size", "CausalForest", "cv=50 without sites, 40 patients per arm",
            DataValidationError, r"cv=50 folds stratified.*smaller arm has 40. Fix: cv=40 or fewer",
            {"cv": 50}, changed(site=lambda kw: None)),
    OneCase("cv_one_site", "CausalForest", "every patient in one site (no site-disjoint folds)",
            DataValidationError, r"all patients are in one site.*Fix: site=None",
            {"cv": 2}, changed(site=lambda kw: kw["site"].str[:0] + "oslo")),
    OneCase("n_jobs_zero", "CausalForest", "n_jobs=0", ValueError,
            r"n_jobs=0\) means no worker.*Fix: n_jobs=1", {"n_jobs": 0}),
    OneCase("model_by_name", "CausalForest", "model_y='gbm' (a name, not a model)", TypeError,
            r"model_y='gbm'\) must be a scikit-learn regressor.*Fix: e.g. model_y=",
            {"model_y": "gbm"}),
    OneCase("site_effects_as_int", "BayesianCausalForest", "site_effects=0 (read as on)",
            ValueError, r"site_effects=\.\.\.\) must be one of.*got 0. Fix: site_effects=True "
            r"or site_effects=False", {"site_effects": 0}),
    OneCase("prognostic_score_as_int", "HierarchicalITE", "prognostic_score=1", ValueError,
            r"prognostic_score=\.\.\.\) must be one of \[True, False\]; got 1",
            {"prognostic_score": 1}),
]  # fmt: skip


@pytest.mark.parametrize("case", ONE_ESTIMATOR_CASES, ids=[c.id for c in ONE_ESTIMATOR_CASES])
def test_bad_parameter_of_one_estimator_gets_exactly_this(case: OneCase) -> None:
    with pytest.raises(case.gets, match=case.match):
        ESTIMATORS[case.estimator](**case.params).fit(**case.data())


def test_cli_bad_inputs(tmp_path: Path) -> None:
    """The CLI answers bad input with exit status 2 and one line naming the problem."""
    csv = tmp_path / "trial.csv"
    kw = trial()
    kw["X"].assign(sbp=kw["Y"], treated=kw["T"]).to_csv(csv)
    for args, message in [
        (["fit", str(tmp_path / "absent.csv"), "--outcome", "sbp", "--treatment", "treated",
          "--out", str(tmp_path / "out")], "absent.csv"),
        (["fit", str(csv), "--outcome", "weight", "--treatment", "treated",
          "--out", str(tmp_path / "out")], "weight"),
    ]:  # fmt: skip
        res = subprocess.run(
            [sys.executable, "-m", "itelib.cli", *args], capture_output=True, text=True
        )
        assert res.returncode == 2, res.stderr
        assert message in res.stderr and "Traceback" not in res.stderr


# -- the study runner: bad study files (itelib bench --config FILE) ---------------------------
VALID_STUDY = """name = "t"
seed = 1
replications = 1

[[dgp]]
name = "multisite_rct"
n = [100]

[[estimator]]
name = "cf"
kind = "itelib:CausalForest"
params = { n_estimators = 40 }
"""


@dataclass(frozen=True)
class StudyCase:
    id: str
    what: str
    text: str | None  # the file's content; None: no file
    gets: type[BaseException]
    match: str


def edit(old: str, new: str) -> str:
    assert old in VALID_STUDY
    return VALID_STUDY.replace(old, new)


STUDY_CASES = [
    StudyCase("study_missing_file", "no file at the path", None, FileNotFoundError,
              "no study config"),
    StudyCase("study_not_toml", "the file is not TOML", edit("seed = 1", "seed = "), ValueError,
              "not valid TOML"),
    StudyCase("study_missing_key", "a required key is missing", edit("replications = 1\n", ""),
              ValueError, "missing 'replications'"),
    StudyCase("study_bad_replications", "replications is not a positive integer",
              edit("replications = 1", 'replications = "2"'), ValueError,
              "replications must be a positive integer"),
    StudyCase("study_unknown_dgp", "a dgp that is not registered",
              edit('"multisite_rct"', '"multisite"'), ValueError, "unknown dgp 'multisite'"),
    StudyCase("study_bad_sizes", "a dgp size that is not a positive integer",
              edit("n = [100]", "n = [0]"), ValueError, r"needs n = \[positive ints\]"),
    StudyCase("study_duplicate_estimator", "two estimators with one name",
              VALID_STUDY + VALID_STUDY[VALID_STUDY.index("[[estimator]]"):], ValueError,
              "unique name"),
    StudyCase("study_unknown_kind", "an itelib estimator kind that does not exist",
              edit("itelib:CausalForest", "itelib:Forest"), ValueError, "unknown kind"),
    StudyCase("study_unknown_parameter", "a misspelt estimator parameter",
              edit("n_estimators", "n_estimator"), ValueError,
              r"has no parameter\(s\) \['n_estimator'\]"),
    StudyCase("study_missing_adapter", "a peer adapter file that does not exist",
              edit("itelib:CausalForest", "peers_typo.py:fit"), ValueError, "no adapter file"),
    StudyCase("study_name_escapes", "a name that is not a plain file name ('../../escaped')",
              edit('name = "t"', 'name = "../../escaped"'), ValueError,
              r"not a plain file name.*results folder"),
    StudyCase("study_absolute_name", "an absolute path as the name ('/tmp/x')",
              edit('name = "t"', 'name = "/tmp/x"'), ValueError, r"not a plain file name"),
    StudyCase("study_code_not_allowed", "a kind that runs a Python file (evil.py:fit), "
              "without --allow-code", None, ValueError,  # the file is written by the test
              r"'evil.py:fit', which would import and run.*itelib bench --allow-code"),
    StudyCase("study_bad_parameter_type", "an estimator parameter of the wrong type "
              "(n_estimators = \"40\")", edit("n_estimators = 40", 'n_estimators = "40"'),
              ValueError,
              r"\[\[estimator\]\] 'cf', params = .*n_estimators=\.\.\.\) must be an int"),
    StudyCase("study_bad_parameter_value", "an estimator parameter out of range (cv = 1)",
              edit("n_estimators = 40", "n_estimators = 40, cv = 1"), ValueError,
              r"\[\[estimator\]\] 'cf'.*cv=\.\.\.\) must be >= 2"),
    StudyCase("study_unknown_dgp_parameter", "a misspelt design parameter (n_site = 5)",
              edit("n = [100]", "n = [100]\nn_site = 5"), ValueError,
              r"\[\[dgp\]\] 'multisite_rct': unknown parameter\(s\) \['n_site'\].*n_sites"),
    StudyCase("study_bad_dgp_parameter_type", "a design parameter of the wrong type "
              "(n_sites = \"5\")", edit("n = [100]", 'n = [100]\nn_sites = "5"'), ValueError,
              r"\[\[dgp\]\] 'multisite_rct': n_sites = '5' must be an int like its default 20"),
    StudyCase("study_design_fails", "a design that cannot simulate its trial (multisite_rct "
              "at n = 60)", edit("n = [100]", "n = [60, 100]"), ValueError,
              r"\[\[dgp\]\] 'multisite_rct': one trial at n = 60 with its defaults fails"),
    StudyCase("study_bad_propensity", "a design's propensity that is not 'estimate' "
              "('estimated')", edit("n = [100]", 'n = [100]\npropensity = "estimated"'),
              ValueError, r"propensity = 'estimated' is not an option.*\"estimate\""),
]  # fmt: skip
EVIL = "import pathlib\npathlib.Path(__file__).with_name('ran').write_text('ran')\nfit = None\n"


@pytest.mark.parametrize("case", STUDY_CASES, ids=[c.id for c in STUDY_CASES])
def test_bad_study_file_gets_exactly_this(case: StudyCase, tmp_path: Path) -> None:
    from itelib.calibration.study import load_config

    path = tmp_path / "study.toml"
    if case.id == "study_code_not_allowed":
        (tmp_path / "evil.py").write_text(EVIL)
        path.write_text(edit("itelib:CausalForest", "evil.py:fit"))
    elif case.text is not None:
        path.write_text(case.text)
    with pytest.raises(case.gets, match=case.match):
        load_config(path)
    assert not (tmp_path / "ran").exists()  # no study file's code ran


def test_the_valid_study_file_loads(tmp_path: Path) -> None:
    from itelib.calibration.study import load_config

    (tmp_path / "study.toml").write_text(VALID_STUDY)
    assert load_config(tmp_path / "study.toml").estimators[0]["kind"] == "itelib:CausalForest"


# ----------------------------------------------------------------------- saved files (issue 23)
# Each case damages a saved file (or a save) and names what load/save answers. The model is the
# format-1 file in tests/data, loaded and saved again (no fit); tests/test_file_integrity.py
# goes beyond the table: every one-bit flip of a saved model and of a posterior file.
MODEL_V1 = Path(__file__).parent / "data" / "saved_hierarchical_v1.nc"
DAMAGED = r"is not a readable netCDF4 file written by itelib: .*damaged.*Fix: use another copy"


@dataclass(frozen=True)
class FileCase:
    id: str
    what: str
    run: Callable[[Path], Any]  # does the load or save, in a fresh folder
    gets: type[BaseException]
    match: str


_saved_cache: dict[str, bytes] = {}


def saved_bytes(kind: str) -> bytes:
    """A saved model ('model') or posterior of 8 patients ('posterior'), with its header."""
    if kind not in _saved_cache:
        import tempfile

        model = itelib.HierarchicalITE.load(MODEL_V1)
        post = model.effect()
        with tempfile.TemporaryDirectory() as tmp:
            _saved_cache["model"] = model.save(Path(tmp) / "m.nc").read_bytes()
            _saved_cache["posterior"] = (
                post.sel(post.patient_ids[:8]).save(Path(tmp) / "p.nc").read_bytes()
            )
    return _saved_cache[kind]


def load_changed(kind: str, change: Callable[[bytes], bytes]) -> Callable[[Path], Any]:
    def run(folder: Path) -> Any:
        path = folder / f"{kind}.nc"
        path.write_bytes(change(saved_bytes(kind)))
        load = itelib.HierarchicalITE.load if kind == "model" else itelib.EffectPosterior.load
        return load(path)

    return run


def xor(position: int, value: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[position % len(out)] ^= value
        return bytes(out)

    return change


def flip(position: int, bit: int = 0) -> Callable[[bytes], bytes]:
    return xor(position, 1 << bit)


def outcome_scale_digit(data: bytes) -> bytes:
    at = re.search(rb'"outcome_scale": (\d)', data).start(1)
    return data[:at] + (b"7" if data[at : at + 1] != b"7" else b"8") + data[at + 1 :]


def retitled(**attrs: Any) -> Callable[[Path], Any]:
    """A model file whose attributes were changed by a tool that rewrote the header after."""

    def run(folder: Path) -> Any:
        from itelib._io import read_datatree, write_datatree

        path = folder / "model.nc"
        path.write_bytes(saved_bytes("model"))
        tree = read_datatree(path, what="estimator").tree
        for key, value in attrs.items():
            if key == "checksums":
                meta = json.loads(tree.attrs["metadata"])
                tree.attrs["metadata"] = json.dumps(meta | {"checksums": value})
            else:
                tree.attrs[key] = value
        write_datatree(path, tree, kind="estimator")
        return itelib.HierarchicalITE.load(path)

    return run


def load_old_format(change: Callable[[bytes], bytes]) -> Callable[[Path], Any]:
    """The format-1 file, changed: it has no header, so h5py parses it as it is."""

    def run(folder: Path) -> Any:
        (folder / "old.nc").write_bytes(change(MODEL_V1.read_bytes()))
        return itelib.HierarchicalITE.load(folder / "old.nc")

    return run


def load_partial(folder: Path) -> Any:
    path = folder / "model.nc.itelib-partial-4242-0123abcd"
    path.write_bytes(saved_bytes("model"))
    return itelib.HierarchicalITE.load(path)


def save_on_full_disk(folder: Path) -> Any:
    import errno

    import itelib._io

    def full(file, mode="r", *args, **kwargs):
        if "x" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(file, mode, *args, **kwargs)

    post = load_changed("posterior", bytes)(folder)  # a saved file, then saved over
    itelib._io.open = full  # removed below; the module has no open() of its own
    try:
        return post.save(folder / "posterior.nc")
    finally:
        del itelib._io.open


def text_file(folder: Path) -> Any:
    (folder / "notes.nc").write_text("not a model")
    return itelib.HierarchicalITE.load(folder / "notes.nc")


def old_pickle(folder: Path) -> Any:
    """A CausalForest file of an earlier itelib, which pickled it (never unpickled now)."""
    import pickle

    path = folder / "forest.pkl"
    path.write_bytes(pickle.dumps({"itelib_format": "causal_forest_pickle"}, protocol=5))
    return itelib.CausalForest.load(path)


def forest_refit_differs(folder: Path) -> Any:
    """A CausalForest file whose saved effects its refit does not reproduce (a changed
    fingerprint, written back with its checksums recomputed)."""
    from itelib._io import read_datatree, write_datatree
    from itelib.estimators.persistence import _checksums
    from itelib.simulate import simulate

    trial = simulate("multisite_rct", n=100, seed=1)
    est = itelib.CausalForest(n_estimators=40, cv=2, n_jobs=1, random_state=0)
    path = est.fit(**trial.fit_kwargs()).save(folder / "forest.nc")
    tree = read_datatree(path, what="estimator").tree
    prints = tree["fingerprint"].to_dataset()
    tree["fingerprint"] = prints.assign(stderr=prints["stderr"] * 1.01)
    meta = json.loads(tree.attrs["metadata"]) | {"checksums": _checksums(tree)}
    tree.attrs = {**tree.attrs, "metadata": json.dumps(meta)}
    write_datatree(path, tree, kind="estimator")
    return itelib.CausalForest.load(path)


FILE_CASES = [
    FileCase("file_bit_flip", "one bit of a saved model's content flipped",
             load_changed("model", flip(-5000, 3)), ValueError, "SHA-256 of its content differs"),
    FileCase("file_metadata_changed", "a digit of outcome_scale in a saved model's JSON changed",
             load_changed("model", outcome_scale_digit), ValueError, "SHA-256 of its content"),
    FileCase("file_header_changed", "a byte of the 512-byte header changed",
             load_changed("model", flip(20, 1)), ValueError, DAMAGED),
    FileCase("file_truncated", "a saved model cut short (a bad copy)",
             load_changed("model", lambda d: d[: len(d) // 2]), ValueError,
             "bytes of content, its header says"),
    FileCase("file_posterior_bit_flip", "one bit of a saved EffectPosterior flipped",
             load_changed("posterior", flip(-700, 5)), ValueError, "SHA-256 of its content"),
    FileCase("file_not_itelib", "a text file, not a saved model", text_file, ValueError,
             "neither itelib's header nor the HDF5 signature"),
    FileCase("file_old_pickle", "a CausalForest pickle of an earlier itelib", old_pickle,
             ValueError, "is a Python pickle.*never unpickles.*Fix: refit"),
    FileCase("file_forest_refit_differs", "a CausalForest whose refit misses its fingerprint",
             forest_refit_differs, itelib.RefitMismatchError, "differs from the one that was"),
    FileCase("file_unfinished_save", "the temporary file a killed save left", load_partial,
             ValueError, "temporary file of a save that did not finish"),
    FileCase("file_version_not_a_number", 'format_version = "abc" in the file\'s attributes',
             retitled(format_version="abc"), ValueError, "format_version 'abc', not an integer"),
    FileCase("file_checksums_emptied", "the list of array checksums emptied",
             retitled(checksums={}), ValueError, "list of array checksums is empty"),
    FileCase("file_old_format_damaged", "a format-1 file (no header) that h5py cannot parse",
             load_old_format(xor(20975, 220)), ValueError,
             "not a readable netCDF4 file .*AttributeError"),
    FileCase("file_disk_full", "saving when the disk is full", save_on_full_disk, OSError,
             "could not write .*No space left.*previous content is unchanged"),
    FileCase("file_missing", "loading a path with no file", lambda folder:
             itelib.EffectPosterior.load(folder / "absent.nc"), FileNotFoundError,
             "no posterior file"),
]  # fmt: skip


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.id for c in FILE_CASES])
def test_bad_file_gets_exactly_this(case: FileCase, tmp_path: Path) -> None:
    with pytest.raises(case.gets, match=case.match):
        case.run(tmp_path)


def test_file_docs_match_the_cases() -> None:
    rows = re.findall(r"^\| `(file_[a-z0-9_]+)` \|[^|]*\| `(\w+)` \|$", DOCS.read_text(), re.M)
    assert rows == [(c.id, c.gets.__name__) for c in FILE_CASES], (
        "docs/bad_inputs.md's saved-file table and FILE_CASES differ: regenerate the tables "
        "with `python tests/test_bad_inputs.py`"
    )


def markdown() -> str:
    lines = [
        "| id | call | bad input | what it gets (every estimator) |",
        "| --- | --- | --- | --- |",
    ]
    for c in CASES:
        lines.append(f"| `{c.id}` | {c.where} | {c.what} | `{c.gets.__name__}` |")
    lines += ["", "| id | estimator | bad parameter | what it gets |", "| --- | --- | --- | --- |"]
    for o in ONE_ESTIMATOR_CASES:
        lines.append(f"| `{o.id}` | {o.estimator} | {o.what} | `{o.gets.__name__}` |")
    lines += ["", "| id | bad study file | what it gets |", "| --- | --- | --- |"]
    for c in STUDY_CASES:
        lines.append(f"| `{c.id}` | {c.what} | `{c.gets.__name__}` |")
    lines += ["", "| id | saved file | what it gets |", "| --- | --- | --- |"]
    for c in FILE_CASES:
        lines.append(f"| `{c.id}` | {c.what} | `{c.gets.__name__}` |")
    return "\n".join(lines)


def test_docs_match_the_matrix() -> None:
    text = DOCS.read_text()
    rows = re.findall(r"^\| `([A-Za-z_]+)` \|[^|]*\|[^|]*\| `(\w+)` \|$", text, re.M)
    study_rows = re.findall(r"^\| `(study_[a-z_]+)` \|[^|]*\| `(\w+)` \|$", text, re.M)
    expected = [(c.id, c.gets.__name__) for c in [*CASES, *ONE_ESTIMATOR_CASES]]
    expected_study = [(c.id, c.gets.__name__) for c in STUDY_CASES]
    assert (rows, study_rows) == (expected, expected_study), (
        "docs/bad_inputs.md and the cases differ: regenerate the tables with "
        "`python tests/test_bad_inputs.py`"
    )


if __name__ == "__main__":
    print(markdown())
