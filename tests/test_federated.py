"""Fits from site summaries (itelib.federated): equal to the pooled fit, no patient rows in the
files, and sites below the minimum size refused."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from itelib import HierarchicalITE
from itelib.data import TrialData
from itelib.exceptions import DisclosureError
from itelib.federated import (
    MIN_PER_COLUMN,
    FederatedSpec,
    agree,
    read_summary,
    site_moments,
    site_summary,
    write_summary,
)
from itelib.federated.fit import summaries_model
from itelib.models.hierarchical.design import model_data, treatment_centre
from itelib.models.hierarchical.features import FeatureMap
from itelib.simulate import multisite_rct

SAMPLER = dict(num_warmup=200, num_samples=200, num_chains=2, random_state=3, progress_bar=False)


def _trial(n=800, n_sites=4, p=4, min_site_size=150, seed=1):
    trial = multisite_rct(n=n, seed=seed, n_sites=n_sites, p=p, min_site_size=min_site_size)
    kw = trial.fit_kwargs()
    df = kw["X"].copy()
    df["y"], df["t"], df["site"] = np.asarray(kw["Y"]), np.asarray(kw["T"]), np.asarray(kw["site"])
    return kw, df


def _rounds(df, spec):
    parts = [g for _, g in df.groupby("site")]
    agreement = agree([site_moments(g, spec) for g in parts])
    return agreement, parts, [site_summary(g, agreement) for g in parts]


def _options(prognosis, modifiers, n_basis=5):
    return dict(prognosis=prognosis, effect_modifiers=modifiers, n_basis=n_basis,
                prognostic_score=False)  # fmt: skip


@pytest.mark.parametrize(
    ("prognosis", "modifiers"),
    [("linear", "linear"), pytest.param("additive", "additive", marks=pytest.mark.slow)],
)  # the smooth one: ~35 s on 2 busy cores
def test_fit_from_summaries_equals_the_pooled_fit(prognosis, modifiers, tmp_path):
    """Same seed, same posterior: per-patient posterior means within 1e-6 (measured: ~1e-15;
    the agreed standardization differs from the pooled one only in its last bits, and the
    model's statistics come from the same cross-products through the same function)."""
    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", prognosis=prognosis,
                         effect_modifiers=modifiers, n_basis=5)  # fmt: skip
    _, _, summaries = _rounds(df, spec)
    paths = [write_summary(s, tmp_path / f"site{i}.nc") for i, s in enumerate(summaries)]
    opts = _options(prognosis, modifiers) | SAMPLER
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 x 200 draws: ESS warnings are not the point
        pooled = HierarchicalITE(**opts).fit(**kw)
        federated = HierarchicalITE(**opts).fit_summaries(paths)
    assert federated.features_ == pooled.features_ or prognosis == "additive"
    np.testing.assert_allclose(federated.features_.boundary, pooled.features_.boundary, rtol=1e-12)
    a = pooled.effect().mean()
    b = federated.effect(kw["X"], site=kw["site"]).mean()
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-6)
    for name in ("tau0", "sigma", "gamma", "sigma_site_effect"):
        np.testing.assert_allclose(
            federated.posterior_["posterior"][name].values,
            pooled.posterior_["posterior"][name].values, rtol=0, atol=1e-6,
        )  # fmt: skip
    # a site's own patients, from the posterior alone
    site_a = df[df["site"] == df["site"].iloc[0]]
    own = federated.effect(site_a[list(kw["X"].columns)], site=site_a["site"].iloc[0])
    assert np.asarray(own.mean()).shape == (len(site_a),)
    assert federated.data_.n == 0 and federated.model_check_ is None
    with pytest.raises(ValueError, match=r"effect\(X_site, site=label\)"):
        federated.effect()
    far = pd.DataFrame(np.full((1, 4), 50.0), columns=kw["X"].columns)
    with pytest.warns(UserWarning, match="far outside the training"):
        federated.effect(far, site=site_a["site"].iloc[0])
    # what goes back to the sites: the saved model, whose patient dimension is empty
    from itelib._io import read_datatree

    path = federated.save(tmp_path / "model.nc")
    tree = read_datatree(path, what="estimator").tree
    for node in tree.subtree:
        for name, var in node.dataset.variables.items():
            assert var.sizes.get("patient", 0) == 0, (node.path, name)  # empty: no row
            assert len(df) not in var.shape and len(site_a) not in var.shape, (node.path, name)
    back = HierarchicalITE.load(path)
    again = back.effect(site_a[list(kw["X"].columns)], site=site_a["site"].iloc[0])
    np.testing.assert_array_equal(np.asarray(again.mean()), np.asarray(own.mean()))


