"""The study report: overview tables, where itelib is behind, a table per design, two plots.

Written next to the results: ``report.md``, ``calibration.png`` (nominal against empirical
coverage of the patient effects, one panel per design) and ``pehe.png`` (sqrt-PEHE per
estimator). Estimators whose ``kind`` starts with ``itelib:`` are ours; the rest are peers.
"""

from __future__ import annotations

import math
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from itelib._io import atomic_write, atomic_write_text

__all__ = ["behind", "summarize", "write_report"]

LEVEL_COLUMNS = ("cov50", "cov80", "cov90", "cov95")
METRICS = (
    "sqrt_pehe", "abs_ate_error", "ate_covered", *LEVEL_COLUMNS, "width95", "crps", "pit_ks",
    "fit_seconds", "peak_rss_mb",
)  # fmt: skip
# An estimator is flagged as worse calibrated when its 95% coverage is this much farther from
# 0.95 than the best-calibrated peer's: 0.02 is about two standard errors of a design's mean
# coverage over 5 replications (measured se 0.005-0.015 in the full study).
CALIBRATION_SLACK = 0.02
# Our 95% intervals "miss their level" below this coverage, whatever the peers do.
LOW_COVERAGE = 0.90


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over replications per (dgp, n, estimator)."""
    ok = rows[rows.get("error", "").fillna("") == ""] if "error" in rows else rows
    present = [m for m in METRICS if m in ok]
    grouped = ok.groupby(["dgp", "n", "estimator"])[present]
    mean = grouped.mean()
    se = grouped.std() / np.sqrt(grouped.count())
    return pd.concat({"mean": mean, "se": se}, axis=1)


def _paired(
    rows: pd.DataFrame, ours: str, peer: str, metric: str = "sqrt_pehe"
) -> tuple[float, float, int]:
    wide = rows.pivot_table(index=["dgp", "n", "replication"], columns="estimator", values=metric)
    if ours not in wide or peer not in wide:
        return float("nan"), float("nan"), 0
    diff = (wide[ours] - wide[peer]).dropna()
    se = float(diff.std() / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return float(diff.mean()), se, len(diff)


def behind(rows: pd.DataFrame, ours: set[str]) -> dict[str, list[str]]:
    """Per estimator of ours, the plain-words findings where it is behind.

    - less accurate: its sqrt-PEHE is worse than the most accurate peer's on the same seeds, by
      more than two standard errors of the paired difference (so at least 2 replications);
    - worse calibrated: its 95% coverage is farther from 0.95 than the best-calibrated peer's
      (among peers with intervals) by more than ``CALIBRATION_SLACK``;
    - too narrow: otherwise, its 95% coverage is below ``LOW_COVERAGE`` (the peers may be
      no better: the user still needs to know).
    """
    table = summarize(rows)
    found: dict[str, list[str]] = {e: [] for e in sorted(ours & set(rows.estimator))}
    for (dgp, n), block in table.groupby(level=["dgp", "n"]):
        mean = block.droplevel(["dgp", "n"])["mean"]
        peers = [e for e in mean.index if e not in ours]
        subset = rows[(rows.dgp == dgp) & (rows.n == n)]
        where = f"{dgp} (n = {n})"
        with_intervals = [e for e in peers if np.isfinite(mean.loc[e].get("cov95", np.nan))]
        calibrated = (
            min(with_intervals, key=lambda e: abs(mean.loc[e, "cov95"] - 0.95))
            if with_intervals
            else None
        )
        scored = [e for e in peers if np.isfinite(mean.loc[e].get("sqrt_pehe", np.nan))]
        accurate = min(scored, key=lambda e: mean.loc[e, "sqrt_pehe"]) if scored else None
        for est in found:
            if est not in mean.index:
                continue
            if accurate is not None:
                d, se, k = _paired(subset, est, accurate)
                if np.isfinite(d) and np.isfinite(se) and d > 2 * se:
                    found[est].append(
                        f"less accurate than {accurate} on {where}: sqrt-PEHE "
                        f"{mean.loc[est, 'sqrt_pehe']:.3f} against "
                        f"{mean.loc[accurate, 'sqrt_pehe']:.3f} (paired difference "
                        f"{d:+.3f} ± {se:.3f}, {k} replications)"
                    )
            cov = mean.loc[est].get("cov95", np.nan)
            if not np.isfinite(cov):
                continue
            worse = (
                calibrated is not None
                and abs(cov - 0.95) > abs(mean.loc[calibrated, "cov95"] - 0.95) + CALIBRATION_SLACK
            )
            if worse:
                found[est].append(
                    f"worse calibrated than {calibrated} on {where}: 95% coverage "
                    f"{cov:.3f} against {mean.loc[calibrated, 'cov95']:.3f}"
                )
            elif cov < LOW_COVERAGE:  # behind the level, if not behind a peer
                peer = f"; {calibrated}'s {mean.loc[calibrated, 'cov95']:.3f}" if calibrated else ""
                found[est].append(f"95% intervals too narrow on {where}: coverage {cov:.3f}{peer}")
    return found


def _winners(values: pd.Series) -> pd.Series:
    """Per design, how often each estimator has the smallest value (NaN never wins)."""
    values = values.dropna()
    if values.empty:
        return pd.Series(dtype=int)
    best = values.groupby(level=["dgp", "n"]).idxmin()
    return best.map(lambda key: key[-1]).value_counts()


def _tally(table: pd.DataFrame) -> dict[str, str]:
    """Per estimator: on how many designs it is the most accurate, and the best calibrated."""
    if "mean" not in table.columns.get_level_values(0):  # no cell finished without an error
        return {}
    mean = table["mean"]
    total = mean.groupby(level=["dgp", "n"]).ngroups
    nan = pd.Series(np.nan, index=mean.index)
    best_pehe = _winners(mean.get("sqrt_pehe", nan))
    best_cov = _winners((mean.get("cov95", nan) - 0.95).abs())
    return {
        est: f"the most accurate of all estimators on {best_pehe.get(est, 0)} of {total} "
        f"designs, the closest to 95% coverage on {best_cov.get(est, 0)}"
        for est in mean.index.get_level_values("estimator").unique()
    }


def _slowdown(table: pd.DataFrame, est: str, peers: list[str]) -> str:
    """How much longer ``est`` fits than the fastest peer with intervals, across designs."""
    seconds = table[("mean", "fit_seconds")].unstack("estimator")
    cov = table[("mean", "cov95")].unstack("estimator") if ("mean", "cov95") in table else None
    rivals = [p for p in peers if cov is not None and cov[p].notna().any()]
    if not rivals or est not in seconds:
        return ""
    ratio = (seconds[est] / seconds[rivals].min(axis=1)).dropna()
    if ratio.empty or ratio.median() <= 1:  # not behind on speed
        return ""
    worst = ratio.idxmax()
    return (
        f"fit time {ratio.median():.1f}x the fastest peer with intervals (median over designs; "
        f"{ratio.max():.1f}x on {worst[0]}, n = {worst[1]}: {seconds.loc[worst, est]:.1f} s)"
    )


def _versions() -> str:
    names = ("itelib", "jax", "numpyro", "bartz", "econml", "stochtree", "pymc", "dask")
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def _order(estimators: list[str], ours: set[str]) -> list[str]:
    return sorted(estimators, key=lambda e: (e not in ours, e))


def _overview(table: pd.DataFrame, metric: str, ours: set[str]) -> list[str]:
    if ("mean", metric) not in table:
        return []
    wide = table[("mean", metric)].unstack("estimator")
    names = _order(list(wide.columns), ours)
    lines = [
        "| design | n | " + " | ".join(f"**{e}**" if e in ours else e for e in names) + " |",
        "|" + " --- |" * (len(names) + 2),
    ]
    for (dgp, n), r in wide[names].iterrows():
        vals = [f"{v:.3f}" if np.isfinite(v) else "–" for v in r]
        lines.append(f"| {dgp} | {n} | " + " | ".join(vals) + " |")
    return lines


def write_report(
    rows: pd.DataFrame,
    out_dir: str | Path,
    kinds: dict[str, str] | None = None,
    skipped: dict[str, str] | None = None,
) -> Path:
    """Write ``report.md`` and the plots next to the results; returns the report's path.

    ``kinds`` maps estimator names to their config ``kind``; the cells' own ``kind`` column,
    where present, takes precedence (it says what ran, even for estimators since dropped from
    the config). ``skipped`` maps estimators that were not run to the reason (e.g. a peer's
    package is not installed, and how to install it); the report lists them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = dict(kinds or {})
    if "kind" in rows:
        kinds |= dict(zip(rows.estimator, rows.kind, strict=True))
    ours = {e for e, k in kinds.items() if k.startswith("itelib:")}
    errors = rows[rows["error"].fillna("") != ""] if "error" in rows else rows.iloc[:0]
    good = rows.drop(errors.index)
    table = summarize(good)
    reps = sorted(good.replication.unique()) if "replication" in good else []
    names = ", ".join(sorted(rows["study"].unique())) if "study" in rows else ""
    lines = [
        f"# Calibration study {names}".rstrip(),
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Versions: {_versions()}.",
        "",
        f"{len(good)} cells: {good.groupby(['dgp', 'n']).ngroups} designs and sizes, "
        f"{good.estimator.nunique()} estimators, replications {reps[0] if reps else '-'}-"
        f"{reps[-1] if reps else '-'}. itelib's estimators are in bold; the others are peers "
        "run on the same trials with the same seeds. Every number is a mean over replications; "
        "the tables per design give standard errors.",
        "",
    ]
    if not len(good):
        lines += ["No cell finished without an error: there is nothing to compare yet.", ""]
    for est, reason in sorted((skipped or {}).items()):
        lines += [f"Skipped **{est}**: {reason}.", ""]
    if len(errors):
        lines += [f"**{len(errors)} cells failed**: "
                  + "; ".join(f"{r.dgp}/{r.n}/{r.estimator}#{r.replication}: {r.error[:120]}"
                              for r in errors.itertuples()), ""]  # fmt: skip
    lines += ["## Accuracy: sqrt-PEHE (lower is better)", "", *_overview(table, "sqrt_pehe", ours)]
    lines += ["", "## Calibration: coverage of the patients' 95% intervals (target 0.95)", ""]
    lines += [*_overview(table, "cov95", ours), ""]
    lines += ["## Where itelib is behind", ""]
    findings = behind(good, ours)
    tally = _tally(table)
    peers = [e for e in good.estimator.unique() if e not in ours]
    for est in sorted(ours - set(findings)):  # every cell of it failed, or none ran
        lines += [f"**{est}**: no finished cell without an error.", ""]
    for est, items in findings.items():
        slow = _slowdown(table, est, peers) if "fit_seconds" in good else ""
        items = ([slow] if slow else []) + items
        lines += [f"**{est}** ({tally.get(est, '')}): "
                  + ("nowhere, by the rules below." if not items else ""), ""]  # fmt: skip
        lines += [f"- {item}" for item in items] + ([""] if items else [])
    lines += [
        "Rules: less accurate = paired sqrt-PEHE worse than the most accurate peer's by more "
        "than two standard errors (2 or more replications); fit time = against the fastest peer "
        "that gives intervals, listed when the median is above 1x; worse calibrated = 95% "
        "coverage farther from 0.95 than the "
        f"best-calibrated peer's by more than {CALIBRATION_SLACK}; too narrow = coverage below "
        f"{LOW_COVERAGE}.",
        "",
    ]
    if len(good):  # the plots exist only where a cell finished
        lines += ["![calibration](calibration.png)", "", "![sqrt-PEHE](pehe.png)", ""]
    for (dgp, n), block in table.groupby(level=["dgp", "n"]):
        lines += [f"## {dgp}, n = {n}", ""]
        fmt = block.droplevel(["dgp", "n"])
        cols = [c for c in METRICS if ("mean", c) in fmt]
        lines += ["| estimator | " + " | ".join(cols) + " |", "|" + " --- |" * (len(cols) + 1)]
        for est in _order(list(fmt.index), ours):
            r = fmt.loc[est]
            vals = [
                f"{r[('mean', c)]:.3f} ± {r[('se', c)]:.3f}" if np.isfinite(r[("mean", c)]) else "–"
                for c in cols
            ]
            name = f"**{est}**" if est in ours else est
            lines.append(f"| {name} | " + " | ".join(vals) + " |")
        lines.append("")
    _plots(good, table, out)
    target = out / "report.md"
    atomic_write_text(target, "\n".join(lines))
    return target


