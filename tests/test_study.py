"""Calibration studies: seeds, a real 2-process LocalCluster, kill-and-resume, the report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from itelib.calibration.report import write_report
from itelib.calibration.study import cells, collect, load_config, run_cell, run_study

REPO = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
seed = 7
replications = {reps}

[[dgp]]
name = "multisite_rct"
n = [120]

[[dgp]]
name = "hahn_linear_heterogeneous"
n = [120]
propensity = "estimate"

[[estimator]]
name = "causal_forest"
kind = "itelib:CausalForest"
params = {{ n_estimators = 40, cv = 2, n_jobs = 1, num_draws = 200 }}

[[estimator]]
name = "drlearner"
kind = "peer:econml_drlearner"
"""


def tiny_config(tmp_path: Path, reps: int = 2) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(reps=reps))
    return path


def test_seeds_pair_estimators_and_make_each_cell_reproducible_alone(tmp_path):
    config = load_config(tiny_config(tmp_path))
    all_cells = cells(config)
    assert len(all_cells) == 2 * 2 * 2 and len({c.key for c in all_cells}) == 8
    by_data = {}
    for c in all_cells:
        by_data.setdefault((c.dgp, c.n, c.replication), set()).add(c.data_seed)
    assert all(len(s) == 1 for s in by_data.values())  # same trial for every estimator
    assert len({next(iter(s)) for s in by_data.values()}) == 4  # different trials otherwise
    assert cells(config) == all_cells  # the same keys and seeds when rebuilt
    assert [c.replication for c in all_cells] == [0] * 4 + [1] * 4  # replication-major
    one = all_cells[0]
    a, b = run_cell(one), run_cell(one)
    assert a["error"] == "" and a["sqrt_pehe"] == b["sqrt_pehe"] and a["cov95"] == b["cov95"]


def test_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nseed = 1\nreplications = 1\n[[dgp]]\nname = "nope"\nn = [10]\n'
                   '[[estimator]]\nname = "a"\nkind = "itelib:CausalForest"\n')  # fmt: skip
    with pytest.raises(ValueError, match="unknown dgp 'nope'"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_a_study_on_a_two_process_local_cluster_writes_rows_and_a_report(tmp_path):
    config = load_config(tiny_config(tmp_path))
    out = tmp_path / "out"
    # Another cluster's dashboard on Dask's default port 8787 (a second study, a notebook)
    # must not stop this one: dashboard_address=None fell back to 8787 and failed to start.
    with socket.socket() as other:
        with contextlib.suppress(OSError):  # already taken by someone else: as good
            other.bind(("", 8787))
            other.listen()
        rows = run_study(config, out, n_workers=2, progress_bar=False)
    assert len(rows) == 8 and set(rows.key) == {c.key for c in cells(config)}
    assert (rows.error == "").all(), rows.error.tolist()
    assert {"sqrt_pehe", "cov95", "crps", "pit_ks", "fit_seconds", "peak_rss_mb"} <= set(rows)
    assert rows[rows.estimator == "drlearner"].cov95.isna().all()  # point estimates only
    assert rows.peak_rss_mb.min() > 10
    report = write_report(rows, out, {e["name"]: e["kind"] for e in config.estimators})
    text = report.read_text()
    assert "## multisite_rct, n = 120" in text and "Where itelib is behind" in text
    assert (out / "calibration.png").stat().st_size > 0 and (out / "pehe.png").exists()


def test_killing_a_run_then_rerunning_finishes_with_no_duplicate_and_no_lost_row(tmp_path):
    config_path = tiny_config(tmp_path, reps=4)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "itelib.cli", "bench", "--config", str(config_path),
               "--out", str(out), "--workers", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((out / "cells").glob("*.json"))) < 3:
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-study
    proc.wait()
    proc.stderr.close()
    before = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    total = len(cells(load_config(config_path)))
    assert 3 <= len(before) < total, "the kill came too late to test resuming"
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = collect(out)
    assert len(rows) == total and rows.key.is_unique
    for name, text in before.items():  # finished cells were kept, not redone
        assert (out / "cells" / name).read_text() == text
    assert all(json.loads(t)["error"] == "" for t in before.values())
    assert (out / "report.md").exists()


def test_named_configs_ship_inside_the_package_and_load():
    from itelib.calibration import study

    named = study.named_configs()
    assert {"quick", "full", "bcf_sites"} <= set(named)
    package = Path(study.__file__).parent
    for name, config in named.items():
        assert study.config_path(name).is_relative_to(package)
        assert config.summary and config.run_time, name  # what `itelib bench --help` shows
    with pytest.raises(FileNotFoundError, match="itelib ships"):
        study.config_path("no_such_study")


def test_bench_help_lists_the_named_configs_with_their_run_time(capsys):
    from itelib.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    shown = capsys.readouterr().out
    for name in ("quick", "full", "bcf_sites"):
        assert f"  {name} " in shown
    assert "run time: under 5 minutes on 2 cores" in shown


