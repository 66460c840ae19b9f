"""Pictures of effect posteriors (matplotlib, imported when a function is called).

Each function takes an :class:`~itelib.posterior.EffectPosterior` or a
:class:`~itelib.groups.GroupEffects`, draws on ``ax`` (a new figure's axes when None) and
returns the Axes:

- :func:`caterpillar`: each patient's (or group's) posterior mean and interval, sorted;
- :func:`subgroups`: a forest plot of group averages with their intervals;
- :func:`prob_benefit`: each patient's posterior probability of benefit, sorted or as a
  histogram;
- :func:`modifiers`: the covariates' importance, or their per-sd / per-unit modifier effects,
  with intervals (from ``est.modifiers()``).
- :func:`toc` and :func:`calibration`: the TOC curve with its band, and the BLP/GATES
  calibration plot, of an :func:`itelib.validate` result.

For ArviZ's own plots, pass ``post.to_datatree()`` (or ``groups.to_datatree()``) to
``arviz_plots``, e.g. ``arviz_plots.plot_forest(post.to_datatree(), backend="matplotlib")``.
arviz-plots 0.8.0 (the line that installs beside arviz-base 0.8 on Python 3.11) fails to import
under matplotlib 3.11 (``matplotlib.style.core``), and then so does PyMC through legacy arviz:
it needs matplotlib < 3.11 for now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from itelib.explain.modifiers import ModifierSummary
from itelib.groups import GroupEffects
from itelib.posterior import EffectPosterior
from itelib.survival_outcome import no_effect

if TYPE_CHECKING:  # the checks sit above this module; read duck-typed, never imported
    from itelib.answers.checks import HeterogeneityCheck

__all__ = ["calibration", "caterpillar", "modifiers", "prob_benefit", "subgroups", "toc"]

_SCALE_LABELS = {
    "outcome": "treatment effect (outcome scale)",
    "risk_difference": "treatment effect (risk difference)",
    "log_odds_ratio": "treatment effect (log odds ratio)",
    "rmst": "treatment effect (RMST difference)",
    "survival": "treatment effect (survival difference)",
    "time_ratio": "treatment effect (time ratio)",
}
_SCALE_NAMES = {"outcome": "outcome scale", "risk_difference": "risk difference",
                "log_odds_ratio": "log odds ratio"}  # fmt: skip
_MAX_TICK_LABELS = 30  # name the patients on the axis only when this few


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is a dependency today
        raise ImportError("itelib.plot needs matplotlib: pip install 'itelib[plot]'") from err
    _, ax = plt.subplots()
    return ax


def _per_unit(post: Any, what: str) -> EffectPosterior | GroupEffects:
    if isinstance(post, GroupEffects):
        return post
    if not isinstance(post, EffectPosterior):
        raise TypeError(
            f"{what} takes an EffectPosterior or GroupEffects; got {type(post).__name__}."
        )
    if post.n_patients == 0:
        raise ValueError(
            f"{what} draws one row per patient; this posterior is a population average. "
            "Fix: pass est.effect() (or post.groupby(labels) for groups)."
        )
    return post


def _effect_label(attrs: dict[str, Any]) -> str:
    return _SCALE_LABELS.get(attrs.get("scale"), "treatment effect")


def caterpillar(
    post: EffectPosterior | GroupEffects,
    *,
    prob: float = 0.95,
    kind: str = "eti",
    sort: bool = True,
    threshold: float | None = None,
    ax: Any = None,
) -> Any:
    """Each patient's posterior mean effect with its credible interval, sorted by the mean.

    Parameters
    ----------
    post : EffectPosterior or GroupEffects
        Per-patient (or per-group) effects.
    prob, kind
        The interval, as in :meth:`EffectPosterior.interval`.
    sort : bool
        Order by posterior mean (else in the posterior's order).
    threshold : float, optional
        A horizontal reference line; None: no effect (0, or 1 for a time ratio).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One vertical line per patient (a ``LineCollection``), the means (a
        ``PathCollection``) and the reference line.
    """
    post = _per_unit(post, "caterpillar")
    mean, interval = post.mean(), post.interval(prob, kind)
    order = np.argsort(mean.to_numpy(), kind="stable") if sort else np.arange(len(mean))
    x = np.arange(len(mean))
    ax = _axes(ax)
    ax.vlines(x, interval["lower"].to_numpy()[order], interval["upper"].to_numpy()[order],
              color="C0", alpha=0.5, linewidth=1.0, label=f"{prob:.0%} interval")  # fmt: skip
    ax.scatter(x, mean.to_numpy()[order], s=8, color="C0", zorder=3, label="posterior mean")
    threshold = no_effect(post.attrs) if threshold is None else threshold
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1.0)
    unit = "groups" if isinstance(post, GroupEffects) else "patients"
    if len(x) <= _MAX_TICK_LABELS:
        ax.set_xticks(x, [str(i) for i in mean.index[order]], rotation=90)
    ax.set_xlabel(f"{unit}, sorted by posterior mean" if sort else unit)
    ax.set_ylabel(_effect_label(post.attrs))
    ax.set_title(f"{post.attrs.get('estimator', '')}: {len(x)} {unit}".lstrip(": "))
    ax.legend(loc="upper left", frameon=False)
    return ax


def subgroups(
    groups: GroupEffects,
    *,
    prob: float = 0.95,
    kind: str = "eti",
    threshold: float | None = None,
    ax: Any = None,
) -> Any:
    """Forest plot of the groups' average effects with their credible intervals.

    Parameters
    ----------
    groups : GroupEffects
        From :meth:`EffectPosterior.groupby`; drawn top to bottom in the groups' order, each
        labelled with its size.
    prob, kind
        The interval, as in :meth:`GroupEffects.interval`.
    threshold : float, optional
        A vertical reference line; None: no effect (0, or 1 for a time ratio).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One horizontal line per group (a ``LineCollection``), the means (a
        ``PathCollection``), the reference line and one y tick label per group.
    """
    if not isinstance(groups, GroupEffects):
        raise TypeError(
            f"subgroups takes a GroupEffects (post.groupby(labels)); got {type(groups).__name__}."
        )
    mean, interval, n = groups.mean(), groups.interval(prob, kind), groups.n
    y = np.arange(len(mean))[::-1]  # the first group on top
    ax = _axes(ax)
    ax.hlines(y, interval["lower"], interval["upper"], color="C0", linewidth=2.0,
              label=f"{prob:.0%} interval")  # fmt: skip
    ax.scatter(mean.to_numpy(), y, s=30, color="C0", zorder=3, label="posterior mean")
    threshold = no_effect(groups.attrs) if threshold is None else threshold
    ax.axvline(threshold, color="grey", linestyle="--", linewidth=1.0)
    ax.set_yticks(y, [f"{g} (n={k})" for g, k in zip(mean.index, n.to_numpy(), strict=True)])
    ax.set_ylabel(str(groups.groups.name or "group"))
    ax.set_xlabel(f"average {_effect_label(groups.attrs)}")
    ax.set_title("Average effect by group")
    return ax


def prob_benefit(
    post: EffectPosterior | GroupEffects,
    threshold: float = 0.0,
    *,
    higher_is_better: bool = True,
    kind: str = "sorted",
    bins: int = 20,
    ax: Any = None,
) -> Any:
    """Each patient's posterior probability of benefit, sorted (a curve) or as a histogram.

    Parameters
    ----------
    post : EffectPosterior or GroupEffects
    threshold, higher_is_better
        As in :meth:`EffectPosterior.prob_benefit`.
    kind : {"sorted", "hist"}
        ``"sorted"``: P(benefit) of each patient in increasing order, with a line at 0.5;
        ``"hist"``: how many patients have each P(benefit), in ``bins`` bins over [0, 1].
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    post = _per_unit(post, "prob_benefit")
    if kind not in ("sorted", "hist"):
        raise ValueError(f"kind must be 'sorted' or 'hist'; got {kind!r}.")
    p = np.sort(post.prob_benefit(threshold, higher_is_better).to_numpy())
    sign = ">" if higher_is_better else "<"
    label = f"P(effect {sign} {threshold:g})"
    unit = "groups" if isinstance(post, GroupEffects) else "patients"
    ax = _axes(ax)
    if kind == "sorted":
        ax.plot(np.arange(len(p)), p, color="C0", drawstyle="steps-mid")
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel(f"{unit}, sorted by {label}")
        ax.set_ylabel(label)
    else:
        ax.hist(p, bins=np.linspace(0.0, 1.0, int(bins) + 1), color="C0")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(label)
        ax.set_ylabel(f"number of {unit}")
    ax.set_title(f"Posterior probability of benefit ({len(p)} {unit})")
    return ax


_MODIFIER_KINDS = {
    "importance": "importance: sd of the effect only this covariate explains",
    "per_sd": "change of the effect per sd of the covariate",
    "per_unit": "change of the effect per unit of the covariate",
}


def modifiers(summary: ModifierSummary, *, kind: str = "importance", ax: Any = None) -> Any:
    """Forest plot of the effect modifiers: importance or coefficients, with intervals.

    Parameters
    ----------
    summary : ModifierSummary
        From ``est.modifiers()``; its ``prob`` sets the intervals.
    kind : {"importance", "per_sd", "per_unit"}
        ``"importance"``: one row per covariate, most important on top. ``"per_sd"`` /
        ``"per_unit"``: the linear projection's coefficient of every covariate column (a
        factor: each level against the reference), in order of importance, with a line at 0.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One horizontal line per row (a ``LineCollection``), the posterior means (a
        ``PathCollection``), one y tick label per row; the title gives the summary R².
    """
    if not isinstance(summary, ModifierSummary):
        raise TypeError(
            f"modifiers takes a ModifierSummary (est.modifiers()); got {type(summary).__name__}."
        )
    if kind not in _MODIFIER_KINDS:
        raise ValueError(f"kind must be one of {list(_MODIFIER_KINDS)}; got {kind!r}.")
    if kind == "importance":
        table = summary.importance
        mean, lower, upper = table["importance"], table["lower"], table["upper"]
    else:
        table = summary.table
        mean, lower, upper = table[kind], table[f"{kind}_lower"], table[f"{kind}_upper"]
    y = np.arange(len(table))[::-1]  # the first row on top
    prob = summary.attrs.get("prob", 0.95)
    ax = _axes(ax)
    ax.hlines(y, lower.to_numpy(), upper.to_numpy(), color="C0", linewidth=2.0,
              label=f"{prob:.0%} interval")  # fmt: skip
    ax.scatter(mean.to_numpy(), y, s=30, color="C0", zorder=3, label="posterior mean")
    if kind != "importance":
        ax.axvline(0.0, color="grey", linestyle="--", linewidth=1.0)
    ax.set_yticks(y, [str(i) for i in table.index])
    scale = summary.attrs.get("scale", "outcome")
    ax.set_xlabel(f"{_MODIFIER_KINDS[kind]} ({_SCALE_NAMES.get(scale, scale)})")
    r2 = summary.r2.loc["linear", "mean"]
    ax.set_title(
        f"{summary.attrs.get('estimator', '')}: effect modifiers "
        f"(linear summary R² {r2:.2f})".lstrip(": ")
    )
    return ax


def _check_result(result: Any, what: str) -> None:
    if not all(hasattr(result, name) for name in ("toc", "gates", "blp", "rate")):
        raise TypeError(
            f"{what} takes the result of itelib.validate(est, X, Y, T); got "
            f"{type(result).__name__}. Fix: res = itelib.validate(...); itelib.plot.{what}(res)."
        )


def toc(result: HeterogeneityCheck, *, ax: Any = None) -> Any:
    """The targeting operator characteristic: the average effect among the top ``q`` share
    by estimated effect, minus the overall average, with its pointwise interval.

    Parameters
    ----------
    result : HeterogeneityCheck
        From :func:`itelib.validate`.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The curve (a ``Line2D``), its band (a ``PolyCollection``) and the zero line; the title
        gives AUTOC and Qini with their intervals.
    """
    _check_result(result, "toc")
    curve, r = result.toc, result.rate
    ax = _axes(ax)
    ax.fill_between(curve["q"], curve["lower"], curve["upper"], color="C0", alpha=0.25,
                    linewidth=0, label=f"{r.prob:.0%} interval")  # fmt: skip
    ax.plot(curve["q"], curve["estimate"], color="C0", label="TOC")
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1.0)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("share treated, highest estimated effect first")
    ax.set_ylabel("gain over the average effect")
    ax.set_title(
        f"AUTOC {r.autoc:.3g} (SE {r.autoc_se:.2g}), Qini {r.qini:.3g} (SE {r.qini_se:.2g})"
    )
    ax.legend(loc="upper right", frameon=False)
    return ax


