"""The collapsed Gibbs sweep of the horseshoe's local scales samples the same posterior as NUTS
on every scale (issue 24: the large-p path, forced here on a small model so both run fast)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import arviz_stats as azs
import numpy as np
import pandas as pd
import pytest

import itelib
from itelib.models.hierarchical import local_scales


def _trial(n: int = 300, p: int = 12, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{j}" for j in range(p)])
    t = rng.integers(0, 2, n)
    tau = 1.0 + 1.5 * X["x0"] - 1.0 * X["x1"]  # two modifiers among twelve
    y = X["x2"] + 0.5 * X["x3"] + t * tau + rng.normal(size=n)
    return {"Y": pd.Series(y, name="y"), "T": pd.Series(t, name="t"), "X": X}


def _fit(monkeypatch: pytest.MonkeyPatch, collapsed: bool) -> itelib.HierarchicalITE:
    monkeypatch.setattr(local_scales, "COLLAPSED_MIN_MODIFIERS", 1 if collapsed else 10**9)
    est = itelib.HierarchicalITE(num_chains=2, num_warmup=500, num_samples=1000,
                                 random_state=1, progress_bar=False)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(**_trial())


def _mean_and_mcse(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column posterior mean and its Monte Carlo standard error; draws (chain, draw, k)."""
    mcse = np.array([float(azs.mcse(draws[..., k], method="mean")) for k in range(draws.shape[-1])])
    return draws.mean(axis=(0, 1)), mcse


def test_the_sweep_is_chosen_only_for_the_dense_marginal_model_with_many_modifiers():
    many = local_scales.COLLAPSED_MIN_MODIFIERS
    dense, blocks = SimpleNamespace(site_cross=None), SimpleNamespace(site_cross=np.zeros((3, 3)))

    def choice(likelihood: str, q: int, marginal: SimpleNamespace) -> object:
        spec = SimpleNamespace(likelihood=likelihood, n_modifiers=q)
        return local_scales.collapsed_gibbs(spec, SimpleNamespace(marginal=marginal))

    step = choice("marginal", many, dense)
    assert step is not None and step.sites == ("hs_local_a", "hs_local_b")
    assert choice("marginal", many - 1, dense) is None
    assert choice("marginal", many, blocks) is None
    assert choice("rows", many, dense) is None


def test_collapsed_sweep_agrees_with_nuts_on_every_scale(monkeypatch):
    # Same model, same data, two samplers: posterior means of the patients' effects, of each
    # modifier and of each log local scale agree within 4 Monte Carlo standard errors of their
    # difference (max over ~330 quantities; under agreement P(any |z| > 4) is about 0.02).
    fits = {c: _fit(monkeypatch, collapsed=c) for c in (False, True)}
    for c, est in fits.items():
        n_div = int(est.posterior_["sample_stats"]["diverging"].sum())
        assert n_div == 0, (c, n_div)

    def quantities(est: itelib.HierarchicalITE) -> dict[str, np.ndarray]:
        post = est.posterior_["posterior"].to_dataset()
        lam = post["hs_local_a"].values * np.sqrt(post["hs_local_b"].values)
        return {"effect": est.effect().draws(), "gamma": post["gamma"].values,
                "log_lambda": np.log(lam)}  # fmt: skip

    a, b = quantities(fits[False]), quantities(fits[True])
    for name in a:
        mean_a, se_a = _mean_and_mcse(a[name])
        mean_b, se_b = _mean_and_mcse(b[name])
        z = np.abs(mean_a - mean_b) / np.sqrt(se_a**2 + se_b**2)
        assert z.max() < 4, (name, int(z.argmax()), float(z.max()))
    # and the true modifiers stand out in both: the sweep does not shrink what the data insist on
    gamma = b["gamma"].mean(axis=(0, 1))
    assert set(np.argsort(-np.abs(gamma))[:2]) == {0, 1}
