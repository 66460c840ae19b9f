"""The one rule for sites a model never saw: a fresh draw from the population of sites.

A patient at an unseen site (or with no site, when the model has sites) gets site terms drawn
per posterior draw from N(0, sd^2), with the model's own between-site sd, so the between-site
uncertainty shows in the interval. Patients who share an unseen label share one fresh site.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd

__all__ = ["UnseenSites", "unseen_sites"]

_FRESH_SITE_KEY = 1  # folded into the fit's seed: the stream of fresh sites


class UnseenSites(NamedTuple):
    unseen: np.ndarray  # bool (m,): the patient's site is not one of the training sites
    fresh_index: np.ndarray  # (number unseen,): which fresh site each unseen patient is at
    n_fresh: int
    normals: jax.Array  # (n_draws, n_fresh, 2) standard normals: intercept, effect


def unseen_sites(codes: np.ndarray, labels: Any, n_draws: int, seed: int) -> UnseenSites:
    """Fresh sites for the patients whose site code is negative (unseen).

    ``labels``: the site labels the user passed (one fresh site per distinct unseen label; one
    label: every patient's), or None (every unseen patient at one fresh site). The normals
    depend only on ``seed`` and their shape, so the same request gives the same draws.
    """
    unseen = np.asarray(codes) < 0
    if labels is not None and np.ndim(labels) == 0:  # one label for every patient
        labels = [labels] * len(unseen)
    if labels is None:
        fresh_index = np.zeros(int(unseen.sum()), np.int64)
    else:
        fresh_index, _ = pd.factorize(pd.Series(np.asarray(labels, dtype=object))[unseen])
    n_fresh = int(fresh_index.max()) + 1 if unseen.any() else 0
    key = jax.random.fold_in(jax.random.key(seed), _FRESH_SITE_KEY)
    normals = jax.random.normal(key, (n_draws, n_fresh, 2))
    return UnseenSites(unseen, np.asarray(fresh_index), n_fresh, normals)
