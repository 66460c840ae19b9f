"""Tests for itelib.posterior (EffectPosterior) and itelib._io (atomic writes)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from itelib._io import atomic_write, atomic_write_text
from itelib.exceptions import DataValidationError
from itelib.posterior import EffectPosterior

MU = np.array([-1.0, 0.0, 0.5, 2.0])
SIGMA = np.array([1.0, 0.5, 2.0, 1.0])
N_CHAINS, N_DRAWS = 4, 2500
S = N_CHAINS * N_DRAWS  # 10,000 independent draws per patient


def _normal_posterior(seed: int = 0) -> EffectPosterior:
    rng = np.random.default_rng(seed)
    draws = rng.normal(MU, SIGMA, size=(N_CHAINS, N_DRAWS, len(MU)))
    return EffectPosterior.from_draws(draws, patient_ids=pd.Index([11, 12, 13, 14], name="pid"))


def _rich_posterior(ids: np.ndarray, dtype: type, seed: int = 1) -> EffectPosterior:
    """Posterior with extra groups (sample_stats, observed_data) and custom attrs."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    return EffectPosterior.from_draws(
        rng.normal(size=(2, 30, n)).astype(dtype),
        patient_ids=pd.Index(ids, name="subject"),
        attrs={"scale": "risk_difference", "outcome": "death", "estimator": "Demo", "seed": 7},
        groups={
            "sample_stats": {
                "diverging": rng.random((2, 30)) < 0.1,
                "lp": rng.normal(size=(2, 30)),
            },
            "observed_data": {"y": rng.normal(size=n).astype(dtype)},
        },
        dims={"y": ["patient"]},
    )


# --------------------------------------------------------------------------- closed form
def test_normal_draws_match_the_normal_in_closed_form() -> None:
    post = _normal_posterior()
    # Monte Carlo standard errors with S = 10,000 iid draws: mean sigma/sqrt(S) = 0.01 sigma;
    # sd ~ sigma/sqrt(2S) = 0.0071 sigma; the 2.5 % quantile sqrt(p(1-p)/S)/phi(z) = 0.027
    # sigma; a probability sqrt(P(1-P)/S) <= 0.005. Tolerances are 5 standard errors.
    assert np.all(np.abs(post.mean().to_numpy() - MU) < 5 * 0.01 * SIGMA)
    assert np.all(np.abs(post.sd().to_numpy() - SIGMA) < 5 * 0.0071 * SIGMA)
    ci = post.interval(0.95)
    z = stats.norm.ppf(0.975)
    assert np.all(np.abs(ci["lower"].to_numpy() - (MU - z * SIGMA)) < 5 * 0.027 * SIGMA)
    assert np.all(np.abs(ci["upper"].to_numpy() - (MU + z * SIGMA)) < 5 * 0.027 * SIGMA)
    hdi = post.interval(0.95, kind="hdi")  # symmetric law: HDI ~ ETI
    assert np.all(np.abs(hdi.to_numpy() - ci.to_numpy()) < 5 * 0.027 * SIGMA[:, None])
    p_true = stats.norm.cdf(MU / SIGMA)
    assert np.all(np.abs(post.prob_benefit().to_numpy() - p_true) < 5 * 0.005)
    p_low = stats.norm.cdf((0.5 - MU) / SIGMA)  # lower is better, threshold 0.5
    got = post.prob_benefit(0.5, higher_is_better=False).to_numpy()
    assert np.all(np.abs(got - p_low) < 5 * 0.005)
    assert list(post.mean().index) == [11, 12, 13, 14] and post.mean().index.name == "pid"


def test_hdi_of_a_skewed_sample_is_narrower_than_its_eti() -> None:
    draws = np.random.default_rng(3).exponential(size=(4, 5000, 1))  # Exp(1), S = 20,000
    post = EffectPosterior.from_draws(draws)
    eti, hdi = post.interval(0.95, "eti").iloc[0], post.interval(0.95, "hdi").iloc[0]
    # Exp(1): 95 % HDI = [0, -ln 0.05] (width 2.996); ETI = [-ln 0.975, -ln 0.025] (3.664).
    # The upper quantiles' Monte Carlo sd ~ sqrt(p(1-p)/S)/f(q) ~ 0.03-0.06; tolerance 0.2.
    assert hdi["upper"] - hdi["lower"] < eti["upper"] - eti["lower"] - 0.5
    assert abs(hdi["lower"]) < 0.01 and abs(hdi["upper"] + np.log(0.05)) < 0.2
    assert abs(eti["lower"] + np.log(0.975)) < 0.01 and abs(eti["upper"] + np.log(0.025)) < 0.2


