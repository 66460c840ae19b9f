"""itelib.plot.toc and itelib.plot.calibration draw an itelib.validate result (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from sklearn.base import BaseEstimator  # noqa: E402

import itelib  # noqa: E402
from itelib import EffectPosterior, plot  # noqa: E402


class Oracle(BaseEstimator):
    """Effect 1 + x0 for everyone: validate without a sampler."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, Y, T, *, X, site=None, propensity=None, **kwargs):
        return self

    def effect(self, X=None, *, site=None):
        mean = 1.0 + np.asarray(X)[:, 0]
        return EffectPosterior.from_draws(np.broadcast_to(mean, (1, 2, len(mean))))


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    t = pd.Series(rng.binomial(1, 0.5, 400))
    y = X["b"] + t * (1.0 + X["a"]) + rng.normal(size=400)
    return itelib.validate(Oracle(), X, y, t, folds=4, n_groups=4, random_state=0,
                           progress_bar=False)  # fmt: skip


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_toc_draws_the_curve_its_band_and_zero(result):
    ax = plot.toc(result)
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), result.toc["q"])
    np.testing.assert_allclose(line.get_ydata(), result.toc["estimate"])
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1
    assert any(np.allclose(ln.get_ydata(), 0.0) for ln in ax.get_lines()[1:])
    assert "AUTOC" in ax.get_title()


def test_calibration_draws_gates_blp_and_diagonal(result):
    fig, given = plt.subplots()
    ax = plot.calibration(result, ax=given)
    assert ax is given
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    points = bars.lines[0]
    groups = result.gates.drop(index="top - bottom")
    np.testing.assert_allclose(points.get_ydata(), groups["estimate"])
    np.testing.assert_allclose(points.get_xdata(), groups["mean_estimate"])
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert any(label.startswith("BLP: slope") for label in labels) and "calibrated" in labels
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("BLP: slope")]
    x, y = line.get_data()  # the BLP slope, through the mean score at the mean estimate
    assert (y[1] - y[0]) / (x[1] - x[0]) == pytest.approx(result.blp.slope)
    centre = result.patients["estimate"].mean()
    level = y[0] + result.blp.slope * (centre - x[0])
    assert level == pytest.approx(result.patients["score"].mean())


@pytest.mark.parametrize("func", [plot.toc, plot.calibration])
def test_plots_refuse_what_is_not_a_validate_result(func):
    with pytest.raises(TypeError, match=r"itelib.validate"):
        func(pd.DataFrame())