@pytest.mark.parametrize(("n_sites", "how"), [(4, "one file per site"), (4, "arrays, one file"),
                                              (55, "one file per site")])  # fmt: skip
def test_summary_statistics_are_the_pooled_ones(n_sites, how):
    """The model's statistics from summaries against those from the rows, dense form (4 sites,
    with a categorical covariate) and block form (55 sites, above DENSE_MAX_SITES), without
    sampling; a file may hold several sites, and a site's data may come as arrays."""
    kw, df = _trial(n=1800 if n_sites > 4 else 800, n_sites=n_sites, p=3,
                    min_site_size=30 if n_sites > 4 else 150)  # fmt: skip
    X = kw["X"]
    if n_sites == 4:
        X = X.assign(grade=np.where(X["x1"] > 0.3, "b", np.where(X["x1"] < -0.6, "c", "a")))
        df["grade"] = X["grade"]
    categorical = ("grade",) if n_sites == 4 else ()
    spec = FederatedSpec("y", "t", tuple(X.columns), "site", n_basis=3, categorical=categorical)
    if how == "arrays, one file":
        data = (df["y"].to_numpy(), df["t"].to_numpy(), X.to_numpy(), df["site"].to_numpy())
        agreement = agree([site_moments(data, spec)])
        summaries = [site_summary(data, agreement)]
        assert len(summaries[0].labels) == 4
    else:
        agreement, _, summaries = _rounds(df, spec)
    est = HierarchicalITE(**_options("linear", "linear", 3))
    _, model_spec, arrays = summaries_model(est, summaries)
    data = TrialData.from_arrays(kw["Y"], kw["T"], X=X, site=kw["site"], categorical=categorical)
    centre = treatment_centre(data.t, "continuous", "centered", None)
    y_mean, y_sd = float(np.mean(data.y)), float(np.std(data.y))
    rows = model_data(data, data.X, model_spec, FeatureMap(n_modifier_columns=data.p),
                      y_mean, y_sd, centre)  # fmt: skip
    np.testing.assert_allclose(arrays.global_scale, rows.global_scale, rtol=1e-12)
    for got, want in zip(arrays.marginal, rows.marginal, strict=True):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert (arrays.marginal.site_cross is not None) == (n_sites > 50)


def test_agreement_is_the_pooled_encoding():
    """Levels, standardization and smooth boxes as a fit on the pooled rows learns them,
    categorical covariates included."""
    kw, df = _trial()
    df["arm_group"] = np.where(df["x1"] > 0.5, "high", np.where(df["x1"] < -0.5, "low", "mid"))
    covs = (*kw["X"].columns, "arm_group")
    spec = FederatedSpec("y", "t", covs, "site", categorical=("arm_group",),
                         prognosis="additive", n_basis=4)  # fmt: skip
    agreement = agree([site_moments(g, spec) for _, g in df.groupby("site")])
    pooled = TrialData.from_frame(df, outcome="y", treatment="t", covariates=list(covs),
                                  site="site", categorical=["arm_group"])  # fmt: skip
    enc = agreement.encoder
    assert enc.feature_names == pooled.encoder.feature_names
    assert enc.categorical == pooled.encoder.categorical
    np.testing.assert_allclose(enc.center, pooled.encoder.center, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(enc.scale, pooled.encoder.scale, rtol=1e-13)
    fm = FeatureMap.fit(pooled.X, prognosis="additive", n_basis=4, n_modifier_columns=pooled.p)
    assert agreement.features.smooth == fm.smooth
    np.testing.assert_allclose(agreement.features.boundary, fm.boundary, rtol=1e-13)
    assert agreement.sites.keys() == set(pooled.site_index.levels)


def test_no_patient_level_array_in_a_summary_file(tmp_path):
    """Every variable's every dimension is a site or a design column, never the patients;
    the JSON header holds no list as long as a site's patients."""
    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", prognosis="additive",
                         n_basis=5)  # fmt: skip
    agreement, parts, summaries = _rounds(df, spec)
    path = write_summary(summaries[0], tmp_path / "a.nc")
    from itelib._io import read_datatree

    tree = read_datatree(path, what="site summary").tree
    ds = tree.to_dataset()
    n_columns = summaries[0].grams.shape[1]
    assert n_columns == 1 + 4 + 4 * 5 + 1 + 4 + 1  # [1, x, phi, t, t·x, y]
    allowed = {"site": 1, "column": n_columns, "column_b": n_columns}
    for name, var in ds.variables.items():
        for dim, size in var.sizes.items():
            assert allowed.get(dim) == size, (name, dim, size)
    assert len(parts[0]) not in allowed.values()
    import json

    def lengths(obj):
        if isinstance(obj, list):
            yield len(obj)
            for x in obj:
                yield from lengths(x)
        elif isinstance(obj, dict):
            for x in obj.values():
                yield from lengths(x)

    header = json.loads(ds.attrs["itelib_site_summary"])
    assert max(lengths(header)) < 50 < len(parts[0])
    back = read_summary(path)
    np.testing.assert_array_equal(back.grams, summaries[0].grams)
    assert back.agreement.id == agreement.id


