"""The layout holds: drawn from the code's own imports, not from what the README says about it."""
from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

PACKAGE = ROOT / "src" / "innerlens"
MAX_LINES = 360  # "about 350": one job per module


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("innerlens", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Every module ``path`` imports, at any depth (a function's lazy import counts too)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if runtime_only and isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return cycles


def test_no_module_imports_itself_back_through_others() -> None:
    modules = _modules()
    graph = {name: {target for target in _imports(path) if target in modules and target != name}
             for name, path in modules.items()}
    assert _cycles(graph) == []


def test_every_module_has_one_job_and_stays_small() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_only_tracking_imports_mlflow_at_run_time() -> None:
    importers = {name for name, path in _modules().items()
                 if any(module == "mlflow" or module.startswith("mlflow.") for module in _imports(path, runtime_only=True))}
    assert importers and all(name.startswith("innerlens.tracking") for name in importers), sorted(importers)


def test_the_registry_lists_every_family_and_the_commands_every_entry_point() -> None:
    from innerlens.commands import entry_points
    from innerlens.registry import FAMILIES

    runnable = {path.stem for path in (PACKAGE / "families").glob("*.py")
                if "def build(" in path.read_text() and "def report(" in path.read_text()}
    assert {family.name for family in FAMILIES} == runnable
    assert {entry.name for entry in entry_points()} == {path.stem for path in (ROOT / "entrypoints").glob("*.py")}


def test_families_leave_the_run_lifecycle_to_the_session() -> None:
    """A family supplies build and report; only the session (and the drivers' own parent runs) open runs and fit."""
    for path in (PACKAGE / "families").glob("*.py"):
        text = path.read_text()
        if "def build(" in text:
            assert "def run(" not in text and "tracked_fit" not in text and "start_run" not in text, path.name


def _part(module: str) -> str:
    """innerlens.analysis.llc -> analysis; innerlens.session -> session."""
    return module.split(".")[1]


def test_parts_import_each_other_in_layers() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == "innerlens":
            continue
        targets = {_part(t) for t in _imports(path) if t in modules and t != "innerlens"}
        graph.setdefault(_part(name), set()).update(targets - {_part(name)})
    for targets in list(graph.values()):
        for target in targets:
            graph.setdefault(target, set())
    assert _cycles(graph) == []
    pure = {"tracking", "families", "drivers", "session", "tune", "compare", "cli", "callbacks"}
    assert graph["analysis"] & pure == set() and graph["viz"] & pure == set()  # arrays in, numbers or figures out
    assert graph["engine"] & {"tracking", "families", "viz"} == set()  # the loop knows no MLflow and no experiment
    assert graph["families"] & {"drivers", "tune", "compare", "cli", "commands"} == set()  # drivers run families, not back
