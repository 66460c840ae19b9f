"""Simulation-based calibration (SBC) of the hierarchical model and its sampler.

Draw parameters from the prior and data from the likelihood, then sample the posterior: if the
sampler is right, the rank of each true value among the posterior draws is uniform on ``0..S``
(Talts et al. 2018), for parameters and for any function of them such as a patient's effect
(Modrák et al. 2023). Uniformity is judged by the ECDF of the ranks against a *simultaneous*
band (Säilynoja, Bürkner & Vehtari 2022), calibrated by simulation on the discrete rank grid.
arviz-stats 0.8 has such a band (``ecdf_utils.ecdf_pit``), but for continuous PIT values on a
grid set by their number, with a Python loop over simulations; this one is vectorized.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from itelib._params import check_int, check_real
from itelib.models.hierarchical.priors import HierarchicalPriors

if TYPE_CHECKING:  # JAX, NumPyro and SciPy load on first use: the NumPy parts stay light
    from itelib.inference.nuts import NUTSConfig

__all__ = [
    "SBCResult", "UniformityResult", "ecdf_uniformity", "hierarchical_sbc",
    "plot_ecdf_difference", "plot_rank_histograms", "sbc_ranks",
]  # fmt: skip

Ranks = Mapping[str, np.ndarray]


def sbc_ranks(
    truth: Ranks, draws: Sequence[Ranks], *, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """Rank of each true value among its simulation's posterior draws.

    Parameters
    ----------
    truth : mapping of str to array ``(L, ...)``
        True value of each quantity in each of ``L`` simulations.
    draws : sequence of ``L`` mappings of str to array ``(S, ...)``
        Posterior draws (chains flattened, thinned) of the same quantities; ``S`` fixed.
    rng : numpy.random.Generator, optional
        Breaks ties: rank = draws below the truth + a uniform share of the draws equal to it,
        which keeps ranks uniform for discrete quantities. Default: seed 0.

    Returns
    -------
    dict of str to int array ``(L, ...)`` with values in ``0..S``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    out = {}
    for name, values in truth.items():
        true = np.asarray(values)
        d = np.stack([np.asarray(one[name]) for one in draws])  # (L, S, ...)
        if true.shape[:1] != (len(draws),) or d.shape[:1] + d.shape[2:] != true.shape:
            raise ValueError(
                f"sbc_ranks: truth[{name!r}] has shape {true.shape} but the draws imply "
                f"{d.shape[:1] + d.shape[2:]}. Fix: give one row of truth per simulation and "
                "draws of shape (S, ...) with truth's trailing shape."
            )
        ties = np.sum(d == true[:, None], axis=1)
        out[name] = np.sum(d < true[:, None], axis=1) + rng.integers(0, ties + 1)
    return out


class UniformityResult(NamedTuple):
    """ECDF test of SBC ranks against the discrete uniform on ``0..n_draws`` (``S``).

    Under uniformity one quantity's whole ECDF stays inside ``[lower, upper]`` with probability
    at least ``level``; all of them with probability at least ``prob`` under Bonferroni.
    """

    ranks: dict[str, np.ndarray]  # (L,) per scalar quantity, trailing axes as "name[i]"
    n_draws: int  # S, the draws each rank was taken among
    prob: float  # requested level (see ecdf_uniformity)
    level: float  # simultaneous level of each quantity's band
    z: np.ndarray  # (S,) points i / (S + 1), i = 1..S: uniform probability of rank < i
    ecdf: dict[str, np.ndarray]  # (S,) fraction of simulations with rank < i
    lower: np.ndarray  # (S,) simultaneous band for the ECDF
    upper: np.ndarray  # (S,)
    max_deviation: dict[str, float]  # max |ecdf - z|, the size of the departure
    passed: dict[str, bool]  # the ECDF stays inside the band
    all_passed: bool

    @property
    def failed(self) -> list[str]:
        """Names of the quantities whose ECDF leaves the band."""
        return [name for name, ok in self.passed.items() if not ok]


def _flatten(ranks: Ranks) -> dict[str, np.ndarray]:
    out = {}
    for name, values in ranks.items():
        arr = np.asarray(values)
        for idx in np.ndindex(arr.shape[1:]):
            label = f"{name}[{','.join(map(str, idx))}]" if idx else name
            out[label] = arr[(slice(None), *idx)].astype(np.int64)
    return out


