"""What itelib relies on in bartz, checked so a bartz release breaks here, loudly, and nowhere else.

itelib/models/forest/_bartz.py is the only module that imports bartz. These tests pin the
version, the private names and signatures it uses, the state fields it reads, and the
residual convention (data residual = resid * resid_unit) that the site-effect step writes.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import itelib
from itelib.models.forest import _bartz

PINNED = "0.13.0"


def test_bartz_is_the_pinned_version():
    assert version("bartz") == PINNED, (
        f"bartz {version('bartz')} is installed but itelib was checked against {PINNED}: "
        "re-run these contract tests and the BCF tests before moving the pin."
    )


def test_only_the_adapter_imports_bartz():
    root = Path(itelib.__file__).parent
    importers = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if re.search(r"^\s*(import bartz|from bartz[ .])", p.read_text(), re.MULTILINE)
    )
    assert importers == ["models/forest/_bartz.py"]


def test_init_bcf_keeps_the_keywords_we_pass():
    params = inspect.signature(_bartz.init_bcf).parameters
    for name in (
        "X_unified", "trt", "y", "outcome_type", "offset", "max_split_mu", "max_split_tau",
        "num_trees_mu", "num_trees_tau", "p_nonterminal_mu", "p_nonterminal_tau",
        "leaf_prior_cov_inv_mu", "leaf_prior_cov_inv_tau", "min_points_per_leaf_mu",
        "min_points_per_leaf_tau", "filter_splitless_vars_mu", "filter_splitless_vars_tau",
        "tau_0_prior_var", "adaptive_coding", "error_cov_inv", "num_chains",
    ):  # fmt: skip
        assert name in params, f"bartz.bcf init_bcf lost keyword {name!r}"


def test_the_state_fields_we_read_exist():
    names = {f.name for f in fields(_bartz.SiteBCFState)}
    for name in (
        "resid", "resid_unit", "y", "z", "error_cov_inv", "forest", "forest_tau", "trt",
        "tau_0", "b",
    ):  # fmt: skip
        assert name in names, f"bartz BCFState lost field {name!r}"
    forest = {f.name for f in fields(type(_tiny_state().forest))}
    for name in ("leaf_tree", "var_tree", "split_tree", "leaf_indices", "leaf_unit", "offset"):
        assert name in forest, f"bartz Forest lost field {name!r}"


def _tiny_state(num_chains: int = 2):
    rng = np.random.default_rng(0)
    n, p = 60, 3
    X = rng.normal(size=(p, n)).astype(np.float32)
    binner = _bartz.fit_binner(X, 16, jax.random.key(0))
    max_split = jnp.asarray(binner.max_split)
    return _bartz.init_state(
        X_binned=_bartz.bin_covariates(binner, X),
        trt=jnp.asarray(rng.integers(0, 2, n).astype(bool)),
        y=jnp.asarray(rng.normal(size=n), jnp.float32),
        site=jnp.asarray(rng.integers(0, 3, n), jnp.int32),
        n_sites=3,
        site_scale=jnp.asarray([1.0, 0.5]),
        site_active=jnp.asarray([True, True]),
        num_chains=num_chains,
        outcome_type="continuous",
        offset=0.0,
        max_split_mu=jnp.copy(max_split),
        max_split_tau=jnp.copy(max_split),
        num_trees_mu=5,
        num_trees_tau=3,
        p_nonterminal_mu=_bartz.make_p_nonterminal(4, 0.95, 2.0),
        p_nonterminal_tau=_bartz.make_p_nonterminal(3, 0.25, 3.0),
        leaf_prior_cov_inv_mu=_bartz.Wishart(nu=6.0, rate=2.0 / 5, value=5.0),
        leaf_prior_cov_inv_tau=_bartz.Wishart(nu=None, rate=None, value=6.0),
        filter_splitless_vars_mu=0,
        filter_splitless_vars_tau=0,
        tau_0_prior_var=1.0,
        error_cov_inv=_bartz.Wishart(nu=3.0, rate=3.0, value=1.0),
    )


def test_bartz_steps_keep_resid_times_unit_equal_to_y_minus_the_trees():
    """The convention sites.py relies on, after bartz's own mu, tau0 and tau updates."""
    state = _tiny_state()

    @jax.jit
    def steps(key, state):
        def one(key, s):
            k = jax.random.split(key, 3)
            s = _bartz.bcf_step_mu(k[0], s)
            s = _bartz.bcf_step_tau_0(k[1], s)
            return _bartz.bcf_step_tau(k[2], s)

        return _bartz.vmap_chains(one)(jax.random.split(key, 2), state)

    for i in range(3):
        state = steps(jax.random.key(i), state)

    def check(one):
        fitted = _bartz.mu_forest_at_training(one) + _bartz.coding(one) * (
            one.tau_0 + _bartz.tau_forest_at_training(one)
        )
        return _bartz.residual(one), one.y - fitted

    resid, expected = _bartz.map_chains(check, state)
    np.testing.assert_allclose(resid, expected, atol=1e-4)


def test_evaluate_trees_agrees_with_the_cached_leaf_indices():
    state = _tiny_state(num_chains=1)
    state = jax.jit(lambda s: _bartz.vmap_chains(_bartz.bcf_step_mu)(
        jax.random.split(jax.random.key(1), 1), s
    ))(state)  # fmt: skip
    one = jax.tree.map(lambda a: a, state)
    trees = jax.tree.map(lambda a: a[0], _bartz.map_chains(_bartz.mu_trees, one))
    cached = _bartz.map_chains(_bartz.mu_forest_at_training, one)[0]
    unit = float(one.forest.leaf_unit)
    offset = float(one.forest.offset)
    direct = _bartz.evaluate_trees(one.X, trees, unit) + offset
    np.testing.assert_allclose(direct, cached, atol=1e-5)


def test_cutpoints_rebuild_the_same_binning():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 80)).astype(np.float32)
    binner = _bartz.fit_binner(X, 10, jax.random.key(0))
    again = _bartz.binner_from_cutpoints(X, _bartz.cutpoints(binner))
    new = rng.normal(size=(3, 40)).astype(np.float32)
    np.testing.assert_array_equal(
        _bartz.bin_covariates(binner, new), _bartz.bin_covariates(again, new)
    )


def test_recoding_rebuilds_the_effect_forests_precision_cache():
    """``with_fixed_coding`` relies on bartz's ``recompute_prec_trees(forest, prec_scale, config)``
    and on ``prec_tree`` holding per-node sums of b_z^2: every root must sum the new b_z^2."""
    assert list(inspect.signature(_bartz.recompute_prec_trees).parameters) == [
        "forest", "prec_scale", "config",
    ]  # fmt: skip
    state = _tiny_state()
    np.testing.assert_allclose(state.forest_tau.prec_tree[..., 1], np.sum(state.trt))  # 0/1
    coded = _bartz.with_fixed_coding(state, (-0.5, 0.5))
    np.testing.assert_array_equal(coded.b, np.broadcast_to([-0.5, 0.5], (2, 2)))
    np.testing.assert_allclose(coded.forest_tau.prec_tree[..., 1], state.trt.size / 4)
