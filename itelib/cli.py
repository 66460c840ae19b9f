"""``itelib`` command line: ``demo`` on a simulated multi-site trial, ``fit`` on a user's CSV."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from itelib.models.hierarchical.features import PROGNOSIS

__all__ = ["main"]

EXIT_BAD_INPUT = 2


def _use_host_devices(n: int) -> None:
    """Give XLA ``n`` CPU devices so chains run in parallel; must run before JAX starts.

    Only for ``--chain-method parallel``: the library never sets JAX flags, and by default
    neither does the command line, so ``itelib fit`` picks the chain method the Python API
    picks in a plain process and gives the same draws for the same seed (parallel chains give
    other draws: float rounding differs and NUTS amplifies it).
    """
    flag = f"--xla_force_host_platform_device_count={n}"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


# flag (argparse dest) -> the estimator parameters it sets, the first one an estimator takes
ESTIMATOR_FLAGS = {
    "chains": ("num_chains",),
    "warmup": ("num_warmup",),
    "samples": ("num_samples", "num_draws"),
    "chain_method": ("chain_method",),
    "target_accept": ("target_accept",),
    "outcome_type": ("outcome",),
    "prognosis": ("prognosis",),
    "missing": ("missing",),
    "imputations": ("n_imputations",),
    "horizon": ("horizon",),
}


OUT_HELP = (
    "output folder, checked before the fit. Its files appear together when the run "
    "succeeds (a failed or interrupted run writes nothing); an earlier itelib run's outputs "
    "there are replaced as a whole; a folder holding other files is refused (see --force)"
)
FORCE_HELP = (
    "write into an --out folder that also holds files itelib did not write: they stay, and "
    "an earlier itelib run's files there are replaced"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itelib", description="Per-patient treatment-effect posteriors."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit an estimator to a simulated multi-site trial")
    demo.add_argument("--n", type=int, default=1000, help="patients (default 1000)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the trial and the sampler")
    demo.add_argument("--out", type=Path, default=Path("itelib-demo"), help=OUT_HELP)
    demo.add_argument("--force", action="store_true", help=FORCE_HELP)
    _sampler_args(demo)
    fit = sub.add_parser("fit", help="fit an estimator to a CSV file")
    fit.add_argument("csv", type=Path, help="one row per patient")
    fit.add_argument("--outcome", required=True, help="outcome column")
    fit.add_argument("--treatment", required=True, help="treatment column (0/1, or two labels)")
    fit.add_argument(
        "--treatment-labels", metavar="CONTROL,TREATED",
        help="the two values of the treatment column when they are not 0/1, control first",
    )  # fmt: skip
    fit.add_argument(
        "--outcome-type", choices=("auto", "continuous", "binary", "survival"),
        help="auto (default): binary when every outcome is 0 or 1; binary outcomes' effects "
        "are risk differences; survival: --outcome is a time to event or censoring, --event "
        "says which, and the effects are differences in restricted mean survival time",
    )  # fmt: skip
    fit.add_argument(
        "--event", metavar="COLUMN",
        help="with --outcome-type survival: the event column, 1 where the event was observed "
        "at the --outcome time and 0 where the patient was censored then",
    )  # fmt: skip
    fit.add_argument(
        "--horizon", type=float,
        help="with --outcome-type survival: the horizon of the restricted mean survival time, "
        "in the time column's unit (default: the 0.9 quantile of the observed times)",
    )  # fmt: skip
    fit.add_argument("--covariates", help="comma-separated covariate columns (default: the rest)")
    fit.add_argument("--categorical", default="", help="comma-separated categorical columns")
    fit.add_argument("--site", help="site or clinic column")
    fit.add_argument("--id", dest="id_column", help="patient id column (default: row number)")
    fit.add_argument(
        "--propensity", metavar="estimate|COLUMN",
        help="observational data: 'estimate' (cross-fitted scores) or a column of known "
        "propensity scores; default: a randomized trial (checked)",
    )  # fmt: skip
    fit.add_argument(
        "--prognosis", choices=PROGNOSIS,
        help="hierarchical: the prognostic part; auto (default): pairwise interactions up to "
        "10 covariates, linear beyond; additive: smooth terms",
    )  # fmt: skip
    fit.add_argument(
        "--missing", choices=("refuse", "impute"),
        help="missing covariates: refuse (default; names every incomplete column) or impute "
        "(multiple imputation from the outcome and treatment, one fit per imputation, draws "
        "pooled; every row with an outcome and a treatment is kept)",
    )  # fmt: skip
    fit.add_argument(
        "--imputations", type=int, metavar="M",
        help="with --missing impute: imputed data sets (default 5)",
    )  # fmt: skip
    fit.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    fit.add_argument("--out", type=Path, required=True, help=OUT_HELP)
    fit.add_argument("--force", action="store_true", help=FORCE_HELP)
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
    bench.add_argument(
        "--allow-code", action="store_true",
        help="let the study file's estimator kinds 'path/to/file.py:function' import and run "
        "that Python file (refused without this flag: a study file is data)",
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
    parser.add_argument("--chains", type=int, help="MCMC chains (default 4)")
    parser.add_argument("--warmup", type=int, help="warmup iterations per chain (default 1000)")
    parser.add_argument(
        "--samples", "--draws", type=int,
        help="kept draws per chain (default 1000); causal-forest: draws of its normal "
        "approximation",
    )  # fmt: skip
    parser.add_argument(
        "--chain-method", choices=("auto", "sequential", "parallel", "vectorized"),
        help="hierarchical: how chains run. parallel: one CPU device per chain, faster on "
        "several cores, but other draws than the default (the Python API's "
        "chain_method='parallel')",
    )  # fmt: skip
    parser.add_argument("--target-accept", type=float, help="hierarchical: NUTS target_accept")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if getattr(args, "chain_method", None) == "parallel":
        _use_host_devices(args.chains or 4)
    from itelib.cli_output import OutputError, OutputFolder, watch_interrupts
    from itelib.exceptions import DataValidationError, MissingCovariatesError

    args.folder = None
    with _one_line_warnings() as seen, contextlib.ExitStack() as stack:
        args.warnings_seen = seen
        try:
            if args.command == "bench":
                return _bench(args)
            # --out is checked before anything is read or fitted; Ctrl-C ends the run at once
            args.folder = OutputFolder(args.out, force=args.force)
            stack.callback(args.folder.discard)  # a run that fails leaves nothing behind
            stack.enter_context(watch_interrupts(args.command, args.folder))
            if args.command == "demo":
                return _demo(args)
            return _fit(args)
        except MissingCovariatesError as err:
            from itelib.cli_csv import missing_message

            message = missing_message(err, args, getattr(args, "chosen_covariates", []))
        except (DataValidationError, OutputError, FileNotFoundError, ValueError, TypeError) as err:
            message = str(err)
    print(f"itelib {args.command}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _one_line(message: str) -> str:
    from itelib.cli_vocabulary import translate

    return translate(" ".join(str(message).split()))


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[list[str]]:
    """Print each warning as one ``warning: ...`` line in the command line's words (no source
    path, no code line); yields the list of the lines printed, for ``diagnostics.json``."""
    seen: list[str] = []

    def show(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        line = _one_line(message)
        if line not in seen:  # the same warning from two code paths is one warning
            seen.append(line)
            print(f"warning: {line}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield seen


def _estimator(args: argparse.Namespace) -> Any:
    """The estimator the flags ask for; a flag it has no parameter for is refused, naming the
    flags it does take (``--chains`` means nothing to EconML's forest)."""
    from itelib.estimators.registry import ESTIMATORS, by_cli_name

    cls = by_cli_name(args.estimator)
    takes = cls().get_params()
    options: dict[str, Any] = {"random_state": args.seed}
    refused = []
    for dest, params in ESTIMATOR_FLAGS.items():
        value = getattr(args, dest, None)
        param = next((p for p in params if p in takes), None)
        if value is None:
            continue
        if param is None:
            refused.append(_flag_name(dest))
        else:
            options[param] = value
    if refused:
        entry = next(e for e in ESTIMATORS if e.cli_name == args.estimator)
        accepted = [
            _flag_name(dest)
            for dest, params in ESTIMATOR_FLAGS.items()
            if any(p in takes for p in params) and hasattr(args, dest)
        ]
        raise ValueError(
            f"{', '.join(refused)} {'does' if len(refused) == 1 else 'do'} not apply to "
            f"--estimator {args.estimator} ({entry.name}: {entry.summary}), which has no such "
            f"option. Its options: {', '.join(accepted + ['--seed'])}. Fix: drop "
            f"{', '.join(refused)}, or choose another --estimator."
        )
    if args.no_progress and "progress_bar" in takes:
        options["progress_bar"] = False
    return cls(**options)


def _flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _demo(args: argparse.Namespace) -> int:
    from itelib.calibration import metrics
    from itelib.simulate import multisite_rct

    est = _estimator(args)
    trial = multisite_rct(n=args.n, seed=args.seed)
    print(
        f"Simulated multi-site trial: {trial.n} patients, {trial.data['site'].nunique()} sites, "
        f"{len(trial.covariates)} covariates; true average effect {trial.ate:.3f}."
    )
    est, seconds = _timed_fit(est, **trial.fit_kwargs())
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
    _write_outputs(args, table, post, est, ate)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from itelib import cli_csv

    est = _estimator(args)  # refuses a flag the estimator does not take before reading
    survival = _check_survival_flags(args)
    frame = cli_csv.read_csv(args.csv, args.id_column)
    propensity = cli_csv.propensity(args, frame)
    covariates = args.chosen_covariates = cli_csv.covariates(args, frame)
    categorical = cli_csv.split(args.categorical)
    cli_csv.refuse_id_like(frame, covariates, categorical, args)
    est, seconds = _timed_fit(
        est,
        frame[[args.outcome, args.event]] if survival else frame[args.outcome],
        frame[args.treatment],
        X=frame[covariates],
        site=frame[args.site] if args.site else None,
        propensity=propensity,
        categorical=categorical,
        treatment_labels=cli_csv.treatment_labels(args.treatment_labels, frame[args.treatment]),
    )  # validates everything before any sampling starts
    post = est.effect()
    table = _report(est, post, seconds)
    ate = est.ate()
    _print_ate(ate, est)
    _write_outputs(args, table, post, est, ate)
    return 0


def _check_survival_flags(args: argparse.Namespace) -> bool:
    """Whether this is a survival fit; --event and --horizon without one (or one without
    --event) are refused before the CSV is read."""
    survival = args.outcome_type == "survival"
    if survival and args.event is None:
        raise ValueError(
            "--outcome-type survival needs the event column. Fix: add --event COLUMN (1 where "
            f"the event was observed at the '{args.outcome}' time, 0 where censored)."
        )
    if not survival:
        stray = [f for f, v in (("--event", args.event), ("--horizon", args.horizon)) if v]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} for survival outcomes. "
                "Fix: add --outcome-type survival (with --outcome the time column), or drop "
                f"{', '.join(stray)}."
            )
    return survival


