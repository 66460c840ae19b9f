"""Saving and loading fitted estimators (itelib.estimators.persistence): exact round trips, and
every kind of bad file refused with a clear error.

Short chains keep the fits cheap; a round trip is exact, so convergence does not matter here.
The data shapes and run lengths are those of test_hierarchical.py and test_bcf.py, so the
programs they compiled come from the session's compilation cache.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import itelib
from itelib.exceptions import (
    ConvergenceWarning,
    DataValidationError,
    NotFittedError,
    OverlapWarning,
    RandomizationWarning,
)
from itelib.models.hierarchical.estimator import HierarchicalITE
from itelib.models.hierarchical.priors import HierarchicalPriors
from itelib.simulate import simulate

SHORT = dict(num_warmup=300, num_samples=250, num_chains=2, progress_bar=False, random_state=5)
FOREST = dict(num_trees_mu=20, num_trees_tau=10, num_warmup=30, num_samples=100, num_chains=2)


def quiet_fit(est, **kwargs):
    with warnings.catch_warnings():
        for w in (ConvergenceWarning, RandomizationWarning, OverlapWarning):
            warnings.simplefilter("ignore", w)
        return est.fit(**kwargs)


def with_named_string_ids(kw: dict) -> dict:
    """String patient ids with a name: they must come back as they were."""
    ids = pd.Index([f"pt-{i:04d}" for i in range(len(kw["Y"]))], name="patient_id")
    return {k: v.set_axis(ids) for k, v in kw.items()}


@pytest.fixture(scope="module")
def hierarchical():
    kw = with_named_string_ids(simulate("multisite_rct", n=300, seed=11, n_sites=8).fit_kwargs())
    return quiet_fit(itelib.HierarchicalITE(**SHORT), **kw), kw


@pytest.fixture(scope="module")
def forest():
    kw = with_named_string_ids(simulate("multisite_rct", n=300, seed=3).fit_kwargs())
    est = itelib.BayesianCausalForest(progress_bar=False, random_state=2, **FOREST)
    return quiet_fit(est, **kw), kw


def new_patients(kw: dict, unseen_site: bool = True) -> tuple[pd.DataFrame, pd.Series]:
    X = kw["X"].iloc[:12].set_axis([f"new-{i}" for i in range(12)])
    site = kw["site"].iloc[:12].set_axis(X.index).astype(object)
    if unseen_site:
        site.iloc[:3] = "a clinic never seen"
    return X, site


@pytest.mark.parametrize("fixture", ["hierarchical", "forest"])
def test_round_trip_gives_the_same_effects(fixture, request, tmp_path: Path) -> None:
    est, kw = request.getfixturevalue(fixture)
    path = est.save(tmp_path / "model.nc")
    back = type(est).load(path)
    X, site = new_patients(kw)
    # bit-identical draws: new patients (known and unseen sites), training patients, the ATE
    np.testing.assert_array_equal(
        est.effect(X, site=site).draws(), back.effect(X, site=site).draws()
    )
    np.testing.assert_array_equal(est.effect().draws(), back.effect().draws())
    np.testing.assert_array_equal(est.ate().draws(), back.ate().draws())
    assert back.effect().patient_ids.equals(est.effect().patient_ids)
    assert back.effect().patient_ids.name == "patient_id"
    assert back.get_params() == est.get_params()
    assert back.diagnostics_.to_dict() == est.diagnostics_.to_dict()
    assert list(back.feature_names_in_) == list(est.feature_names_in_)


def test_binary_model_with_estimated_propensity(tmp_path: Path) -> None:
    trial = simulate("binary_multisite_rct", n=400, seed=4)
    kw = trial.fit_kwargs()
    est = quiet_fit(itelib.HierarchicalITE(**SHORT), **kw, propensity="estimate")
    back = itelib.HierarchicalITE.load(est.save(tmp_path / "binary.nc"))
    # the training patients' scores are saved: their risk differences are unchanged
    np.testing.assert_array_equal(est.effect().draws(), back.effect().draws())
    X = kw["X"].iloc[:5]
    np.testing.assert_array_equal(
        est.effect(X, scale="log_odds_ratio").draws(),
        back.effect(X, scale="log_odds_ratio").draws(),
    )
    # the classifier is not saved (it would need pickle): new patients' risk differences,
    # which need their propensity, get an error that says why and what to do
    with pytest.raises(DataValidationError, match="loaded from a file.*log_odds_ratio"):
        back.effect(X)


def test_save_refuses_an_unfitted_estimator(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        itelib.HierarchicalITE().save(tmp_path / "unfitted.nc")
    assert not (tmp_path / "unfitted.nc").exists()


@pytest.fixture()
def saved(hierarchical, tmp_path: Path) -> Path:
    return hierarchical[0].save(tmp_path / "model.nc")


def refused_then_reframed(path: Path) -> None:
    """After an edit of the content with h5py: the file's SHA-256 refuses it; then recompute
    the 512-byte header (as a tool that knew the layout would), leaving the edit to the checks
    inside the content, which the callers test."""
    damaged = r"(SHA-256 of its content differs|bytes of content, its header says).*damaged"
    with pytest.raises(ValueError, match=damaged):
        itelib.HierarchicalITE.load(path)
    from itelib._io import FRAME_SIZE, _frame

    payload = path.read_bytes()[FRAME_SIZE:]
    digest = hashlib.sha256(payload).hexdigest()
    path.write_bytes(_frame(len(payload), digest, "estimator") + payload)


def test_truncated_file(saved: Path) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable netCDF4 file"):
        itelib.HierarchicalITE.load(saved)


def test_changed_numbers_are_detected(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        f["posterior/tau0"][0, 0] += 1.0  # a silent change HDF5 itself would not notice
    refused_then_reframed(saved)
    with pytest.raises(ValueError, match=r"damaged.*posterior/tau0"):
        itelib.HierarchicalITE.load(saved)


def test_missing_array_is_detected(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        del f["training/y"]
    refused_then_reframed(saved)
    with pytest.raises(ValueError, match=r"incomplete.*training/y"):
        itelib.HierarchicalITE.load(saved)


def test_broken_metadata(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        f.attrs["metadata"] = "{not json"
    refused_then_reframed(saved)
    with pytest.raises(ValueError, match="not a consistent itelib estimator file"):
        itelib.HierarchicalITE.load(saved)


def test_newer_format_version(saved: Path) -> None:
    with h5py.File(saved, "r+") as f:
        f.attrs["format_version"] = 99
    refused_then_reframed(saved)
    with pytest.raises(ValueError, match="format 99.*reads format 1"):
        itelib.HierarchicalITE.load(saved)


def test_wrong_class_and_wrong_kind_of_file(saved: Path, hierarchical, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds a HierarchicalITE.*HierarchicalITE.load"):
        itelib.BayesianCausalForest.load(saved)
    posterior_file = hierarchical[0].effect().save(tmp_path / "effects.nc")
    with pytest.raises(ValueError, match="EffectPosterior.load"):
        itelib.HierarchicalITE.load(posterior_file)
    text = tmp_path / "notes.nc"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="not a readable netCDF4 file"):
        itelib.HierarchicalITE.load(text)
    with pytest.raises(FileNotFoundError):
        itelib.HierarchicalITE.load(tmp_path / "absent.nc")


def test_metadata_is_plain_json(saved: Path) -> None:
    """Everything that is not an array is readable JSON: nothing in the file is executable."""
    with h5py.File(saved, "r") as f:
        meta = json.loads(f.attrs["metadata"])
        assert f.attrs["estimator"] == "HierarchicalITE"
    assert meta["params"]["num_samples"] == SHORT["num_samples"]
    assert meta["data"]["encoder"]["columns"]
    assert all(len(v) == 64 for v in meta["checksums"].values())  # SHA-256 per array


def test_interrupted_save_keeps_the_previous_model(hierarchical, saved: Path, monkeypatch) -> None:
    """A crash while writing over a saved model leaves the old file whole and loadable."""
    before = saved.read_bytes()
    import itelib._io

    def crash(path, mode="r", *args, **kwargs):  # the file is written with one open() call
        if "x" in mode:
            Path(path).write_bytes(b"half a file")
            raise KeyboardInterrupt
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(itelib._io, "open", crash, raising=False)
    with pytest.raises(KeyboardInterrupt):
        hierarchical[0].save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary left
    itelib.HierarchicalITE.load(saved)


def test_files_from_before_the_effect_lengthscale_prior_keep_the_prior_they_were_fitted_with():
    """Until the smooth effect terms had a length-scale prior of their own they used the
    prognostic one; a file without the new fields must come back with that, not today's."""
    fitted_with = HierarchicalPriors(smooth_lengthscale_shape=4.0, smooth_lengthscale_scale=3.0)
    old_file = {
        k: v for k, v in fitted_with.to_dict().items() if "effect_smooth_lengthscale" not in k
    }
    restored = HierarchicalITE._priors_from_dict(old_file)
    assert (restored.effect_smooth_lengthscale_shape, restored.effect_smooth_lengthscale_scale) == (
        4.0,
        3.0,
    )
    assert HierarchicalITE._priors_from_dict(HierarchicalPriors().to_dict()) == HierarchicalPriors()
