"""Site labels: the training sites of a trial and the codes of new patients' sites.

A :class:`SiteIndex` keeps the training sites in their declared order, codes new patients' sites
against them (unseen sites allowed only when asked), refuses labels of another kind (numbers
against text) and warns when an unseen label differs from a training one only by case or spaces.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from itelib import _validation as v
from itelib.exceptions import DataValidationError, DataWarning

__all__ = ["SiteIndex"]


def _label_kind(label: Any) -> str:
    if isinstance(label, str):
        return "text"
    if isinstance(label, int | float | np.integer | np.floating) and not isinstance(
        label, bool | np.bool_
    ):
        return "numbers"
    return "other"


@dataclass(frozen=True)
class SiteIndex:
    """Site labels seen in training and their integer codes.

    Attributes
    ----------
    name : str
        Name of the site column or argument.
    levels : tuple
        Training site labels, sorted (by ``repr`` when types are mixed); code ``i`` is
        ``levels[i]``.
    """

    name: str
    levels: tuple

    def __post_init__(self) -> None:
        levels = tuple(v.to_native(x) for x in self.levels)
        if not levels or len(set(levels)) != len(levels):
            raise DataValidationError(
                f"SiteIndex '{self.name}': levels must be non-empty and unique; received "
                f"{v.format_values(levels)}. Fix: build it with SiteIndex.fit."
            )
        object.__setattr__(self, "levels", levels)

    @property
    def n_sites(self) -> int:
        """Number of training sites."""
        return len(self.levels)

    @classmethod
    def fit(cls, site: Any, *, name: str | None = None) -> SiteIndex:
        """Learn the site labels from training data (Series or 1-d array, no missing)."""
        series, default, _ = v.as_series(site, argument="site")
        name = default if name is None else name
        v.check_nonempty(len(series), argument=f"site '{name}'")
        v.check_no_missing(series, label=f"site '{name}'")
        return cls(name, v.sorted_levels(series.drop_duplicates()))

    def codes(self, site: Any, *, allow_new: bool) -> np.ndarray:
        """Integer codes of site labels.

        Parameters
        ----------
        site : pandas.Series or 1-d array
            Site labels, no missing values.
        allow_new : bool
            Code unseen sites as ``-1`` (population level) instead of raising.

        Returns
        -------
        numpy.ndarray
            int32 codes in ``0 .. n_sites - 1``, or ``-1``.
        """
        series, _, _ = v.as_series(site, argument="site")
        self._check_label_kind(series)
        fix = "pass allow_new_sites=True to predict them at the population level, or correct "
        fix += "the site labels."
        label = f"site '{self.name}'"
        codes = v.check_known_levels(series, self.levels, label=label, fix=fix, allow_new=allow_new)
        if (codes < 0).any():
            self._warn_near_matches(series[codes < 0])
        return codes.astype(np.int32)

    def _check_label_kind(self, series: pd.Series) -> None:
        """Numbers against text sites (or text against number sites) are refused: ``site=[1,
        2]`` for sites trained as ``"1"``, ``"2"`` (a CSV read as text, say) would match none,
        and every patient would silently get the population-level effect of an unseen site.
        Refused rather than matched by ``str()``: ``1`` might mean ``"1"`` or ``"clinic_1"``
        or a new site, and only the user knows which; the fix is one ``astype``."""
        trained = {_label_kind(level) for level in self.levels} - {"other"}
        given = {_label_kind(label) for label in series.drop_duplicates()} - {"other"}
        if len(trained) != 1 or not given or given & trained:
            return
        (was,) = trained
        labels = list(series.drop_duplicates())
        matches = [label for label in labels if str(label) in map(str, self.levels)]
        hint = (
            f" Fix: if {v.format_values(matches)} are the training sites "
            f"{v.format_values([str(m) for m in matches])}, pass "
            f"site=site.astype({'str' if was == 'text' else 'int'}); else the training labels."
            if matches
            else f" Fix: pass the training labels ({was})."
        )
        raise DataValidationError(
            f"site '{self.name}': the new patients' sites {v.format_values(labels)} are "
            f"{given.pop()} but the training sites {v.format_values(list(self.levels))} are "
            f"{was}: none would match, and every patient would get the population-level effect "
            f"of an unseen site.{hint}"
        )

    def _warn_near_matches(self, unseen: pd.Series) -> None:
        """An unseen label equal to a training site but for case or spaces is likely a typo:
        say so, rather than silently predicting at the population level."""
        known = {_loose(level): level for level in self.levels if isinstance(level, str)}
        near = {
            label: known[_loose(label)]
            for label in unseen.drop_duplicates()
            if isinstance(label, str) and _loose(label) in known
        }
        if near:
            pairs = ", ".join(f"{a!r} (training site {b!r})" for a, b in near.items())
            warnings.warn(
                f"site '{self.name}': {pairs} differ from a training site only in case or "
                "spaces; they are predicted as unseen sites (the population-level effect, with "
                "the between-site uncertainty). Fix: pass the training label if it is the same "
                "site.",
                DataWarning,
                stacklevel=5,
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description; :meth:`from_dict` rebuilds an equal index."""
        return {"name": self.name, "levels": list(self.levels)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SiteIndex:
        """Rebuild a site index from :meth:`to_dict` output."""
        v.require_keys(d, ("name", "levels"), what="SiteIndex")
        return cls(d["name"], tuple(d["levels"]))


def _loose(label: str) -> str:
    """A site label compared without case and spaces (``" Clinic_A"`` ~ ``"clinic_A"``)."""
    return "".join(label.split()).casefold()