def test_a_changed_byte_is_refused(tmp_path):
    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site")
    _, _, summaries = _rounds(df, spec)
    path = write_summary(summaries[0], tmp_path / "a.nc")
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        read_summary(path)


def test_sites_below_the_minimum_size_are_refused():
    """3 patients per summary column (DataSHIELD's nfilter.glm = 0.33) and 3 per arm."""
    kw, df = _trial(n=300, n_sites=3, p=4, min_site_size=60)
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", prognosis="additive",
                         n_basis=5)  # 31 summary columns: 93 patients per site  # fmt: skip
    parts = [g for _, g in df.groupby("site")]
    agreement = agree([site_moments(g, spec) for g in parts])
    small = min(parts, key=len)
    assert len(small) < MIN_PER_COLUMN * 31
    with pytest.raises(DisclosureError, match=r"at least 93 \(3 per column"):
        site_summary(small, agreement)
    # the coordinator applies the rule too, and a site can be refused on its arms alone
    linear = FederatedSpec("y", "t", tuple(kw["X"].columns), "site")
    parts[0] = parts[0].assign(t=np.r_[np.ones(2), np.zeros(len(parts[0]) - 2)])
    agreement = agree([site_moments(g, linear) for g in parts])
    with pytest.raises(DisclosureError, match="2 treated patient"):
        site_summary(parts[0], agreement)
    summaries = [site_summary(g, agreement) for g in parts[1:]]
    est = HierarchicalITE(**_options("linear", "linear", 10))
    with pytest.raises(DisclosureError, match=r"at least 1100 \(100 per column\)"):
        summaries_model(est, summaries, min_per_column=100)


def test_clear_errors():
    kw, df = _trial()
    with pytest.raises(ValueError, match="fourth moments"):
        FederatedSpec("y", "t", tuple(kw["X"].columns), "site", prognosis="interactions")
    with pytest.raises(ValueError, match="pooled medians"):
        FederatedSpec("y", "t", tuple(kw["X"].columns), "site", effect_modifiers="piecewise")
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", n_basis=5)
    _, _, summaries = _rounds(df, spec)
    with pytest.raises(ValueError, match="prognostic_score=False"):
        HierarchicalITE(prognosis="linear", effect_modifiers="linear").fit_summaries(summaries)
    with pytest.raises(ValueError, match=r"prognosis='linear'"):
        HierarchicalITE(prognostic_score=False).fit_summaries(summaries)
    with pytest.raises(ValueError, match="every site's summary"):
        summaries_model(HierarchicalITE(**_options("linear", "linear")), summaries[1:])
    other = agree([site_moments(df[df["site"] == df["site"].iloc[0]], spec)])
    with pytest.raises(ValueError, match="different agreements"):
        mixed = [summaries[0], site_summary(df[df["site"] == df["site"].iloc[0]], other)]
        summaries_model(HierarchicalITE(**_options("linear", "linear")), mixed)


def test_privacy_mode_noise_and_file(tmp_path):
    """The analytic Gaussian mechanism's sd meets its exact condition, never needs more than
    the classical sd (Dwork & Roth, Theorem A.1, valid for epsilon < 1), and the released
    matrices are symmetric, positive semi-definite and recorded as noisy in the file."""
    from itelib.federated.privacy import PrivacyBudget, _delta_of, gaussian_sigma

    for eps in (0.5, 3.0, 30.0):
        sigma = gaussian_sigma(10.0, eps, 1e-6)
        assert _delta_of(sigma, 10.0, eps) <= 1e-6 < _delta_of(sigma * 0.999, 10.0, eps)
    assert gaussian_sigma(10.0, 0.5, 1e-6) < 10.0 * np.sqrt(2 * np.log(1.25 / 1e-6)) / 0.5
    with pytest.raises(ValueError, match="epsilon"):
        PrivacyBudget(0.0)
    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site")
    agreement, parts, exact = _rounds(df, spec)
    rng = np.random.default_rng(0)
    noisy = site_summary(parts[0], agreement, privacy=PrivacyBudget(10.0), rng=rng)
    g = noisy.grams[0]
    np.testing.assert_allclose(g, g.T, atol=1e-9)
    assert np.linalg.eigvalsh(g).min() > -1e-8 * np.abs(g).max()
    assert not np.allclose(g, exact[0].grams[0])
    assert noisy.privacy["epsilon"] == 10.0 and noisy.privacy["sigma"] > 0
    assert exact[0].privacy is None
    assert read_summary(write_summary(noisy, tmp_path / "dp.nc")).privacy == noisy.privacy