def _min_tail(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """Smaller binomial tail ``min(P(B <= c), P(B >= c))``, ``B ~ Bin(n, z)``."""
    from scipy.special import bdtr, bdtrc

    return np.minimum(bdtr(counts, n, z), bdtrc(counts - 1, n, z))


def _band(
    n_sims: int, n_draws: int, level: float, n_band: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Count bounds at ``rank < i``, ``i = 1..S``, with simultaneous coverage ``level``.

    Simulation method of Säilynoja et al. (2022): over ``n_band`` uniform rank samples, the
    smallest pointwise binomial tail along the ECDF; its ``1 - level`` quantile is the pointwise
    tail probability at which the band covers whole ECDFs with probability ``level``.
    """
    z = np.arange(1, n_draws + 1) / (n_draws + 1)
    null = rng.integers(0, n_draws + 1, size=(n_band, n_sims))
    null += (n_draws + 1) * np.arange(n_band)[:, None]  # one bincount for all samples
    hist = np.bincount(null.ravel(), minlength=n_band * (n_draws + 1))
    counts = np.cumsum(hist.reshape(n_band, n_draws + 1), axis=1)[:, :n_draws]
    worst = _min_tail(counts, n_sims, z).min(axis=1)
    # "lower": at most a fraction 1 - level of the null samples fall strictly below it.
    threshold = np.quantile(worst, 1.0 - level, method="lower")
    inside = _min_tail(np.arange(n_sims + 1)[:, None], n_sims, z) >= threshold  # interval/column
    return np.argmax(inside, axis=0), n_sims - np.argmax(inside[::-1], axis=0)


def ecdf_uniformity(
    ranks: Ranks,
    n_draws: int,
    *,
    prob: float = 0.99,
    bonferroni: bool = True,
    n_band_simulations: int = 10_000,
    rng: np.random.Generator | None = None,
) -> UniformityResult:
    """Test SBC ranks for uniformity with simultaneous ECDF bands.

    Parameters
    ----------
    ranks : mapping of str to int array ``(L, ...)``
        Ranks in ``0..n_draws`` (:func:`sbc_ranks`); trailing axes are separate quantities.
    n_draws : int
        Draws ``S`` the ranks were taken among.
    prob : float
        With ``bonferroni``, the probability that uniform ranks pass for all ``K`` quantities
        together (each band gets ``1 - (1 - prob) / K``); otherwise each band's level.
    bonferroni : bool
        Correct for testing several quantities.
    n_band_simulations : int
        Uniform rank samples calibrating the band; its realised level has Monte Carlo sd of
        about ``sqrt(level * (1 - level) / n_band_simulations)``.
    rng : numpy.random.Generator, optional
        Draws those samples. Default: seed 0.

    Returns
    -------
    UniformityResult
    """
    if not 0 < prob < 1:
        raise ValueError(f"ecdf_uniformity: prob must lie in (0, 1); got {prob!r}.")
    flat = _flatten(ranks)
    if not flat:
        raise ValueError("ecdf_uniformity: ranks is empty. Fix: pass at least one quantity.")
    n_sims = len(next(iter(flat.values())))
    for name, r in flat.items():
        if len(r) != n_sims or r.min() < 0 or r.max() > n_draws:
            raise ValueError(
                f"ecdf_uniformity: ranks[{name!r}] must hold {n_sims} values in 0..{n_draws}; "
                f"got {len(r)} in {r.min()}..{r.max()}. Fix: pass n_draws = S, the number of "
                "(thinned) draws ranked, and one rank per simulation for every quantity."
            )
    level = 1 - (1 - prob) / len(flat) if bonferroni else prob
    rng = np.random.default_rng(0) if rng is None else rng
    lower, upper = _band(n_sims, n_draws, level, n_band_simulations, rng)
    z = np.arange(1, n_draws + 1) / (n_draws + 1)
    counts = {
        k: np.cumsum(np.bincount(r, minlength=n_draws + 1))[:n_draws] for k, r in flat.items()
    }
    passed = {k: bool(np.all((c >= lower) & (c <= upper))) for k, c in counts.items()}
    ecdf = {k: c / n_sims for k, c in counts.items()}
    dev = {k: float(np.max(np.abs(e - z))) for k, e in ecdf.items()}
    bounds = (lower / n_sims, upper / n_sims)
    return UniformityResult(
        flat, n_draws, prob, level, z, ecdf, *bounds, dev, passed, all(passed.values())
    )


# -- plots (matplotlib imported lazily) ----------------------------------------------------------
def _panels(result: Any, n_draws: int | None, prob: float, ncols: int) -> tuple:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("SBC plots need matplotlib: pip install 'itelib[plot]'") from err
    if isinstance(result, SBCResult):
        result = result.uniformity(prob=prob)
    elif not isinstance(result, UniformityResult):
        if n_draws is None:
            raise TypeError("plotting a mapping of ranks needs n_draws (the draws ranked among).")
        result = ecdf_uniformity(result, n_draws, prob=prob)
    k = len(result.ranks)
    ncols = min(ncols, k)
    nrows = -(-k // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.4 * nrows), squeeze=False)
    for ax in axes.ravel()[k:]:
        ax.set_visible(False)
    return result, fig, axes.ravel()


def plot_rank_histograms(
    result: UniformityResult | SBCResult | Ranks,
    n_draws: int | None = None,
    *,
    bins: int = 20,
    prob: float = 0.99,
    ncols: int = 4,
) -> Any:
    """Histograms of the ranks (Talts et al. 2018); failing quantities in red.

    Arguments as :func:`plot_ecdf_difference`, plus ``bins`` over ``0..S``. The grey bars are
    pointwise ``prob`` intervals of each bin's count under uniformity, not the test.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.stats import binom

    res, fig, axes = _panels(result, n_draws, prob, ncols)
    n_values = res.n_draws + 1
    bins = min(bins, n_values)
    share = np.bincount(np.arange(n_values) * bins // n_values) / n_values  # bins may differ
    x = (np.arange(bins) + 0.5) * n_values / bins
    for ax, (name, r) in zip(axes, res.ranks.items(), strict=False):
        lo, hi = binom.interval(prob, len(r), share)
        ax.bar(x, hi - lo, bottom=lo, width=n_values / bins, color="0.85")
        counts = np.bincount(r * bins // n_values, minlength=bins)
        ax.bar(x, counts, width=0.8 * n_values / bins, color="C0" if res.passed[name] else "C3")
        ax.set_title(name, fontsize=9)
    fig.supxlabel("rank of the true value")
    fig.tight_layout()
    return fig


def plot_ecdf_difference(
    result: UniformityResult | SBCResult | Ranks,
    n_draws: int | None = None,
    *,
    prob: float = 0.99,
    ncols: int = 4,
) -> Any:
    """ECDF of the ranks minus the uniform CDF inside the simultaneous band (Säilynoja 2022).

    A quantity passes when its curve stays in the grey band; failing ones are red.

    Parameters
    ----------
    result : UniformityResult, SBCResult or mapping of str to ranks
        What to plot; a mapping needs ``n_draws``.
    n_draws : int, optional
        Draws ``S`` ranked among (a mapping of ranks only).
    prob : float
        Level of the test when it is run here (:func:`ecdf_uniformity`).
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    res, fig, axes = _panels(result, n_draws, prob, ncols)
    for ax, name in zip(axes, res.ranks, strict=False):
        ax.fill_between(res.z, res.lower - res.z, res.upper - res.z, color="0.85", step="post")
        color = "C0" if res.passed[name] else "C3"
        ax.step(res.z, res.ecdf[name] - res.z, where="post", color=color)
        ax.set_title(name, fontsize=9)
    fig.supxlabel("fractional rank")
    fig.supylabel("ECDF - uniform CDF")
    fig.tight_layout()
    return fig


# -- SBC of the hierarchical model ---------------------------------------------------------------
class SBCResult(NamedTuple):
    """Ranks and sampler diagnostics of :func:`hierarchical_sbc`.

    Ranked quantities: ``tau0``, ``sigma_site_effect``, ``gamma`` ``(L, p)``, ``effect`` (three
    reference patients' effects, ``(L, 3)``) and ``sigma``. Thinned draws are near-independent,
    as ranks require, when ``min_ess`` is near ``n_draws`` or above.
    """

    ranks: dict[str, np.ndarray]  # (L,) or (L, k) ints in 0..n_draws
    truth: dict[str, np.ndarray]  # the prior draws, same keys and shapes
    n_draws: int  # thinned posterior draws per simulation
    divergences: np.ndarray  # (L,) divergent transitions after warmup, all chains
    min_ess: np.ndarray  # (L,) smallest bulk ESS over the ranked quantities before thinning
    thin: int  # every thin-th draw of each chain was kept

    def uniformity(
        self, prob: float = 0.99, *, bonferroni: bool = True, rng: np.random.Generator | None = None
    ) -> UniformityResult:
        """:func:`ecdf_uniformity` of these ranks."""
        return ecdf_uniformity(self.ranks, self.n_draws, prob=prob, bonferroni=bonferroni, rng=rng)


def _reference_patients(p: int, n_sites: int) -> tuple[np.ndarray, np.ndarray]:
    """Three fixed patients: covariates all 0, all +1, alternating ±1.5; sites 0, 1, 2."""
    X = np.stack([np.zeros(p), np.ones(p), 1.5 * (-1.0) ** np.arange(p)]).astype(np.float32)
    return X, np.arange(3) % max(n_sites, 1)


@cache
def _prior_predictive() -> Callable:
    """Jitted ``(key, data, spec) ->`` one joint prior draw of every site, ``y`` included."""
    import jax
    from numpyro.handlers import seed, trace

    from itelib.models.hierarchical.model import hierarchical_model

    def draw(key: Any, data: Any, spec: Any) -> dict:
        tr = trace(seed(hierarchical_model, key)).get_trace(data, spec)
        return {k: s["value"] for k, s in tr.items() if s["type"] in ("sample", "deterministic")}

    return jax.jit(draw, static_argnames="spec")  # one compilation per spec and shape


def _quantities(params: Mapping[str, Any], ref: tuple[np.ndarray, np.ndarray]) -> dict:
    """Ranked quantities from parameters with a leading sample axis."""
    from itelib.models.hierarchical.model import effect_draws

    out = {k: np.asarray(params[k]) for k in ("tau0", "sigma_site_effect", "gamma") if k in params}
    out["effect"] = np.asarray(effect_draws(dict(params), *ref, None))
    out["sigma"] = np.asarray(params["sigma"])
    return out


def hierarchical_sbc(
    n_simulations: int,
    *,
    n_patients: int = 80,
    p: int = 3,
    n_sites: int = 4,
    priors: HierarchicalPriors = HierarchicalPriors(),  # noqa: B008 - frozen, immutable
    fit_priors: HierarchicalPriors | None = None,
    num_warmup: int = 300,
    num_samples: int = 300,
    num_chains: int = 2,
    thin: int = 4,
    target_accept: float = 0.9,
    likelihood: str = "marginal",
    seed: int = 0,
    progress_bar: bool = False,
) -> SBCResult:
    """SBC of :func:`~itelib.models.hierarchical.model.hierarchical_model` fitted by NUTS.

    Each simulation draws ``X ~ N(0, 1)``, ``t ~ Bernoulli(0.5)`` and uniform sites, then all
    parameters and ``y`` from the prior predictive of the row-wise model, and fits the same
    standardized-scale model with ``fit_priors`` by :func:`~itelib.inference.nuts.sample_nuts`
    (not through ``HierarchicalITE``, which would re-standardize ``y`` and so change the
    prior). Sizes are fixed: one compilation per run.

    Parameters
    ----------
    n_simulations : int
        Simulated data sets ``L``.
    n_patients, p, n_sites : int
        Size of each simulated trial.
    priors : HierarchicalPriors
        Priors of the simulator.
    fit_priors : HierarchicalPriors, optional
        Priors of the fit (default ``priors``); a different value plants a prior mismatch.
    num_warmup, num_samples, num_chains, target_accept
        NUTS settings (:class:`~itelib.inference.nuts.NUTSConfig`).
    likelihood : {"marginal", "sufficient"}
        The fitted model: coefficients integrated out and drawn exactly afterwards
        (``HierarchicalITE``'s default for continuous outcomes) or all sampled by NUTS.
    thin : int
        Keep every ``thin``-th draw per chain: ranks need near-independent draws. In a pilot
        (defaults, 10 simulations) the smallest bulk ESS of 600 draws, nearly always
        ``sigma_site_effect``'s, was 167-379, median 220; ``thin=4`` keeps 150 draws.
        ``SBCResult.min_ess`` records it for every simulation.
    seed : int
        Root of ``numpy.random.SeedSequence(seed).spawn``: simulation ``i`` does not depend on
        ``n_simulations``.
    progress_bar : bool
        Show a tqdm bar over simulations.

    Returns
    -------
    SBCResult
    """
    for name, value, minimum in (
        ("n_simulations", n_simulations, 1), ("n_patients", n_patients, 2), ("p", p, 0),
        ("n_sites", n_sites, 0), ("num_warmup", num_warmup, 1), ("num_samples", num_samples, 1),
        ("num_chains", num_chains, 1), ("thin", thin, 1),
    ):  # fmt: skip
        check_int("hierarchical_sbc", name, value, minimum=minimum)
    check_real("hierarchical_sbc", "target_accept", target_accept, low=0.0, high=1.0)
    if likelihood not in ("marginal", "sufficient"):
        raise ValueError(
            "hierarchical_sbc(likelihood=...) must be 'marginal' or 'sufficient'; "
            f"got {likelihood!r}."
        )
    from arviz_stats.base import array_stats

    from itelib.inference.nuts import NUTSConfig, resolve_chain_method
    from itelib.models.hierarchical.model import ModelSpec

    fit_priors = priors if fit_priors is None else fit_priors
    method = resolve_chain_method("auto", num_chains)
    cfg = NUTSConfig(num_warmup, num_samples, num_chains, target_accept, chain_method=method)
    specs = (
        ModelSpec(p, n_sites, priors, likelihood="rows"),
        ModelSpec(p, n_sites, fit_priors, likelihood=likelihood),
    )
    scales = [np.float32(pr.global_scale(max(p, 1), n_patients)) for pr in (priors, fit_priors)]
    truths, draws, divergences, min_ess = [], [], [], []
    children = np.random.SeedSequence(seed).spawn(n_simulations)
    if progress_bar:
        from tqdm.auto import tqdm

        children = tqdm(children, desc="SBC", unit="simulation")
    for child in children:
        truth, post, n_div = _replicate(child, n_patients, specs, scales, cfg)
        ess = [array_stats.ess(v, chain_axis=0, draw_axis=1).min() for v in post.values()]
        draws.append({k: v[:, ::thin].reshape(-1, *truth[k].shape[1:]) for k, v in post.items()})
        truths.append(truth)
        divergences.append(n_div)
        min_ess.append(float(min(ess)))
    truth = {k: np.concatenate([tr[k] for tr in truths]) for k in truths[0]}
    ranks = sbc_ranks(truth, draws, rng=np.random.default_rng(np.random.SeedSequence(seed)))
    n_draws = len(draws[0]["sigma"])
    return SBCResult(ranks, truth, n_draws, np.asarray(divergences), np.asarray(min_ess), thin)


def _replicate(child: Any, n_patients: int, specs: tuple, scales: list, cfg: NUTSConfig) -> tuple:
    """Design, prior draw and NUTS fit: truth (1, ...), draws (chain, draw, k), divergences."""
    import jax

    import itelib.models.hierarchical.model as m
    from itelib.inference.nuts import sample_nuts
    from itelib.models.hierarchical.design import model_arrays

    p, n_sites = specs[0].p, specs[0].n_sites
    rng = np.random.default_rng(child)
    k_prior, k_fit = jax.random.split(jax.random.key(int(child.generate_state(1)[0])))
    X = rng.standard_normal((n_patients, p)).astype(np.float32)
    t = rng.binomial(1, 0.5, n_patients).astype(np.float32)
    site = rng.integers(0, max(n_sites, 1), n_patients).astype(np.int32)
    prior = _prior_predictive()(k_prior, m.ModelData(scales[0], t=t, X=X, site=site), specs[0])
    y = np.asarray(prior["y"], np.float64)
    t64 = t.astype(np.float64)
    data = model_arrays(specs[1], y=y, t=t64, X=X, site=site, global_scale=scales[1])
    fit = sample_nuts(k_fit, m.hierarchical_model, data, specs[1], cfg)
    params = fit.params
    if specs[1].likelihood == "marginal":
        k_fit = jax.random.fold_in(k_fit, 1)
        params = params | m.coefficient_draws(k_fit, params, data, specs[1])
    ref = _reference_patients(p, n_sites)
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in params.items()}
    shape = (cfg.num_chains, cfg.num_samples, -1)
    post = {k: v.reshape(shape) for k, v in _quantities(flat, ref).items()}
    truth = _quantities({k: v[None] for k, v in prior.items()}, ref)
    return truth, post, int(fit.stats["diverging"].sum())
