"""The study report: a markdown table per DGP, paired comparisons, and two plots.

Written next to the results: ``report.md``, ``calibration.png`` (nominal against empirical
coverage of the patient effects, one panel per DGP) and ``pehe.png`` (sqrt-PEHE per estimator).
Estimators whose ``kind`` starts with ``itelib:`` are ours; the rest are peers. The report says
in words where one of ours is behind the best peer.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from itelib._io import atomic_write, atomic_write_text

__all__ = ["summarize", "write_report"]

LEVEL_COLUMNS = ("cov50", "cov80", "cov90", "cov95")
METRICS = (
    "sqrt_pehe", "abs_ate_error", "ate_covered", *LEVEL_COLUMNS, "width95", "crps", "pit_ks",
    "fit_seconds", "peak_rss_mb",
)  # fmt: skip


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


def _versions() -> str:
    names = ("itelib", "jax", "numpyro", "bartz", "econml", "stochtree", "pymc", "dask")
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def write_report(
    rows: pd.DataFrame, out_dir: str | Path, kinds: dict[str, str] | None = None
) -> Path:
    """Write ``report.md`` and the plots next to the results; returns the report's path."""
    out = Path(out_dir)
    kinds = kinds or {}
    ours = {e for e, k in kinds.items() if k.startswith("itelib:")}
    lines = [
        "# Calibration study",
        "",
        f"Machine: {platform.machine()}, {__import__('os').cpu_count()} cores, Python "
        f"{platform.python_version()}. Versions: {_versions()}.",
        "",
    ]
    errors = rows[rows["error"].fillna("") != ""] if "error" in rows else rows.iloc[:0]
    if len(errors):
        lines += [f"**{len(errors)} cells failed**: "
                  + "; ".join(f"{r.dgp}/{r.n}/{r.estimator}#{r.replication}: {r.error[:120]}"
                              for r in errors.itertuples()), ""]  # fmt: skip
    good = rows.drop(errors.index)
    table = summarize(good)
    behind = []
    for (dgp, n), block in table.groupby(level=["dgp", "n"]):
        lines += [f"## {dgp}, n = {n}", ""]
        fmt = block.droplevel(["dgp", "n"])
        cols = [c for c in METRICS if ("mean", c) in fmt]
        header = "| estimator | " + " | ".join(cols) + " |"
        lines += [header, "|" + " --- |" * (len(cols) + 1)]
        for est, r in fmt.iterrows():
            cells = [
                f"{r[('mean', c)]:.3f} ± {r[('se', c)]:.3f}" if np.isfinite(r[("mean", c)]) else "–"
                for c in cols
            ]
            name = f"**{est}**" if est in ours else est
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        peers = [e for e in fmt.index if e not in ours]
        subset = good[(good.dgp == dgp) & (good.n == n)]
        if peers and ours:
            best = min(peers, key=lambda e: fmt.loc[e, ("mean", "sqrt_pehe")])
            lines += [
                "",
                f"Paired sqrt-PEHE difference against the best peer ({best}), same seeds:",
            ]
            for est in sorted(ours & set(fmt.index)):
                d, se, k = _paired(subset, est, best)
                lines.append(f"- {est}: {d:+.3f} ± {se:.3f} over {k} replications")
                if np.isfinite(d) and d > 0 and (not np.isfinite(se) or d > 2 * se):
                    behind.append(f"{est} is less accurate than {best} on {dgp} (n = {n}): "
                                  f"sqrt-PEHE {d:+.3f} ± {se:.3f} worse.")  # fmt: skip
                cov = fmt.loc[est, ("mean", "cov95")] if ("mean", "cov95") in fmt else np.nan
                peer_cov = fmt.loc[best, ("mean", "cov95")] if ("mean", "cov95") in fmt else np.nan
                if (
                    np.isfinite(cov)
                    and np.isfinite(peer_cov)
                    and abs(cov - 0.95) > abs(peer_cov - 0.95) + 0.02
                ):
                    behind.append(
                        f"{est}'s 95% intervals are worse calibrated than {best}'s on {dgp} "
                        f"(n = {n}): coverage {cov:.3f} against {peer_cov:.3f}."
                    )
        lines.append("")
    lines += ["## Where itelib is behind", ""]
    lines += [f"- {b}" for b in behind] or ["- Nowhere in this study (by the rules above)."]
    lines += ["", "![calibration](calibration.png)", "", "![sqrt-PEHE](pehe.png)", ""]
    _plots(good, table, out)
    target = out / "report.md"
    atomic_write_text(target, "\n".join(lines))
    return target


def _plots(rows: pd.DataFrame, table: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table.groupby(level=["dgp", "n"]))
    if not groups:
        return
    nominal = [0.5, 0.8, 0.9, 0.95]
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 4), squeeze=False)
    for ax, ((dgp, n), block) in zip(axes[0], groups, strict=True):
        ax.plot([0.4, 1], [0.4, 1], color="grey", lw=1, ls="--")
        for est, r in block.droplevel(["dgp", "n"]).iterrows():
            emp = [r.get(("mean", c), np.nan) for c in LEVEL_COLUMNS]
            if np.isfinite(emp).any():
                ax.plot(nominal, emp, marker="o", label=est)
        ax.set(title=f"{dgp}\nn = {n}", xlabel="nominal", ylabel="empirical coverage")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(out / "calibration.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)

    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.5), squeeze=False)
    for ax, ((dgp, n), _block) in zip(axes[0], groups, strict=True):
        sub = rows[(rows.dgp == dgp) & (rows.n == n)]
        names = sorted(sub.estimator.unique())
        ax.boxplot([sub[sub.estimator == e].sqrt_pehe.dropna() for e in names], tick_labels=names)
        ax.set(title=f"{dgp}, n = {n}", ylabel="sqrt-PEHE")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.tight_layout()
    atomic_write(out / "pehe.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
