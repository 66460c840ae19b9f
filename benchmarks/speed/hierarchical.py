"""Speed of HierarchicalITE's NUTS against PyMC's samplers, on the same model and data.

    python benchmarks/speed/hierarchical.py --n 1000 10000 100000 --chains 4 --warmup 1000 \
        --draws 1000 --samplers itelib pymc pymc-nutpie pymc-numpyro --out speed.csv

For each n, one ``multisite_rct`` trial (20 sites, 10 covariates, ``--seed``) is fitted by

- ``itelib``: ``HierarchicalITE`` (NumPyro's NUTS kernel in itelib's compile-once driver);
- ``pymc``, ``pymc-nutpie``, ``pymc-numpyro``: ``pm.sample`` with ``nuts_sampler`` "pymc",
  "nutpie" (skipped when nutpie is not installed) or "numpyro", on the PyMC twin of the model
  (``build_pymc_model``) fed the very ``ModelData`` and ``ModelSpec`` that
  ``HierarchicalITE(likelihood="sufficient").fit`` builds for the trial: same data, priors,
  parameterization and names,

all with the same chains, warmup, draws, tree depth (10, everyone's default) and seed. itelib
runs at its defaults: the marginal model (coefficients integrated out, NUTS over the scales,
exact coefficient draws afterwards; ``--likelihood``) at target acceptance 0.9. The PyMC twin
samples every coefficient, which needs ``--peer-target-accept`` (default 0.995, itelib's own
setting for that model: the horseshoe diverges below it). Both are the same posterior.

One row per (n, sampler): setup seconds (compilation, model
building, post-processing: wall minus sampling), sampling seconds, wall seconds of one cold fit,
the minimum bulk ESS and maximum R-hat over the global parameters (tau0, sigma, sigma_site,
sigma_site_effect, gamma; itelib's own ``diagnose``, i.e. arviz-stats), divergences, ESS per
second of wall time and of sampling time, and ``itelib_ratio`` / ``itelib_ratio_sampling``:
itelib's ESS/s divided by the row's (above 1: itelib is faster). A markdown table is printed at
the end; with ``--out`` a ``# machine ...`` line and each row are appended as it finishes
(read with ``pd.read_csv(path, comment="#")``).

How each sampler is timed:

- itelib: fitted twice with the same seed, which repeats the same work; the second fit reuses
  the compiled program, so its sampler call is the sampling time (``refit_s``: its whole fit).
  JAX's in-memory caches are cleared before the first fit and itelib's on-disk compilation
  cache is off (``ITELIB_JAX_CACHE=off`` unless set), so setup includes a cold compile, as in
  a fresh process without the cache.
- pymc, pymc-nutpie: ``pm.sample``'s own ``sampling_time``, which starts after compilation.
- pymc-numpyro: NumPyro compiles inside its run, so its ``sampling_time`` includes compiling.

Both models evaluate the exact Gaussian likelihood from per-site cross-products, so a gradient
costs the same at any n; ``--likelihood sufficient`` runs itelib on the twin's parameterization
(every coefficient sampled) and ``--likelihood rows`` both on a per-patient likelihood. itelib
samples in ``--precision`` (default float32, its default); PyMC always in float64.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

import itelib
from itelib.inference.diagnostics import diagnose
from itelib.simulate import simulate

# The global parameters, as in HierarchicalITE's own diagnostics (less the patients' effects,
# which the PyMC samplers do not compute).
KEY_PARAMS = ("tau0", "sigma", "sigma_site", "sigma_site_effect", "gamma")
SAMPLERS = ("itelib", "pymc", "pymc-nutpie", "pymc-numpyro")
PACKAGES = ("jax", "jaxlib", "numpyro", "pymc", "pytensor", "nutpie", "arviz-stats")


class TimedITE(itelib.HierarchicalITE):
    """HierarchicalITE that records its sampler's inputs and seconds.

    ``_sampler`` (private) is where ``fit`` hands over the finished ``ModelData``, ``ModelSpec``
    and ``NUTSConfig``: taking them there reuses itelib's own data path instead of repeating it.
    With ``dry_run`` the inputs are recorded and nothing is sampled.
    """

    dry_run = False

    def _sampler(self):
        sample = super()._sampler()

        def timed(key, model, data, spec, cfg, **kwargs):
            self.inputs_ = (data, spec, cfg)
            if self.dry_run:
                raise _DryRun
            start = time.perf_counter()
            result = sample(key, model, data, spec, cfg, **kwargs)
            self.sample_seconds_ = time.perf_counter() - start
            return result

        return timed


class _DryRun(Exception):
    pass


def model_inputs(trial, options: dict) -> tuple:
    """itelib's ``(ModelData, ModelSpec, NUTSConfig)`` for the trial, without sampling."""
    est = TimedITE(**options)
    est.dry_run = True
    try:
        est.fit(**trial.fit_kwargs())
    except _DryRun:
        pass
    return est.inputs_


