"""The coordinator: :meth:`HierarchicalITE.fit_summaries <itelib.HierarchicalITE.fit_summaries>`.

The summaries' cross-products go through the same function as a fit on rows
(:func:`~itelib.models.hierarchical.design.gaussian_data`), so the model's arrays, and with
the same seed the draws, are those of the pooled fit up to the last bits of rounding of the
agreed standardization. No patient row is read: the fitted estimator holds the posterior
(coefficients and scales), the encoder and the site index, and gives
``effect(X_site, site=label)`` for any site's own patients.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from itelib import _params
from itelib.data import SiteIndex, TrialData
from itelib.estimators.base import resolve_seed
from itelib.estimators.fitted import record_fit
from itelib.exceptions import DataValidationError
from itelib.federated.disclosure import check_cell
from itelib.federated.summary import MIN_PER_COLUMN, SiteSummary, check_disclosure, read_summary
from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.design import choose_likelihood, gaussian_data, horseshoe_scale
from itelib.models.hierarchical.priors import HierarchicalPriors

__all__ = ["fit_from_summaries", "summaries_model"]


def _load(summaries: Any) -> list[SiteSummary]:
    if isinstance(summaries, SiteSummary | str | os.PathLike):
        summaries = [summaries]
    if not isinstance(summaries, Sequence) or not summaries:
        raise TypeError("fit_summaries() needs a list of site summaries (paths or SiteSummary).")
    return [s if isinstance(s, SiteSummary) else read_summary(s) for s in summaries]


def _check_options(est: Any) -> str:
    """The estimator's options a fit from summaries can honour; returns the likelihood."""
    name = type(est).__name__
    est._validated_options(None)
    if est.prognostic_score:
        raise ValueError(
            f"{name}(prognostic_score=True) needs the patients' rows: the score is cross-fitted "
            "per patient by gradient-boosted trees. Pass prognostic_score=False to fit from "
            "site summaries (the smooth prognosis, prognosis='additive', carries the "
            "nonlinearity instead)."
        )
    if est.outcome == "binary":
        raise ValueError(
            f"{name}(outcome='binary') has no exact fit from summaries: the Bernoulli "
            "likelihood needs every row. Fit a continuous outcome, or pool the rows."
        )
    if est.inference != "nuts" or est.backend != "numpyro":
        raise ValueError(f"{name}.fit_summaries runs NUTS on the NumPyro model only.")
    likelihood = choose_likelihood(est.likelihood, "continuous", est.backend)
    if likelihood == "rows":
        raise ValueError(f'{name}(likelihood="rows") sums over rows; use "auto".')
    return likelihood


def _check_outcome(est: Any, agreement: Any) -> None:
    """A 0/1 outcome is binary for ``outcome="auto"`` in a fit on rows: refused here rather
    than silently fitted as continuous."""
    values = agreement.outcome_values
    if est.outcome == "auto" and values is not None and set(values) <= {0.0, 1.0}:
        name = type(est).__name__
        raise DataValidationError(
            f"outcome '{agreement.spec.outcome}' is 0/1: {name}(outcome='auto') would fit it "
            "with the Bernoulli likelihood on rows, which has no exact fit from summaries. "
            f"Fix: {name}(outcome='continuous') if a linear probability model is meant, or "
            "pool the rows for the binary model."
        )


def _check_spec(est: Any, spec: Any) -> None:
    """The estimator's model options must be those the sites computed their columns for."""
    name = type(est).__name__
    wanted = {"prognosis": spec.prognosis, "effect_modifiers": spec.effect_modifiers,
              "n_basis": spec.n_basis, "treatment_coding": spec.treatment_coding}  # fmt: skip
    for option, value in wanted.items():
        if getattr(est, option) != value:
            raise ValueError(
                f"the summaries were computed for {option}={value!r}; {name} has "
                f"{option}={getattr(est, option)!r}. Fix: {name}({option}={value!r}) (the sites' "
                "columns are fixed by the FederatedSpec)."
            )