def _with_level(df, seed=0):
    """A categorical covariate g with levels A/B/C spread over every site and arm."""
    rng = np.random.default_rng(seed)
    return df.assign(g=rng.choice(["A", "B", "C"], size=len(df)))


def test_small_indicator_cells_are_refused(monkeypatch):
    """A level held by 1 or 2 patients of an arm at a site (or all but 1 or 2) discloses them
    through its indicator column: refused in both rounds at the site and at the coordinator."""
    kw, df = _trial()
    df = _with_level(df)
    cols = (*kw["X"].columns, "g")
    spec = FederatedSpec("y", "t", cols, "site", categorical=("g",), n_basis=5)
    parts = [g for _, g in df.groupby("site")]
    agreement = agree([site_moments(g, spec) for g in parts])
    bad = parts[0].copy()
    treated = bad.index[bad["t"] == 1]
    bad.loc[bad["g"] == "C", "g"] = "A"
    bad.loc[treated[0], "g"] = "C"  # one treated patient in level C
    with pytest.raises(DisclosureError, match=r"1 treated patient\(s\) in the cell g='C'.*merge"):
        site_moments(bad, spec)
    with pytest.raises(DisclosureError, match=r"g='C'"):
        site_summary(bad, agreement)
    # a 0/1 numeric column: all but one control patient hold 1
    binary = parts[0].assign(b=np.where(parts[0]["t"] == 1, 0.0, 1.0))
    binary.loc[binary.index[binary["t"] == 0][0], "b"] = 0.0
    spec_b = FederatedSpec("y", "t", (*kw["X"].columns, "b"), "site")
    with pytest.raises(DisclosureError, match=r"1 control patient\(s\) in the cell b=0.0"):
        site_moments(binary, spec_b)
    # the coordinator reads the cells back from the indicator columns' sums
    import itelib.federated.summary as summary_module

    monkeypatch.setattr(summary_module, "check_cells", lambda *a: None)
    forged = [site_summary(bad, agreement), *(site_summary(g, agreement) for g in parts[1:])]
    est = HierarchicalITE(**_options("linear", "linear"))
    with pytest.raises(DisclosureError, match=r"1 treated patient\(s\) in the cell g='C'"):
        summaries_model(est, forged)
    summaries_model(est, [site_summary(g, agreement) for g in parts])  # balanced: accepted


def test_noisy_summaries_use_the_exact_counts():
    """Under privacy the intercept's cross-product is noisy: n comes from the exact counts,
    and a file whose counts disagree with the agreement or its own cross-products is refused."""
    import dataclasses

    from itelib.federated.privacy import PrivacyBudget

    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", n_basis=5)
    agreement, parts, exact = _rounds(df, spec)
    rng = np.random.default_rng(0)
    noisy = [site_summary(g, agreement, privacy=PrivacyBudget(0.5), rng=rng) for g in parts]
    assert round(sum(s.grams[0, 0, 0] for s in noisy)) != agreement.n  # the noise moved it
    est = HierarchicalITE(**_options("linear", "linear"), likelihood="sufficient")
    _, _, arrays = summaries_model(est, noisy)
    assert int(arrays.stats.n) == agreement.n == len(df)
    more = dataclasses.replace(exact[0], n=exact[0].n + 1)
    with pytest.raises(ValueError, match="changed between rounds"):
        summaries_model(est, [more, *exact[1:]])
    grams = exact[0].grams.copy()
    grams[0, 0, 0] += 1
    with pytest.raises(ValueError, match="inconsistent"):
        summaries_model(est, [dataclasses.replace(exact[0], grams=grams), *exact[1:]])


