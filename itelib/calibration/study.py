"""Simulation studies: DGPs x sizes x estimators x replications, on Dask, resumable and lossless.

A study is described by a TOML file; the named ones ship in ``itelib/calibration/configs``
(:func:`named_configs`), and a user's own file works the same way::

    name = "quick"
    summary = "every estimator family once, small trials"   # optional, for `itelib bench --help`
    run_time = "under 5 minutes on 2 cores"                  # optional, likewise
    seed = 2026
    replications = 2

    [[dgp]]
    name = "hahn_linear_heterogeneous"
    n = [250]
    propensity = "estimate"          # passed to every estimator's fit (default: none)

    [[estimator]]
    name = "bcf"
    kind = "itelib:BayesianCausalForest"    # or "peer:stochtree_bcf", or "path/to/file.py:function"
    params = { num_warmup = 200 }

A study file is data: its ``name`` is a plain file name (the results go to
``itelib-bench/<name>`` unless told otherwise), and a kind ``"path/to/file.py:function"``, which
imports and runs that file, is refused unless the user allows code
(``itelib bench --allow-code``, ``load_config(path, allow_code=True)``). Every estimator's and
every design's parameters are checked when the file is loaded, before any cell runs.

Every (dgp, n, estimator, replication) is a *cell*. Its data seed comes from
``SeedSequence(seed, spawn_key=(dgp, n, replication))`` — the same data for every estimator, so
comparisons are paired — and its estimator seed from the same key plus the estimator, so each
cell is reproducible alone. A finished cell is written atomically to
``<out>/cells/<key>.json`` by the worker that ran it, where ``key`` hashes the cell's whole
configuration: rerunning after any kill skips what is there and runs the rest, with no
duplicate and no lost row.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from itelib._io import atomic_write
from itelib.calibration import peers
from itelib.estimators import registry

__all__ = ["StudyConfig", "Cell", "load_config", "cells", "run_cell", "run_study", "collect"]

LEVELS = (0.5, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class StudyConfig:
    """A parsed study file."""

    name: str
    seed: int
    replications: int
    dgps: tuple[dict[str, Any], ...]
    estimators: tuple[dict[str, Any], ...]
    source: str = ""  # the file it came from, resolved
    summary: str = ""  # one line on what the study is for
    run_time: str = ""  # how long it takes, in words
    allow_code: bool = False  # whether adapter files (kind "file.py:function") may run


CONFIGS = Path(__file__).parent / "configs"  # the named studies that ship with itelib


def named_configs() -> dict[str, StudyConfig]:
    """The studies that ship with itelib, by name (``itelib bench --config NAME``)."""
    return {p.stem: load_config(p) for p in sorted(CONFIGS.glob("*.toml"))}


# A study's name becomes a folder (itelib-bench/<name>): a plain file name, nothing that climbs
# out of the folder ("../x", "/abs", "a/b") or hides ("." first).
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ALLOW_CODE_FIX = (
    "if you trust that file, allow it with `itelib bench --allow-code` "
    "(Python: load_config(path, allow_code=True))"
)


def config_path(name: str | Path) -> Path:
    """A ``.toml`` path as given, or the path of the named config that ships with itelib."""
    if Path(name).suffix == ".toml":
        return Path(name)
    path = CONFIGS / f"{name}.toml"
    if not PLAIN_NAME.fullmatch(str(name)) or not path.is_file():
        known = sorted(p.stem for p in CONFIGS.glob("*.toml"))
        raise FileNotFoundError(
            f"no study config named {str(name)!r}; itelib ships {known}. Fix: one of those "
            "names, or the path of your own .toml file."
        )
    return path


def unavailable_estimators(config: StudyConfig) -> dict[str, str]:
    """Estimators of ``config`` that cannot run here (a peer whose package is not installed),
    each with the reason and how to install it."""
    out = {}
    for entry in config.estimators:
        module, _, name = entry["kind"].partition(":")
        reason = peers.missing(name) if module == "peer" else None
        if reason:
            out[entry["name"]] = reason
    return out


def without_estimators(config: StudyConfig, names: Iterable[str]) -> StudyConfig:
    """``config`` less the estimators ``names`` (the other cells and their keys are unchanged)."""
    drop = set(names)
    return replace(config, estimators=tuple(e for e in config.estimators if e["name"] not in drop))


@dataclass(frozen=True)
class Cell:
    """One fit: a design, a size, an estimator, a replication, and their seeds."""

    study: str
    dgp: str
    dgp_params: dict[str, Any]
    n: int
    estimator: str
    kind: str
    params: dict[str, Any]
    fit: dict[str, Any]
    replication: int
    data_seed: int
    estimator_seed: int
    base_dir: str = ""  # where relative adapter paths are resolved
    allow_code: bool = False  # whether an adapter file may run (not part of the key)
    key: str = field(default="", compare=False)


def inside(folder: str | Path, target: str | Path) -> Path:
    """``target``, resolved, if it lies inside ``folder``; else a ``ValueError``."""
    root, resolved = Path(folder).resolve(), Path(target).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(
            f"{target} lies outside the output folder {root}; itelib writes a study's files "
            "only inside it. Fix: a plain study name and --out folder."
        )
    return resolved


def load_config(path: str | Path, *, allow_code: bool = False) -> StudyConfig:
    """Read and check a study file; errors name the file, the entry and the fix.

    Everything that can be checked before any fit is: the TOML syntax, the required keys and
    their types, the study's name (a plain file name), every dgp's name, sizes and parameters
    (names against the design's signature, then one small trial simulated), and every
    estimator's kind and parameters (constructed and checked as ``fit`` would, without data),
    so a typo fails here, not in a worker an hour into the run.

    Parameters
    ----------
    allow_code : bool
        Whether estimator kinds ``"path/to/file.py:function"`` may run: such a kind imports and
        runs that Python file, so a study file from elsewhere could run anything. Default
        False: the file is refused, and the error names this option.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no study config at {path}")
    with path.open("rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path.name} is not valid TOML: {err}.") from None
    for required in ("name", "seed", "replications", "dgp", "estimator"):
        if required not in raw:
            raise ValueError(
                f"{path.name}: missing '{required}' (see itelib/calibration/configs/quick.toml)."
            )
    if not isinstance(raw["name"], str) or not PLAIN_NAME.fullmatch(raw["name"]):
        raise ValueError(
            f"{path.name}: name = {raw['name']!r} is not a plain file name (it names the results "
            "folder itelib-bench/<name>). Fix: letters, digits, '_', '-' and '.', starting with "
            'a letter or digit, e.g. name = "my_study".'
        )
    for key in ("seed", "replications"):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (key != "seed"):
            raise ValueError(
                f"{path.name}: {key} must be a {'non-negative' if key == 'seed' else 'positive'}"
                f" integer; got {value!r}."
            )
    if not isinstance(raw["dgp"], list) or not isinstance(raw["estimator"], list):
        raise ValueError(f"{path.name}: write dgps as [[dgp]] and estimators as [[estimator]].")
    from itelib.simulate import available

    for d in raw["dgp"]:
        if d.get("name") not in available():
            raise ValueError(
                f"{path.name}: unknown dgp {d.get('name')!r}; registered: {available()}"
            )
        n = d.get("n")
        if (
            not isinstance(n, list)
            or not n
            or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in n)
        ):
            raise ValueError(f"{path.name}: dgp {d['name']!r} needs n = [positive ints].")
        _check_dgp_entry(d, path)
    names = [e.get("name") for e in raw["estimator"]]
    if len(set(names)) != len(names) or not all(
        isinstance(e.get("kind"), str) for e in raw["estimator"]
    ):
        raise ValueError(f"{path.name}: every [[estimator]] needs a unique name and a kind.")
    propensities = {d.get("propensity") for d in raw["dgp"]}
    for e in raw["estimator"]:
        _check_estimator_entry(e, path, allow_code, propensities)
    _check_every_design_is_fitted(raw, path)
    return StudyConfig(
        name=str(raw["name"]),
        seed=int(raw["seed"]),
        replications=int(raw["replications"]),
        dgps=tuple(raw["dgp"]),
        estimators=tuple(raw["estimator"]),
        source=str(path.resolve()),
        summary=str(raw.get("summary", "")),
        run_time=str(raw.get("run_time", "")),
        allow_code=bool(allow_code),
    )


