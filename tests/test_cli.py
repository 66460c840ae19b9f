"""The command line, run as a user runs it: in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import itelib
from itelib import EffectPosterior
from itelib.simulate import simulate

SMALL = ["--chains", "2", "--warmup", "150", "--samples", "150", "--no-progress"]
FOREST = ["--samples", "150", "--no-progress"]  # EconML's forest has no chains or warmup


# A user's shell, not this test session's four XLA devices (conftest.py): the CLI must give the
# Python API's draws there, where chain_method="auto" runs chains one after another.
USER_ENV = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "itelib.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env=USER_ENV,
    )


def test_demo_prints_tables_and_writes_outputs(tmp_path):
    out = tmp_path / "demo"
    res = run_cli("demo", "--n", "200", "--seed", "3", "--out", str(out), *SMALL)
    assert res.returncode == 0, res.stderr
    for expected in (
        "First patients",
        "P(benefit)",
        "max R-hat",
        "divergences",
        "sqrt-PEHE",
        "coverage of 95% intervals",
        "average effect",
    ):
        assert expected in res.stdout, expected
    table = pd.read_csv(out / "effects.csv", index_col=0)
    assert len(table) == 200 and {"mean", "lower", "upper", "true_effect"} <= set(table.columns)
    post = EffectPosterior.load(out / "posterior.nc")
    assert post.draws().shape == (2, 150, 200)
    np.testing.assert_allclose(post.mean().to_numpy(), table["mean"].to_numpy(), rtol=1e-6)
    model = itelib.HierarchicalITE.load(out / "model.nc")  # the fitted model, reloadable
    np.testing.assert_array_equal(model.effect().draws(), post.draws())


def test_fit_on_csv_keeps_ids(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "pid": [f"P{i:03d}" for i in range(n)],
            "age": rng.normal(60, 10, n),
            "arm": rng.integers(0, 2, n),
            "clinic": rng.choice(["north", "south", "east"], n),
        }
    )
    frame["bp"] = 120 - 5 * frame["arm"] + 0.3 * frame["age"] + rng.normal(0, 5, n)
    frame.to_csv(tmp_path / "trial.csv", index=False)
    res = run_cli(
        "fit",
        str(tmp_path / "trial.csv"),
        "--outcome",
        "bp",
        "--treatment",
        "arm",
        "--covariates",
        "age",
        "--site",
        "clinic",
        "--id",
        "pid",
        "--out",
        str(tmp_path / "out"),
        *SMALL,
    )
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(tmp_path / "out" / "effects.csv", index_col=0)
    assert list(table.index[:3]) == ["P000", "P001", "P002"]


def test_fit_reports_nan_covariate_without_traceback(tmp_path):
    frame = pd.DataFrame(
        {
            "y": [1.0, 2, 3, 4, 5, 6],
            "t": [0, 1, 0, 1, 0, 1],
            "age": [50, np.nan, 60, 61, np.nan, 70],
        }
    )
    frame.to_csv(tmp_path / "bad.csv", index=False)
    res = run_cli(
        "fit",
        str(tmp_path / "bad.csv"),
        "--outcome",
        "y",
        "--treatment",
        "t",
        "--out",
        str(tmp_path / "out"),
        *SMALL,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    # row ids are the CSV's row numbers (header is row 1): the NaNs sit on rows 3 and 6
    assert "'age' on 2 rows (3, 6)" in res.stderr
    assert not (tmp_path / "out").exists()


def test_fit_lists_every_column_with_missing_values_in_one_error(tmp_path):
    frame = pd.DataFrame(
        {
            "y": np.arange(8.0),
            "t": [0, 1] * 4,
            "age": [50, np.nan, 60, 61, np.nan, 70, 71, 72],
            "stage": ["I", "II", None, "I", "II", "I", "II", "I"],
            "bmi": [22.0, 25, 27, 21, 30, 24, 26, np.nan],
            "sex": [0, 1, 1, 0, 0, 1, 0, 1],
        }
    )
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    args = ["--outcome", "y", "--treatment", "t", "--categorical", "stage"]
    res = run_cli("fit", str(tmp_path / "gaps.csv"), *args, "--out", str(tmp_path / "o"), *SMALL)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr  # one message, every column
    for part in (
        "3 covariate column(s) of gaps.csv have missing values",
        "'age' on 2 rows (3, 6)",
        "'stage' on 1 row (4)",
        "'bmi' on 1 row (9)",
        "4 of 8 patients have every covariate",
        "delete the 4 incomplete rows from the CSV",
        "--covariates sex",
        "impute",
    ):
        assert part in res.stderr, part
    assert "dropna" not in res.stderr and "X" not in res.stderr.split("Fix")[1]


def test_missing_csv_is_a_clear_error(tmp_path):
    res = run_cli(
        "fit",
        str(tmp_path / "nope.csv"),
        "--outcome",
        "y",
        "--treatment",
        "t",
        "--out",
        str(tmp_path / "out"),
    )
    assert res.returncode == 2 and "no such file" in res.stderr


def test_demo_runs_each_forest_estimator(tmp_path):
    runs = (("bcf", SMALL, (2, 150, 200)), ("causal-forest", FOREST, (1, 150, 200)))
    for estimator, flags, shape in runs:
        out = tmp_path / estimator
        res = run_cli("demo", "--n", "200", "--out", str(out), "--estimator", estimator, *flags)
        assert res.returncode == 0, res.stderr
        assert "Fitted " in res.stdout and "coverage of 95% intervals" in res.stdout
        post = EffectPosterior.load(out / "posterior.nc")
        assert post.draws().shape == shape
        assert post.attrs["estimator"] in {"BayesianCausalForest", "CausalForest"}
    assert "normal approximation" in res.stdout  # the causal forest says what its draws are


# --------------------------------------------------------------------------- issue 22
API_FIT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    import itelib

    df = pd.read_csv(sys.argv[1]).set_index("patient")
    est = itelib.HierarchicalITE(
        num_chains=2, num_warmup=150, num_samples=150, random_state=5, progress_bar=False
    )
    est.fit(df["y"], df["t"], X=df.drop(columns=["y", "t"]), propensity="estimate")
    ate = est.ate()
    lo, hi = ate.interval(0.95)
    np.save(sys.argv[2], est.effect().draws())
    print(json.dumps({"mean": ate.mean(), "lower": lo, "upper": hi}))
    """
)


