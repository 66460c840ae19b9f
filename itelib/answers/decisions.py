"""``recommend``: whom to treat, from each patient's effect posterior, and what the rule is worth.

Two rules. By probability: treat when ``P(effect beyond threshold) > level`` (``threshold`` a
clinically meaningful difference). By expected utility, when a ``cost`` or a ``harm`` is given:
the utility of treating is the benefit (the effect, sign-flipped when lower is better) minus
``cost`` minus ``harm`` on the draws where the effect is on the harmful side; treat when its
posterior mean is positive. The policy's value is, draw by draw, the mean utility over all
patients of treating those it treats (treat-none is 0), set against treat-all: its posterior
needs draws that are joint across patients, so a normal approximation (CausalForest) gets the
decisions but no value, as :meth:`EffectPosterior.average` refuses it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from itelib.posterior import EffectPosterior

__all__ = ["Recommendation", "recommend"]


@dataclass(frozen=True, eq=False)
class Recommendation:
    """The result of :func:`recommend`.

    Attributes
    ----------
    decisions : pandas.DataFrame
        Per patient id: ``mean`` (posterior mean effect), ``prob_benefit`` (P(effect beyond
        ``threshold``)), ``expected_utility`` (per treated patient, in the effect's units;
        benefit minus cost and harm), ``treat`` (bool).
    value : pandas.DataFrame or None
        Rows ``policy``, ``treat_all``, ``treat_none``; columns ``mean``, ``lower``, ``upper``
        (equal-tailed ``prob`` interval) of the mean utility per patient over all patients,
        and ``prob_policy_better`` (posterior probability that the policy's value exceeds
        that row's; NaN for the policy itself). None where the draws are not joint.
    value_draws : numpy.ndarray or None
        ``(chain, draw, 3)``: the policy's, treat-all's and treat-none's value per draw.
    rule : str
        ``"probability"`` or ``"expected_utility"``, in words with its settings.
    note : str
        Why there is no value, if there is none.
    """

    decisions: pd.DataFrame
    value: pd.DataFrame | None
    value_draws: np.ndarray | None
    rule: str
    note: str = ""

    @property
    def share_treated(self) -> float:
        return float(self.decisions["treat"].mean())

    def __repr__(self) -> str:
        head = (
            f"Recommendation({self.rule}; treat {int(self.decisions['treat'].sum())} of "
            f"{len(self.decisions)} patients)"
        )
        body = self.value.round(4).to_string() if self.value is not None else self.note
        return f"{head}\n{body}"


def _real(name: str, value: Any, low: float = -np.inf, high: float = np.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"recommend({name}=...) must be a finite number; got {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"recommend({name}=...) must lie in [{low}, {high}]; got {value!r}.")
    return float(value)


def _per_patient(name: str, value: Any, post: EffectPosterior) -> np.ndarray:
    """A cost or harm: one number, or one per patient (a Series aligned by patient id)."""
    if value is None:
        return np.zeros(post.n_patients)
    if isinstance(value, pd.Series):
        missing = post.patient_ids.difference(value.index)
        if len(missing):
            raise ValueError(
                f"recommend({name}=...) has no value for {len(missing)} patients (e.g. "
                f"{list(missing[:3])}). Fix: index it by the posterior's patient ids."
            )
        value = value.reindex(post.patient_ids).to_numpy()
    arr = (
        np.broadcast_to(np.asarray(value, dtype=float), (post.n_patients,))
        if np.ndim(value) == 0
        else np.asarray(value, dtype=float)
    )
    if arr.shape != (post.n_patients,) or not np.isfinite(arr).all():
        raise ValueError(
            f"recommend({name}=...) must be one finite number or one per patient "
            f"({post.n_patients}); got shape {arr.shape}."
        )
    return arr


def recommend(
    posterior: EffectPosterior,
    threshold: float = 0.0,
    level: float = 0.8,
    *,
    cost: Any = None,
    harm: Any = None,
    higher_is_better: bool = True,
    prob: float = 0.95,
    value: bool | None = None,
) -> Recommendation:
    """Treat or not, patient by patient, and the posterior of the policy's value.

    Parameters
    ----------
    posterior : EffectPosterior
        Per-patient effects (``est.effect()``).
    threshold : float
        A clinically meaningful effect: the probability rule treats when
        ``P(effect > threshold) > level`` (``<`` when lower is better).
    level : float
        In (0, 1).
    cost, harm : float or per-patient array/Series, optional
        Either one switches to the expected-utility rule: treat when the posterior mean of
        ``benefit - cost - harm * 1[effect on the harmful side]`` is positive, where
        ``benefit`` is the effect (its negative when lower is better); in the effect's units.
    higher_is_better : bool
    prob : float
        Level of the value's intervals.
    value : bool, optional
        Compute the policy's value. None: where the draws are joint (not for a normal
        approximation); True: always, raising for a normal approximation.

    Returns
    -------
    Recommendation
    """
    if not isinstance(posterior, EffectPosterior) or posterior.n_patients == 0:
        what = "a population average"
        if not isinstance(posterior, EffectPosterior):
            what = type(posterior).__name__
        raise TypeError(
            "recommend(posterior=...) takes a per-patient EffectPosterior (est.effect()); "
            f"got {what}."
        )
    threshold = _real("threshold", threshold)
    level = _real("level", level, 0.0, 1.0)
    prob = _real("prob", prob, 0.0, 1.0)
    if not isinstance(higher_is_better, bool | np.bool_):
        raise TypeError(
            f"recommend(higher_is_better=...) must be a bool; got {higher_is_better!r}."
        )
    costs, harms = _per_patient("cost", cost, posterior), _per_patient("harm", harm, posterior)
    sign = 1.0 if higher_is_better else -1.0
    draws = posterior.draws()  # (chain, draw, patient)
    benefit = sign * draws
    utility = benefit - costs - harms * (benefit < 0)
    p_benefit = posterior.prob_benefit(threshold, higher_is_better).to_numpy()
    expected = utility.mean(axis=(0, 1))
    if cost is None and harm is None:
        treat = p_benefit > level
        side = ">" if higher_is_better else "<"
        rule = f"probability: treat when P(effect {side} {threshold:g}) > {level:g}"
    else:
        treat = expected > 0
        rule = "expected_utility: treat when E[benefit - cost - harm] > 0"
    decisions = pd.DataFrame(
        {"mean": posterior.mean().to_numpy(), "prob_benefit": p_benefit,
         "expected_utility": expected, "treat": treat},
        index=posterior.patient_ids,
    )  # fmt: skip
    joint = posterior.attrs.get("inference") != "normal_approximation"
    if value is None:
        value = joint
    if not value:
        note = (
            "no policy value: this posterior's draws are independent from patient to "
            "patient (a normal approximation), so a value's interval would be too narrow."
        )
        return Recommendation(decisions, None, None, rule, note if not joint else "")
    posterior.average()  # the library's one refusal of averages over a normal approximation
    n = posterior.n_patients
    values = np.stack([utility[:, :, treat].sum(axis=2) / n, utility.mean(axis=2),
                       np.zeros(utility.shape[:2])], axis=-1)  # fmt: skip
    tail = (1 - prob) / 2
    flat = values.reshape(-1, 3)
    better = (flat[:, :1] > flat).mean(axis=0)
    table = pd.DataFrame(
        {"mean": flat.mean(axis=0), "lower": np.quantile(flat, tail, axis=0),
         "upper": np.quantile(flat, 1 - tail, axis=0), "prob_policy_better": better},
        index=pd.Index(["policy", "treat_all", "treat_none"], name="rule"),
    )  # fmt: skip
    table.loc["policy", "prob_policy_better"] = np.nan
    return Recommendation(decisions, table, values, rule)
