"""HierarchicalITE's effects of a survival outcome, per patient and per draw.

The model is an accelerated-failure-time model on standardized log time (see
:func:`~itelib.models.hierarchical.model.hierarchical_model`): ``(log T - c) / s = eta + sigma
* eps`` with ``c, s`` = ``outcome_center_, outcome_scale_``. Un-standardized, a patient's
location is ``c + s * (prognosis - k * effect)`` untreated and ``c + s * (prognosis + (1 - k) *
effect)`` treated, ``k`` the constant subtracted from the treatment (``survival_centre_``), the
scale ``s * sigma``; :func:`~itelib.models.survival.scales.effect_scales` turns them, draw by
draw, into the difference in RMST up to ``horizon_`` (``scale="rmst"``), in survival probability
at a time (``"survival@t"``, see :func:`itelib.survival_outcome.scale_key`) or the time ratio
``exp(s * effect)`` (``"time_ratio"``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from itelib import _params
from itelib.models.hierarchical import model as m
from itelib.models.survival.scales import effect_on_scale
from itelib.survival_outcome import parse_scale

__all__ = ["check_survival_options", "needs_prognosis", "survival_chunk"]


def check_survival_options(est: Any, name: str) -> None:
    """``outcome="survival"``'s own options, and the ones it refuses, before any data."""
    _params.check_choice(name, "survival_family", est.survival_family, ("weibull", "lognormal"))
    if est.horizon is not None:
        _params.check_real(name, "horizon", est.horizon, low=0.0, high=np.inf)
    refusals = {
        "backend": (est.backend == "pymc", 'backend="numpyro"'),
        "inference": (est.inference == "svi", 'inference="nuts"'),
    }
    for option, (refused, fix) in refusals.items():
        if refused:
            raise ValueError(
                f'{name}(outcome="survival", {option}={getattr(est, option)!r}) is not '
                "supported: survival outcomes are fitted by the NumPyro model with NUTS on "
                f"complete rows. Fix: {fix}."
            )


def needs_prognosis(scale: str) -> bool:
    """RMST and survival differences depend on the patient's untreated location too."""
    return parse_scale(scale)[0] in ("rmst", "survival")


def survival_chunk(est: Any, params: dict, feats: dict, codes: jax.Array, fresh: Any,
                   scale: str) -> jax.Array:  # fmt: skip
    """(draws, m) effects on a survival ``scale`` for one padded chunk of patients."""
    name, time = parse_scale(scale)
    horizon = est.horizon_
    constants = jnp.asarray([
        est.outcome_center_, est.outcome_scale_, horizon, time or horizon, est.survival_centre_
    ])  # fmt: skip
    return _survival_jit(params, feats, codes, fresh, constants, name,
                         est.model_spec_.survival_family)  # fmt: skip


@partial(jax.jit, static_argnames=("name", "family"))
def _survival_jit(
    params: dict, feats: dict, codes: jax.Array, fresh: Any, constants: jax.Array, name: str,
    family: str,
) -> jax.Array:  # fmt: skip
    centre, unit, horizon, t_eval, t_centre = (constants[i] for i in range(5))
    effect = m.effect_draws(
        params, feats["X"], codes, fresh, feats["modifiers"], feats.get("effect_basis")
    )
    prognosis = 0.0  # the time ratio needs none
    if name != "time_ratio":  # the model's eta is prognosis + (t - t_centre) * effect
        prognosis = m.prognosis_draws(params, feats["X"], codes, fresh, basis=feats.get("basis"))
        prognosis = prognosis - t_centre * effect
    return effect_on_scale(
        name, centre + unit * prognosis, unit * effect, (unit * params["sigma"])[:, None],
        family, horizon, t_eval,
    )  # fmt: skip