def test_summary_columns_and_diagnostics() -> None:
    post = _normal_posterior()
    table = post.summary()
    assert list(table.columns) == [
        "mean",
        "sd",
        "lower",
        "upper",
        "prob_benefit",
        "ess_bulk",
        "r_hat",
    ]
    assert table.index.equals(post.patient_ids)
    pd.testing.assert_series_equal(table["mean"], post.mean(), check_names=False)
    pd.testing.assert_frame_equal(table[["lower", "upper"]], post.interval())
    # iid draws: R-hat is 1 up to ~1e-3, bulk ESS is near S (the estimator scatters ~10 %)
    assert np.all(np.abs(table["r_hat"] - 1) < 0.01)
    assert np.all((table["ess_bulk"] > 0.7 * S) & (table["ess_bulk"] < 1.3 * S))


def test_summary_single_chain_and_constant_draws_give_nan_rhat_without_warnings() -> None:
    one_chain = EffectPosterior.from_draws(np.random.default_rng(0).normal(size=(1, 200, 2)))
    assert one_chain.summary()["r_hat"].isna().all()
    assert one_chain.summary()["ess_bulk"].notna().all()
    constant = EffectPosterior.from_draws(np.full((2, 50, 2), 0.3))
    table = constant.summary()
    assert table["r_hat"].isna().all() and (table["sd"] < 1e-12).all()
    assert (table["lower"] == 0.3).all() and (table["prob_benefit"] == 1).all()


def test_population_average_posterior() -> None:
    draws = np.random.default_rng(5).normal(1.0, 0.1, size=(2, 500))
    post = EffectPosterior.from_draws(draws, attrs={"inference": "normal_approximation"})
    assert isinstance(post.mean(), float) and post.mean() == pytest.approx(draws.mean())
    lower, upper = post.interval(0.9)
    assert isinstance(lower, float) and lower < post.mean() < upper
    assert post.prob_benefit() == 1.0 and post.n_patients == 0 and len(post) == 0 and post
    assert post.summary().index.tolist() == ["effect"]
    assert "population average" in repr(post) and "normal_approximation" in repr(post)
    with pytest.raises(ValueError, match="no patients"):
        post.sel([0])


def test_from_normal_intervals_are_the_normals_quantiles_exactly(tmp_path: Path) -> None:
    """from_normal: interval() is the normal's own quantiles (no Monte Carlo error), for a
    population average and per patient, for eti and hdi, and after save/load and sel."""
    rng = np.random.default_rng(0)
    ate = EffectPosterior.from_normal(0.9, 0.1, num_draws=1000, rng=rng)
    assert ate.attrs["inference"] == "normal_approximation" and ate.draws().shape == (1, 1000)
    for prob in (0.5, 0.9, 0.95):
        expected = stats.norm.interval(prob, loc=0.9, scale=0.1)
        for kind in ("eti", "hdi"):
            np.testing.assert_allclose(ate.interval(prob, kind), expected, rtol=0, atol=1e-14)
    # the draws sit at quantiles (i + 1/2)/N, shuffled: mean exact, sd within 0.3 %
    assert ate.mean() == pytest.approx(0.9, abs=1e-12) and ate.sd() == pytest.approx(0.1, rel=3e-3)
    assert ate.summary()["ess_bulk"].iloc[0] > 500  # shuffled, not sorted
    back = EffectPosterior.load(ate.save(tmp_path / "ate.nc"))
    assert back.interval(0.95) == ate.interval(0.95)
    mean, sd = np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.5, 0.0])
    post = EffectPosterior.from_normal(
        mean, sd, num_draws=200, rng=rng, patient_ids=["a", "b", "c"]
    )
    assert post.draws().shape == (1, 200, 3)
    lo, hi = mean + sd * stats.norm.ppf([[0.05], [0.95]])  # sd = 0: a point
    np.testing.assert_allclose(post.interval(0.9).to_numpy(), np.c_[lo, hi], rtol=0, atol=1e-14)
    sub = post.sel(["c", "a"]).interval(0.9)
    np.testing.assert_allclose(sub.to_numpy(), np.c_[lo, hi][[2, 0]], rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="one scalar or one vector"):
        EffectPosterior.from_normal(mean, sd[:2], num_draws=10, rng=rng)
    with pytest.raises(DataValidationError, match="sd >= 0"):
        EffectPosterior.from_normal(0.0, -1.0, num_draws=10, rng=rng)
    tree = ate.to_datatree()
    tree.attrs["inference"] = "mcmc"  # a normal group on MCMC draws would lie about them
    with pytest.raises(ValueError, match="normal_approximation"):
        EffectPosterior(tree)


