"""Explanations read off a fitted effect posterior: which covariates modify the effect, how sure.

- :mod:`~itelib.explain.projection`: per-draw projections of the patients' effects onto a
  readable model (linear least squares, a shallow tree; Woody, Carvalho & Murray 2021) and the
  doubly robust best linear projection for a forest without joint draws;
- :mod:`~itelib.explain.modifiers`: :class:`~itelib.explain.modifiers.ModifierSummary`, the
  tables and draws that ``est.modifiers()`` returns.
"""