def summarize(draws, diverging, wall_s: float, sample_s: float) -> dict:
    diag = diagnose({k: np.asarray(draws[k]) for k in KEY_PARAMS}, np.asarray(diverging))
    ess = diag.min_ess_bulk
    return {
        "setup_s": wall_s - sample_s,
        "sample_s": sample_s,
        "wall_s": wall_s,
        "min_ess_bulk": ess,
        "max_rhat": diag.max_rhat,
        "divergences": diag.n_divergent,
        "ess_per_s": ess / wall_s,
        "ess_per_s_sampling": ess / sample_s,
    }


def run_itelib(trial, options: dict) -> dict:
    import jax

    jax.clear_caches()  # a cold compile at every n, as a fresh process pays it
    fits = []
    for _ in range(2):  # the same seed: the second fit repeats the first's work, compiled
        start = time.perf_counter()
        est = TimedITE(**options).fit(**trial.fit_kwargs())
        fits.append((est, time.perf_counter() - start))
    (first, wall_s), (second, refit_s) = fits
    post = first.posterior_
    row = summarize(post["posterior"], post["sample_stats"]["diverging"], wall_s,
                    second.sample_seconds_)  # fmt: skip
    return row | {"refit_s": refit_s, "precision": options["precision"]}


def run_pymc(trial, options: dict, nuts_sampler: str, inputs: tuple) -> dict:
    import jax
    import pymc as pm
    import pytensor

    from itelib.models.hierarchical.pymc_backend import build_pymc_model

    data, spec, cfg = inputs
    extra = {}
    if nuts_sampler == "numpyro":  # chains run as itelib's do (parallel: one device per chain)
        extra["nuts_sampler_kwargs"] = {"chain_method": cfg.chain_method}
    jax.clear_caches()
    # As itelib's own PyMC backend (sample_pymc): float64, and JAX in x64 for the graph's
    # float64 accumulators; the context is thread-local, itelib's later fits are untouched.
    with jax.enable_x64(True), pytensor.config.change_flags(floatX="float64"):
        start = time.perf_counter()
        model = build_pymc_model(data, spec)
        idata = pm.sample(
            draws=cfg.num_samples,
            tune=cfg.num_warmup,
            chains=cfg.num_chains,
            target_accept=cfg.target_accept,
            random_seed=options["random_state"],
            progressbar=False,
            quiet=True,
            model=model,
            nuts_sampler=nuts_sampler,
            compute_convergence_checks=False,
            **extra,
        )
        wall_s = time.perf_counter() - start
    sample_s = float(idata.posterior.attrs["sampling_time"])
    row = summarize(idata.posterior, idata.sample_stats["diverging"], wall_s, sample_s)
    note = "sample_s includes compiling" if nuts_sampler == "numpyro" else ""
    return row | {"refit_s": np.nan, "precision": "float64", "note": note}


def run(name: str, trial, options: dict, inputs: tuple | None) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # pip's PyTensor finds no C BLAS (itelib's PyMC backend ignores this warning too).
        warnings.filterwarnings("ignore", "PyTensor could not link to a BLAS", UserWarning)
        if name == "itelib":
            row = run_itelib(trial, options)
        else:
            row = run_pymc(trial, options, name.removeprefix("pymc-"), inputs)
    return row | {"warnings": len(caught)}


def add_ratios(rows: list[dict]) -> None:
    """itelib's ESS per second over each row's, from the same n."""
    ref = next((r for r in rows if r["sampler"] == "itelib"), None)
    for r in rows:
        for col in ("ess_per_s", "ess_per_s_sampling"):
            ratio = col.replace("ess_per_s", "itelib_ratio")
            r[ratio] = np.nan if ref is None else ref[col] / r[col]


def environment(packages: tuple[str, ...] = PACKAGES) -> str:
    def v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    import jax

    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, JAX on {jax.default_backend()} "
        f"({jax.local_device_count()} devices), Python {platform.python_version()}, "
        f"itelib {itelib.__version__}, " + ", ".join(f"{p} {v(p)}" for p in packages)
    )


