"""The study report: what it says about where itelib is behind, and --report-only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from itelib.calibration.report import CALIBRATION_SLACK, behind, write_report
from itelib.cli import EXIT_BAD_INPUT, main

OURS = {"ours"}
KINDS = {"ours": "itelib:HierarchicalITE", "peer": "peers.py:p", "points": "peers.py:q"}


def _rows() -> pd.DataFrame:
    """Three designs, 4 replications, known answers.

    - "worse": ours 0.5 less accurate on every seed (noise sd 0.01) and covers 0.70 where the
      peer covers 0.94;
    - "better": ours more accurate and at 0.95; a point-estimate peer ("points") is the most
      accurate peer there, and has no intervals to compare with;
    - "narrow": ours covers 0.85, the peer 0.84: not behind the peer, but below the level.
    """
    rng = np.random.default_rng(0)
    spec = {  # design: {estimator: (sqrt_pehe, cov95)}
        "worse": {"ours": (1.5, 0.70), "peer": (1.0, 0.94), "points": (2.0, np.nan)},
        "better": {"ours": (0.5, 0.95), "peer": (1.0, 0.93), "points": (0.9, np.nan)},
        "narrow": {"ours": (1.0, 0.85), "peer": (1.0, 0.84), "points": (3.0, np.nan)},
    }
    rows = []
    for dgp, ests in spec.items():
        for rep in range(4):
            shared = rng.normal(0, 0.2)  # the trial's difficulty, common to every estimator
            for est, (pehe, cov) in ests.items():
                rows.append(dict(
                    dgp=dgp, n=100, estimator=est, replication=rep, error="",
                    sqrt_pehe=pehe + shared + rng.normal(0, 0.01), cov95=cov,
                    fit_seconds={"ours": 10.0, "peer": 2.0, "points": 1.0}[est],
                    cov50=cov - 0.4, cov80=cov - 0.1, cov90=cov - 0.03,
                ))  # fmt: skip
    return pd.DataFrame(rows)


def test_behind_flags_less_accurate_worse_calibrated_and_too_narrow_and_nothing_else():
    found = behind(_rows(), OURS)["ours"]
    assert len(found) == 3, found
    worse = [f for f in found if "on worse (n = 100)" in f]
    assert any(f.startswith("less accurate than peer") for f in worse)
    assert any(f.startswith("worse calibrated than peer") and "0.700 against 0.940" in f
               for f in worse)  # fmt: skip
    assert any(f.startswith("95% intervals too narrow on narrow (n = 100): coverage 0.850")
               for f in found)  # fmt: skip
    assert not any("on better" in f for f in found)


def test_calibration_slack_decides_a_near_tie():
    rows = _rows()
    near = rows.dgp == "better"
    # ours 0.95 + slack + 0.01 away from the level against the peer's 0.02: flagged ...
    rows.loc[near & (rows.estimator == "ours"), "cov95"] = 0.95 + 0.02 + CALIBRATION_SLACK + 0.01
    assert any("worse calibrated" in f and "on better" in f for f in behind(rows, OURS)["ours"])
    # ... and inside the slack: not
    rows.loc[near & (rows.estimator == "ours"), "cov95"] = 0.95 + 0.02 + CALIBRATION_SLACK - 0.01
    assert not any("on better" in f for f in behind(rows, OURS)["ours"])


def test_report_only_writes_the_report_from_finished_cells(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'name = "tiny"\nseed = 1\nreplications = 1\n[[dgp]]\nname = "multisite_rct"\nn = [100]\n'
        '[[estimator]]\nname = "ours"\nkind = "itelib:HierarchicalITE"\n'
    )
    out = tmp_path / "out"
    args = ["bench", "--config", str(config), "--out", str(out), "--report-only"]
    assert main(args) == EXIT_BAD_INPUT  # nothing finished yet: said, not an empty report
    assert "no finished cells" in capsys.readouterr().err
    (out / "cells").mkdir(parents=True)
    for i, row in enumerate(_rows().to_dict("records")):
        (out / "cells" / f"{i}.json").write_text(json.dumps(row))
    assert main(args) == 0
    text = (out / "report.md").read_text()
    assert "## Accuracy: sqrt-PEHE" in text and "## Where itelib is behind" in text
    assert "less accurate than peer on worse (n = 100)" in text
    assert (out / "calibration.png").stat().st_size > 0 and (out / "pehe.png").exists()
    assert "cells in" in capsys.readouterr().out


def test_write_report_keeps_each_designs_table(tmp_path):
    report = write_report(_rows(), tmp_path, KINDS)
    text = report.read_text()
    for dgp in ("worse", "better", "narrow"):
        assert f"## {dgp}, n = 100" in text
    assert "| **ours** |" in text and "| points |" in text
    # against the fastest peer *with intervals*: "points" is faster but gives none
    assert "fit time 5.0x the fastest peer with intervals" in text


def _two_designs(ours_minus_peer: list[float], points: float = 3.0) -> pd.DataFrame:
    """One design, 4 replications: ours = peer + the given paired differences."""
    rows = []
    for rep, diff in enumerate(ours_minus_peer):
        for est, pehe in {"ours": 1.0 + diff, "peer": 1.0, "points": points}.items():
            seconds = {"ours": 1.0, "peer": 2.0, "points": 1.0}[est]
            rows.append(dict(dgp="d", n=100, estimator=est, replication=rep, error="",
                             sqrt_pehe=pehe, cov95=np.nan if est == "points" else 0.95,
                             fit_seconds=seconds))  # fmt: skip
    return pd.DataFrame(rows)


def test_less_accurate_needs_two_standard_errors_of_the_paired_difference():
    # mean +0.025, se 0.035: within noise, not flagged
    assert behind(_two_designs([0.1, -0.05, 0.08, -0.03]), OURS)["ours"] == []
    # mean +0.025, se 0.002: flagged
    (found,) = behind(_two_designs([0.03, 0.02, 0.025, 0.025]), OURS)["ours"]
    assert found.startswith("less accurate than peer on d (n = 100)")
    # one replication: no standard error, so no claim
    assert behind(_two_designs([0.5]), OURS)["ours"] == []


def test_the_most_accurate_peer_may_give_no_intervals_and_a_nan_peer_is_ignored():
    # "points" (no intervals) is the most accurate peer, and ours is behind it
    (found,) = behind(_two_designs([0.0, 0.0, 0.01, -0.01], points=0.5), OURS)["ours"]
    assert found.startswith("less accurate than points")
    rows = _two_designs([0.03, 0.02, 0.025, 0.025])
    nan_peer = rows[rows.estimator == "peer"].assign(estimator="a_nan_peer", sqrt_pehe=np.nan)
    (found,) = behind(pd.concat([rows, nan_peer]), OURS)["ours"]
    assert found.startswith("less accurate than peer")


def test_report_survives_missing_numbers_and_says_what_failed(tmp_path):
    rows = _two_designs([0.0, 0.1, 0.0, 0.1])
    rows.loc[rows.estimator == "ours", "fit_seconds"] = np.nan
    failed = rows[rows.estimator == "ours"].assign(estimator="broken", error="boom")
    point_first = rows[rows.estimator == "points"].assign(dgp="a_first")  # no intervals there
    kinds = {**KINDS, "broken": "itelib:BayesianCausalForest"}
    text = write_report(pd.concat([rows, failed, point_first]), tmp_path, kinds).read_text()
    assert "**broken**: no finished cell without an error." in text
    assert "4 cells failed" in text
    assert "- fit time" not in text  # ours has no times
    faster = write_report(_two_designs([0.0, 0.1, 0.0, 0.1]), tmp_path / "faster", KINDS)
    assert "- fit time" not in faster.read_text()  # 0.5x the peer's: not behind
    assert (tmp_path / "calibration.png").stat().st_size > 0
    assert (tmp_path / "pehe.png").stat().st_size > 0
    only_ours = write_report(rows[rows.estimator == "ours"], tmp_path / "alone", KINDS)
    assert "**ours** (the most accurate of all estimators on 1 of 1" in only_ours.read_text()