def test_fit_observational_cohort_prints_the_average_effect_of_the_python_api(tmp_path):
    """Must show (issue 22): ``itelib fit cohort.csv ... --propensity estimate`` prints the
    average effect with its interval, equal to the Python API's with the same seed: the same
    draws, since the CLI no longer forces its own XLA devices (and so its chain method)."""
    from itelib.simulate import simulate

    simulate("observational_cohort", n=150, seed=2).data.to_csv(tmp_path / "cohort.csv")
    out = tmp_path / "out"
    flags = ["--outcome", "y", "--treatment", "t", "--id", "patient", "--propensity", "estimate"]
    res = run_cli("fit", str(tmp_path / "cohort.csv"), *flags, "--seed", "5", "--out", str(out),
                  *SMALL)  # fmt: skip
    assert res.returncode == 0, res.stderr
    api = subprocess.run(
        [sys.executable, "-c", API_FIT, str(tmp_path / "cohort.csv"), str(tmp_path / "api.npy")],
        capture_output=True, text=True, timeout=600, env=USER_ENV,
    )  # fmt: skip
    assert api.returncode == 0, api.stderr
    expected = json.loads(api.stdout.strip().splitlines()[-1])
    line = next(x for x in res.stdout.splitlines() if x.startswith("Average effect"))
    assert line.startswith(
        f"Average effect (difference in y): {expected['mean']:.3f}, 95% interval "
        f"[{expected['lower']:.3f}, {expected['upper']:.3f}]"
    ), line
    ate = pd.read_csv(out / "ate.csv", index_col=0)
    assert ate.loc["ate", "scale"] == "outcome" and ate.loc["ate", "n_patients"] == 150
    for column in ("mean", "lower", "upper"):
        assert ate.loc["ate", column] == pytest.approx(expected[column], rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(
        EffectPosterior.load(out / "posterior.nc").draws(), np.load(tmp_path / "api.npy")
    )
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["estimator"] == "HierarchicalITE" and report["random_state"] == 5
    assert report["convergence"]["n_chains"] == 2 and report["scale"] == "outcome"
    assert report["parameters"]["num_warmup"] == 150


def _binary_cohort(tmp_path, n: int = 200):
    """Observational (treatment follows age), a text treatment, a binary outcome, ids."""
    rng = np.random.default_rng(4)
    age = rng.normal(60, 10, n)
    treated = rng.random(n) < 1 / (1 + np.exp(-(age - 60) / 4))
    frame = pd.DataFrame(
        {
            "pid": [f"P{i:03d}" for i in range(n)],
            "age": age,
            "stage": rng.choice(["I", "II", "III"], n),
            "arm": np.where(treated, "drug", "placebo"),
            "died": (rng.random(n) < 0.3 - 0.1 * treated).astype(int),
        }
    )
    frame.to_csv(tmp_path / "cohort.csv", index=False)
    return tmp_path / "cohort.csv"


def test_fit_binary_outcome_names_the_risk_difference_everywhere(tmp_path):
    csv, out = _binary_cohort(tmp_path), tmp_path / "out"
    res = run_cli(
        "fit", str(csv), "--outcome", "died", "--treatment", "arm", "--treatment-labels",
        "placebo,drug", "--id", "pid", "--categorical", "stage", "--estimator", "causal-forest",
        "--seed", "1", "--out", str(out), *FOREST,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Effects (risk difference, P(died = 1 | treated) - P(died = 1 | control))" in res.stdout
    assert "Average effect (risk difference) (EconML's doubly robust average): " in res.stdout
    assert pd.read_csv(out / "effects.csv", index_col=0)["scale"].eq("risk_difference").all()
    assert pd.read_csv(out / "ate.csv", index_col=0).loc["ate", "scale"] == "risk_difference"
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["scale"] == "risk_difference" and report["convergence"] is None
    assert report["inference"] == "normal_approximation"
    # The randomization check fires (treatment follows age): one clean line in CLI words.
    warned = [x for x in res.stderr.splitlines() if "predictable" in x]
    assert len(warned) == 1 and warned[0].startswith("warning: treatment is predictable")
    assert "--propensity estimate" in warned[0] and "propensity='estimate'" not in warned[0]
    assert ".py:" not in res.stderr and "RandomizationWarning" not in res.stderr
    assert report["warnings"] and any("predictable" in w for w in report["warnings"])


def test_options_an_estimator_does_not_take_are_refused(tmp_path):
    csv = _binary_cohort(tmp_path)
    base = ["fit", str(csv), "--outcome", "died", "--treatment", "arm", "--id", "pid"]
    res = run_cli(*base, "--estimator", "causal-forest", "--chains", "2", "--warmup", "10",
                  "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--chains, --warmup do not apply to --estimator causal-forest" in res.stderr
    assert "Its options: --samples" in res.stderr
    res = run_cli(*base, "--estimator", "bcf", "--prognosis", "additive",
                  "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.returncode == 2 and "--prognosis does not apply to --estimator bcf" in res.stderr
    assert not (tmp_path / "o").exists()


def test_errors_speak_in_flags_and_an_id_column_is_named_as_such(tmp_path):
    csv = _binary_cohort(tmp_path)
    base = [
        "fit",
        str(csv),
        "--outcome",
        "died",
        "--treatment",
        "arm",
        "--out",
        str(tmp_path / "o"),
    ]
    # an id column left among the covariates: pass --id, not "one-hot encode it"
    res = run_cli(*base, "--treatment-labels", "placebo,drug")
    assert res.returncode == 2, res.stderr
    assert "column 'pid'" in res.stderr and "pass --id pid" in res.stderr
    assert "categorical" not in res.stderr
    # a text covariate not declared categorical: the hint is the flag
    res = run_cli(*base, "--treatment-labels", "placebo,drug", "--id", "pid")
    assert res.returncode == 2
    assert "pass --categorical stage" in res.stderr and "categorical=[" not in res.stderr
    assert "pd.to_numeric" not in res.stderr
    # a text treatment without labels: the hint is --treatment-labels
    res = run_cli(*base, "--id", "pid", "--categorical", "stage")
    assert res.returncode == 2 and "--treatment-labels drug,placebo" in res.stderr
    assert "treatment_labels=" not in res.stderr


def test_translate_rewrites_arguments_with_flags_only():
    from itelib.cli_vocabulary import translate

    assert translate("pass categorical=['stage', 'grade'].") == ("pass --categorical stage,grade.")
    assert translate(
        'Fix: fit(..., propensity="estimate") or HierarchicalITE(prognosis="additive")'
    ) == ("Fix: --propensity estimate or --prognosis additive")
    assert translate("Set num_warmup=2000 and target_accept=0.99.") == (
        "Set --warmup 2000 and --target-accept 0.99."
    )
    assert translate("or use outcome='continuous'.") == "or use --outcome-type continuous."
    unchanged = "outcome 'y' is constant; max_gb=4; X.to_frame()"
    assert translate(unchanged) == unchanged


def test_fit_missing_impute_keeps_every_row(tmp_path):
    trial = simulate("missing_at_random", n=100, seed=2)
    trial.data.drop(columns="site").to_csv(tmp_path / "gaps.csv", index=False)
    res = run_cli(
        "fit", str(tmp_path / "gaps.csv"), "--outcome", "y", "--treatment", "t",
        "--missing", "impute", "--imputations", "2", "--out", str(tmp_path / "out"), *SMALL,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    effects = pd.read_csv(tmp_path / "out" / "effects.csv")
    assert len(effects) == 100  # every row with an outcome and a treatment
    assert trial.X.isna().any(axis=1).sum() > 30
    report = json.loads((tmp_path / "out" / "diagnostics.json").read_text())
    assert report["parameters"]["missing"] == "impute"
    assert report["parameters"]["n_imputations"] == 2


def test_every_hint_is_a_flag_itelib_fit_has_or_is_marked_python_only():
    """A fix hint at the prompt names a flag `itelib fit` takes, or says the option is Python
    only: FLAGS and PYTHON_ONLY cover every estimator parameter, once, and every flag exists."""
    import itelib
    from itelib.cli import _parser
    from itelib.cli_vocabulary import FLAGS, PYTHON_ONLY, translate

    fit = next(a for a in _parser()._actions if a.dest == "command").choices["fit"]
    options = {o for a in fit._actions for o in a.option_strings}
    assert set(FLAGS.values()) <= options, set(FLAGS.values()) - options
    params = set()
    for cls in (itelib.HierarchicalITE, itelib.BayesianCausalForest, itelib.CausalForest):
        params |= set(cls().get_params())
    assert not PYTHON_ONLY & set(FLAGS)
    unmapped = params - PYTHON_ONLY - set(FLAGS)
    assert not unmapped, unmapped
    assert translate("Fix: cv=6 or fewer.") == (
        "Fix: cv=6 or fewer. (cv: no itelib fit flag; set it in Python.)"
    )
    # a sentence's full stop is not part of the number (was '--chains 4.0')
    assert translate("Fix: pass e.g. num_chains=4.") == "Fix: pass e.g. --chains 4."
    assert translate("use missing='impute' or n_imputations=10.") == (
        "use --missing impute or --imputations 10."
    )


def test_bench_errors_keep_the_study_files_words(tmp_path, capsys):
    """A study file's keys are TOML keys, not `itelib fit` flags: not translated."""
    path = tmp_path / "bad.toml"
    path.write_text('name = "t"\nseed = 1\nreplications = 1\n[[dgp]]\nname = "multisite_rct"\n'
                    'n = [100]\n[[estimator]]\nname = "h"\nkind = "itelib:HierarchicalITE"\n'
                    'params = { num_chains = "4" }\n')  # fmt: skip
    from itelib.cli import main

    assert main(["bench", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "num_chains=4." in err and "--chains" not in err and "[[estimator]] 'h'" in err


def test_fit_survival_outcome_reports_rmst_differences(tmp_path):
    """--outcome-type survival: --outcome is the time, --event the indicator (kept out of the
    covariates), --horizon the RMST's; the effects say RMST everywhere and the model reloads.
    Flags without their survival partner are refused before the CSV is read."""
    trial = simulate("survival_weibull", n=120, seed=2)
    frame = trial.data.rename_axis("pid")
    csv, out = tmp_path / "surv.csv", tmp_path / "out"
    frame.to_csv(csv)
    base = ["fit", str(csv), "--outcome", "time", "--treatment", "t", "--id", "pid"]
    res = run_cli(*base, "--event", "event", "--outcome-type", "survival", "--horizon", "20",
                  "--estimator", "bcf", "--chains", "1", "--warmup", "20", "--samples", "20",
                  "--no-progress", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert ("Effects (difference in restricted mean survival time up to 20 (time column "
            "'time'), treated minus control)") in res.stdout  # fmt: skip
    assert "Average effect (RMST difference): " in res.stdout
    effects = pd.read_csv(out / "effects.csv", index_col=0)
    assert effects["scale"].eq("rmst").all() and list(effects.index[:2]) == ["p0000", "p0001"]
    assert np.all(effects["mean"].abs() < 20)
    back = itelib.BayesianCausalForest.load(out / "model.nc")
    assert back.outcome_ == "survival" and back.horizon_ == 20.0
    assert back.data_.feature_names == ("x1", "x2", "x3", "x4", "x5")  # not the event column
    res = run_cli(*base, "--outcome-type", "survival", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "needs the event column. Fix: add --event COLUMN" in res.stderr
    res = run_cli(*base, "--horizon", "20", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "--horizon is for survival outcomes" in res.stderr
    res = run_cli(*base, "--event", "event", "--outcome-type", "survival", "--estimator",
                  "causal-forest", "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.returncode == 2 and "CausalForest does not take survival" in res.stderr
    assert "BayesianCausalForest with --outcome-type survival" in res.stderr
    assert not (tmp_path / "o").exists()