def _check_every_design_is_fitted(raw: dict[str, Any], path: Path) -> None:
    """A design whose outcome no estimator of the study fits would run no cell: refused."""
    from itelib.simulate import outcome_kind

    kinds = [e["kind"] for e in raw["estimator"]]
    for d in raw["dgp"]:
        outcome = outcome_kind(d["name"])
        if not any(fits_outcome(kind, outcome) for kind in kinds):
            takers = [f"itelib:{e.name}" for e in registry.ESTIMATORS
                      if fits_outcome(f"itelib:{e.name}", outcome)]  # fmt: skip
            takers += [f"peer:{name}" for name, p in peers.PEERS.items() if p.outcome == outcome]
            raise ValueError(
                f"{path.name}: dgp {d['name']!r} has a {outcome} outcome, which none of this "
                f"study's estimators fits, so it would run no cell. Fix: add an estimator that "
                f"fits it ({', '.join(takers)}), or drop the design."
            )


def _check_dgp_entry(entry: dict[str, Any], path: Path) -> None:
    """A design's ``propensity`` and parameters: names against its signature, types against
    its defaults, then one trial at its smallest size (milliseconds), so a bad value fails here."""
    from itelib.simulate import simulate
    from itelib.simulate.registry import _REGISTRY

    name = entry["name"]
    where = f"{path.name}: [[dgp]] {name!r}"
    if "propensity" in entry and entry["propensity"] != "estimate":
        raise ValueError(
            f"{where}: propensity = {entry['propensity']!r} is not an option. Fix: "
            'propensity = "estimate" (scores from each estimator\'s propensity model), or leave '
            "the key out (a randomized trial)."
        )
    params = {k: v for k, v in entry.items() if k not in ("name", "n", "propensity")}
    signature = inspect.signature(_REGISTRY[name]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in signature.values()):
        takes = sorted(set(signature) - {"n", "seed"})
        unknown = sorted(set(params) - set(takes))
        if unknown:
            raise ValueError(
                f"{where}: unknown parameter(s) {unknown}; {name} takes {takes} (besides name, "
                "n and propensity)."
            )
    for key, value in params.items():
        default = signature[key].default if key in signature else inspect.Parameter.empty
        if not _same_kind(value, default):
            kind = type(default).__name__
            raise ValueError(
                f"{where}: {key} = {value!r} must be {'an' if kind[0] in 'aeiou' else 'a'} "
                f"{kind} like its default {default!r}."
            )
    try:
        simulate(name, n=min(entry["n"]), seed=0, **params)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{where}: one trial at n = {min(entry['n'])} with {params or 'its defaults'} "
            f"fails: {err}"
        ) from None


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a TOML value can stand where a parameter's default stands (None: anything)."""
    if default is inspect.Parameter.empty or default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple | list):
        return isinstance(value, list)
    return True