def calibration(result: HeterogeneityCheck, *, ax: Any = None) -> Any:
    """Sorted group average effects (GATES) against the groups' mean estimate, with the best
    linear predictor's line and the diagonal (perfect calibration).

    Parameters
    ----------
    result : HeterogeneityCheck
        From :func:`itelib.validate`.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The groups' averages with their intervals (an ``ErrorbarContainer``), the BLP line and
        the diagonal (``Line2D``); the title gives the BLP slope.
    """
    _check_result(result, "calibration")
    groups = result.gates.drop(index="top - bottom")
    x, y = groups["mean_estimate"].to_numpy(), groups["estimate"].to_numpy()
    err = np.vstack([y - groups["lower"].to_numpy(), groups["upper"].to_numpy() - y])
    fit = result.blp
    ax = _axes(ax)
    ax.errorbar(x, y, yerr=err, fmt="o", color="C0", capsize=3, label="GATES (doubly robust)")
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    grid = np.array([lo, hi])
    centre = float(result.patients["estimate"].mean())
    # through the mean doubly robust score, the level of the GATES points (the BLP's own
    # average effect is weighted by e (1 - e) and can sit apart from them in a cohort)
    level = float(result.patients["score"].mean())
    ax.plot(grid, level + fit.slope * (grid - centre), color="C1",
            label=f"BLP: slope {fit.slope:.2f} (SE {fit.slope_se:.2f})")  # fmt: skip
    ax.plot(grid, grid, color="grey", linestyle="--", linewidth=1.0, label="calibrated")
    ax.set_xlabel("mean cross-fitted estimate in the group")
    ax.set_ylabel("average effect in the group (doubly robust)")
    ax.set_title(f"Calibration of {result.estimator}")
    ax.legend(loc="upper left", frameon=False)
    return ax
