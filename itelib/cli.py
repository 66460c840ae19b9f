"""``itelib`` command line: ``demo`` on a simulated multi-site trial, ``fit`` on a user's CSV."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_BAD_INPUT = 2


def _use_host_devices(n: int) -> None:
    """Give XLA ``n`` CPU devices so chains run in parallel; must run before JAX starts.

    The library never sets JAX flags; the command line owns its process, so it does.
    """
    flag = f"--xla_force_host_platform_device_count={n}"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itelib", description="Per-patient treatment-effect posteriors."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit an estimator to a simulated multi-site trial")
    demo.add_argument("--n", type=int, default=1000, help="patients (default 1000)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the trial and the sampler")
    demo.add_argument("--out", type=Path, default=Path("itelib-demo"), help="output folder")
    _sampler_args(demo)
    fit = sub.add_parser("fit", help="fit an estimator to a CSV file")
    fit.add_argument("csv", type=Path, help="one row per patient")
    fit.add_argument("--outcome", required=True, help="outcome column")
    fit.add_argument("--treatment", required=True, help="0/1 treatment column")
    fit.add_argument("--covariates", help="comma-separated covariate columns (default: the rest)")
    fit.add_argument("--categorical", default="", help="comma-separated categorical columns")
    fit.add_argument("--site", help="site or clinic column")
    fit.add_argument("--id", dest="id_column", help="patient id column (default: row number)")
    fit.add_argument("--seed", type=int, default=0, help="sampler seed")
    fit.add_argument("--out", type=Path, required=True, help="output folder")
    _sampler_args(fit)
    bench = sub.add_parser(
        "bench", help="run a calibration study", epilog=_named_configs(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    bench.add_argument(
        "--config", default="quick", help="a named config (below, default quick) or a .toml path"
    )
    bench.add_argument("--out", type=Path, help="results folder (default: itelib-bench/<name>)")
    bench.add_argument("--scheduler", help="address of a running Dask scheduler")
    bench.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench.add_argument(
        "--report-only", action="store_true",
        help="write the report from the finished cells in --out, running none",
    )  # fmt: skip
    return parser


def _named_configs() -> str:
    """The studies that ship with itelib, for ``itelib bench --help`` (read without importing
    the study runner, so every command's start stays fast)."""
    import tomllib

    lines = ["named configs:"]
    for path in sorted((Path(__file__).parent / "calibration" / "configs").glob("*.toml")):
        with path.open("rb") as f:
            raw = tomllib.load(f)
        lines.append(f"  {path.stem:<10} {raw.get('summary', '')}")
        lines.append(f"  {'':<10} run time: {raw.get('run_time', 'not stated')}")
    return "\n".join(lines)


def _sampler_args(parser: argparse.ArgumentParser) -> None:
    from itelib.estimators.registry import ESTIMATORS

    parser.add_argument(
        "--estimator", choices=[e.cli_name for e in ESTIMATORS], default=ESTIMATORS[0].cli_name,
        help="; ".join(f"{e.cli_name}: {e.name}, {e.summary}" for e in ESTIMATORS)
        + f" (default {ESTIMATORS[0].cli_name})",
    )  # fmt: skip
    parser.add_argument("--chains", type=int, default=4, help="MCMC chains (default 4)")
    parser.add_argument("--warmup", type=int, default=1000, help="warmup iterations per chain")
    parser.add_argument("--samples", type=int, default=1000, help="kept draws per chain")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command != "bench":
        _use_host_devices(args.chains)
    from itelib.exceptions import DataValidationError

    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "bench":
            return _bench(args)
        return _fit(args)
    except (DataValidationError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"itelib {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _estimator(args: argparse.Namespace) -> Any:
    from itelib.estimators.registry import by_cli_name

    cls = by_cli_name(args.estimator)
    options = {
        "num_chains": args.chains,
        "num_warmup": args.warmup,
        "num_samples": args.samples,
        "progress_bar": not args.no_progress,
        "random_state": args.seed,
    }
    takes = cls().get_params()  # the sampler options of the estimators that sample
    return cls(**{k: v for k, v in options.items() if k in takes})


def _demo(args: argparse.Namespace) -> int:
    from itelib.calibration import metrics
    from itelib.simulate import multisite_rct

    trial = multisite_rct(n=args.n, seed=args.seed)
    print(
        f"Simulated multi-site trial: {trial.n} patients, {trial.data['site'].nunique()} sites, "
        f"{len(trial.covariates)} covariates; true average effect {trial.ate:.3f}."
    )
    est, seconds = _timed_fit(_estimator(args), **trial.fit_kwargs())
    post = est.effect()
    table = _report(est, post, seconds)
    table["true_effect"] = trial.tau
    truth = trial.tau.to_numpy()
    m = metrics(post.draws(), truth, levels=(0.5, 0.9, 0.95))
    ate = est.ate()
    lo, hi = ate.interval(0.95)
    print("\nCalibration against the known truth")
    rows = {"sqrt-PEHE": f"{m.sqrt_pehe:.3f}"}
    rows |= {f"coverage of {lv:.0%} intervals": f"{c:.3f}" for lv, c in m.coverage.items()}
    rows["average effect"] = f"{ate.mean():.3f} [{lo:.3f}, {hi:.3f}]  (true {trial.ate:.3f})"
    for label, value in rows.items():
        print(f"  {label:<28}{value}")
    _write_outputs(args.out, table, post, est)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from itelib.data import TrialData

    frame = _read_csv(args.csv, args.id_column)
    covariates = _split(args.covariates) or None
    data = TrialData.from_frame(  # validates before any sampling starts
        frame,
        outcome=args.outcome,
        treatment=args.treatment,
        covariates=covariates,
        site=args.site,
        categorical=_split(args.categorical),
    )
    X = frame[list(data.encoder.columns)]
    site = frame[args.site] if args.site else None
    est, seconds = _timed_fit(
        _estimator(args),
        frame[args.outcome],
        frame[args.treatment],
        X=X,
        site=site,
        categorical=_split(args.categorical),
    )
    post = est.effect()
    table = _report(est, post, seconds)
    _write_outputs(args.out, table, post, est)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from itelib.calibration.report import write_report
    from itelib.calibration.study import (
        collect,
        config_path,
        load_config,
        run_study,
        unavailable_estimators,
        without_estimators,
    )

    config = load_config(config_path(args.config))
    skipped = unavailable_estimators(config)
    for name, reason in skipped.items():
        print(f"itelib bench: skipping {name}: {reason}", file=sys.stderr)
    out = args.out if args.out is not None else Path("itelib-bench") / config.name
    if args.report_only:
        rows = collect(out)
        if rows.empty:
            raise FileNotFoundError(f"no finished cells in {out / 'cells'}: run the study first")
    else:
        rows = run_study(
            without_estimators(config, skipped), out, scheduler=args.scheduler,
            n_workers=args.workers, progress_bar=not args.no_progress,
        )  # fmt: skip
    kinds = {e["name"]: e["kind"] for e in config.estimators}
    report = write_report(rows, out, kinds, skipped)
    print(f"{len(rows)} cells in {out / 'cells'}; report: {report}")
    return 0


def _read_csv(path: Path, id_column: str | None) -> Any:
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    frame = pd.read_csv(path)
    if id_column is not None:
        if id_column not in frame.columns:
            raise ValueError(
                f"--id column '{id_column}' is not in {path.name}; columns: {list(frame.columns)}"
            )
        frame = frame.set_index(id_column)
    else:
        frame.index = pd.RangeIndex(2, len(frame) + 2, name="row")  # row numbers as in a sheet
    return frame


def _split(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _timed_fit(est: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    est.fit(*args, **kwargs)
    return est, time.perf_counter() - start


def _report(est: Any, post: Any, seconds: float) -> Any:
    """Print the first patients and the diagnostics; return the per-patient table."""
    import pandas as pd

    table = post.summary(prob=0.95)[["mean", "sd", "lower", "upper", "prob_benefit"]]
    shown = table.head(10).rename(
        columns={"mean": "effect", "lower": "2.5%", "upper": "97.5%", "prob_benefit": "P(benefit)"}
    )
    print(f"\nFitted {type(est).__name__} in {seconds:.1f} s. First patients:")
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(shown.to_string())
    d = getattr(est, "diagnostics_", None)
    if d is None:
        print(
            "\nIntervals: EconML's frequentist intervals as a normal approximation "
            "(no MCMC, so no convergence diagnostics)."
        )
        return table
    print(
        f"\nDiagnostics: {d.n_chains} chains x {d.n_draws} draws, max R-hat {d.max_rhat:.3f}, "
        f"min bulk ESS {d.min_ess_bulk:.0f}, min tail ESS {d.min_ess_tail:.0f}, "
        f"divergences {d.n_divergent}"
    )
    return table


def _write_outputs(out: Path, table: Any, post: Any, est: Any) -> None:
    from itelib._io import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "effects.csv", out / "posterior.nc"]
    atomic_write(written[0], lambda tmp: table.to_csv(tmp))
    post.save(written[1])
    if est.diagnostics_ is not None:  # the Bayesian estimators, which save in open formats
        written.append(est.save(out / "model.nc"))
    print(f"\nWrote {', '.join(str(p) for p in written)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