def _bench(args: argparse.Namespace) -> int:
    """Run a study; its errors are about the study file, so they are printed as they are (not
    in ``itelib fit``'s flags: a TOML key ``num_chains`` is not ``--chains``)."""
    try:
        return _run_bench(args)
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"itelib bench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run_bench(args: argparse.Namespace) -> int:
    from itelib.calibration.report import write_report
    from itelib.calibration.study import (
        collect,
        config_path,
        inside,
        load_config,
        run_study,
        unavailable_estimators,
        without_estimators,
    )

    config = load_config(config_path(args.config), allow_code=args.allow_code)
    skipped = unavailable_estimators(config)
    for name, reason in skipped.items():
        print(f"itelib bench: skipping {name}: {reason}", file=sys.stderr)
    # the study's name is a plain file name (load_config): its folder stays in itelib-bench
    out = args.out
    if out is None:
        out = Path("itelib-bench") / config.name
        inside("itelib-bench", out)
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


def _timed_fit(est: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    est.fit(*args, **kwargs)
    return est, time.perf_counter() - start


def _scale_words(attrs: dict[str, Any], short: bool = False) -> str:
    """What the effects measure, from a posterior's attributes."""
    outcome, scale = attrs.get("outcome", "the outcome"), attrs.get("scale", "outcome")
    if scale == "risk_difference":
        return (
            "risk difference"
            if short
            else f"risk difference, P({outcome} = 1 | treated) - P({outcome} = 1 | control)"
        )
    if scale == "log_odds_ratio":
        return "log odds ratio"
    if scale == "rmst":
        horizon = attrs.get("horizon")
        return (
            "RMST difference"
            if short
            else f"difference in restricted mean survival time up to {horizon:g} (time column "
            f"'{outcome}'), treated minus control"
        )
    return (
        f"difference in {outcome}"
        if short
        else f"outcome scale: {outcome} if treated minus {outcome} if not"
    )


def _report(est: Any, post: Any, seconds: float) -> Any:
    """Print the first patients and the diagnostics; return the per-patient table."""
    import pandas as pd

    table = post.summary(prob=0.95)[["mean", "sd", "lower", "upper", "prob_benefit"]]
    shown = table.head(10).rename(
        columns={"mean": "effect", "lower": "2.5%", "upper": "97.5%", "prob_benefit": "P(benefit)"}
    )
    print(f"\nFitted {type(est).__name__} in {seconds:.1f} s.")
    print(f"Effects ({_scale_words(post.attrs)}). First patients:")
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(shown.to_string())
    table["scale"] = post.attrs["scale"]
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


def _ate_table(ate: Any) -> Any:
    """The average effect as one row: mean, sd, 95 % interval, P(benefit), its scale."""
    table = ate.summary(prob=0.95)[["mean", "sd", "lower", "upper", "prob_benefit"]]
    table.index = [ate.attrs.get("quantity", "ate")]
    table["scale"] = ate.attrs["scale"]
    table["n_patients"] = ate.attrs.get("n_patients")
    return table


def _print_ate(ate: Any, est: Any) -> None:
    row = _ate_table(ate).iloc[0]
    how = " (EconML's doubly robust average)" if est.diagnostics_ is None else ""
    print(
        f"\nAverage effect ({_scale_words(ate.attrs, short=True)}){how}: {row['mean']:.3f}, "
        f"95% interval [{row['lower']:.3f}, {row['upper']:.3f}], "
        f"P(benefit) {row['prob_benefit']:.3f}"
    )


def _diagnostics(est: Any, post: Any, warned: list[str]) -> dict[str, Any]:
    """What ``diagnostics.json`` holds: the fit's settings, its convergence, its warnings."""
    params = {
        k: v
        for k, v in est.get_params().items()
        if v is None or isinstance(v, bool | int | float | str)
    }
    d = est.diagnostics_
    return {
        "estimator": type(est).__name__,
        "inference": post.attrs["inference"],
        "outcome": est.outcome_,
        "scale": post.attrs["scale"],
        "scale_description": _scale_words(post.attrs),
        "n_patients": int(est.data_.n),
        "random_state": est.random_state_,
        "parameters": params,
        "convergence": None if d is None else d.to_dict(),
        "warnings": list(warned),
    }


def _write_outputs(args: argparse.Namespace, table: Any, post: Any, est: Any, ate: Any) -> None:
    """Write every output into the run's staging folder, then move them into ``--out``
    together (cli_output.py): ``--out`` holds this run's outputs or the earlier ones, never a
    mix."""
    import json

    from itelib.cli_output import OutputError

    folder = args.folder
    staging = folder.staging
    try:
        table.to_csv(staging / "effects.csv")
        _ate_table(ate).to_csv(staging / "ate.csv")
        report = _diagnostics(est, post, args.warnings_seen)
        (staging / "diagnostics.json").write_text(
            json.dumps(report, indent=2, default=_json_default) + "\n"
        )
        post.save(staging / "posterior.nc")
        if est.diagnostics_ is not None:  # the Bayesian estimators, which save in open formats
            est.save(staging / "model.nc")
        written = folder.commit()
    except OSError as err:  # a full disk, a folder removed under the run
        raise OutputError(
            f"could not write the outputs for --out {args.out} ({err}); nothing was written "
            "to --out. Fix: free space or give --out another folder, and run again."
        ) from err
    print(f"\nWrote {', '.join(str(p) for p in written)}")


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
