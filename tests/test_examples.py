"""Every example runs end to end at its --smoke size."""

from __future__ import annotations

import ast
import builtins
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script):
    res = subprocess.run(
        [sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip()
    if script.name == "quickstart.py":  # its coverage comes with what it means (issue 22)
        assert "share of these patients whose true effect lies inside their interval" in res.stdout


def test_there_are_examples():
    assert EXAMPLES


def test_readme_python_block_defines_every_name_it_uses():
    """The README's "In Python" block runs as written: no name is used before it is defined
    (it once used new_patients and new_sites without defining them)."""
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## In Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    defined = set(dir(builtins))
    for statement in ast.parse(block).body:
        nodes = list(ast.walk(statement))
        used = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert used <= defined, f"line {statement.lineno}: {sorted(used - defined)} undefined"
        defined |= {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