def test_a_peer_that_is_not_installed_is_skipped_and_the_report_says_how_to_install_it(
    tmp_path, monkeypatch
):
    """The quick study on a base install (no stochtree): its cells are not run (they would
    fail), and the report names the peer and the pip command."""
    import importlib.util

    from itelib.calibration import peers, study

    real = importlib.util.find_spec
    monkeypatch.setattr(
        peers.importlib.util, "find_spec", lambda n, *a: None if n == "stochtree" else real(n, *a)
    )
    config = study.load_config(study.config_path("quick"))
    skipped = study.unavailable_estimators(config)
    assert skipped == {"stochtree_bcf": 'stochtree is not installed (pip install "itelib[bench]")'}
    kept = study.without_estimators(config, skipped)
    assert [e["name"] for e in kept.estimators] == [
        e["name"] for e in config.estimators if e["name"] != "stochtree_bcf"
    ]
    # the remaining cells keep their keys (a resumed study reruns nothing)
    assert {c.key for c in study.cells(kept)} < {c.key for c in study.cells(config)}
    rows = pd.DataFrame(
        [{"study": "quick", "dgp": "multisite_rct", "n": 250, "estimator": "causal_forest",
          "kind": "itelib:CausalForest", "replication": 0, "error": "", "sqrt_pehe": 0.5,
          "cov95": 0.9, "width95": 1.0, "fit_seconds": 1.0}]
    )  # fmt: skip
    report = write_report(rows, tmp_path, skipped=skipped).read_text()
    assert (
        'Skipped **stochtree_bcf**: stochtree is not installed (pip install "itelib[bench]")'
        in (report)
    )


# -- a study file is data (issue 23) -------------------------------------------------------------
ADAPTER = """
import pathlib
import numpy as np

pathlib.Path(__file__).with_name("ran").write_text("ran")


def fit(trial, fit, params, seed):
    return {"mean": np.zeros(len(trial.tau))}
"""


def _code_study(tmp_path: Path) -> Path:
    (tmp_path / "adapter.py").write_text(ADAPTER)
    path = tmp_path / "code.toml"
    path.write_text('name = "code"\nseed = 1\nreplications = 1\n[[dgp]]\n'
                    'name = "multisite_rct"\nn = [100]\n[[estimator]]\nname = "mine"\n'
                    'kind = "adapter.py:fit"\n')  # fmt: skip
    return path


def test_an_adapter_file_runs_only_when_code_is_allowed(tmp_path):
    from itelib.calibration import study

    path = _code_study(tmp_path)
    with pytest.raises(ValueError, match=r"would import and run.*--allow-code"):
        load_config(path)
    config = load_config(path, allow_code=True)
    assert config.allow_code
    (cell,) = cells(config)
    assert cell.allow_code
    # allowing code changes no cell's key: a study resumed with the flag reruns nothing
    assert cell.key == cells(study.replace(config, allow_code=False))[0].key
    # the runner refuses on its own too, whoever built the cell
    refused = run_cell(study.replace(cell, allow_code=False))
    assert "--allow-code" in refused["error"] and not (tmp_path / "ran").exists()
    row = run_cell(cell)
    assert row["error"] == "" and (tmp_path / "ran").exists() and "allow_code" not in row


def test_bench_refuses_code_without_the_flag_and_names_it(tmp_path, capsys):
    from itelib.cli import EXIT_BAD_INPUT, main

    path = _code_study(tmp_path)
    out = tmp_path / "out"
    assert main(["bench", "--config", str(path), "--out", str(out), "--no-progress"]) == (
        EXIT_BAD_INPUT
    )
    err = capsys.readouterr().err
    assert "--allow-code" in err and "Traceback" not in err
    assert not (tmp_path / "ran").exists() and not out.exists()


def test_a_named_config_is_a_plain_name(tmp_path):
    from itelib.calibration import study

    for name in ("../quick", "configs/../quick", "/etc/passwd", ".hidden"):
        with pytest.raises(FileNotFoundError, match="itelib ships"):
            study.config_path(name)


def test_outputs_stay_inside_the_output_folder(tmp_path):
    from itelib.calibration import study

    assert study.inside(tmp_path, tmp_path / "a" / "b.json") == (tmp_path / "a/b.json").resolve()
    with pytest.raises(ValueError, match="outside the output folder"):
        study.inside(tmp_path / "out", tmp_path / "out" / ".." / "escaped")
    cell = cells(load_config(tiny_config(tmp_path)))[0]
    with pytest.raises(ValueError, match="outside the output folder"):
        study._run_and_store(study.replace(cell, key="../../escaped"), str(tmp_path / "out"))
    assert not (tmp_path / "escaped.json").exists()


def test_the_report_of_a_study_whose_cells_all_failed_lists_the_failures(tmp_path):
    rows = pd.DataFrame(
        [{"study": "t", "dgp": "multisite_rct", "n": 100, "estimator": e, "kind": k,
          "replication": r, "error": f"TypeError: broken {e}"}
         for e, k in (("cf", "itelib:CausalForest"), ("dr", "peer:econml_drlearner"))
         for r in range(2)]
    )  # fmt: skip
    text = write_report(rows, tmp_path).read_text()
    assert "**4 cells failed**" in text and "multisite_rct/100/dr#1: TypeError: broken dr" in text
    assert "**cf**: no finished cell without an error." in text
    assert "No cell finished without an error" in text and "calibration.png" not in text