def _check_estimator_entry(
    entry: dict[str, Any], path: Path, allow_code: bool, propensities: set[Any]
) -> None:
    """An itelib kind must name an estimator whose parameters pass its own checks; a peer must
    exist; an adapter file must exist, and may run only with ``allow_code``."""
    kind, name = entry["kind"], entry["name"]
    module, sep, attr = kind.partition(":")
    if not sep or not attr:
        raise ValueError(
            f"{path.name}: estimator {name!r} has kind {kind!r}; write 'itelib:Name', "
            "'peer:name' or 'path/to/adapter.py:function'."
        )
    params = entry.get("params", {})
    if not isinstance(params, dict):
        raise ValueError(f"{path.name}: estimator {name!r}: params must be a table {{...}}.")
    if module == "peer":
        peers.adapter(attr)  # a ValueError naming the peers if there is no such peer
        return
    if module == "itelib":
        if attr not in registry.names():
            raise ValueError(
                f"{path.name}: estimator {name!r}: unknown kind {kind!r}; itelib's are "
                f"{['itelib:' + k for k in registry.names()]}."
            )
        cls = registry.estimator_class(attr)
        known = set(cls().get_params()) - {"random_state"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"{path.name}: estimator {name!r}: {attr} has no parameter(s) {unknown}; "
                f"it takes {sorted(known)} (random_state comes from the study's seed)."
            )
        _check_itelib_params(cls, params, propensities, f"{path.name}: [[estimator]] {name!r}")
        return
    adapter = Path(module) if Path(module).is_absolute() else path.parent / module
    if not adapter.is_file():
        raise ValueError(
            f"{path.name}: estimator {name!r}: no adapter file at {adapter} (relative paths "
            "start at the config's folder)."
        )
    if not allow_code:
        raise ValueError(
            f"{path.name}: estimator {name!r} has kind {kind!r}, which would import and run the "
            f"Python file {adapter}; a study file runs no code unless you allow it. Fix: kind = "
            f"'itelib:Name' or 'peer:name', or, {ALLOW_CODE_FIX}."
        )


def _check_itelib_params(cls: Any, params: dict, propensities: set[Any], where: str) -> None:
    """Construct the estimator as a cell would and run the checks ``fit`` makes before it
    touches data (types, ranges, choices), once per ``propensity`` the designs pass."""
    for propensity in sorted(propensities, key=str):
        est = cls(**params, random_state=0)
        try:
            est._missing_option()
            est._validated_options(propensity)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}, params = {params}: {err}") from None


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _seed(config_seed: int, *parts: Any) -> int:
    key = tuple(_stable_int(str(p)) for p in parts)
    return int(np.random.SeedSequence(config_seed, spawn_key=key).generate_state(1)[0])