# --------------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(
    draws=arrays(
        st.sampled_from([np.float32, np.float64]),
        st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 3)),
        elements=st.floats(-1e6, 1e6, allow_subnormal=False, width=32),
    ),
    threshold=st.floats(-1e6, 1e6),
    prob=st.floats(0.01, 0.99),
)
def test_interval_and_probability_properties(draws, threshold, prob) -> None:
    post = EffectPosterior.from_draws(draws)
    for kind in ("eti", "hdi"):
        ci = post.interval(prob, kind)
        assert (ci["lower"] <= ci["upper"]).all()
        assert (ci["lower"] >= draws.min(axis=(0, 1))).all()
        assert (ci["upper"] <= draws.max(axis=(0, 1))).all()
    benefit, harm = post.prob_benefit(threshold), post.prob_harm(threshold)
    assert ((benefit >= 0) & (benefit <= 1)).all()
    assume(not np.any(draws == threshold))
    np.testing.assert_allclose(benefit + harm, 1.0, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- structure
def test_from_draws_validates_input() -> None:
    draws = np.zeros((2, 5, 3))
    draws[0, 1, 2] = np.nan
    draws[1, 0, 2] = np.inf
    with pytest.raises(DataValidationError, match=r"2 non-finite.*'c'"):
        EffectPosterior.from_draws(draws, patient_ids=["a", "b", "c"])
    with pytest.raises(DataValidationError, match="2 ids but draws has 3"):
        EffectPosterior.from_draws(np.zeros((2, 5, 3)), patient_ids=[1, 2])
    with pytest.raises(DataValidationError, match="duplicate"):
        EffectPosterior.from_draws(np.zeros((2, 5, 2)), patient_ids=[1, 1])
    with pytest.raises(DataValidationError, match="integers or all strings"):
        EffectPosterior.from_draws(np.zeros((2, 5, 2)), patient_ids=[1, "a"])
    with pytest.raises(DataValidationError, match="shape"):
        EffectPosterior.from_draws(np.zeros(5))
    with pytest.raises(ValueError, match="inference"):
        EffectPosterior.from_draws(np.zeros((2, 5)), attrs={"inference": "guess"})
    with pytest.raises(DataValidationError, match="cannot be stored"):
        EffectPosterior.from_draws(np.zeros((2, 5)), attrs={"flag": True})


def test_constructor_names_what_is_missing() -> None:
    good = _normal_posterior().to_datatree()
    assert EffectPosterior(good).n_patients == 4
    with pytest.raises(ValueError, match="missing group 'posterior'"):
        EffectPosterior(xr.DataTree.from_dict({"other": xr.Dataset()}))
    no_var = good.copy()
    no_var["posterior"] = xr.DataTree(good["posterior"].to_dataset().rename({"effect": "tau"}))
    with pytest.raises(ValueError, match="no variable 'effect'"):
        EffectPosterior(no_var)
    swapped = good.copy()
    swapped["posterior"] = xr.DataTree(good["posterior"].to_dataset().transpose("patient", ...))
    with pytest.raises(ValueError, match="dims"):
        EffectPosterior(swapped)
    no_attrs = good.copy()
    no_attrs.attrs = {}
    with pytest.raises(ValueError, match="'scale'"):
        EffectPosterior(no_attrs)


def test_state_cannot_be_mutated_from_outside() -> None:
    draws = np.zeros((2, 5, 2))
    post = EffectPosterior.from_draws(draws, patient_ids=["a", "b"])
    draws[:] = 1.0  # the caller's array
    post.draws()[:] = 2.0
    post.attrs["scale"] = "changed"
    tree = post.to_datatree()
    tree["posterior"]["effect"].values[:] = 3.0
    tree.attrs["inference"] = "changed"
    assert np.all(post.draws() == 0.0) and post.attrs["inference"] == "mcmc"
    assert post.attrs["scale"] == "outcome"
    source = post.to_datatree()
    again = EffectPosterior(source)
    source["posterior"]["effect"].values[:] = 4.0
    assert np.all(again.draws() == 0.0)


def test_sel_subsets_in_order_and_rejects_unknown_ids() -> None:
    post = _rich_posterior(np.array(["a", "bb", "c"]), np.float64)
    sub = post.sel(["c", "a"])
    np.testing.assert_array_equal(sub.draws(), post.draws()[..., [2, 0]])
    assert sub.patient_ids.tolist() == ["c", "a"] and sub.patient_ids.name == "subject"
    observed = sub.to_datatree()["observed_data"]["y"]
    np.testing.assert_array_equal(observed, post.to_datatree()["observed_data"]["y"][[2, 0]])
    assert sub.attrs == post.attrs and "sample_stats" in sub.to_datatree().children
    assert post.sel("bb").n_patients == 1
    with pytest.raises(KeyError, match="'zz'"):
        post.sel(["a", "zz"])


def test_interval_argument_checks_and_repr() -> None:
    post = _normal_posterior()
    for bad in (0, 1, 1.5, -0.1, True):
        with pytest.raises(ValueError, match="prob"):
            post.interval(bad)
    with pytest.raises(ValueError, match="kind"):
        post.interval(0.9, kind="central")
    text = repr(post)
    assert "4 patients" in text and "4 chains x 2500 draws" in text and "'mcmc'" in text


# --------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "ids",
    [
        np.array([3, 1, 2], dtype=np.int64),
        np.array([7, 8], dtype=np.int32),
        np.array(["p-1", "é漢", ""]),
    ],
)
def test_save_load_round_trip_is_bit_exact(tmp_path: Path, ids: np.ndarray, dtype: type) -> None:
    post = _rich_posterior(ids, dtype)
    first = post.save(tmp_path / "post.nc")
    # HDF5/netCDF4 behind itelib's 512-byte header (an HDF5 user block), not a pickle
    assert first.read_bytes().startswith(b"itelib-file 1\nkind posterior\n")
    assert first.read_bytes()[512:516] == b"\x89HDF"
    loaded = EffectPosterior.load(first)
    loaded.save(tmp_path / "again.nc")  # a loaded posterior saves again, unchanged
    for back in (loaded, EffectPosterior.load(tmp_path / "again.nc")):
        assert back.draws().dtype == dtype
        np.testing.assert_array_equal(back.draws(), post.draws())
        stored = back.to_datatree()["posterior"]["patient"].to_numpy()
        assert stored.dtype == ids.dtype and back.patient_ids.dtype == post.patient_ids.dtype
        np.testing.assert_array_equal(stored, ids)
        pd.testing.assert_index_equal(back.patient_ids, post.patient_ids, exact=True)
        assert back.patient_ids.name == "subject" and back.attrs == post.attrs
        original, tree = post.to_datatree(), back.to_datatree()
        assert set(tree.children) == {"posterior", "sample_stats", "observed_data"}
        for group in ("sample_stats", "observed_data"):
            for name, var in original[group].data_vars.items():
                assert tree[group][name].dtype == var.dtype
                np.testing.assert_array_equal(tree[group][name], var)
            assert tree[group].attrs == original[group].attrs
        pd.testing.assert_frame_equal(back.summary(), post.summary())


