"""Draws pinned before the estimator lifecycle was rewritten in one base class (18912bf).

``tests/data/record_pins.py`` recorded, on that version, a few patients' draws of every
estimator (training patients, new patients at a known and an unseen site, the average effect)
and saved two fitted estimators. The same seeds must give the same draws now, and those files
must still load and give the same effects: a refactor that changes either changed behaviour.

Keys re-recorded since, each for a deliberate change (the refactor itself, a0b52e7, passed the
pins of 18912bf unchanged):

- ``hierarchical/*``: the marginal model's quadratic form is centred on a ridged fit (issue 19:
  the old centre made float32 log densities noisy enough to stall NUTS with smooth terms), which
  changes float32 rounding and so the draws; the saved file's effects are unchanged.
- ``causal_forest/ate``: EconML's doubly robust average effect replaced the conservative
  ``stderr_mean`` one (issue 19).

- ``hierarchical/*``, ``hierarchical_binary/*``, ``bcf/*`` (2026-12-05): re-recorded on a fresh
  install (numpy 2.4.6, pandas 3.1.1, scikit-learn 1.9.1, jax 0.10.2, Sapphire Rapids CPU). The
  commit that recorded them (a4fb99e) failed its own pins there by the same amounts (BCF ~1e-6 in
  float32, NUTS chains diverging from there), so the change was the environment's; main then
  passed the new pins, so no code change since a4fb99e moved a draw. ``environment`` in the file
  names where they were recorded, and a failure prints it beside where it ran.
- One record per environment (2026-12-06): float32 draws differ between CPUs (the Intel record
  fails on an AMD EPYC with the same libraries, at the recording commit too), so the file holds
  a record per environment and the test compares with this environment's, skipping where there
  is none. ``hierarchical/*`` was dropped from the Intel record: the continuous model's
  statistics are now summed from per-site cross-products (issue 26, so that a fit from site
  summaries equals the pooled fit), which can move their last bits, and no Intel machine was at
  hand to check. On AMD EPYC every key was recorded at the commit before (ac43ddc) and after
  the change: identical (causal_forest/effect within 9e-16, EconML's thread order), though one
  entry of ``D'y`` differs in its last float64 bit on the pinned trial; the AMD record was made
  after the change.
- ``hierarchical/*`` (AMD EPYC record, 2026-12-06, issue 24): NUTS's first adaptation window
  starts from log sigma's approximate posterior variance, 1 / (2 n), instead of 1
  (``initial_inverse_mass``), which changes every continuous fit's chain; the binary model, BCF
  and CausalForest keys were checked unchanged (difference 0, and 1e-15 for EconML's forest)
  before recording.

- Environments name AVX-512 (2026-12-06, later): an AMD EPYC without it (Zen 3) failed the
  AMD record at the commit that recorded it (e9bc628): ``hierarchical/*`` chains diverged from
  float32 rounding (``hierarchical_binary/*`` within 6e-8; BCF and CausalForest identical), so
  ``environment`` now says whether the CPU has AVX-512; the two earlier records (Sapphire
  Rapids, and the AMD EPYC that passed them) were keyed "AVX-512", and the Zen 3 record was
  made at e9bc628.

- ``bcf/*`` (2026-12-07, issue 24): the effect forest's tree prior is BART's (0.95, 2) with a
  tenth of the leaf variance instead of Hahn et al.'s (0.25, 3), which changes every continuous
  forest's draws. Re-recorded on the AMD EPYC without AVX-512 record (every other key there
  checked unchanged before recording); dropped from the two other records, which cannot be
  re-recorded here. The saved BCF file's effects do not depend on the prior (its trees are
  saved) and are unchanged.

- A record for pandas 3.1.2 (2026-12-08; what ``pip install -e ".[test]"`` resolves now, so
  every pin had skipped here), AMD EPYC without AVX-512, made at 2026-12-08's main: every key
  equals the pandas 3.1.1 record on the same CPU (difference 0; causal_forest within 1.2e-15,
  EconML's thread order), so neither pandas nor any commit since that record moved a draw.

Same machine, same seed: the draws are bit-identical (``test_reproducibility.py``). The
tolerance below only admits a last-bit difference (EconML's forest differs by ~2e-15 between
two fits in one process); a changed chain, key or rule differs by orders of magnitude more.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
RTOL, ATOL = 1e-9, 1e-12
# A saved HierarchicalITE's effects are float32 products of its draws and features, which XLA
# vectorizes per CPU: on a CPU without AVX-512 (AMD Zen 3) 20 of 500 entries differ from the
# recording CPU's by up to 1.2e-7 (3e-7 relative), one or two float32 ulps. A changed model or
# file reading moves them by orders of magnitude more.
FLOAT32_ACROSS_CPUS = {"rtol": 2e-6, "atol": 1e-6}


def _recorder():
    spec = importlib.util.spec_from_file_location("record_pins", DATA / "record_pins.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pinned() -> dict[str, np.ndarray]:
    with np.load(DATA / "pinned_draws.npz") as f:
        return {k: f[k] for k in f.files}


def test_same_seed_gives_the_draws_recorded_before_the_refactor(pinned) -> None:
    rec = _recorder()
    here = rec.environment()
    by_env = rec.records(pinned)
    if here not in by_env:
        pytest.skip(
            f"no draws recorded on this environment ({here}); recorded on: {list(by_env)}. "
            "float32 draws differ between CPUs, so a pin holds only where it was recorded. "
            "Record one here with `python tests/data/record_pins.py` at a commit whose draws "
            "are the reference."
        )
    fits = by_env[here]
    now = rec.draws()
    assert fits and set(fits) <= set(now), (sorted(fits), sorted(now))
    for key, expected in fits.items():
        np.testing.assert_allclose(
            now[key], expected, rtol=RTOL, atol=ATOL, err_msg=f"{key} (environment: {here})"
        )


@pytest.mark.parametrize("name", ["hierarchical", "bcf"])
def test_files_saved_before_the_refactor_load_with_the_same_effects(name, pinned) -> None:
    import itelib

    rec = _recorder()
    est = (
        itelib.HierarchicalITE.load if name == "hierarchical" else itelib.BayesianCausalForest.load
    )
    fitted = est(DATA / f"saved_{name}_v1.nc")
    effect = fitted.effect().draws()[..., rec.PATIENTS]
    saved = f"saved_{name}"  # the effects of the saved fit, as 18912bf computed them
    tol = {"rtol": RTOL, "atol": ATOL} if name == "bcf" else FLOAT32_ACROSS_CPUS
    np.testing.assert_allclose(effect, pinned[f"{saved}/effect"], **tol)
    np.testing.assert_allclose(fitted.ate().draws(), pinned[f"{saved}/ate"], **tol)
    X, site = rec.new_patients(rec.trials()["continuous"])
    new = fitted.effect(X, site=site).draws()
    np.testing.assert_allclose(new, pinned[f"{saved}/new"], **tol)
