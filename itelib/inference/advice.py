"""Convergence advice per estimator: the concrete next setting for each problem a
:class:`~itelib.inference.diagnostics.Diagnostics` finds, computed from the settings the fit
used, or, where no simple setting is known to help, what in the fit can be trusted.

An advisor is a function ``advisor(problem, diagnostics, thresholds) -> str`` with ``problem``
one of ``"divergences"``, ``"r_hat"``, ``"ess"``; estimators build one from their settings and
pass it to :meth:`Diagnostics.warn`. Every suggestion differs from the current setting and is
one that ``tests/test_advice.py`` shows lowers R-hat (raises ESS, removes divergences) on a fit
that triggered it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from itelib.inference.diagnostics import Diagnostics, Thresholds

__all__ = [
    "Advisor",
    "forest_advice",
    "hierarchical_advice",
    "more_samples",
    "next_target_accept",
    "trusted_quantities",
]

Advisor = Callable[[str, "Diagnostics", "Thresholds"], str]

MAX_TARGET_ACCEPT = 0.999  # beyond this NUTS's steps shrink without fewer divergences
FOREST_MAX_SWEEPS = 4000  # BayesianCausalForest: warmup and kept sweeps the advice goes up to
FOREST_MAX_TREES_TAU = 200  # ... and effect trees, under Hahn et al.'s tree prior (4x default)


def next_target_accept(current: float) -> float | None:
    """Halve the distance to 1 (0.8 -> 0.9 -> 0.95 ...), capped at 0.999; None at the cap."""
    proposal = min(MAX_TARGET_ACCEPT, round(1 - (1 - current) / 2, 6))
    return proposal if proposal > current else None


def more_samples(num_samples: int, ess: float, target: float) -> int:
    """Kept draws per chain that should bring ``ess`` to ``target``: ESS grows about linearly
    with the draws, plus a quarter for the noise of the estimate, rounded up to 100s."""
    factor = target / max(ess, 1.0) * 1.25
    return max(num_samples + 100, int(math.ceil(num_samples * factor / 100) * 100))


def trusted_quantities(diagnostics: Diagnostics, thresholds: Thresholds) -> str:
    """Which monitored quantities converged (R-hat within the threshold) and which did not."""
    rhat = diagnostics.table["r_hat"]
    bad = rhat[~(rhat <= thresholds.max_rhat)]
    good = rhat.drop(bad.index)

    def names(index: Any) -> list[str]:
        groups: dict[str, int] = {}
        for label in index:
            stem = str(label).split("[")[0]
            groups[stem] = groups.get(stem, 0) + 1
        return [stem if k == 1 else f"{k} {stem}" for stem, k in groups.items()]

    out = f"Not converged: {', '.join(names(bad.index))} (worst R-hat {bad.max():.2f})."
    if len(good):
        out += f" Converged (R-hat <= {thresholds.max_rhat}): {', '.join(names(good.index))}."
    return out


def hierarchical_advice(config: Any) -> Advisor:
    """Advice for HierarchicalITE from the NUTS settings it ran with (a ``NUTSConfig`` or any
    object with ``num_warmup``, ``num_samples``, ``num_chains``, ``target_accept``)."""
    settings = _settings(config, ("num_warmup", "num_samples", "num_chains", "target_accept"))

    def advise(problem: str, diagnostics: Diagnostics, thresholds: Thresholds) -> str:
        if problem == "divergences":
            current = float(settings["target_accept"])
            proposal = next_target_accept(current)
            if proposal is not None:
                return (
                    f"Set target_accept={proposal} (now {current}): smaller steps follow the "
                    "curvature."
                )
            return (
                f"target_accept is already {current}, the highest that helps; the divergences "
                "come from the model's geometry (a funnel, an outlier, a prior at odds with "
                "the data), so do not trust these intervals: check for outliers or tighten "
                "the priors."
            )
        if problem == "r_hat":
            w, s = settings["num_warmup"], settings["num_samples"]
            return (
                f"Set num_warmup={2 * w} and num_samples={2 * s} (now {w} and {s}). "
                + trusted_quantities(diagnostics, thresholds)
            )
        return _ess_advice(settings["num_samples"], diagnostics, thresholds)

    return advise


def forest_advice(config: Mapping[str, Any], *, deep_trees_rare: bool = False) -> Advisor:
    """Advice for BayesianCausalForest from its resolved settings (``num_trees_tau``,
    ``num_warmup``, ``num_samples``) and its effect forest's tree prior.

    Patient effects that do not converge come from an effect forest whose chains disagree on
    where an interaction's cut sits. Under BART's tree prior (0.95, 2) with small leaves (the
    continuous default since issue 24) longer runs bring them together: 4 x (1000 + 4000)
    sweeps against the default 4 x (1000 + 1000) took the patients' max R-hat from 1.06 to
    1.03, 1.05 to 1.03 and 1.17 to 1.03 on three designs (``docs/decisions.md``), so the advice
    multiplies the warmup and kept sweeps by 4 (from at least 100) up to ``FOREST_MAX_SWEEPS``.
    Under Hahn et al.'s (0.25, 3) (``deep_trees_rare``: binary and survival outcomes) longer
    runs did not help: on ``hahn_linear_heterogeneous`` (n = 500, seed 0) 1000 or 3000 warmup
    sweeps left R-hat at 1.41-1.45 and 8 chains at 1.37, while ``num_trees_tau`` 50 -> 200
    brought it to 1.03; so there the advice raises num_trees_tau up to
    ``FOREST_MAX_TREES_TAU``. Beyond either cap it says which quantities can be trusted.
    """
    settings = _settings(config, ("num_trees_tau", "num_warmup", "num_samples"))

    def advise(problem: str, diagnostics: Diagnostics, thresholds: Thresholds) -> str:
        trees, w, s = settings["num_trees_tau"], settings["num_warmup"], settings["num_samples"]
        table = diagnostics.table
        if problem == "divergences":  # a Gibbs sampler has none
            return "Check the inputs for extreme values."
        if problem == "r_hat":
            worst = table.index[~(table["r_hat"] <= thresholds.max_rhat)]
        else:
            low = table[["ess_bulk", "ess_tail"]].min(axis=1)
            worst = table.index[low < thresholds.min_ess]
        patients = any(str(name).startswith("effect[") for name in worst)
        if problem == "ess" and not patients:
            return _ess_advice(s, diagnostics, thresholds)
        if patients and deep_trees_rare and trees < FOREST_MAX_TREES_TAU:
            advice = (
                f"Set num_trees_tau={min(FOREST_MAX_TREES_TAU, 4 * trees)} (now {trees}): "
                "more, smaller effect trees mix faster over patients than a longer run."
            )
        elif patients and not deep_trees_rare and min(w, s) < FOREST_MAX_SWEEPS:
            now = {"num_warmup": w, "num_samples": s}
            longer = {k: min(FOREST_MAX_SWEEPS, 4 * max(v, 100)) for k, v in now.items()}
            longer = {k: v for k, v in longer.items() if v > now[k]}  # only what changes
            advice = (
                f"Set {' and '.join(f'{k}={v}' for k, v in longer.items())} (now "
                f"{' and '.join(str(now[k]) for k in longer)}): the effect forest's chains agree "
                "on its splits after longer runs."
            )
        else:
            advice = "Nothing simple is known to help further."
        if problem == "ess":
            return advice
        return (
            advice
            + " "
            + trusted_quantities(diagnostics, thresholds)
            + " Read unconverged patient effects as approximate: compare two fits with "
            "different random_state before relying on one patient's interval."
        )

    return advise


def _ess_advice(num_samples: int, diagnostics: Diagnostics, thresholds: Thresholds) -> str:
    low = min(diagnostics.min_ess_bulk, diagnostics.min_ess_tail)
    proposal = more_samples(num_samples, low, thresholds.min_ess)
    return f"Set num_samples={proposal} (now {num_samples})."


def _settings(config: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return {k: config[k] for k in keys}
    return {k: getattr(config, k) for k in keys}