def fits_outcome(kind: str, outcome: str) -> bool:
    """Whether estimator ``kind`` fits a design whose outcome is ``outcome`` ("scalar" or
    "survival", the registry's kinds): an itelib estimator that takes survival outcomes fits
    both; a peer fits the kind it declares; an adapter file is trusted with either."""
    module, _, name = kind.partition(":")
    if module == "itelib":
        return outcome == "scalar" or registry.estimator_class(name)._TAKES_SURVIVAL
    if module == "peer":
        return peers.PEERS[name].outcome == outcome
    return True


def cells(config: StudyConfig) -> list[Cell]:
    """Every cell of the study, with its seeds and its key, replication by replication.

    Cells run in this order, so a study stopped early (a long one spans several sessions) has
    every design at its first replications rather than the first designs at all of them. A
    design and an estimator that does not fit its outcome (:func:`fits_outcome`) make no cell.
    """
    from itelib.simulate import outcome_kind

    base = str(Path(config.source).parent) if config.source else ""
    out = []
    for rep in range(config.replications):
        for d in config.dgps:
            dgp_params = {k: v for k, v in d.items() if k not in ("name", "n", "propensity")}
            fit = {"propensity": d["propensity"]} if "propensity" in d else {}
            for n in d["n"]:
                data_seed = _seed(config.seed, d["name"], n, rep)
                for e in config.estimators:
                    if not fits_outcome(e["kind"], outcome_kind(d["name"])):
                        continue  # e.g. a survival design and CausalForest: no cell
                    cell = Cell(
                        study=config.name, dgp=d["name"], dgp_params=dgp_params, n=n,
                        estimator=e["name"], kind=e["kind"], params=dict(e.get("params", {})),
                        fit=fit, replication=rep, data_seed=data_seed,
                        estimator_seed=_seed(config.seed, d["name"], n, rep, e["name"]),
                        base_dir=base, allow_code=config.allow_code,
                    )  # fmt: skip
                    out.append(_with_key(cell))
    return out