def append_results(path: Path | None, header: str, table: pd.DataFrame) -> None:
    """Append a ``# machine ...`` line and the rows to ``path`` (header row only when new)."""
    if path is None:
        return
    new_file = not path.exists()
    with path.open("a") as f:
        f.write(f"# {header}\n")
    table.to_csv(path, mode="a", header=new_file, index=False)


def markdown(table: pd.DataFrame) -> str:
    def cell(x) -> str:
        if isinstance(x, float):
            return "" if np.isnan(x) else f"{x:.3g}" if abs(x) < 10 else f"{x:.0f}"
        return str(x)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * table.shape[1]]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


COLUMNS = [
    "n", "sampler", "setup_s", "sample_s", "wall_s", "refit_s", "min_ess_bulk", "max_rhat",
    "divergences", "ess_per_s", "ess_per_s_sampling", "itelib_ratio", "itelib_ratio_sampling",
    "precision", "warnings", "note",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument(
        "--target-accept", type=float, default=None, help="itelib's; default: its own default"
    )
    parser.add_argument("--peer-target-accept", type=float, default=0.995)
    parser.add_argument(
        "--likelihood", default="auto", choices=["auto", "marginal", "sufficient", "rows"]
    )
    parser.add_argument("--precision", default="float32", choices=["float32", "float64"])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--p", type=int, default=10, help="covariates")
    parser.add_argument("--seed", type=int, default=0, help="of the data and of every sampler")
    parser.add_argument(
        "--max-seconds", type=float, default=None,
        help="a sampler whose cold fit took longer skips the larger n that follow",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpyro

    # Before JAX starts: one CPU device per chain, so itelib's and PyMC-NumPyro's chains run in
    # parallel (PyMC's own sampler and nutpie run theirs in processes or threads).
    numpyro.set_host_device_count(args.chains)
    os.environ.setdefault("ITELIB_JAX_CACHE", "off")  # measure a cold compile (docstring)
    samplers = sorted(dict.fromkeys(args.samplers), key=lambda s: s != "itelib")  # itelib first
    if "pymc-nutpie" in samplers and importlib.util.find_spec("nutpie") is None:
        print("pymc-nutpie skipped: nutpie is not installed (pip install -e '.[bench]')")
        samplers.remove("pymc-nutpie")
    options = {
        "num_warmup": args.warmup,
        "num_samples": args.draws,
        "num_chains": args.chains,
        "target_accept": args.target_accept,
        "likelihood": args.likelihood,
        "precision": args.precision,
        "random_state": args.seed,
        "progress_bar": False,
    }
    peer_options = options | {
        "target_accept": args.peer_target_accept,
        "likelihood": "rows" if args.likelihood == "rows" else "sufficient",
    }
    header = environment()
    print(header)
    print(
        f"multisite_rct: {args.sites} sites, p = {args.p}, seed {args.seed}; {args.chains} "
        f"chains x ({args.warmup} warmup + {args.draws} draws); itelib: likelihood "
        f"{args.likelihood}, target_accept {args.target_accept or 'default'}; peers: "
        f"likelihood {peer_options['likelihood']}, target_accept {args.peer_target_accept}",
        flush=True,
    )
    new_file = args.out is not None and not args.out.exists()
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(f"# {header}\n")
    rows, too_slow = [], {}
    for n in args.n:
        trial = simulate("multisite_rct", n=n, seed=args.seed, n_sites=args.sites, p=args.p)
        peers = any(s != "itelib" for s in samplers)
        inputs = model_inputs(trial, peer_options) if peers else None
        group = []
        for name in samplers:
            if name in too_slow:
                print(f"n = {n}, {name}: skipped ({too_slow[name]})", flush=True)
                continue
            row = {"n": n, "sampler": name, "note": ""} | run(name, trial, options, inputs)
            group.append(row)
            add_ratios(group)  # itelib runs first, so each row's ratio is known when it ends
            print(f"n = {n}, {name}: {row['wall_s']:.1f} s wall, {row['sample_s']:.1f} s "
                  f"sampling, min bulk ESS {row['min_ess_bulk']:.0f}", flush=True)  # fmt: skip
            if args.out is not None:  # each row as it finishes: a long run killed loses one
                pd.DataFrame([row], columns=COLUMNS).to_csv(
                    args.out, mode="a", header=new_file, index=False
                )
                new_file = False
            if args.max_seconds is not None and row["wall_s"] > args.max_seconds:
                too_slow[name] = f"{row['wall_s']:.0f} s at n = {n} > --max-seconds"
        rows += group
    print()
    print(markdown(pd.DataFrame(rows, columns=COLUMNS)))


if __name__ == "__main__":
    main()
