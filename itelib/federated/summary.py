"""The second round, at a site: the cross-products of the continuous model's design.

Under an :class:`~itelib.federated.agreement.Agreement` a site encodes its rows exactly as a
pooled fit would, builds the design ``d_i = [1, x_i, phi_i, t_i, t_i·z_i, t_i·psi_i]`` of
:mod:`itelib.models.hierarchical.design` and the outcome, and sends each of its sites'
``[D_s, y_s]' [D_s, y_s]`` with the counts: all the Gaussian likelihood needs, and no row.
The file is a framed netCDF4 file (:mod:`itelib._io`: header, SHA-256, atomic write) whose
every dimension is a site or a design column, with the agreement and the format version as
JSON in its attributes.

**Minimum size.** A site with fewer than :data:`MIN_PER_COLUMN` (3) patients per summary
column, fewer than :data:`MIN_CELL` (3) patients in an arm, or a categorical level (a 0/1
column) held by 1 or 2 patients of an arm or by all but 1 or 2 of them
(:mod:`itelib.federated.disclosure`), is refused at the site and at the coordinator
(DataSHIELD's defaults ``nfilter.glm = 0.33`` and ``nfilter.tab = 3``; see
``docs/decisions.md``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from itelib import _io, _params
from itelib import _validation as v
from itelib.exceptions import DisclosureError
from itelib.federated.agreement import (
    FORMAT_VERSION,
    Agreement,
    check_cells,
    site_frame,
    validated,
)
from itelib.federated.disclosure import MIN_CELL
from itelib.models.hierarchical import model as m
from itelib.models.hierarchical.design import gaussian_rows

__all__ = [
    "MIN_CELL",
    "MIN_PER_COLUMN",
    "SiteSummary",
    "check_disclosure",
    "column_names",
    "encoded_design",
    "read_summary",
    "site_summary",
    "write_summary",
]

# A site needs at least 3 patients per column of its cross-products (DataSHIELD's nfilter.glm
# = 0.33: parameters at most a third of n) and 3 patients per arm (nfilter.tab = 3).
MIN_PER_COLUMN = 3


@dataclass(frozen=True)
class SiteSummary:
    """One site file's second-round message.

    Attributes
    ----------
    agreement : Agreement
        The agreement it was computed under.
    labels : tuple
        Its sites' labels.
    n, n_treated : numpy.ndarray
        (S,) patients and treated patients per site.
    grams : numpy.ndarray
        (S, K + 1, K + 1) each site's ``[D_s, y_s]' [D_s, y_s]``, the outcome last.
    columns : tuple of str
        The K + 1 column names.
    """

    agreement: Agreement
    labels: tuple
    n: np.ndarray
    n_treated: np.ndarray
    grams: np.ndarray
    columns: tuple[str, ...]
    privacy: dict[str, float] | None = None  # epsilon, delta, clip, sigma: noisy grams

    def to_datatree(self) -> xr.DataTree:
        """The file's content: every dimension a site or a design column, never a patient."""
        ds = xr.Dataset(
            {
                "gram": (("site", "column", "column_b"), self.grams),
                "n": ("site", np.asarray(self.n, np.int64)),
                "n_treated": ("site", np.asarray(self.n_treated, np.int64)),
            },
            coords={"column": list(self.columns), "column_b": list(self.columns)},
        )
        header = {
            "format_version": FORMAT_VERSION,
            "agreement": self.agreement.to_dict(),
            "labels": [v.to_native(x) for x in self.labels],
            "privacy": self.privacy,
        }
        ds.attrs["itelib_site_summary"] = json.dumps(header, sort_keys=True, allow_nan=False)
        return xr.DataTree(ds)

    @classmethod
    def from_datatree(cls, tree: Any, *, source: str = "summary") -> SiteSummary:
        ds = tree.to_dataset()
        if "itelib_site_summary" not in ds.attrs:
            raise ValueError(f"{source} is not an itelib site summary (no header).")
        header = json.loads(ds.attrs["itelib_site_summary"])
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source} has site-summary format version {header.get('format_version')!r}; "
                f"this itelib reads version {FORMAT_VERSION}. Fix: compute every summary with "
                "one itelib version."
            )
        return cls(
            Agreement.from_dict(header["agreement"]), tuple(header["labels"]),
            ds["n"].values, ds["n_treated"].values, ds["gram"].values.astype(np.float64),
            tuple(str(c) for c in ds["column"].values), header.get("privacy"),
        )  # fmt: skip


