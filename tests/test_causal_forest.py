"""CausalForest: EconML's CausalForestDML behind itelib's API, labelled as approximate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from econml.dml import CausalForestDML
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from itelib import CausalForest
from itelib.exceptions import DataValidationError, NotFittedError, OverlapWarning
from itelib.simulate import available, outcome_kind, simulate

FAST = dict(n_estimators=100, cv=3, n_jobs=1, random_state=0)
SMOKE = {**FAST, "n_estimators": 40}  # runs on every simulator; intervals are tested below


@pytest.mark.parametrize("design", [d for d in available() if outcome_kind(d) == "scalar"])
def test_works_on_every_simulator_with_draws_labelled_approximate(design):
    trial = simulate(design, n=300, seed=1)
    # the missing-covariate designs need missing="impute" (Rubin's rules over 2 fits here)
    gaps = {"missing": "impute", "n_imputations": 2} if trial.X.isna().any(axis=None) else {}
    with warnings.catch_warnings():  # several designs have poor overlap on purpose
        warnings.simplefilter("ignore", OverlapWarning)
        est = CausalForest(**SMOKE, **gaps).fit(**trial.fit_kwargs(), propensity="estimate")
    post = est.effect()
    assert post.attrs["inference"] == "normal_approximation"
    assert post.draws().shape == (1, 1000, 300)
    assert list(post.patient_ids) == list(trial.X.index)
    assert np.isfinite(post.draws()).all()
    assert est.ate().attrs["inference"] == "normal_approximation"
    if trial.tau.abs().max() <= 1 and set(np.unique(trial.data[trial.outcome])) <= {0, 1}:
        assert post.attrs["scale"] == "risk_difference"


def test_intervals_are_econmls_own_to_numerical_precision():
    """A CausalForestDML fit by hand on the same inputs gives the same intervals (1e-12)."""
    trial = simulate("multisite_rct", n=400, seed=2)
    est = CausalForest(**FAST).fit(**trial.fit_kwargs())
    data = est.data_
    reference = CausalForestDML(
        model_y=HistGradientBoostingRegressor(max_depth=3, random_state=0),
        model_t=HistGradientBoostingClassifier(max_depth=3, random_state=0),
        discrete_treatment=True, cv=3, n_estimators=100, min_samples_leaf=5,
        n_jobs=1, random_state=0,
    )  # fmt: skip
    W = np.eye(data.n_sites)[data.site][:, 1:]
    reference.fit(data.y, data.t, X=data.X, W=W, groups=data.site)
    for alpha in (0.05, 0.1, 0.5):
        ours = est.effect_interval(alpha=alpha)
        theirs = reference.effect_interval(data.X, alpha=alpha)
        np.testing.assert_allclose(ours[0], theirs[0].ravel(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours[1], theirs[1].ravel(), rtol=0, atol=1e-12)
    # The normal draws reproduce those intervals up to Monte Carlo error (1000 draws: the
    # 2.5% quantile of a normal has sd about 0.08 sd; 5 of those is the tolerance).
    post = est.effect()
    lo, hi = est.effect_interval(alpha=0.05)
    sd = (hi - lo) / (2 * 1.959964)
    q = post.interval(0.95)
    assert np.all(np.abs(q["lower"].to_numpy() - lo) < 5 * 0.08 * sd + 1e-12)


def test_ate_is_econmls_doubly_robust_average_with_its_exact_interval():
    """ate() is EconML's doubly robust ATE (ate__inference), not ate_inference's conservative
    stderr_mean: its interval() equals EconML's 95 % interval on the same fit and on a
    CausalForestDML fit by hand (1e-8), and it is narrower than the old bound."""
    trial = simulate("multisite_rct", n=400, seed=2)
    est = CausalForest(**FAST).fit(**trial.fit_kwargs())
    ate = est.ate()
    assert ate.attrs["inference"] == "normal_approximation"
    assert ate.attrs["method"] == "doubly_robust" and ate.attrs["quantity"] == "ate"
    data = est.data_
    reference = CausalForestDML(
        model_y=HistGradientBoostingRegressor(max_depth=3, random_state=0),
        model_t=HistGradientBoostingClassifier(max_depth=3, random_state=0),
        discrete_treatment=True, cv=3, n_estimators=100, min_samples_leaf=5,
        n_jobs=1, random_state=0,
    )  # fmt: skip
    W = np.eye(data.n_sites)[data.site][:, 1:]
    reference.fit(data.y, data.t, X=data.X, W=W, groups=data.site, cache_values=True)
    for prob in (0.95, 0.8):
        ours = np.array(ate.interval(prob))
        for fit in (est.model_, reference):
            theirs = np.ravel(fit.ate__inference().conf_int(alpha=1 - prob))
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)
    # the same numbers as the "Doubly Robust ATE on Training Data" table of EconML's summary()
    frame = reference.ate__inference().summary_frame(alpha=0.05, decimals=12)
    np.testing.assert_allclose(ate.interval(), frame[["ci_lower", "ci_upper"]].to_numpy()[0],
                               rtol=0, atol=1e-8)  # fmt: skip
    assert ate.mean() == pytest.approx(frame["point_estimate"].iloc[0], abs=1e-8)
    old = est.model_.ate_inference(data.X).conf_int_mean(alpha=0.05)
    assert np.ptp(ate.interval()) < np.ptp(old)


def test_att_atc_are_doubly_robust_and_averages_of_independent_draws_are_refused():
    """att()/atc() are EconML's doubly robust averages over the treated / control patients,
    their intervals exactly EconML's; averaging the per-patient normal approximations (whose
    draws are independent, so the interval would be too narrow) is refused with the fix."""
    trial = simulate("multisite_rct", n=400, seed=2)
    est = CausalForest(**FAST).fit(**trial.fit_kwargs())
    for post, arm in ((est.att(), 1), (est.atc(), 0)):
        theirs = np.ravel(est.model_.att__inference(T=arm).conf_int(alpha=0.05))
        np.testing.assert_allclose(np.array(post.interval()), theirs, rtol=0, atol=1e-8)
        assert post.attrs["method"] == "doubly_robust"
        assert post.attrs["n_patients"] == int(np.sum(est.data_.t == arm))
    with pytest.raises(ValueError, match="independent"):
        est.ate(trial.X.iloc[:50])
    with pytest.raises(ValueError, match="independent"):
        est.effect().average()
    with pytest.raises(ValueError, match="independent"):
        est.effect().groupby(trial.data[trial.site])


def test_sites_keep_folds_site_disjoint_and_new_patients_score():
    trial = simulate("multisite_rct", n=300, seed=1)  # seed 0 has a site with one arm only
    est = CausalForest(**FAST).fit(**trial.fit_kwargs())
    new = est.effect(trial.X.iloc[:10], site=trial.data[trial.site].iloc[:10])
    np.testing.assert_allclose(new.mean(), est.effect().mean()[:10], atol=0.1)
    with pytest.raises(DataValidationError, match="site-disjoint"):
        CausalForest(**{**FAST, "cv": 50}).fit(**trial.fit_kwargs())


def test_bad_inputs_get_clear_errors():
    trial = simulate("multisite_rct", n=100, seed=0)
    with pytest.raises(NotFittedError):
        CausalForest().effect()
    with pytest.raises(DataValidationError, match="known scores"):
        CausalForest(**FAST).fit(**trial.fit_kwargs(), propensity=np.full(100, 0.5))
    with pytest.raises(ValueError, match="multiple of 4"):
        CausalForest(n_estimators=10).fit(**trial.fit_kwargs())
    with pytest.raises(TypeError, match="n_jobs"):
        CausalForest(n_jobs="2").fit(**trial.fit_kwargs())


# ----------------------------------------------------------------- saving without pickle
def _rewrite(path, edit):
    """Edit a saved file's tree and write it back with every checksum recomputed (as a tool
    that knew the format would), so that only the refit's fingerprint check can catch it."""
    import json

    from itelib._io import read_datatree, write_datatree
    from itelib.estimators.persistence import _checksums

    tree = read_datatree(path, what="estimator").tree
    meta = json.loads(tree.attrs["metadata"])
    meta = edit(tree, meta) or meta
    meta["checksums"] = _checksums(tree)
    tree.attrs = {**tree.attrs, "metadata": json.dumps(meta)}
    write_datatree(path, tree, kind="estimator")


