"""The architecture, checked from the source (DESIGN.md section 1 and 2).

- itelib's import graph, built from every ``import`` statement in every module (at module level
  and inside functions alike; only ``if TYPE_CHECKING:`` blocks, which never run, are left out),
  has no cycle;
- no module imports from a higher layer (data and engines < posterior < the estimator frame <
  the models < what uses them < the command line);
- the estimator classes are listed once (the registry), every estimator derives from the one
  base class whose hooks are enforced, and the common fitted state is written in one function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "itelib"

# Lowest first; a module may import from its own layer and the layers before it.
LAYERS = (
    ("itelib.exceptions", "itelib._params", "itelib._validation", "itelib._io", "itelib._threads"),
    ("itelib.data_checks", "itelib.missing", "itelib.site_index", "itelib.data",
     "itelib.imputation", "itelib.propensity", "itelib.prognostic_score", "itelib.inference",
     "itelib.simulate", "itelib.survival_outcome"),
    ("itelib.groups", "itelib.posterior_layout", "itelib.posterior", "itelib.model_check",
     "itelib.explain"),
    ("itelib.plot",),
    ("itelib.estimators",),
    ("itelib.models", "itelib.federated"),  # federated: the models' design, from summaries
    ("itelib.calibration", "itelib.answers"),
    ("itelib.cli", "itelib.cli_csv", "itelib.cli_vocabulary", "itelib"),
)  # fmt: skip
COMMON_FITTED_STATE = {
    "data_", "outcome_", "random_state_", "propensity_", "outcome_center_", "outcome_scale_",
    "n_features_in_", "feature_names_in_",
}  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def _imports(module: str, path: Path) -> set[str]:
    """The itelib modules that ``module`` imports."""
    targets = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            # `from pkg import name`: the submodule pkg.name if there is one, else pkg itself
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS: add it there"
    return best[0]


def test_the_graph_is_read_from_the_source():
    # a few edges that must be found, so the checks below cannot pass on an empty graph
    assert "itelib.estimators.base" in GRAPH["itelib.models.hierarchical.estimator"]
    assert "itelib.models.hierarchical.design" in GRAPH["itelib.calibration.sbc"]  # in a function
    assert "itelib.estimators.registry" in GRAPH["itelib"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(source)
    )
    assert upward == []


# Modules whose loaders can run code written into a file; itelib never loads with them.
UNPICKLERS = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
UNPICKLING_CALLS = {"read_pickle", "load_pickle"}  # pandas' and others' pickle readers


def _unpickling(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"import {n}" for n in names if n.split(".")[0] in UNPICKLERS]
        if isinstance(node, ast.Attribute) and node.attr in UNPICKLING_CALLS:
            found.append(f".{node.attr}")
        if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value in (None, False)):
                found.append("allow_pickle=...")
    return found


def test_nothing_is_loaded_with_pickle():
    """The project rule: no module imports pickle (or a library that unpickles), calls a
    pickle reader, or passes allow_pickle=True (numpy.load); saved files are netCDF4 + JSON."""
    offenders = {m: f for m, p in MODULES.items() if (f := _unpickling(p))}
    assert offenders == {}
    # the check itself finds them
    assert _unpickling_source("import pickle") == ["import pickle"]
    assert _unpickling_source("from joblib import load") == ["import joblib"]
    assert _unpickling_source("np.load(f, allow_pickle=True)") == ["allow_pickle=..."]
    assert _unpickling_source("pd.read_pickle(f)") == [".read_pickle"]


def _unpickling_source(source: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.py"
        path.write_text(source)
        return _unpickling(path)


def _estimator_classes() -> set[str]:
    """Classes defined in itelib that derive from ITEEstimator (read from the source)."""
    found = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id == "ITEEstimator" for b in node.bases
            ):
                found.add(node.name)
    return found


def test_the_registry_is_the_one_list_of_estimators():
    import itelib
    from itelib.estimators import registry
    from itelib.estimators.base import ITEEstimator

    assert set(registry.names()) == _estimator_classes() == {
        "HierarchicalITE", "BayesianCausalForest", "CausalForest",
    }  # fmt: skip
    for name in registry.names():
        cls = registry.estimator_class(name)
        assert issubclass(cls, ITEEstimator) and getattr(itelib, name) is cls
    # nowhere else does the code list them: no tuple, list, set or dict of two or more of
    # their names (as strings or as names), as persistence, the study and the CLI once had
    names = set(registry.names())
    lists = []
    for module, path in MODULES.items():
        if module == "itelib.estimators.registry":
            continue
        tree = ast.parse(path.read_text())
        public = {  # __all__ names the public API, estimators among it: not a list of them
            id(n.value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__all__"
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict)
                and id(node) not in public
            ):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                spelled = {
                    i.value if isinstance(i, ast.Constant) else getattr(i, "id", None)
                    for i in items
                    if i is not None
                }
                if len(spelled & names) >= 2:
                    lists.append(f"{module}:{node.lineno}")
    assert lists == []


def test_the_base_class_enforces_its_hooks():
    from itelib.estimators.base import ITEEstimator

    class Incomplete(ITEEstimator):
        def __init__(self, random_state=None):
            self.random_state = random_state

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_the_common_fitted_state_is_written_in_one_function():
    writers = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and t.attr in COMMON_FITTED_STATE:
                        writers.append(module)
    assert set(writers) == {"itelib.estimators.fitted"}
