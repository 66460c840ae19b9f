"""The library's fix hints in the command line's words.

Errors and warnings name the Python argument that fixes them (``categorical=['stage']``,
``propensity='estimate'``), which is right for a Python user and wrong at a shell prompt. The
``itelib`` command line passes every message through :func:`translate`, which rewrites each
``argument=<literal>`` whose argument has a flag (``--categorical stage``) and unwraps a call
around it (``fit(..., propensity="estimate")`` -> ``--propensity estimate``). The messages
themselves stay Python for Python users; arguments without a flag are left as they are.
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["FLAGS", "translate"]

FLAGS = {
    "categorical": "--categorical",
    "treatment_labels": "--treatment-labels",
    "propensity": "--propensity",
    "outcome": "--outcome-type",
    "prognosis": "--prognosis",
    "num_chains": "--chains",
    "num_warmup": "--warmup",
    "num_samples": "--samples",
    "num_draws": "--samples",
    "random_state": "--seed",
    "target_accept": "--target-accept",
    "chain_method": "--chain-method",
    "site": "--site",
    "missing": "--missing",
    "n_imputations": "--imputations",
    "horizon": "--horizon",
}
"""Library argument -> the ``itelib fit`` flag that sets it."""

PYTHON_ONLY = frozenset({
    "backend", "batch_size", "cv", "effect_modifiers", "forest_memory_gb", "inference",
    "likelihood", "max_bins", "max_depth", "max_depth_mu", "max_depth_tau", "max_tree_depth",
    "min_samples_leaf", "model_t", "model_y", "n_basis", "n_estimators", "n_jobs",
    "num_trees_mu", "num_trees_tau", "precision", "priors", "prognostic_score", "progress_bar",
    "propensity_classifier", "propensity_cross_fit", "site_effects", "survival_family",
    "svi_guide", "svi_steps", "tau_leaf_variance", "treatment_coding",
})  # fmt: skip
"""Estimator parameters ``itelib fit`` has no flag for (a test keeps this and :data:`FLAGS`
together equal to every estimator's parameters): a hint naming one gets a note saying so,
rather than reading as something the user could type at the prompt."""

_ARGUMENT = re.compile(r"(?<![\w.\-])(" + "|".join(FLAGS) + r")=")
_PYTHON_ONLY = re.compile(r"(?<![\w.\-])(" + "|".join(sorted(PYTHON_ONLY)) + r")=")
_CALL = re.compile(r"\b[A-Za-z_][\w.]*\((?:\.\.\., )?(--[^()]*?)\)")  # fit(..., --x y) -> --x y
# pandas advice that means nothing at a shell prompt, dropped: " (e.g. pd.to_numeric(df['x']))"
_PANDAS_EXAMPLE = re.compile(r" \(e\.g\. pd\.\w+\(df\[[^\]]*\]\)\)")
_PLAIN = re.compile(r"[\w.+\-]+")
_CLOSE = {"(": ")", "[": "]", "{": "}"}


def translate(message: str) -> str:
    """``message`` with every ``argument=<literal>`` that has a flag in :data:`FLAGS` written
    as that flag (``categorical=['a', 'b']`` -> ``--categorical a,b``)."""
    out, pos = [], 0
    for match in _ARGUMENT.finditer(message):
        if match.start() < pos:
            continue
        parsed = _literal(message, match.end())
        if parsed is None:
            continue
        value, end = parsed
        out += [message[pos : match.start()], _flag(FLAGS[match.group(1)], value)]
        pos = end
    text = _PANDAS_EXAMPLE.sub("", _CALL.sub(r"\1", "".join(out) + message[pos:]))
    python_only = sorted(set(_PYTHON_ONLY.findall(text)))
    if python_only:
        them = "it" if len(python_only) == 1 else "them"
        text += f" ({', '.join(python_only)}: no itelib fit flag; set {them} in Python.)"
    return text


def _flag(flag: str, value: Any) -> str:
    if value is True or value is Ellipsis:
        return flag
    if value is None or value is False:
        return f"no {flag}"
    if isinstance(value, list | tuple):
        return f"{flag} {','.join(str(v) for v in value)}"
    return f"{flag} {value}"


def _literal(text: str, start: int) -> tuple[Any, int] | None:
    """The Python literal that starts at ``text[start]`` and where it ends, or None."""
    end = _literal_end(text, start)
    token = text[start:end]
    if token.endswith(".") and token[0] not in "'\".([{" and token.rstrip("."):
        end -= 1  # "num_chains=4." ends a sentence: the value is 4, not 4.0
    while end > start:
        try:
            return ast.literal_eval(text[start:end]), end
        except (ValueError, SyntaxError):
            if text[end - 1] != ".":  # a sentence's full stop after a number or a name
                return None
            end -= 1
    return None


def _literal_end(text: str, start: int) -> int:
    if start >= len(text):
        return start
    first = text[start]
    if first in "'\"":
        close = text.find(first, start + 1)
        return start if close < 0 else close + 1
    if first in _CLOSE:
        depth, quote = 0, None
        for i in range(start, len(text)):
            ch = text[i]
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in _CLOSE:
                depth += 1
            elif ch in _CLOSE.values():
                depth -= 1
                if depth == 0:
                    return i + 1
        return start
    match = _PLAIN.match(text, start)
    return match.end() if match else start