def column_names(agreement: Agreement) -> tuple[str, ...]:
    f, names = agreement.features, agreement.encoder.feature_names
    basis = [f"{names[j]}~phi{k}" for j in f.smooth for k in range(1, f.n_basis + 1)]
    effect = [f"t*{names[j]}~psi{k}" for j in f.effect_smooth for k in range(1, f.n_basis + 1)]
    outcome = agreement.spec.outcome
    return ("1", *names, *basis, "t", *(f"t*{x}" for x in names), *effect, outcome)


def check_disclosure(label: Any, n: int, n_treated: int, n_columns: int,
                     min_per_column: int = MIN_PER_COLUMN) -> None:  # fmt: skip
    """Refuse a site too small to summarize: fewer than ``min_per_column`` patients per
    summary column, or fewer than :data:`MIN_CELL` patients in an arm."""
    need = min_per_column * n_columns
    rule = ", DataSHIELD's rule" if min_per_column == MIN_PER_COLUMN else ""
    if n < need:
        raise DisclosureError(
            f"site {label!r} has {n} patients; a summary of {n_columns} columns needs at least "
            f"{need} ({min_per_column} per column{rule}): with fewer, its "
            "cross-products come too close to its patients' rows. Fix: merge it with another "
            "site, or use fewer columns (prognosis='linear', fewer covariates or n_basis)."
        )
    for arm, count in (("treated", n_treated), ("control", n - n_treated)):
        if count < MIN_CELL:
            raise DisclosureError(
                f"site {label!r} has {count} {arm} patient(s); each arm needs at least "
                f"{MIN_CELL} (a smaller cell would disclose those patients' outcomes). Fix: "
                "merge it with another site."
            )


def _column_bounds(agreement: Agreement, clip: float) -> np.ndarray:
    """``|d_j| <= bound_j`` for every column of ``[D, y]`` once x and y are clipped to
    ``[-clip, clip]`` (a sine basis function on ``[-L, L]`` is at most ``sqrt(1 / L)``)."""
    f, p, c = agreement.features, agreement.encoder.n_features, agreement.treatment_centre
    arm = max(c, 1 - c)
    basis = [np.sqrt(1 / f.boundary[i]) for i in range(len(f.smooth)) for _ in range(f.n_basis)]
    effect = [arm * np.sqrt(1 / f.effect_boundary[i])
              for i in range(len(f.effect_smooth)) for _ in range(f.n_basis)]  # fmt: skip
    return np.array([1.0, *[clip] * p, *basis, arm, *[arm * clip] * p, *effect, clip])