def _check_level_cells(agreement: Any, label: Any, gram: np.ndarray, n: int, n_treated: int,
                       effect: int) -> None:  # fmt: skip
    """The coordinator's check of every categorical level's cells per arm, read back from the
    indicator columns' sums (``x = scale * x_std + center``)."""
    enc, ct = agreement.encoder, agreement.treatment_centre
    for col, levels in enc.categorical.items():
        idx = [enc.feature_names.index(f"{col}[{lv}]") for lv in levels[1:]]
        total = [enc.scale[j] * gram[0, 1 + j] + n * enc.center[j] for j in idx]
        treated = [enc.scale[j] * (gram[effect, 1 + j] + ct * gram[0, 1 + j])
                   + n_treated * enc.center[j] for j in idx]  # fmt: skip
        for arm, n_arm, counts in (
            ("treated", n_treated, [round(float(k)) for k in treated]),
            (
                "control",
                n - n_treated,
                [round(float(a - b)) for a, b in zip(total, treated, strict=True)],
            ),
        ):
            for lv, k in zip(levels, [n_arm - sum(counts), *counts], strict=True):
                check_cell(label, f"{col}={lv!r}", arm, k, n_arm)


def _check_counts(agreement: Any, summary: SiteSummary, i: int, label: Any) -> None:
    """A file's counts must be the first round's, and (without noise) its intercept's sum."""
    counts = {"n": int(summary.n[i]), "n_treated": int(summary.n_treated[i])}
    first = agreement.sites.get(label)
    if first is not None and first != counts:
        raise ValueError(
            f"site {label!r}'s summary counts {counts} patients; the agreement {first}: the "
            "data changed between rounds. Fix: rerun both rounds on the same rows."
        )
    if summary.privacy is None and abs(float(summary.grams[i, 0, 0]) - counts["n"]) > 1e-6:
        raise ValueError(
            f"site {label!r}'s summary counts {counts['n']} patients but its cross-products "
            f"sum {summary.grams[i, 0, 0]!r} rows: the file is inconsistent. Fix: recompute it "
            "with site_summary."
        )


def _check_privacy(loaded: list[SiteSummary]) -> None:
    """Summaries with and without noise are not mixed."""
    noisy = [s.privacy is not None for s in loaded]
    if any(noisy) and not all(noisy):
        raise ValueError(
            "some site summaries were computed with privacy (noisy cross-products) and some "
            "without: the fit would treat them alike. Fix: compute every site's summary with "
            "one setting."
        )


def _privacy_record(loaded: list[SiteSummary]) -> dict[Any, dict[str, float]] | None:
    """Site label -> its privacy setting (epsilon, delta, clip, sigma); None without noise."""
    if loaded[0].privacy is None:
        return None
    return {label: dict(s.privacy) for s in loaded for label in s.labels}