def _grid(count: int, width: float, height: float) -> tuple:
    import matplotlib.pyplot as plt

    ncols = min(count, 4)
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat


def _plots(rows: pd.DataFrame, table: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table.groupby(level=["dgp", "n"]))
    if not groups:
        return
    names = sorted(rows.estimator.unique())
    colors = {e: f"C{i}" for i, e in enumerate(names)}
    nominal = [0.5, 0.8, 0.9, 0.95]
    fig, axes = _grid(len(groups), 3.6, 3.4)
    for ax, ((dgp, n), block) in zip(axes, groups, strict=False):
        ax.plot([0.4, 1], [0.4, 1], color="grey", lw=1, ls="--")
        for est, r in block.droplevel(["dgp", "n"]).iterrows():
            emp = [r.get(("mean", c), np.nan) for c in LEVEL_COLUMNS]
            if np.isfinite(emp).any():
                ax.plot(nominal, emp, marker="o", ms=3, color=colors[est], label=est)
        ax.set(title=f"{dgp}, n = {n}", xlabel="nominal", ylabel="empirical coverage")
        ax.title.set_fontsize(9)
    legend = {}  # every panel's lines: an estimator may be missing from the first design
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend), fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    atomic_write(out / "calibration.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)

    fig, axes = _grid(len(groups), 3.6, 3.2)
    for ax, ((dgp, n), _block) in zip(axes, groups, strict=False):
        sub = rows[(rows.dgp == dgp) & (rows.n == n)]
        present = [e for e in names if e in set(sub.estimator)]
        box = ax.boxplot(
            [sub[sub.estimator == e].sqrt_pehe.dropna() for e in present],
            tick_labels=present, patch_artist=True,
        )  # fmt: skip
        for patch, est in zip(box["boxes"], present, strict=True):
            patch.set_facecolor(colors[est])
        # a peer that fails badly on one design (DR-learner's huge weights) would flatten the rest
        ax.set_yscale("log")
        ax.set(title=f"{dgp}, n = {n}", ylabel="sqrt-PEHE (log)")
        ax.title.set_fontsize(9)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    atomic_write(out / "pehe.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
