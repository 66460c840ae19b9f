"""A scikit-learn model parameter (``CausalForest(model_y=...)``) saved as its recipe, not pickled.

An *unfitted* scikit-learn model is its class and its constructor parameters. A saved file
keeps them as JSON: ``{"sklearn_estimator": {"class": "sklearn.linear_model.LassoCV",
"params": {...}}}``. Loading imports the class only from scikit-learn (a name outside
``sklearn.`` is refused) and calls it with those parameters, so a file can name no code of its
own. Models whose parameters are not plain JSON values (a nested model, a ``RandomState``, a
function) and models from other packages cannot be saved this way and are refused with the
fix. A model refitted from its recipe is checked by its caller (the forest's fingerprint).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

__all__ = ["is_model", "model_from_json", "model_to_json"]

KEY = "sklearn_estimator"
# The public modules whose regressors and classifiers a file may name. Not "any sklearn.*": a
# class with a ``memory`` (a joblib cache folder the file would choose, whose entries joblib
# unpickles) or an import with side effects (sklearn.experimental) must not be reachable.
MODULES = (
    "sklearn.discriminant_analysis", "sklearn.dummy", "sklearn.ensemble",
    "sklearn.gaussian_process", "sklearn.kernel_ridge", "sklearn.linear_model",
    "sklearn.naive_bayes", "sklearn.neighbors", "sklearn.neural_network", "sklearn.svm",
    "sklearn.tree",
)  # fmt: skip
REFUSED_PARAMS = ("memory",)


def is_model(value: Any) -> bool:
    """An estimator object (has ``get_params`` and ``fit``), from scikit-learn or not."""
    return callable(getattr(value, "get_params", None)) and callable(getattr(value, "fit", None))


def model_to_json(owner: str, name: str, model: Any) -> dict[str, Any]:
    """``{"sklearn_estimator": {"class": ..., "params": ...}}``, or a ``TypeError`` with the fix."""
    cls = type(model)
    fix = (
        f"Fix: a scikit-learn model whose parameters are numbers, strings, booleans, None or "
        f"lists of them, or leave {name} out (the default model); or save the effects "
        "instead: est.effect().save(path)."
    )
    if not cls.__module__.startswith("sklearn."):
        raise TypeError(
            f"cannot save {owner}({name}={model!r}): only scikit-learn models can be saved "
            f"without pickle (as their class and parameters), and this is a {cls.__module__}."
            f"{cls.__name__}. {fix}"
        )
    path = _public_path(cls)
    params = model.get_params(deep=False)
    problem = _problem(path, cls, params)
    if problem:
        raise TypeError(f"cannot save {owner}({name}={model!r}) without pickle: {problem}. {fix}")
    for key, value in params.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise TypeError(
                f"cannot save {owner}({name}={model!r}) without pickle: its parameter "
                f"{key}={value!r} is not a plain value. {fix}"
            ) from None
    return {KEY: {"class": path, "params": params}}


def model_from_json(spec: Any) -> Any:
    """The unfitted model a :func:`model_to_json` document describes; anything else: None."""
    if not (isinstance(spec, dict) and set(spec) == {KEY}):
        return spec
    path, params = spec[KEY]["class"], dict(spec[KEY]["params"])
    module, _, name = str(path).rpartition(".")
    if module not in MODULES:
        raise ValueError(
            f"the saved model class {path!r} is not from the scikit-learn modules a file may "
            f"name ({', '.join(MODULES)})"
        )

    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"the saved model class {path!r} is not in this scikit-learn ({err}). Fix: load "
            "the file with the scikit-learn version that saved it, or refit."
        ) from err
    problem = _problem(path, cls, params)
    if problem:
        raise ValueError(f"the saved model: {problem}")
    return cls(**params)


def _problem(path: str, cls: Any, params: dict[str, Any]) -> str | None:
    """Why a class and its parameters may not be a saved model, or None."""
    from sklearn.base import is_classifier, is_regressor

    module = path.rpartition(".")[0]
    if module not in MODULES or not isinstance(cls, type):
        return f"{path} is not in the scikit-learn modules a file may name ({', '.join(MODULES)})"
    try:
        instance = cls()
    except TypeError:
        return f"{path} cannot be built without arguments"
    if not (is_regressor(instance) or is_classifier(instance)):
        return f"{path} is not a scikit-learn regressor or classifier"
    refused = sorted(set(params) & set(REFUSED_PARAMS))
    if refused:
        return f"{path} has the parameter {refused[0]!r}, which names a cache folder"
    return None


def _public_path(cls: type) -> str:
    """``sklearn.linear_model.LassoCV`` rather than its private module, where that works."""
    parts = cls.__module__.split(".")
    for depth in range(2, len(parts)):
        public = ".".join(parts[:depth])
        try:
            if getattr(importlib.import_module(public), cls.__name__, None) is cls:
                return f"{public}.{cls.__name__}"
        except ImportError:  # pragma: no cover - a parent of an imported module imports
            continue
    return f"{cls.__module__}.{cls.__name__}"
