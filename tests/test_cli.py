"""The command line, run as a user runs it: in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

import itelib
from itelib import EffectPosterior

SMALL = ["--chains", "2", "--warmup", "150", "--samples", "150", "--no-progress"]


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "itelib.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
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
    assert "age" in res.stderr and "2" in res.stderr
    # row ids are the CSV's row numbers (header is row 1): the NaNs sit on rows 3 and 6
    assert "3" in res.stderr and "6" in res.stderr
    assert not (tmp_path / "out").exists()


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
    for estimator, shape in (("bcf", (2, 150, 200)), ("causal-forest", (1, 1000, 200))):
        out = tmp_path / estimator
        res = run_cli("demo", "--n", "200", "--out", str(out), "--estimator", estimator, *SMALL)
        assert res.returncode == 0, res.stderr
        assert "Fitted " in res.stdout and "coverage of 95% intervals" in res.stdout
        post = EffectPosterior.load(out / "posterior.nc")
        assert post.draws().shape == shape
        assert post.attrs["estimator"] in {"BayesianCausalForest", "CausalForest"}
    assert "normal approximation" in res.stdout  # the causal forest says what its draws are