def test_load_rejects_missing_garbage_truncated_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        EffectPosterior.load(tmp_path / "nope.nc")
    good = _normal_posterior().save(tmp_path / "good.nc").read_bytes()
    bad_files = {
        "garbage.nc": b"this is not netCDF" * 50,
        "empty.nc": b"",
        "truncated.nc": good[: len(good) // 2],
        "bad_header.nc": b"\x00" * 8 + good[8:],
    }
    for name, content in bad_files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="not a readable netCDF4 file"):
            EffectPosterior.load(tmp_path / name)
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(tmp_path / "flat.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match="not an itelib EffectPosterior.*missing group"):
        EffectPosterior.load(tmp_path / "flat.nc")
    no_attrs = _normal_posterior().to_datatree()
    no_attrs.attrs = {}
    no_attrs.to_netcdf(tmp_path / "no_attrs.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match="not an itelib EffectPosterior.*missing"):
        EffectPosterior.load(tmp_path / "no_attrs.nc")


def test_interrupted_save_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "post.nc"
    post = _normal_posterior()
    post.save(target)
    before = target.read_bytes()

    def crash(tmp: Path) -> None:
        tmp.write_bytes(before[:100])  # half a file, then the process "dies"
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, crash)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.nc"]  # no temp file left
    np.testing.assert_array_equal(EffectPosterior.load(target).draws(), post.draws())


def test_atomic_write_text_and_errors(tmp_path: Path) -> None:
    target = tmp_path / "note.txt"
    atomic_write_text(target, "first\r\n")
    atomic_write_text(target, "second é\n")
    assert target.read_bytes() == "second é\n".encode()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "no_dir" / "x.txt", "x")
    with pytest.raises(FileNotFoundError, match="did not create"):
        atomic_write(tmp_path / "y.txt", lambda tmp: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt"]


# --------------------------------------------------------------------------- legacy ArviZ
def test_to_inference_data_without_arviz_names_the_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "arviz", None)  # makes `import arviz` fail
    with pytest.raises(ImportError, match=r"pip install 'arviz<1'"):
        _normal_posterior().to_inference_data()