@pytest.fixture(scope="module")
def saved_forest(tmp_path_factory):
    trial = simulate("multisite_rct", n=300, seed=1)
    est = CausalForest(**FAST).fit(**trial.fit_kwargs())
    path = est.save(tmp_path_factory.mktemp("forest") / "forest.nc")
    return trial, est, path


def test_a_saved_forest_loads_by_refitting_to_identical_effects(saved_forest):
    trial, est, path = saved_forest
    back = CausalForest.load(path)
    assert back.model_ is not est.model_  # refitted, not read back
    for alpha in (0.05, 0.2):
        np.testing.assert_array_equal(back.effect_interval(alpha=alpha),
                                      est.effect_interval(alpha=alpha))  # fmt: skip
    np.testing.assert_array_equal(back.effect().draws(), est.effect().draws())
    assert list(back.effect().patient_ids) == list(est.effect().patient_ids)
    for quantity in ("ate", "att", "atc"):
        assert getattr(back, quantity)().interval() == getattr(est, quantity)().interval()
    X, site = trial.X.iloc[:10], trial.data[trial.site].iloc[:10]
    np.testing.assert_array_equal(back.effect(X, site=site).draws(),
                                  est.effect(X, site=site).draws())  # fmt: skip
    assert back.get_params() == est.get_params()
    assert list(back.feature_names_in_) == list(trial.X.columns)


