"""Record the draws that tests/test_pinned_draws.py holds every later version to.

Run once, on the version whose draws are the reference (here: 18912bf, before the estimator
lifecycle was rewritten in one base class), from the repository root:

    python tests/data/record_pins.py

At 18912bf it wrote ``pinned_draws.npz`` (a few patients' draws from each estimator, on the
training patients, on new patients at a known and an unseen site, and the average effect) and
two saved estimators (``saved_hierarchical_v1.nc``, ``saved_bcf_v1.nc``) in the format of that
version. Draws in float32 depend on the CPU and the libraries, so the file now holds one record
per environment; running this script (re)records the current environment's record only and
never rewrites the saved files.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
PATIENTS = slice(0, 6)  # the first six patients' draws are kept (the file stays small)


def estimators() -> dict:
    import itelib

    return {
        "hierarchical": itelib.HierarchicalITE(
            num_warmup=100, num_samples=50, num_chains=2, progress_bar=False, random_state=7
        ),
        "bcf": itelib.BayesianCausalForest(
            num_trees_mu=20,
            num_trees_tau=10,
            num_warmup=20,
            num_samples=30,
            num_chains=2,
            progress_bar=False,
            random_state=7,
        ),
        "causal_forest": itelib.CausalForest(n_estimators=40, cv=2, random_state=7),
        "hierarchical_binary": itelib.HierarchicalITE(
            num_warmup=100, num_samples=50, num_chains=2, progress_bar=False, random_state=3
        ),
    }


def trials() -> dict:
    from itelib.simulate import simulate

    continuous = simulate("multisite_rct", n=120, seed=5, n_sites=4)
    binary = simulate("binary_multisite_rct", n=150, seed=2, n_sites=3)
    return {"continuous": continuous, "binary": binary}


def new_patients(trial) -> tuple:
    """Five new patients: three at a training site, two at a site the model never saw."""
    X = trial.X.iloc[:5].copy()
    X.index = [f"new{i}" for i in range(5)]
    # a copy: under pandas 3, np.asarray of a column is a read-only view
    site = np.array(trial.data[trial.site].iloc[:5], dtype=object)
    site[3:] = "site_never_seen"
    return X, site


def environment() -> str:
    """The versions and CPU that the draws depend on (float32 rounding, XLA's code).

    The CPU is its model name and whether it has AVX-512: XLA compiles for the instructions
    the CPU has, and two "AMD EPYC" (Zen 3 without AVX-512, Zen 4 with) gave different
    HierarchicalITE chains from the same code and libraries."""
    import platform
    from importlib.metadata import version

    names = ("jax", "jaxlib", "numpyro", "numpy", "pandas", "scikit-learn", "econml")
    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
        flags = next(line.split(":", 1)[1] for line in info if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    isa = "AVX-512" if "avx512f" in flags.split() else "no AVX-512"
    return ", ".join(f"{n} {version(n)}" for n in names) + f", CPU {cpu}, {isa}"


def draws(save_dir: Path | None = None) -> dict[str, np.ndarray]:
    out = {}
    data = trials()
    for name, est in estimators().items():
        trial = data["binary" if name.endswith("binary") else "continuous"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(**trial.fit_kwargs())
        out[f"{name}/effect"] = est.effect().draws()[..., PATIENTS]
        out[f"{name}/ate"] = est.ate().draws()
        if name != "causal_forest":
            X, site = new_patients(trial)
            out[f"{name}/new"] = est.effect(X, site=site).draws()
        if save_dir is not None and name in ("hierarchical", "bcf"):
            est.save(save_dir / f"saved_{name}_v1.nc")
    return out


def records(pinned: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The fit draws recorded per environment: ``{environment: {key: draws}}``. Keys in the
    file are ``"<k>:environment"`` and ``"<k>:<estimator>/<what>"``; ``saved_*`` keys (the
    effects of the files saved at 18912bf) are not per environment."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for k in sorted({key.split(":", 1)[0] for key in pinned if ":" in key}):
        env = str(pinned[f"{k}:environment"])
        out[env] = {
            key.split(":", 1)[1]: v
            for key, v in pinned.items()
            if key.startswith(f"{k}:") and not key.endswith(":environment")
        }
    return out


def write(pinned: dict[str, np.ndarray], by_env: dict[str, dict[str, np.ndarray]]) -> None:
    flat = {key: v for key, v in pinned.items() if key.startswith("saved_")}
    for k, (env, fits) in enumerate(by_env.items()):
        flat[f"{k}:environment"] = np.array(env)
        flat |= {f"{k}:{key}": v for key, v in fits.items()}
    np.savez_compressed(HERE / "pinned_draws.npz", **flat)


if __name__ == "__main__":
    import os

    # as tests/conftest.py: four XLA host devices, so the chains run as they do in the tests
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    sys.path.insert(0, str(HERE.parents[1]))
    with np.load(HERE / "pinned_draws.npz") as f:
        pinned = {k: f[k] for k in f.files}
    by_env = records(pinned)
    # This environment's record is replaced; the other environments' records are kept as they
    # are. After a deliberate change of the draws, delete their changed keys by hand (they
    # cannot be re-recorded here), and say so in tests/test_pinned_draws.py.
    by_env[environment()] = draws()
    write(pinned, by_env)
    print("\n".join(f"{env}: {sorted(fits)}" for env, fits in by_env.items()))