def test_to_inference_data_passes_every_group_and_the_attrs(monkeypatch) -> None:
    class FakeInferenceData:  # legacy arviz is not installed here; check what we hand it
        def __init__(self, attrs=None, **groups):
            self.attrs, self.groups = attrs, groups

    monkeypatch.setitem(
        sys.modules, "arviz", types.SimpleNamespace(InferenceData=FakeInferenceData)
    )
    post = _rich_posterior(np.array([1, 2]), np.float64)
    idata = post.to_inference_data()
    assert set(idata.groups) == {"posterior", "sample_stats", "observed_data"}
    assert all(isinstance(ds, xr.Dataset) for ds in idata.groups.values())
    np.testing.assert_array_equal(idata.groups["posterior"]["effect"], post.draws())
    assert idata.attrs == post.to_datatree().attrs


def test_unnamed_default_ids_round_trip(tmp_path: Path) -> None:
    post = EffectPosterior.from_draws(np.ones((1, 3, 2), dtype=np.float32))
    back = EffectPosterior.load(post.save(tmp_path / "p.nc"))
    pd.testing.assert_index_equal(back.patient_ids, pd.Index([0, 1]), exact=True)
    assert back.patient_ids.name is None and back.mean().index.name is None
    assert back.attrs == post.attrs and back.attrs["itelib_version"] == post.attrs["itelib_version"]


def test_summary_threshold_matches_prob_benefit() -> None:
    post = _normal_posterior()
    for threshold, better in ((0.5, True), (-0.2, False)):
        table = post.summary(threshold=threshold, higher_is_better=better)
        expected = post.prob_benefit(threshold=threshold, higher_is_better=better)
        np.testing.assert_array_equal(table["prob_benefit"].to_numpy(), expected.to_numpy())
    assert (post.summary(threshold=0.5)["prob_benefit"] < post.summary()["prob_benefit"]).all()


def test_sel_with_a_boolean_mask_from_the_posterior_itself() -> None:
    post = _normal_posterior()
    kept = post.sel(post.mean() > 0)  # a boolean Series aligned by patient id
    assert kept.patient_ids.tolist() == [13, 14]
    assert post.sel((post.mean() > 0).to_numpy()).patient_ids.tolist() == [13, 14]
