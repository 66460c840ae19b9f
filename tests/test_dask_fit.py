"""Fits of a Dask DataFrame (itelib.federated.dask_fit): equal to the pooled fit, only summaries
back to the client, the clusters it starts closed, effects written back per partition."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pyarrow  # noqa: F401  (required, not skipped: effect_to_parquet writes with it)
import pytest

from itelib import HierarchicalITE
from itelib.federated import dask_fit, effect_to_parquet
from itelib.simulate import multisite_rct

SAMPLER = dict(num_warmup=200, num_samples=200, num_chains=2, random_state=3, progress_bar=False)
OPTIONS = dict(prognosis="linear", effect_modifiers="linear", n_basis=5, prognostic_score=False)
COVARIATES = ["x1", "x2", "x3", "x4", "grade"]


def _cohort(n=800, seed=1, binary=False):
    kw = multisite_rct(n=n, seed=seed, n_sites=4, p=4, min_site_size=150).fit_kwargs()
    df = kw["X"].copy()
    # a categorical covariate, whose levels the partitions agree on
    df["grade"] = np.where(df["x1"] > 0.3, "b", np.where(df["x1"] < -0.6, "c", "a"))
    y = np.asarray(kw["Y"])
    df["y"] = (y > np.median(y)).astype(float) if binary else y
    df["t"], df["site"] = np.asarray(kw["T"]), np.asarray(kw["site"])
    df["pid"] = [f"id-{i:04d}" for i in range(len(df))]
    return df


def _local_client():
    """An in-process cluster: no worker processes to start, so the tests stay fast."""
    return distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                              dashboard_address=":0")  # fmt: skip


def _fit_dask(ddf, scheduler=None, **options):
    est = HierarchicalITE(**(OPTIONS | SAMPLER | options))
    return est.fit(ddf["y"], ddf["t"], X=ddf[COVARIATES], site=ddf["site"], scheduler=scheduler,
                   categorical=["grade"])  # fmt: skip


def test_dask_fit_equals_the_pooled_fit(tmp_path):
    """Same seed, same posterior: per-patient posterior means within 1e-6 (the federated
    tests' bound; measured ~1e-15), with sites spread over 5 partitions; then the write-back
    round-trips the ids and the effects."""
    df = _cohort()
    ddf = dd.from_pandas(df, npartitions=5)
    assert all(ddf.partitions[i]["site"].nunique().compute() == 4 for i in range(5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 x 200 draws: ESS warnings are not the point
        pooled = HierarchicalITE(**(OPTIONS | SAMPLER)).fit(
            df["y"], df["t"], X=df[COVARIATES], site=df["site"], categorical=["grade"]
        )
        with _local_client() as client:
            est = _fit_dask(ddf, scheduler=client)
            assert est.data_.n == 0  # no row came back
            np.testing.assert_allclose(est.data_.encoder.center, pooled.data_.encoder.center,
                                       rtol=1e-12)  # fmt: skip
            a = pooled.effect().mean()
            b = est.effect(df[COVARIATES], site=df["site"])
            np.testing.assert_allclose(np.asarray(b.mean()), np.asarray(a), rtol=0, atol=1e-6)
            for name in ("tau0", "sigma", "gamma", "sigma_site_effect"):
                np.testing.assert_allclose(
                    est.posterior_["posterior"][name].values,
                    pooled.posterior_["posterior"][name].values, rtol=0, atol=1e-6,
                )  # fmt: skip
            path = effect_to_parquet(est, ddf, tmp_path / "effects", id="pid", scheduler=client)
    back = pd.read_parquet(path)
    assert list(back.columns) == ["pid", "mean", "sd", "lower", "upper", "prob_benefit"]
    assert sorted(back["pid"]) == sorted(df["pid"])
    back = back.set_index("pid").loc[df["pid"]]
    np.testing.assert_allclose(back["mean"], np.asarray(b.mean()), rtol=1e-12)
    np.testing.assert_allclose(back["sd"], np.asarray(b.sd()), rtol=1e-12)
    np.testing.assert_allclose(back[["lower", "upper"]], b.interval(0.95).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(back["prob_benefit"], np.asarray(b.prob_benefit()), rtol=0)


def test_without_a_scheduler_a_local_cluster_is_started_and_closed(monkeypatch):
    """No active Client: the fit starts its own LocalCluster and closes it (and its Client);
    a scheduler's address: a Client to it, closed after, the cluster left running. A float32
    fit of many rows is warned."""
    started = []

    class Spy(distributed.LocalCluster):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            started.append(self)

    monkeypatch.setattr(distributed, "LocalCluster", Spy)
    monkeypatch.setattr(dask_fit, "LOCAL_CLUSTER", dask_fit.LOCAL_CLUSTER
                        | {"processes": False, "n_workers": 1})  # fmt: skip
    ddf = dd.from_pandas(_cohort(), npartitions=3)
    fast = dict(num_warmup=50, num_samples=50)
    with pytest.raises(ValueError, match="No global client"):
        distributed.get_client()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 x 50 draws
        _fit_dask(ddf, **fast)
        assert len(started) == 1 and started[0].status.name == "closed"
        with pytest.raises(ValueError, match="No global client"):
            distributed.get_client()
        with distributed.LocalCluster(processes=False, n_workers=1,
                                      dashboard_address=":0") as cluster:  # fmt: skip
            monkeypatch.setattr(dask_fit, "FLOAT32_MAX_PATIENTS", 500)  # 800 rows: warned
            with pytest.warns(UserWarning, match=r"800 rows.*Fix: .*precision='float64'"):
                _fit_dask(ddf, scheduler=cluster.scheduler_address, precision="float32", **fast)
            assert cluster.status.name == "running" and len(started) == 2  # ours, not the fit's
            with pytest.raises(ValueError, match="No global client"):
                distributed.get_client()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(outcome="binary"), r"no exact fit .* needs every row in one process\)\. Fix: "),
        (dict(prognostic_score=True), r"prognostic_score=True.*Fix: .*prognostic_score=False"),
        (dict(prognosis="auto"), r"prognosis='auto'.*Fix: .*prognosis='linear'"),
        (dict(effect_modifiers="interactions"), r"effect_modifiers='interactions'.*Fix: "),
        (dict(missing="impute"), r"missing='impute'.*Fix: "),
    ],
)
def test_unsupported_options_are_refused_before_any_data_pass(options, match):
    ddf = dd.from_pandas(_cohort(), npartitions=2)
    with pytest.raises(ValueError, match=match):
        _fit_dask(ddf, scheduler="tcp://nowhere.invalid:1", **options)  # never contacted


def test_a_binary_outcome_and_wrong_inputs_are_refused():
    df = _cohort(binary=True)
    ddf = dd.from_pandas(df, npartitions=2)
    with _local_client() as client:  # outcome="auto": the 0/1 outcome is seen in round 1
        with pytest.raises(ValueError, match=r"binary \(0/1\) outcome .*outcome 'y' is 0/1"):
            _fit_dask(ddf, scheduler=client)
    est = HierarchicalITE(**OPTIONS)
    with pytest.raises(ValueError, match=r"propensity=None"):
        est.fit(ddf["y"], ddf["t"], X=ddf[COVARIATES], site=ddf["site"], propensity="estimate")
    with pytest.raises(ValueError, match=r"needs site=ddf\[site_column\]"):
        est.fit(ddf["y"], ddf["t"], X=ddf[COVARIATES])
    with pytest.raises(ValueError, match=r"column 'y' is also a covariate"):
        est.fit(ddf["y"], ddf["t"], X=ddf[[*COVARIATES, "y"]], site=ddf["site"])
    with pytest.raises(TypeError, match=r"scheduler=\.\.\.\) is for Dask inputs"):
        est.fit(df["y"], df["t"], X=df[COVARIATES], site=df["site"], scheduler="tcp://x:1")


def test_smooth_model_statistics_are_the_pooled_ones():
    """prognosis and modifiers "additive": the model's statistics from the partitions against
    those from the pooled rows, without sampling. The draws themselves match only where the
    last-bit differences of the agreed standardization (partition means combined, not one
    np.mean) vanish in the sampler's float32; the likelihood is the same."""
    from itelib.data import TrialData
    from itelib.federated.fit import summaries_model
    from itelib.models.hierarchical.design import model_data, treatment_centre
    from itelib.models.hierarchical.features import FeatureMap

    df = _cohort()
    covs = COVARIATES[:4]
    options = OPTIONS | dict(prognosis="additive", effect_modifiers="additive")
    est = HierarchicalITE(**options)
    ddf = dd.from_pandas(df, npartitions=5)
    frame, spec = dask_fit._frame(ddf["y"], ddf["t"], ddf[covs], ddf["site"], (), None, est)
    with _local_client() as client:
        summary = dask_fit.partition_summary(client, frame, spec)
    _, model_spec, arrays = summaries_model(est, [summary], min_per_column=1)
    data = TrialData.from_arrays(df["y"], df["t"], X=df[covs], site=df["site"])
    features = FeatureMap.fit(data.X, prognosis="additive", modifiers="additive", n_basis=5,
                              n_modifier_columns=data.p)  # fmt: skip
    np.testing.assert_allclose(summary.agreement.features.boundary, features.boundary, rtol=1e-14)
    centre = treatment_centre(data.t, "continuous", "centered", None)
    rows = model_data(data, features.prognostic(data.X), model_spec, features,
                      float(np.mean(data.y)), float(np.std(data.y)), centre)  # fmt: skip
    np.testing.assert_allclose(arrays.global_scale, rows.global_scale, rtol=1e-12)
    for got, want in zip(arrays.marginal, rows.marginal, strict=True):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_precision_auto_samples_in_float64_above_two_million_patients():
    """float32 statistics lose digits beyond FLOAT32_MAX_PATIENTS (dask_cohort.md): "auto" takes
    float64 there and float32 below; an explicit choice is kept."""
    from itelib.models.hierarchical.marginal import FLOAT32_MAX_PATIENTS, resolved_precision

    assert resolved_precision("auto", FLOAT32_MAX_PATIENTS) == "float32"
    assert resolved_precision("auto", FLOAT32_MAX_PATIENTS + 1) == "float64"
    assert resolved_precision("float32", 10**8) == "float32"
    assert HierarchicalITE().precision == "auto"
