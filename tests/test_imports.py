"""Imports: every module imports on its own, and no two modules import each other."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lens_steer"
NOT_IMPORTABLE = {"lens_steer.__main__"}  # running it is its purpose (``python -m lens_steer``)


def module_files() -> dict[str, Path]:
    """``{dotted module name: source file}`` of every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


_FRESH_IMPORTS = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "lens_steer" or m.startswith("lens_steer.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as error:  # noqa: BLE001 - report every kind of failure
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""


def test_every_module_imports_alone_in_a_fresh_interpreter(tmp_path):
    names = [name for name in module_files() if name not in NOT_IMPORTABLE]
    assert len(names) > 50
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compile each module once, not once per import
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_IMPORTS, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=PACKAGE.parent,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n\n".join(f"{name}:\n{error}" for name, error in failures.items())


def _in_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def module_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports when it is imported (``TYPE_CHECKING`` blocks and
    imports inside functions excluded); ``from pkg import sub`` counts as importing ``pkg.sub``."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                if source in modules:
                    for alias in node.names:
                        sub = f"{source}.{alias.name}"
                        found.add(sub if sub in modules else source)
            elif isinstance(node, ast.If) and not _in_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: module_imports(name, path, modules) for name, path in modules.items()}


def test_the_import_graph_is_read_correctly():
    graph = import_graph()
    assert "lens_steer.evaluate.metrics" in graph["lens_steer.evaluate.points"]
    assert "lens_steer.study.run" in graph["lens_steer.study"]  # package re-exports
    assert "lens_steer.study.run" not in graph["lens_steer.cli"]  # imported inside functions


def test_no_module_imports_a_module_that_imports_it_back():
    graph = import_graph()
    pairs = sorted(
        (a, b) for a, imported in graph.items() for b in imported if a < b and a in graph[b]
    )
    assert pairs == [], f"modules importing each other: {pairs}"


def test_the_package_imports_flow_one_way():
    """No import cycle of any length among module-level imports (STYLE: dependencies flow one way)."""
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state:
                cycle = visit(imported)
                if cycle:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, " -> ".join(cycle)