def summaries_model(est: Any, summaries: Any, min_per_column: int | None = None) -> tuple:
    """(agreement, ModelSpec, ModelData) of a fit from summaries, checked."""
    likelihood = _check_options(est)
    loaded = _load(summaries)
    agreement = loaded[0].agreement
    for s in loaded[1:]:
        if s.agreement.id != agreement.id:
            raise ValueError(
                "the summaries were computed under different agreements (first rounds); "
                "every site must encode with the one agreement from agree()."
            )
    _check_spec(est, agreement.spec)
    _check_outcome(est, agreement)
    rule = MIN_PER_COLUMN if min_per_column is None else min_per_column
    rule = _params.check_int(type(est).__name__, "min_per_column", rule, minimum=1)
    by_label: dict[Any, tuple] = {}
    _check_privacy(loaded)
    for s in loaded:
        for i, label in enumerate(s.labels):
            if label not in agreement.sites:
                raise ValueError(
                    f"a summary holds site {label!r}, which is not in the agreement (no "
                    f"first-round moments; agreed sites {list(agreement.sites)}). Fix: rerun the "
                    "first round with this site, or leave its summary out."
                )
            if label in by_label:
                raise ValueError(f"site {label!r} has more than one summary.")
            check_disclosure(label, int(s.n[i]), int(s.n_treated[i]), s.grams.shape[1], rule)
            if s.privacy is None:  # noisy sums cannot be read back into counts
                effect = (
                    1
                    + len(agreement.encoder.feature_names)
                    + len(agreement.features.smooth) * agreement.features.n_basis
                )
                _check_level_cells(agreement, label, s.grams[i], int(s.n[i]),
                                   int(s.n_treated[i]), effect)  # fmt: skip
            _check_counts(agreement, s, i, label)
            by_label[label] = (s.grams[i], int(s.n[i]), int(s.n_treated[i]))
    missing = [label for label in agreement.sites if label not in by_label]
    if missing:
        raise ValueError(
            f"no summary for sites {missing}, which took part in the first round: fit with "
            "every site's summary, or rerun the first round without them."
        )
    grams = np.stack([by_label[label][0] for label in agreement.sites])
    features = agreement.features
    p = agreement.encoder.n_features
    priors = est.priors if est.priors is not None else HierarchicalPriors()
    spec = m.ModelSpec(
        p=p, n_sites=len(agreement.sites), priors=priors, likelihood=likelihood,
        outcome="continuous", q=p, n_smooth=len(features.smooth), n_basis=features.n_basis,
        n_effect_smooth=len(features.effect_smooth),
    )  # fmt: skip
    n = agreement.n
    effect = 1 + spec.p + spec.n_smooth * spec.n_basis
    mean_square_t = float(grams[:, effect, effect].sum()) / n
    scale = np.asarray(horseshoe_scale(spec, n, mean_square_t))
    return agreement, spec, gaussian_data(spec, grams, scale, features, n)


def _rowless_data(agreement: Any) -> TrialData:
    """The fitted ``data_``: the encoder and the site index, no patient."""
    spec, p = agreement.spec, agreement.encoder.n_features
    return TrialData(
        np.zeros(0), np.zeros(0), np.zeros((0, p)), np.zeros(0, np.int32), pd.RangeIndex(0),
        agreement.encoder, SiteIndex(spec.site, tuple(agreement.sites)), spec.outcome,
        spec.treatment, agreement.treatment_labels,
    )  # fmt: skip


def fit_from_summaries(est: Any, summaries: Any, *, min_per_column: int | None = None) -> Any:
    """See :meth:`HierarchicalITE.fit_summaries <itelib.HierarchicalITE.fit_summaries>`."""
    loaded = _load(summaries)
    agreement, spec, arrays = summaries_model(est, loaded, min_per_column)
    privacy = _privacy_record(loaded)
    if privacy is not None:
        warnings.warn(
            "fitting noisy (differentially private) site summaries as if exact: the posterior "
            "intervals are not calibrated (95 % intervals covered 0.14-0.36 of true effects at "
            "epsilon 10-30 in benchmarks/federated_privacy.py). Experimental; do not report "
            "them as 95 % intervals.",
            UserWarning,
            stacklevel=3,
        )
    seed = resolve_seed(est.random_state)
    data = _rowless_data(agreement)
    y_scaling = (agreement.outcome_center, agreement.outcome_scale)
    state = {"prognostic_score_": None, "covariate_range_": agreement.covariate_range}
    fit = est._sampled_fit(seed, arrays, spec, data, agreement.features, data.feature_names,
                           y_scaling, state)  # fmt: skip
    for stale in ("imputations_", "imputation_", "new_patient_imputer_"):
        est.__dict__.pop(stale, None)
    record_fit(est, data=data, outcome="continuous", random_state=seed, propensity=None, fit=fit)
    est.diagnostics_ = est._diagnose()
    if est.diagnostics_ is not None:
        est.diagnostics_.warn(advice=est._convergence_advice(None), stacklevel=3)
    est.model_check_ = None  # the residual check needs the rows
    est.privacy_ = privacy  # site label -> epsilon, delta, clip, sigma; None: exact summaries
    return est
