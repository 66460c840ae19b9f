"""Three sites, three processes, one coordinator that never reads a patient row.

Each site keeps its patients in its own CSV file, in its own folder. The coordinator (this
process) only ever opens what the sites write for it: first-round moments (JSON), then
summary files (netCDF: counts and cross-products of the model's design, never a row). It fits
``HierarchicalITE`` from the summaries, the same posterior as a fit on the pooled rows, and
sends the fitted model back; each site computes its own patients' effects.

Run it as ``python examples/federated_sites.py`` (about a minute on 2 cores), or with
``--smoke`` for a short check. A site process is ``python examples/federated_sites.py site
FOLDER``: it runs both rounds, waiting for the coordinator's files in its folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SITES = ("north", "centre", "south")
SPEC = {"outcome": "y", "treatment": "t", "site": "site", "covariates": ["x1", "x2", "x3", "x4"],
        "prognosis": "additive", "effect_modifiers": "linear", "n_basis": 5}  # fmt: skip


# ------------------------------------------------------------------- what runs at a site
def _wait_for(path: Path, timeout: float = 600.0, procs: tuple = ()) -> Path:
    """Until the other side's file appears (written atomically: whole or absent); ``procs``:
    the sites' processes, one of which failing ends the wait."""
    start = time.monotonic()
    while not path.exists():
        if any(proc.poll() not in (None, 0) for proc in procs):
            raise SystemExit(f"a site failed before writing {path.name}")
        if time.monotonic() - start > timeout:
            raise SystemExit(f"no {path.name} from the coordinator after {timeout:.0f} s")
        time.sleep(0.05)
    return path


def site(folder: Path) -> None:
    """One site's process, all rounds: it reads only its own folder, and what leaves it are
    the moments and the summary file."""
    import pandas as pd

    from itelib import HierarchicalITE
    from itelib import federated as fed

    rows = pd.read_csv(folder / "patients.csv", index_col="patient")
    spec = fed.FederatedSpec(**json.loads((folder / "spec.json").read_text()))
    # round 1: counts, means, variances, ranges
    _write_text(folder / "moments.json", fed.site_moments(rows, spec).to_json())
    # round 2: cross-products under the agreed encoding
    agreement = fed.Agreement.from_dict(
        json.loads(_wait_for(folder / "agreement.json").read_text())
    )
    fed.write_summary(fed.site_summary(rows, agreement), folder / "summary.nc")
    # the posterior came back: this site's own patients' effects
    model = HierarchicalITE.load(_wait_for(folder / "model.nc"))
    post = model.effect(rows[list(spec.covariates)], site=rows["site"].iloc[0])
    post.summary().to_csv(folder / "effects.csv")


def _write_text(path: Path, text: str) -> None:
    """Whole or absent, for the reader polling for it."""
    tmp = path.with_suffix(".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------- the coordinator
def _make_sites(root: Path, smoke: bool) -> tuple[dict[str, Path], object]:
    """Stand-in for three hospitals: simulate one trial, give each site its own CSV."""
    from itelib.simulate import multisite_rct

    trial = multisite_rct(n=600 if smoke else 1500, seed=11, n_sites=3, p=4,
                          min_site_size=150)  # fmt: skip
    kw = trial.fit_kwargs()
    df = kw["X"].assign(
        y=kw["Y"].to_numpy(),
        t=kw["T"].to_numpy(),
        site=kw["site"].map(dict(zip(sorted(set(kw["site"])), SITES, strict=True))),
    )
    df.index.name = "patient"
    folders = {}
    for name, rows in df.groupby("site"):
        folders[name] = root / name
        folders[name].mkdir()
        rows.to_csv(folders[name] / "patients.csv")
        (folders[name] / "spec.json").write_text(json.dumps(SPEC))
    return folders, (trial, df)


def coordinator(smoke: bool) -> None:
    import warnings

    import numpy as np

    from itelib.exceptions import ConvergenceWarning

    if smoke:  # 2 x 100 draws: a check that it runs, not an analysis
        warnings.simplefilter("ignore", ConvergenceWarning)

    from itelib import HierarchicalITE
    from itelib.federated import SiteMoments, agree

    with tempfile.TemporaryDirectory() as tmp:
        folders, (trial, df) = _make_sites(Path(tmp), smoke)
        procs = [subprocess.Popen([sys.executable, __file__, "site", str(f)])
                 for f in folders.values()]  # fmt: skip
        moments = [SiteMoments.from_json(_wait_for(f / "moments.json", procs=procs).read_text())
                   for f in folders.values()]  # fmt: skip
        agreement = agree(moments)
        for f in folders.values():
            _write_text(f / "agreement.json", agreement.to_json())
        print(f"agreed: {agreement.n} patients at {len(agreement.sites)} sites, outcome mean "
              f"{agreement.outcome_center:.3f}, sd {agreement.outcome_scale:.3f}")  # fmt: skip
        for f in folders.values():
            _wait_for(f / "summary.nc", procs=procs)
        sampler = dict(num_warmup=100, num_samples=100, num_chains=2) if smoke else {}
        model_options = dict(prognosis=SPEC["prognosis"], n_basis=SPEC["n_basis"],
                             effect_modifiers=SPEC["effect_modifiers"], prognostic_score=False,
                             random_state=0, progress_bar=False, **sampler)  # fmt: skip
        est = HierarchicalITE(**model_options)
        est.fit_summaries([f / "summary.nc" for f in folders.values()])
        print(
            "fitted from 3 summary files; tau0 posterior mean",
            float(est.posterior_["posterior"]["tau0"].mean()) * est.outcome_scale_,
        )
        for f in folders.values():
            est.save(f / "model.nc")  # coefficients and scales, no row
        if any(proc.wait() != 0 for proc in procs):
            raise SystemExit("a site failed")
        effects = {name: __import__("pandas").read_csv(f / "effects.csv", index_col=0)
                   for name, f in folders.items()}  # fmt: skip
        for name, e in effects.items():
            print(f"{name}: {len(e)} patients, mean effect {e['mean'].mean():.3f}")
        if smoke:
            return
        # Only to show the point of it: the pooled fit (which the coordinator could not do
        # in real life) gives the same effects, with the same seed.
        pooled = HierarchicalITE(**model_options).fit(
            df["y"], df["t"], X=df[SPEC["covariates"]], site=df["site"]
        )
        pooled_mean = pooled.effect().mean()
        gap = max(np.max(np.abs(e["mean"] - pooled_mean.loc[e.index].to_numpy()))
                  for e in effects.values())  # fmt: skip
        print(f"largest gap between a site's effects and the pooled fit's: {gap:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small trial, short samplers")
    parser.add_argument("role", nargs="*", help="site FOLDER (started by the coordinator)")
    args = parser.parse_args()
    if args.role:
        if len(args.role) != 2 or args.role[0] != "site":
            raise SystemExit("usage: federated_sites.py site FOLDER")
        site(Path(args.role[1]))
    else:
        coordinator(args.smoke)


if __name__ == "__main__":
    main()