def encoded_design(frame: Any, checked: Any, agreement: Agreement,
                   clip: float | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Validated rows encoded under the agreement, exactly as the pooled fit encodes them: the
    design ``[1, x, phi, t, t·z, t·psi]`` and the standardized outcome (clipped to ``[-clip,
    clip]`` with x before the design, for the privacy mode)."""
    if checked.treatment_labels != agreement.treatment_labels:
        raise ValueError(
            f"these rows code the treatment as {checked.treatment_labels}; the agreement as "
            f"{agreement.treatment_labels}."
        )
    unknown = [x for x in checked.site_index.levels if x not in agreement.sites]
    if unknown:
        raise ValueError(f"sites {unknown} are not in the agreement (no first-round moments).")
    X = agreement.encoder.transform(frame[list(agreement.spec.covariates)])
    y = (checked.y - agreement.outcome_center) / agreement.outcome_scale
    if clip is not None:
        X, y = np.clip(X, -clip, clip), np.clip(y, -clip, clip)
    t = checked.t - agreement.treatment_centre
    return gaussian_rows(y, t, X, agreement.features), y


def site_summary(
    data: Any,
    agreement: Agreement,
    *,
    min_per_column: int = MIN_PER_COLUMN,
    privacy: Any = None,
    rng: np.random.Generator | None = None,
) -> SiteSummary:
    """Second round, at a site: counts and the cross-products of the model's design.

    Parameters
    ----------
    data : pandas.DataFrame or (Y, T, X, site)
        The site's own rows (the same as in the first round).
    agreement : Agreement
        From :func:`~itelib.federated.agree`.
    min_per_column : int
        Patients needed per summary column (default 3; see the module docstring).
    privacy : itelib.federated.privacy.PrivacyBudget, optional
        Experimental: clip and add Gaussian noise for (epsilon, delta)-differential privacy
        of the cross-products (:mod:`itelib.federated.privacy`, which says what it does not
        cover). The fit treats the noisy matrices as exact.
    rng : numpy.random.Generator, optional
        The noise's generator. None: fresh entropy from the operating system, on purpose (a
        fixed default seed would let anyone recompute, and remove, the noise).

    Returns
    -------
    SiteSummary
        Write it with :func:`write_summary`.

    Raises
    ------
    DisclosureError
        A site below the minimum size.
    """
    min_per_column = _params.check_int("site_summary", "min_per_column", min_per_column,
                                       minimum=1)  # fmt: skip
    frame = site_frame(data, agreement.spec)
    checked = validated(frame, agreement.spec)  # the pooled fit's checks, on this site's rows
    clip = None if privacy is None else privacy.clip
    design, y = encoded_design(frame, checked, agreement, clip=clip)
    labels = checked.site_index.levels
    n = np.array([int(np.sum(checked.site == s)) for s in range(len(labels))])
    n_treated = np.array([int(checked.t[checked.site == s].sum()) for s in range(len(labels))])
    for label, n_s, nt_s in zip(labels, n, n_treated, strict=True):
        if agreement.sites[label] != {"n": int(n_s), "n_treated": int(nt_s)}:
            raise ValueError(
                f"site {label!r} has {n_s} patients ({nt_s} treated) now, "
                f"{agreement.sites[label]} in the first round: the data changed between rounds."
            )
        check_disclosure(label, int(n_s), int(nt_s), design.shape[1] + 1, min_per_column)
    check_cells(frame, checked, agreement.spec)
    grams = m.site_grams(design, y, checked.site, len(labels))
    released = None
    if privacy is not None:
        from itelib.federated.privacy import privatize, row_bound

        bound = row_bound(_column_bounds(agreement, privacy.clip))
        rng = np.random.default_rng() if rng is None else rng
        grams, sigma = privatize(grams, bound, privacy, rng)
        released = {"epsilon": privacy.epsilon, "delta": privacy.delta, "clip": privacy.clip,
                    "sigma": sigma}  # fmt: skip
    return SiteSummary(agreement, tuple(labels), n, n_treated, grams, column_names(agreement),
                       released)  # fmt: skip


def write_summary(summary: SiteSummary, path: str | os.PathLike[str]) -> Path:
    """Write a site summary as a framed netCDF4 file (atomic, with a SHA-256)."""
    return _io.write_datatree(path, summary.to_datatree(), kind="summary")


def read_summary(path: str | os.PathLike[str]) -> SiteSummary:
    """Read and verify a site summary written by :func:`write_summary`."""
    read = _io.read_datatree(path, what="site summary")
    if read.kind != "summary":
        raise ValueError(f"{str(path)!r} is an itelib {read.kind} file, not a site summary.")
    return SiteSummary.from_datatree(read.tree, source=repr(str(path)))
