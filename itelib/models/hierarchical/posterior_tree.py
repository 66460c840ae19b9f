"""The hierarchical model's draws as an ArviZ DataTree, checked for non-finite values."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from itelib.data import TrialData
from itelib.models.hierarchical.features import FeatureMap

__all__ = ["check_finite", "posterior_tree"]


def check_finite(params: dict[str, np.ndarray]) -> None:
    bad = [k for k, v in params.items() if not np.all(np.isfinite(v))]
    if bad:
        raise FloatingPointError(
            f"the sampler returned non-finite draws for {bad}. This usually means extreme "
            "covariate values or an outcome on a wildly different scale; check the inputs."
        )


def posterior_tree(
    result: Any,
    data: TrialData,
    features: FeatureMap,
    names: tuple[str, ...],
    losses: np.ndarray | None = None,
) -> Any:
    """ArviZ DataTree of the model parameters and sampler statistics (MCMC) or the loss trace
    (SVI: group ``variational``, ``loss`` over ``step``)."""
    import arviz_base

    dims = {"beta": ["feature"], "site_intercept_z": ["site"], "site_effect_z": ["site"]}
    dims |= {k: ["modifier"] for k in ("gamma", "gamma_z", "hs_local_a", "hs_local_b")}
    dims |= {"smooth_amplitude": ["smooth"], "smooth_lengthscale": ["smooth"]}
    dims |= {"smooth_z": ["smooth", "basis"], "smooth_coef": ["smooth_basis"]}
    dims |= {f"effect_smooth_{k}": ["effect_smooth"] for k in ("amplitude", "lengthscale")}
    dims |= {"effect_smooth_z": ["effect_smooth", "basis"]}
    dims |= {"effect_smooth_coef": ["effect_smooth_basis"]}
    coords = {
        "feature": list(names),
        "modifier": list(features.modifier_names(names[: data.p])),
        "smooth": [names[j] for j in features.smooth],
        "effect_smooth": [names[j] for j in features.effect_smooth],
    }
    if data.site_index is not None:
        coords["site"] = [str(s) for s in data.site_index.levels]
    params = {k: v for k, v in result.params.items() if k != "y"}
    groups = {"posterior": params} | ({"sample_stats": result.stats} if result.stats else {})
    tree = arviz_base.from_dict(
        groups, dims={k: v for k, v in dims.items() if k in params}, coords=coords
    )
    if losses is not None:
        tree["variational"] = xr.DataTree(xr.Dataset({"loss": ("step", losses)}))
    return tree
