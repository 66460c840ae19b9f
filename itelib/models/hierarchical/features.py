"""Model features derived from the standardized covariates: smooth bases and interactions.

The flexible options of :class:`~itelib.HierarchicalITE` stay linear in their coefficients, so
they keep the exact sufficient-statistics likelihood (a gradient's cost does not grow with n):

- ``prognosis="additive"`` adds, for every covariate with more than two distinct values, a
  Hilbert-space Gaussian-process term (Solin & Särkkä 2020; Riutort-Mayol et al. 2023): a fixed
  sine basis on ``[-L, L]`` whose coefficients get the squared-exponential spectral density as
  prior variances, with the amplitude and length-scale learned;
- ``effect_modifiers="interactions"`` adds the pairwise products of the covariates (each
  standardized) to the candidates the horseshoe chooses among, so an effect such as
  ``1 + 2·x2·x4`` is inside the model;
- ``effect_modifiers="additive"`` adds, beside the linear modifiers, an HSGP term ``f_j(x_j)``
  to the treatment effect for every modifier covariate with more than two values (columns
  ``t·phi_j(x_j)`` of the design), with its own, smaller amplitude prior;
  ``"additive_interactions"`` is that plus the horseshoe's pairwise products;
- ``effect_modifiers="piecewise"`` adds to the pairwise products, for every modifier covariate
  with more than two values, a step ``1(x_j > k)`` and a hinge ``max(0, x_j - k)`` at its
  training median ``k``: an effect that jumps or bends at a threshold (a biomarker cut-off)
  is inside the model, still linear in its coefficients and chosen by the horseshoe.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

__all__ = ["FLEXIBLE_MAX_COVARIATES", "FeatureMap", "resolve_options"]

PROGNOSIS = ("auto", "linear", "additive", "interactions")
MODIFIERS = ("auto", "linear", "interactions", "additive", "additive_interactions", "piecewise")
_PAIRED_MODIFIERS = ("interactions", "additive_interactions", "piecewise")
# Knots of the piecewise modifiers: the median alone. Knots at the three quartiles covered as
# well, were less accurate and took 1.8x the fit (docs/decisions.md, issue 19); a step and a
# hinge at the median, with the linear term and the products, already bend or jump anywhere
# near the middle of the covariate's range.
KNOT_QUANTILES = (0.5,)
# "auto" is flexible up to this many covariates: their 45 pairwise products in the prognosis
# and among the modifier candidates keep a continuous fit at n = 1000 within seconds; beyond it
# the number of pairs grows as p^2 (300 at p = 25), and the prognostic score carries the
# nonlinearity instead (benchmarks/default_model.py).
FLEXIBLE_MAX_COVARIATES = 10


def resolve_options(prognosis: str, modifiers: str, p: int, kind: str) -> tuple[str, str]:
    """The prognosis and effect-modifier options ``"auto"`` stands for.

    Continuous and survival outcomes (on log time) with at most
    :data:`FLEXIBLE_MAX_COVARIATES` covariates: pairwise products in the prognosis and among the
    modifier candidates; otherwise linear. Binary outcomes stay linear (their row-wise model's
    cost grows with every column).
    """
    flexible = kind in ("continuous", "survival") and p <= FLEXIBLE_MAX_COVARIATES
    if prognosis == "auto":
        prognosis = "interactions" if flexible else "linear"
    if modifiers == "auto":
        modifiers = "interactions" if flexible else "linear"
    return prognosis, modifiers


_BOUNDARY_FACTOR = 1.5  # L = 1.5 * max|x|: the recommended minimum for SE kernels (Riutort-Mayol)


@dataclass(frozen=True)
class FeatureMap:
    """What was learned from the training covariates to build the model's features.

    Attributes
    ----------
    smooth : tuple of int
        Columns of the standardized covariates that get a smooth (HSGP) prognostic term.
    boundary : tuple of float
        The half-width ``L`` of each smooth term's box (training range times 1.5).
    n_basis : int
        Basis functions per smooth term.
    pairs : tuple of (int, int)
        Column pairs whose products are effect-modifier candidates (``modifier_pairs``) and/or
        prognostic covariates (``prognostic_pairs``).
    pair_center, pair_scale : tuple of float
        Standardization of those products (training mean and sd).
    n_modifier_columns : int or None
        Only the leading columns are effect-modifier candidates (None: all); trailing ones,
        such as the propensity score, enter the prognostic part only.
    effect_smooth, effect_boundary : tuple
        Modifier columns with a smooth (HSGP) effect term, and their boxes' half-widths.
    modifier_pairs, prognostic_pairs : bool
        Whether the products are effect-modifier candidates, prognostic covariates, or both.
    pieces : tuple of (int, float, str)
        The piecewise modifier candidates: (modifier column, knot on the standardized scale,
        ``"step"`` or ``"hinge"``); ``piece_labels`` names each knot's quantile (``"q50"``), and
        ``piece_center``, ``piece_scale`` standardize the columns.
    """

    smooth: tuple[int, ...] = ()
    boundary: tuple[float, ...] = ()
    n_basis: int = 0
    pairs: tuple[tuple[int, int], ...] = ()
    pair_center: tuple[float, ...] = ()
    pair_scale: tuple[float, ...] = ()
    n_modifier_columns: int | None = None  # leading columns that may modify the effect
    effect_smooth: tuple[int, ...] = ()
    effect_boundary: tuple[float, ...] = ()
    modifier_pairs: bool = True
    prognostic_pairs: bool = False
    pieces: tuple[tuple[int, float, str], ...] = ()
    piece_labels: tuple[str, ...] = ()
    piece_center: tuple[float, ...] = ()
    piece_scale: tuple[float, ...] = ()

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        *,
        prognosis: str = "linear",
        modifiers: str = "linear",
        n_basis: int = 10,
        n_modifier_columns: int | None = None,
    ) -> FeatureMap:
        """Choose smooth columns and interaction pairs from standardized training covariates."""
        smooth_part = cls.from_ranges(
            [len(np.unique(X[:, j])) > 2 for j in range(X.shape[1])],
            [float(np.max(np.abs(X[:, j]))) if len(X) else 0.0 for j in range(X.shape[1])],
            prognosis=prognosis, modifiers=modifiers, n_basis=n_basis,
            n_modifier_columns=n_modifier_columns,
        )  # fmt: skip
        smooth, boundary = smooth_part.smooth, smooth_part.boundary
        effect_smooth, effect_boundary = smooth_part.effect_smooth, smooth_part.effect_boundary
        pairs, center, scale = (), (), ()
        modifier_pairs = modifiers in _PAIRED_MODIFIERS
        if modifier_pairs or prognosis == "interactions":
            kept = []
            Xm = X if n_modifier_columns is None else X[:, :n_modifier_columns]
            design = np.column_stack([np.ones(len(X)), Xm])
            for i, j in combinations(range(Xm.shape[1]), 2):
                prod = X[:, i] * X[:, j]
                if _adds_information(prod, design):
                    kept.append(((i, j), float(np.mean(prod)), float(np.std(prod))))
            pairs = tuple(k[0] for k in kept)
            center = tuple(k[1] for k in kept)
            scale = tuple(k[2] for k in kept)
        pieces: dict[str, tuple] = {}
        if modifiers == "piecewise":  # after the pairs, so that none duplicates a product
            Xm = X[:, :n_modifier_columns]
            made = _pieces(Xm, np.column_stack([Xm] + [Xm[:, i] * Xm[:, j] for i, j in pairs]))
            names = ("pieces", "piece_labels", "piece_center", "piece_scale")
            pieces = dict(zip(names, made, strict=True))
        return cls(
            smooth, boundary, n_basis if smooth or effect_smooth else 0, pairs, center, scale,
            n_modifier_columns, effect_smooth, effect_boundary, modifier_pairs,
            prognosis == "interactions",
            **pieces,
        )  # fmt: skip

    @classmethod
    def from_ranges(
        cls,
        many_values: list[bool],
        max_abs: list[float],
        *,
        prognosis: str = "linear",
        modifiers: str = "linear",
        n_basis: int = 10,
        n_modifier_columns: int | None = None,
    ) -> FeatureMap:
        """The smooth terms alone, from what they need of the standardized covariates: whether
        each column has more than two distinct values, and its largest ``|x|`` (the box's
        half-width is 1.5 times it). Fixed given these, so a federated fit
        (:mod:`itelib.federated`) agrees on them from per-site ranges; the pairwise products
        need the rows' fourth moments, and are :meth:`fit`'s alone."""
        smooth: tuple[int, ...] = ()
        if prognosis == "additive":
            smooth = tuple(j for j, many in enumerate(many_values) if many)
        n_mod = len(many_values) if n_modifier_columns is None else n_modifier_columns
        effect_smooth: tuple[int, ...] = ()
        if modifiers in ("additive", "additive_interactions"):
            effect_smooth = tuple(j for j in range(n_mod) if many_values[j])
        return cls(
            smooth, tuple(_BOUNDARY_FACTOR * max_abs[j] for j in smooth),
            n_basis if smooth or effect_smooth else 0, n_modifier_columns=n_modifier_columns,
            effect_smooth=effect_smooth,
            effect_boundary=tuple(_BOUNDARY_FACTOR * max_abs[j] for j in effect_smooth),
            modifier_pairs=modifiers in _PAIRED_MODIFIERS,
            prognostic_pairs=prognosis == "interactions",
        )  # fmt: skip

    @property
    def n_smooth_features(self) -> int:
        return len(self.smooth) * self.n_basis

    def basis(self, X: np.ndarray) -> np.ndarray:
        """``(n, len(smooth) * n_basis)`` Laplacian eigenfunctions, column blocks per term.

        New patients outside a term's box are clamped to its edge (the basis is not meant to
        extrapolate).
        """
        return _blocks(X, self.smooth, self.boundary, self.n_basis)

    def sqrt_eigenvalues(self) -> np.ndarray:
        """``(len(smooth), n_basis)`` square roots of the Laplacian eigenvalues, ``pi k / 2L``."""
        return _sqrt_eig(self.boundary, self.n_basis)

    @property
    def n_effect_smooth_features(self) -> int:
        return len(self.effect_smooth) * self.n_basis

    def effect_basis(self, X: np.ndarray) -> np.ndarray:
        """``(n, len(effect_smooth) * n_basis)``: the smooth effect terms' basis (to be
        multiplied by the treatment), clamped like :meth:`basis`."""
        return _blocks(X, self.effect_smooth, self.effect_boundary, self.n_basis)

    def effect_sqrt_eigenvalues(self) -> np.ndarray:
        """``(len(effect_smooth), n_basis)``, as :meth:`sqrt_eigenvalues`."""
        return _sqrt_eig(self.effect_boundary, self.n_basis)

    def n_modifiers(self, p: int) -> int:
        """How many effect-modifier candidates :meth:`modifiers` gives for ``p`` covariates."""
        return p + (len(self.pairs) if self.modifier_pairs else 0) + len(self.pieces)

    def modifiers(self, X: np.ndarray) -> np.ndarray:
        """Effect-modifier candidates: the covariates, then standardized pairwise products,
        then standardized steps and hinges."""
        if self.n_modifier_columns is not None:
            X = X[:, : self.n_modifier_columns]
        parts = [X]
        if self.pairs and self.modifier_pairs:
            parts.append(self._products(X))
        if self.pieces:
            parts.append((_piece_columns(X, self.pieces) - self.piece_center) / self.piece_scale)
        return np.concatenate(parts, axis=1) if len(parts) > 1 else X

    def prognostic(self, X: np.ndarray) -> np.ndarray:
        """The prognostic columns: ``X`` (covariates, then the propensity and prognostic
        scores when there are any), then the standardized products with
        ``prognosis="interactions"``."""
        if not (self.pairs and self.prognostic_pairs):
            return X
        return np.concatenate([X, self._products(X)], axis=1)

    def _products(self, X: np.ndarray) -> np.ndarray:
        prods = np.column_stack([X[:, i] * X[:, j] for i, j in self.pairs])
        return (prods - self.pair_center) / self.pair_scale

    def pair_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"{names[i]}*{names[j]}" for i, j in self.pairs)

    def piece_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``"age>q50"`` for a step at age's training median, ``"(age-q50)+"`` for a hinge."""
        return tuple(
            f"{names[j]}>{label}" if kind == "step" else f"({names[j]}-{label})+"
            for (j, _, kind), label in zip(self.pieces, self.piece_labels, strict=True)
        )

    def modifier_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        pairs = self.pair_names(names) if self.modifier_pairs else ()
        return tuple(names) + pairs + self.piece_names(names)

    def prognostic_names(self, names: tuple[str, ...], p: int) -> tuple[str, ...]:
        """Names of :meth:`prognostic`'s columns; ``names[:p]`` are the covariates'."""
        return tuple(names) + (self.pair_names(names[:p]) if self.prognostic_pairs else ())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description."""
        return {
            "smooth": list(self.smooth),
            "boundary": list(self.boundary),
            "n_basis": self.n_basis,
            "pairs": [list(p) for p in self.pairs],
            "pair_center": list(self.pair_center),
            "pair_scale": list(self.pair_scale),
            "n_modifier_columns": self.n_modifier_columns,
            "effect_smooth": list(self.effect_smooth),
            "effect_boundary": list(self.effect_boundary),
            "modifier_pairs": self.modifier_pairs,
            "prognostic_pairs": self.prognostic_pairs,
            "pieces": [list(piece) for piece in self.pieces],
            "piece_labels": list(self.piece_labels),
            "piece_center": list(self.piece_center),
            "piece_scale": list(self.piece_scale),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureMap:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            smooth=tuple(d["smooth"]),
            boundary=tuple(d["boundary"]),
            n_basis=d["n_basis"],
            pairs=tuple(tuple(p) for p in d["pairs"]),
            pair_center=tuple(d["pair_center"]),
            pair_scale=tuple(d["pair_scale"]),
            n_modifier_columns=d["n_modifier_columns"],
            effect_smooth=tuple(d.get("effect_smooth", ())),
            effect_boundary=tuple(d.get("effect_boundary", ())),
            modifier_pairs=d.get("modifier_pairs", True),
            prognostic_pairs=d.get("prognostic_pairs", False),
            pieces=tuple((int(j), float(k), str(kind)) for j, k, kind in d.get("pieces", ())),
            piece_labels=tuple(d.get("piece_labels", ())),
            piece_center=tuple(d.get("piece_center", ())),
            piece_scale=tuple(d.get("piece_scale", ())),
        )


def _piece_columns(X: np.ndarray, pieces: tuple[tuple[int, float, str], ...]) -> np.ndarray:
    """The raw step and hinge columns (before standardization)."""
    return np.column_stack([
        (X[:, j] > k).astype(X.dtype) if kind == "step" else np.maximum(X[:, j] - k, 0.0)
        for j, k, kind in pieces
    ])  # fmt: skip


def _pieces(X: np.ndarray, before: np.ndarray) -> tuple[tuple, tuple, tuple, tuple]:
    """A step and a hinge at each knot (:data:`KNOT_QUANTILES`) of every column of ``X`` with
    more than two values, less those that duplicate a column already there (``before``: the
    covariates and the kept products; e.g. a hinge at a column's minimum is the column, and
    one at ``x``'s median is ``x * d - k * d`` when ``d`` is ``x``'s median split)."""
    pieces, labels, center, scale = [], [], [], []
    design = np.column_stack([np.ones(len(X)), before])
    for j in range(X.shape[1]):
        if len(np.unique(X[:, j])) <= 2:
            continue
        for q in KNOT_QUANTILES:
            knot = float(np.quantile(X[:, j], q))
            for kind in ("step", "hinge"):
                col = _piece_columns(X, ((j, knot, kind),))[:, 0]
                if not _adds_information(col, design):
                    continue
                design = np.column_stack([design, col])
                pieces.append((j, knot, kind))
                labels.append(f"q{round(100 * q)}")
                center.append(float(np.mean(col)))
                scale.append(float(np.std(col)))
    return tuple(pieces), tuple(labels), tuple(center), tuple(scale)


def _adds_information(prod: np.ndarray, design: np.ndarray) -> bool:
    """False when a product is a linear function of the covariates (e.g. two dummies of one
    factor, whose raw product is 0): it would only duplicate existing columns."""
    coef = np.linalg.lstsq(design, prod, rcond=None)[0]
    return bool(np.std(prod - design @ coef) > 1e-6 * (1e-12 + np.std(prod)))


def _blocks(X: np.ndarray, cols: tuple[int, ...], bounds: tuple[float, ...], m: int) -> np.ndarray:
    blocks = [_sine_basis(X[:, j], L, m) for j, L in zip(cols, bounds, strict=True)]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((X.shape[0], 0))


def _sqrt_eig(bounds: tuple[float, ...], m: int) -> np.ndarray:
    k = np.arange(1, m + 1)
    return np.array([np.pi * k / (2 * L) for L in bounds]).reshape(-1, m)


def _sine_basis(x: np.ndarray, L: float, m: int) -> np.ndarray:
    x = np.clip(x, -L, L)
    k = np.arange(1, m + 1)
    return np.sqrt(1 / L) * np.sin(np.pi * k * (x[:, None] + L) / (2 * L))