def test_the_file_is_itelibs_netcdf_with_the_patient_rows_warning(saved_forest):
    import h5py

    trial, est, path = saved_forest
    data = path.read_bytes()
    assert data.startswith(b"itelib-file 1\nkind estimator\n")
    assert data[512:520] == b"\x89HDF\r\n\x1a\n"  # HDF5 behind the 512-byte header
    assert not data.startswith(b"\x80") and b"\x80\x05\x95" not in data  # no pickle frame
    with h5py.File(path, "r") as f:
        assert "patient-level rows" in f.attrs["warning"]
        assert set(f) >= {"training", "fingerprint"}
        np.testing.assert_array_equal(f["training/y"][()], est.data_.y)
        # every stored value is numbers or text: nothing that a reader would execute
        f.visititems(lambda name, obj: None if not isinstance(obj, h5py.Dataset)
                     else _assert_plain(name, obj.dtype))  # fmt: skip


def _assert_plain(name, dtype):
    assert dtype.kind in "fiubSUO" and dtype.names is None, (name, dtype)
    if dtype.kind == "O":  # h5py's variable-length strings
        import h5py

        assert h5py.check_string_dtype(dtype) is not None, (name, dtype)


def test_a_forest_fitted_with_threads_loads(tmp_path):
    """n_jobs=2: the threads average the trees in any order (refits differ by ~1e-15),
    within the fingerprint's tolerance; the trees themselves are the same."""
    trial = simulate("multisite_rct", n=300, seed=1)
    est = CausalForest(**{**FAST, "n_jobs": 2}).fit(**trial.fit_kwargs())
    back = CausalForest.load(est.save(tmp_path / "forest.nc"))
    for a, b in zip(back.effect_interval(), est.effect_interval(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("edit", ["fingerprint", "training_row", "other_versions"])
def test_a_refit_that_differs_from_the_saved_forest_is_refused(edit, saved_forest, tmp_path):
    from itelib import RefitMismatchError

    _, _, original = saved_forest
    path = tmp_path / "forest.nc"
    path.write_bytes(original.read_bytes())

    def change(tree, meta):
        if edit == "fingerprint":  # one patient's saved stderr, by one part in a million
            values = tree["fingerprint"]["stderr"].values.copy()
            values[7] *= 1 + 1e-6
            tree["fingerprint"] = (
                tree["fingerprint"].to_dataset().assign(stderr=("patient", values))
            )
        elif edit == "training_row":  # one patient's outcome
            values = tree["training"]["y"].values.copy()
            values[3] += 1.0
            tree["training"] = tree["training"].to_dataset().assign(y=("patient", values))
        if edit in ("fingerprint", "other_versions"):
            # saved under other versions (and the tampered stderr) gives their names
            meta["fitted"]["versions"]["econml"] = "0.0.1"
            if edit == "other_versions":
                values = tree["fingerprint"]["point_estimate"].values + 0.01
                tree["fingerprint"] = (
                    tree["fingerprint"].to_dataset().assign(point_estimate=("patient", values))
                )
        return meta

    _rewrite(path, change)
    with pytest.raises(RefitMismatchError, match=r"refitted .* differs .*Fix: refit") as info:
        CausalForest.load(path)
    message = str(info.value)
    assert str(path) in message
    if edit == "training_row":
        assert "the same" in message  # versions unchanged: says what else it can be
    else:
        assert "econml 0.0.1" in message and "where econml 0.0.1" in message


def test_a_fingerprint_with_an_infinite_value_is_refused(saved_forest, tmp_path):
    """An inf in the saved fingerprint would make the tolerance (relative to its largest
    value) infinite, so that any refit passed."""
    _, _, original = saved_forest
    path = tmp_path / "forest.nc"
    path.write_bytes(original.read_bytes())

    def change(tree, meta):
        values = tree["fingerprint"]["stderr"].values.copy()
        values[0] = np.inf
        tree["fingerprint"] = tree["fingerprint"].to_dataset().assign(stderr=("patient", values))
        values = tree["training"]["y"].values + 100.0  # a different forest altogether
        tree["training"] = tree["training"].to_dataset().assign(y=("patient", values))
        return meta

    _rewrite(path, change)
    with pytest.raises(ValueError, match="not finite"):
        CausalForest.load(path)


def test_an_old_pickle_file_is_refused_without_being_unpickled(tmp_path):
    """Files of earlier itelib versions were pickles; loading one must never run it."""
    import pathlib
    import pickle

    import itelib

    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"forest-{protocol}.pkl"
        path.write_bytes(pickle.dumps({"itelib_format": "causal_forest_pickle",
                                       "estimator": Payload()}, protocol=protocol))  # fmt: skip
        for load in (CausalForest.load, itelib.HierarchicalITE.load):
            with pytest.raises(ValueError, match="is a Python pickle.*never unpickles.*Fix: refit"):
                load(path)
        assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: unpickling it makes the marker
    assert marker.exists()


def test_allow_pickle_is_no_longer_taken(saved_forest, tmp_path):
    _, est, path = saved_forest
    with pytest.raises(TypeError, match="no longer pickles.*Fix: est.save"):
        est.save(tmp_path / "f.nc", allow_pickle=True)
    assert not (tmp_path / "f.nc").exists()
    with pytest.raises(TypeError, match="no longer pickles.*Fix: CausalForest.load"):
        CausalForest.load(path, allow_pickle=True)


def test_one_arm_site_warning_does_not_claim_partial_pooling():
    """The forest has no site effects to pool; its warning says what a one-arm site does to
    it (issue 22: it used to repeat the hierarchical model's wording)."""
    trial = simulate("multisite_rct", n=300, seed=1)
    kwargs = trial.fit_kwargs()
    one_site = kwargs["site"] == kwargs["site"].iloc[0]
    kwargs["T"] = kwargs["T"].where(~one_site, 1)
    with pytest.warns(Warning) as record:
        CausalForest(**SMOKE).fit(**kwargs)
    site_warnings = [str(w.message) for w in record if "only one arm" in str(w.message)]
    assert len(site_warnings) == 1
    assert "partial pooling" not in site_warnings[0]
    assert "almost no information on the effect" in site_warnings[0]


def test_models_of_your_own_are_saved_as_their_scikit_learn_recipe(tmp_path):
    from sklearn.linear_model import LassoCV, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    trial = simulate("multisite_rct", n=200, seed=1)
    small = {**FAST, "n_estimators": 40}
    models = dict(model_y=LassoCV(), model_t=LogisticRegression(C=0.5))
    est = CausalForest(**small, **models).fit(**trial.fit_kwargs())
    path = est.save(tmp_path / "own.nc")
    back = CausalForest.load(path)
    assert repr(back.model_y) == "LassoCV()" and repr(back.model_t) == "LogisticRegression(C=0.5)"
    np.testing.assert_array_equal(back.effect().draws(), est.effect().draws())

    # a class outside scikit-learn named in the file is never imported
    def other_class(tree, meta):
        meta["params"]["model_y"]["sklearn_estimator"]["class"] = "os.system"

    _rewrite(path, other_class)
    with pytest.raises(ValueError, match="'os.system' is not from the scikit-learn modules"):
        CausalForest.load(path)
    # nor a scikit-learn class that is not a regressor or classifier, or a joblib cache folder
    # (joblib unpickles what it finds there); both are refused before any refit
    for cls, params in (
        ("sklearn.cluster.AgglomerativeClustering", {"memory": str(tmp_path / "cache")}),
        ("sklearn.linear_model.LassoCV", {"memory": str(tmp_path / "cache")}),
        ("sklearn.preprocessing.StandardScaler", {}),
    ):

        def crafted(tree, meta, cls=cls, params=params):
            meta["params"]["model_y"]["sklearn_estimator"] = {"class": cls, "params": params}

        _rewrite(path, crafted)
        with pytest.raises(ValueError, match="not in the scikit-learn modules|cache folder|not a"):
            CausalForest.load(path)
        assert not (tmp_path / "cache").exists()
    # models that are not a class and plain parameters are refused when saving, with the fix
    nested = make_pipeline(StandardScaler(), LassoCV())
    est = CausalForest(**small, model_y=nested).fit(**trial.fit_kwargs())
    with pytest.raises(TypeError, match="sklearn.pipeline.Pipeline is not in the scikit-learn"):
        est.save(tmp_path / "nested.nc")
    assert not (tmp_path / "nested.nc").exists()


def test_a_forest_fitted_by_multiple_imputation_loads(tmp_path):
    """missing='impute': each imputation's forest is refitted and checked on its own."""
    trial = simulate("missing_at_random", n=200, seed=1)
    est = CausalForest(**{**FAST, "n_estimators": 40}, missing="impute", n_imputations=2)
    est.fit(**trial.fit_kwargs())
    back = CausalForest.load(est.save(tmp_path / "imputed.nc"))
    assert len(back.imputations_) == 2
    np.testing.assert_array_equal(back.effect().draws(), est.effect().draws())
    assert back.ate().interval() == est.ate().interval()