def _with_key(cell: Cell) -> Cell:
    identity = {k: v for k, v in asdict(cell).items() if k not in ("key", "base_dir", "allow_code")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    return replace(cell, key=digest.hexdigest()[:20])


# -- running one cell ----------------------------------------------------------------------------
def _resolve(kind: str, base_dir: str, allow_code: bool = False) -> Callable[..., dict[str, Any]]:
    """``itelib:Name`` (an itelib estimator), ``peer:name``, or ``file.py:function`` (an adapter
    file, run only with ``allow_code``)."""
    module, _, name = kind.partition(":")
    if module == "itelib":
        return _itelib_adapter(name)
    if module == "peer":
        return peers.adapter(name)
    path = Path(module)
    if not path.is_absolute():
        path = Path(base_dir) / path
    if not allow_code:
        raise ValueError(
            f"estimator kind {kind!r} would import and run the Python file {path}; a study runs "
            f"no code unless you allow it. Fix: {ALLOW_CODE_FIX}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"estimator kind {kind!r}: no adapter file at {path}")
    spec = importlib.util.spec_from_file_location(f"_itelib_adapter_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def _itelib_adapter(name: str) -> Callable[..., dict[str, Any]]:
    cls = registry.estimator_class(name)

    def adapter(trial: Any, fit: dict, params: dict, seed: int) -> dict[str, Any]:
        from itelib.simulate.trial import SurvivalTrial

        if isinstance(trial, SurvivalTrial):  # RMST differences up to the design's horizon
            params = {"outcome": "survival", "horizon": trial.params["horizon"]} | params
        est = cls(**params, random_state=seed % (2**31))
        if "progress_bar" in est.get_params():
            est.set_params(progress_bar=False)
        est.fit(**trial.fit_kwargs(), **fit)
        return {"draws": est.effect().draws(), "ate_draws": est.ate().draws().ravel()}

    return adapter


class _PeakRSS:
    """Peak resident memory of this process while a block runs (Linux /proc; else ru_maxrss)."""

    def __enter__(self) -> _PeakRSS:
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_cell(cell: Cell) -> dict[str, Any]:
    """Simulate the cell's trial, fit its estimator, score it against the truth."""
    from itelib.calibration.metrics import metrics
    from itelib.simulate import simulate

    row: dict[str, Any] = {
        k: v
        for k, v in asdict(cell).items()
        if k not in ("base_dir", "dgp_params", "params", "fit", "allow_code")
    }
    row["config"] = json.dumps(
        {"dgp": cell.dgp_params, "params": cell.params, "fit": cell.fit},
        sort_keys=True,
        default=str,
    )
    trial = simulate(cell.dgp, n=cell.n, seed=cell.data_seed, **cell.dgp_params)
    truth = trial.tau.to_numpy()
    import warnings

    start = time.perf_counter()
    try:
        with _PeakRSS() as mem, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = _resolve(cell.kind, cell.base_dir, cell.allow_code)(
                trial, dict(cell.fit), dict(cell.params), cell.estimator_seed
            )
    except Exception as err:  # recorded, not retried: the same seed would fail the same way
        row |= {
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc()[-2000:],
        }
        return row
    row["fit_seconds"] = time.perf_counter() - start
    row["peak_rss_mb"] = mem.peak / 2**20
    row["n_warnings"] = len(caught)
    row["warnings"] = "; ".join(sorted({type(w.message).__name__ for w in caught}))
    row["error"] = ""
    if "draws" in out:
        m = metrics(np.asarray(out["draws"]), truth, levels=LEVELS)
        row |= {"sqrt_pehe": m.sqrt_pehe, "width95": m.width95, "crps": m.crps, "pit_ks": m.pit_ks}
        row |= {f"cov{round(lv * 100)}": c for lv, c in m.coverage.items()}
        ate_draws = np.asarray(out.get("ate_draws", np.asarray(out["draws"]).mean(axis=-1))).ravel()
    else:  # point estimates only (e.g. EconML's DR- and X-learners)
        mean = np.asarray(out["mean"], float)
        row["sqrt_pehe"] = float(np.sqrt(np.mean((mean - truth) ** 2)))
        ate_draws = np.asarray([float(np.mean(mean))])
    row["ate_error"] = float(np.mean(ate_draws) - trial.ate)
    row["abs_ate_error"] = abs(row["ate_error"])
    if ate_draws.size > 1:
        lo, hi = np.quantile(ate_draws, [0.025, 0.975])
        row["ate_covered"] = float(lo <= trial.ate <= hi)
    return row


def _run_and_store(cell: Cell, out_dir: str) -> str:
    """Worker side: run a cell and write its row atomically (so a killed driver loses nothing)."""
    target = inside(Path(out_dir) / "cells", Path(out_dir) / "cells" / f"{cell.key}.json")
    if target.exists():
        return cell.key
    row = run_cell(cell)
    text = json.dumps(row, default=_json_default, allow_nan=True)
    atomic_write(target, lambda tmp: Path(tmp).write_text(text))
    return cell.key


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a result row")


# -- the study -----------------------------------------------------------------------------------
def pending(all_cells: Iterable[Cell], out_dir: str | Path) -> list[Cell]:
    """Cells without a result file."""
    done = {p.stem for p in (Path(out_dir) / "cells").glob("*.json")}
    return [c for c in all_cells if c.key not in done]


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Run every pending cell on Dask and return all rows (old and new).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running Dask scheduler; its workers must see ``out_dir``. Default: a
        ``LocalCluster`` with one single-threaded worker process per core (``n_workers``).
    """
    from distributed import Client, LocalCluster, as_completed

    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    all_cells = cells(config)
    todo = pending(all_cells, out)
    if todo:
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                processes=True, dashboard_address=":0",  # None means 8787: clashes
            )  # fmt: skip
        client = Client(scheduler if scheduler is not None else cluster)
        try:
            futures = [
                client.submit(_run_and_store, c, str(out), key=f"cell-{c.key}", pure=False)
                for c in todo
            ]
            bar = _bar(progress_bar, len(all_cells), len(all_cells) - len(todo), config.name)
            for fut in as_completed(futures):
                fut.result()
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return collect(out)


def _bar(show: bool, total: int, done: int, name: str) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"study {name}", unit="cell")


def collect(out_dir: str | Path) -> pd.DataFrame:
    """All finished cells as one table (one row per cell)."""
    files = sorted((Path(out_dir) / "cells").glob("*.json"))
    rows = []
    for path in files:
        try:
            rows.append(json.loads(path.read_text()))
        except json.JSONDecodeError as err:  # atomic writes make this a foreign or edited file
            raise ValueError(
                f"{path} is not a valid result file ({err}); delete it to rerun."
            ) from err
    return pd.DataFrame(rows)