def test_binary_and_constant_outcomes_are_refused():
    """A 0/1 outcome is binary for outcome='auto' in the pooled fit: the fit from summaries
    refuses it (outcome='continuous' fits the linear probability model); a constant outcome
    is refused in the first round, as outcome_kind refuses it on rows."""
    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", n_basis=5)
    binary = df.assign(y=(df["y"] > df["y"].median()).astype(float))
    agreement, _, summaries = _rounds(binary, spec)
    assert agreement.outcome_values == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"is 0/1.*outcome='continuous'"):
        HierarchicalITE(**_options("linear", "linear")).fit_summaries(summaries)
    summaries_model(HierarchicalITE(**_options("linear", "linear"), outcome="continuous"),
                    summaries)  # fmt: skip
    with pytest.raises(ValueError, match="constant across every site"):
        _rounds(df.assign(y=2.0), spec)


def test_array_inputs_select_covariates_by_name():
    """A DataFrame X in another column order is read by name (never renamed by position);
    missing or extra columns are refused."""
    kw, df = _trial()
    cols = tuple(kw["X"].columns)
    spec = FederatedSpec("y", "t", cols, "site", n_basis=5)
    site = df[df["site"] == df["site"].iloc[0]]
    args = (site["y"].to_numpy(), site["t"].to_numpy())
    ordered = site_moments((*args, site[list(cols)], site["site"].to_numpy()), spec)
    swapped = site_moments((*args, site[list(cols[::-1])], site["site"].to_numpy()), spec)
    assert swapped.to_json() == ordered.to_json()
    as_array = site_moments((*args, site[list(cols)].to_numpy(), site["site"].to_numpy()), spec)
    assert as_array.to_json() == ordered.to_json()
    for X, what in ((site[list(cols[1:])], r"missing \['x1'\]"),
                    (site[[*cols, "y"]], r"extra \['y'\]")):  # fmt: skip
        with pytest.raises(ValueError, match=what):
            site_moments((*args, X, site["site"].to_numpy()), spec)


def test_coordinator_checks_labels_privacy_and_the_rule(tmp_path):
    """min_per_column >= 1 at the site; a site outside the agreement, or summaries with and
    without privacy mixed, are refused; a noisy fit records its privacy and warns."""
    import dataclasses

    from itelib.federated.privacy import PrivacyBudget

    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", n_basis=5)
    agreement, parts, exact = _rounds(df, spec)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="min_per_column"):
            site_summary(parts[0], agreement, min_per_column=bad)
    est = HierarchicalITE(**_options("linear", "linear"))
    stranger = dataclasses.replace(exact[0], labels=("nowhere",))
    with pytest.raises(ValueError, match="'nowhere', which is not in the agreement"):
        summaries_model(est, [*exact, stranger])
    rng = np.random.default_rng(0)
    noisy = [site_summary(g, agreement, privacy=PrivacyBudget(30.0), rng=rng) for g in parts]
    with pytest.raises(ValueError, match="with privacy .* and some without"):
        summaries_model(est, [noisy[0], *exact[1:]])
    fast = _options("linear", "linear") | SAMPLER | dict(num_warmup=50, num_samples=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = HierarchicalITE(**fast).fit_summaries(noisy)
    assert any("not calibrated" in str(w.message) for w in caught)
    assert set(fitted.privacy_) == set(agreement.sites)
    assert all(p["epsilon"] == 30.0 for p in fitted.privacy_.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 x 50 draws
        assert not hasattr(fitted.fit(**kw), "privacy_")  # a refit on rows is exact


def test_agreement_uses_the_one_constant_column_rule(monkeypatch):
    """agree() applies itelib.data's constant-feature rule itself, not a copy of it."""
    import itelib.data

    kw, df = _trial()
    spec = FederatedSpec("y", "t", tuple(kw["X"].columns), "site", n_basis=5)
    assert not np.allclose(_rounds(df, spec)[0].encoder.scale, 1.0)
    monkeypatch.setattr(itelib.data, "_CONSTANT_RTOL", 10.0)  # every column "constant"
    np.testing.assert_array_equal(_rounds(df, spec)[0].encoder.scale, 1.0)


def test_first_round_hides_exact_extremes():
    """Without smooth terms a covariate's min and max leave the site rounded outward (a grid
    of a tenth of its sd); the outcome's never leave; the pooled-fit equality is kept."""
    kw, df = _trial()
    site = df[df["site"] == df["site"].iloc[0]]
    linear = site_moments(site, FederatedSpec("y", "t", tuple(kw["X"].columns), "site"))
    assert "min" not in linear.outcome and "max" not in linear.outcome
    for col in kw["X"].columns:
        x, got = site[col].to_numpy(), linear.numeric[col]
        step = x.std() / 10
        assert x.min() - step - 1e-12 <= got["min"] < x.min() and got["min"] not in x
        assert x.max() < got["max"] <= x.max() + step + 1e-12 and got["max"] not in x
