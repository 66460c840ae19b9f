"""itelib.plot: each figure draws what it says, on the Axes it returns (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402

from itelib import EffectPosterior, plot  # noqa: E402


@pytest.fixture(scope="module")
def post():
    rng = np.random.default_rng(3)
    draws = rng.normal(loc=np.linspace(-1, 2, 12), scale=0.5, size=(2, 150, 12))
    ids = pd.Index([f"p{i:02d}" for i in range(12)], name="patient_id")
    return EffectPosterior.from_draws(draws, patient_ids=ids, attrs={"estimator": "Test"})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _collections(ax, kind):
    return [c for c in ax.collections if isinstance(c, kind)]


def test_caterpillar_draws_one_interval_per_patient_sorted(post):
    ax = plot.caterpillar(post)
    (lines,) = _collections(ax, LineCollection)
    (points,) = _collections(ax, PathCollection)
    assert len(lines.get_segments()) == 12 and len(points.get_offsets()) == 12
    means = points.get_offsets()[:, 1]
    assert np.all(np.diff(means) >= 0)  # sorted by posterior mean
    np.testing.assert_allclose(np.sort(means), np.sort(post.mean().to_numpy()))
    lower = np.array([seg[0][1] for seg in lines.get_segments()])
    np.testing.assert_allclose(np.sort(lower), np.sort(post.interval()["lower"].to_numpy()))
    assert [t.get_text() for t in ax.get_xticklabels()][0] == post.mean().idxmin()
    assert ax.get_ylabel() == "treatment effect (outcome scale)"
    assert len(ax.get_lines()) == 1  # the reference line at 0


def test_caterpillar_on_a_given_axes_and_unsorted(post):
    _, ax = plt.subplots()
    assert plot.caterpillar(post, sort=False, prob=0.5, ax=ax) is ax
    points = _collections(ax, PathCollection)[0].get_offsets()[:, 1]
    np.testing.assert_allclose(points, post.mean().to_numpy())


def test_subgroups_forest_plot(post):
    labels = pd.Series(pd.Categorical(["b", "a", "c"] * 4, categories=["c", "a", "b"]),
                       index=post.patient_ids)  # fmt: skip
    groups = post.groupby(labels)
    ax = plot.subgroups(groups)
    (lines,) = _collections(ax, LineCollection)
    assert len(lines.get_segments()) == 3
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["c (n=4)", "a (n=4)", "b (n=4)"]  # the categories' order, top down
    # the first group is on top (largest y)
    points = _collections(ax, PathCollection)[0].get_offsets()
    top = points[np.argmax(points[:, 1]), 0]
    assert top == pytest.approx(groups.mean()["c"])
    assert ax.get_xlabel().startswith("average treatment effect")


def test_prob_benefit_sorted_and_histogram(post):
    ax = plot.prob_benefit(post)
    curve = ax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(curve, np.sort(post.prob_benefit().to_numpy()))
    assert ax.get_ylabel() == "P(effect > 0)" and ax.get_ylim() == (0.0, 1.0)
    ax = plot.prob_benefit(post, threshold=0.5, higher_is_better=False, kind="hist", bins=10)
    assert len(ax.patches) == 10
    assert sum(p.get_height() for p in ax.patches) == 12
    assert ax.get_xlabel() == "P(effect < 0.5)"


def test_plots_refuse_what_they_cannot_draw(post):
    with pytest.raises(ValueError, match="population average"):
        plot.caterpillar(post.average())
    with pytest.raises(TypeError, match="GroupEffects"):
        plot.subgroups(post)
    with pytest.raises(ValueError, match="kind"):
        plot.prob_benefit(post, kind="violin")
    with pytest.raises(TypeError, match="EffectPosterior"):
        plot.caterpillar(np.zeros(3))


def test_plot_is_reachable_from_the_package():
    """``import itelib; itelib.plot.caterpillar(...)`` as the README shows (a fresh process:
    here the module is imported already)."""
    import subprocess
    import sys

    code = "import itelib; assert callable(itelib.plot.caterpillar)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.fixture(scope="module")
def modifier_summary():
    from itelib.data import TrialData
    from itelib.explain.modifiers import from_draws

    rng = np.random.default_rng(4)
    n = 120
    X = pd.DataFrame({"age": rng.normal(50, 10, n), "sex": rng.choice(["F", "M"], n),
                      "bmi": rng.normal(25, 4, n)})  # fmt: skip
    data = TrialData.from_arrays(rng.normal(size=n), rng.integers(0, 2, n), X=X,
                                 categorical=["sex"])  # fmt: skip
    effect = 1.0 + 0.05 * (X["age"] - 50) + 0.8 * (X["sex"] == "M")
    draws = effect.to_numpy() + rng.normal(scale=0.3, size=(2, 100, n))
    attrs = {"estimator": "Test", "scale": "outcome", "inference": "mcmc"}
    return from_draws(draws, data, attrs=attrs, prob=0.9, tree_depth=2, random_state=0)


@pytest.mark.parametrize("kind", ["importance", "per_sd", "per_unit"])
def test_modifiers_plot_draws_one_interval_per_row_in_rank_order(modifier_summary, kind):
    s = modifier_summary
    ax = plot.modifiers(s, kind=kind)
    (lines,) = _collections(ax, LineCollection)
    (points,) = _collections(ax, PathCollection)
    table = s.importance if kind == "importance" else s.table
    column = "importance" if kind == "importance" else kind
    assert len(lines.get_segments()) == len(table) == len(points.get_offsets())
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [str(i) for i in table.index]
    assert np.all(np.diff(ax.get_yticks()) < 0)  # the first (most important) row on top
    np.testing.assert_allclose(points.get_offsets()[:, 0], table[column].to_numpy())
    assert len(ax.get_lines()) == (0 if kind == "importance" else 1)  # the line at 0
    assert "summary R²" in ax.get_title()
    if kind == "per_sd":
        assert "sex[M]" in labels  # a factor's level, in the user's names
    assert ax.get_xlabel().endswith("(outcome scale)")


def test_modifiers_plot_names_a_binary_outcomes_scale_in_words(modifier_summary):
    import copy

    risk = copy.copy(modifier_summary)
    risk.attrs = modifier_summary.attrs | {"scale": "risk_difference"}
    assert plot.modifiers(risk).get_xlabel().endswith("(risk difference)")


def test_modifiers_plot_refuses_other_objects(post, modifier_summary):
    with pytest.raises(TypeError, match="ModifierSummary"):
        plot.modifiers(post)
    with pytest.raises(ValueError, match="kind"):
        plot.modifiers(modifier_summary, kind="bars")
