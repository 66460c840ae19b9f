"""itelib.recommend: decisions by probability or expected utility, and the policy's value,
checked against values computed by hand on a posterior with known draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import itelib
from itelib import EffectPosterior

# 1 chain x 4 draws x 3 patients: a benefits surely, b sometimes, c is harmed
DRAWS = np.array([[[2.0, 1.0, -1.0], [3.0, -1.0, -2.0], [1.0, 2.0, -1.0], [2.0, 0.5, 1.0]]])
IDS = pd.Index(["a", "b", "c"], name="pid")


@pytest.fixture
def post():
    return EffectPosterior.from_draws(DRAWS, patient_ids=IDS)


def test_probability_rule_by_hand(post):
    rec = itelib.recommend(post, threshold=0.0, level=0.7)
    # P(effect > 0): a 4/4, b 3/4, c 1/4
    np.testing.assert_allclose(rec.decisions["prob_benefit"], [1.0, 0.75, 0.25])
    assert rec.decisions.index.equals(IDS)  # patient ids kept
    assert rec.decisions["treat"].tolist() == [True, True, False]
    assert itelib.recommend(post, threshold=0.0, level=0.8).decisions["treat"].tolist() == [
        True, False, False,
    ]  # fmt: skip
    # value per draw: (a + b) / 3 for the policy, (a + b + c) / 3 for treat-all
    policy = DRAWS[0, :, :2].sum(axis=1) / 3
    everyone = DRAWS[0].sum(axis=1) / 3
    np.testing.assert_allclose(rec.value_draws[0, :, 0], policy)
    np.testing.assert_allclose(rec.value_draws[0, :, 1], everyone)
    np.testing.assert_allclose(rec.value_draws[0, :, 2], 0.0)
    assert rec.value.loc["policy", "mean"] == pytest.approx(policy.mean())
    assert rec.value.loc["treat_all", "prob_policy_better"] == pytest.approx(0.75)  # c < 0 in 3
    assert rec.value.loc["treat_none", "prob_policy_better"] == pytest.approx(1.0)
    assert np.isnan(rec.value.loc["policy", "prob_policy_better"])
    assert rec.share_treated == pytest.approx(2 / 3)


def test_threshold_and_lower_is_better(post):
    rec = itelib.recommend(post, threshold=1.5, level=0.5)
    assert rec.decisions["treat"].tolist() == [True, False, False]  # P(> 1.5): .75, .25, 0
    lower = itelib.recommend(post, threshold=0.0, level=0.5, higher_is_better=False)
    assert lower.decisions["treat"].tolist() == [False, False, True]  # P(< 0): 0, .25, .75
    # value in benefit units: the sign flips, so treating c is worth -mean(c draws) / 3
    np.testing.assert_allclose(lower.value_draws[0, :, 0], -DRAWS[0, :, 2] / 3)


def test_expected_utility_with_cost_and_harm(post):
    rec = itelib.recommend(post, cost=1.0)
    # E[effect] - 1: a 1.0, b -0.375, c -1.75
    np.testing.assert_allclose(rec.decisions["expected_utility"], [1.0, -0.375, -1.75])
    assert rec.decisions["treat"].tolist() == [True, False, False]
    np.testing.assert_allclose(rec.value_draws[0, :, 0], (DRAWS[0, :, 0] - 1) / 3)
    harmed = itelib.recommend(post, harm=pd.Series([0.0, 4.0, 0.0], index=["a", "b", "c"]))
    # b: E[effect] = 0.625, minus 4 x P(effect < 0) = 1 -> -0.375
    assert harmed.decisions.loc["b", "expected_utility"] == pytest.approx(-0.375)
    assert harmed.decisions["treat"].tolist() == [True, False, False]
    assert harmed.rule.startswith("expected_utility")


def test_a_normal_approximation_gets_decisions_but_no_value():
    post = EffectPosterior.from_normal([1.0, -1.0], [0.5, 0.5], num_draws=200,
                                       rng=np.random.default_rng(0))  # fmt: skip
    rec = itelib.recommend(post)
    assert rec.decisions["treat"].tolist() == [True, False]
    assert rec.value is None and "normal approximation" in rec.note
    with pytest.raises(ValueError, match="normal approximation"):
        itelib.recommend(post, value=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"level": 1.5}, ValueError, r"recommend\(level"),
        ({"threshold": float("nan")}, ValueError, r"recommend\(threshold"),
        ({"cost": [1.0, 2.0]}, ValueError, r"recommend\(cost"),
        ({"harm": pd.Series([1.0], index=["a"])}, ValueError, r"recommend\(harm"),
        ({"higher_is_better": "yes"}, TypeError, "higher_is_better"),
    ],
)
def test_bad_inputs_name_the_argument(post, kwargs, error, match):
    with pytest.raises(error, match=match):
        itelib.recommend(post, **kwargs)


def test_refuses_a_population_average(post):
    with pytest.raises(TypeError, match="per-patient EffectPosterior"):
        itelib.recommend(post.average())
    with pytest.raises(TypeError, match="got ndarray"):
        itelib.recommend(DRAWS)
