"""The layout holds: drawn from the code's own imports, not from what the README says about it."""
from __future__ import annotations

import ast
import subprocess
import sys
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
            assert "def run(" not in text and "start_run" not in text, path.name
            assert "innerlens.engine.fit" not in _imports(path), path.name


def _calls(path: Path, function: str) -> set[str]:
    """The dotted names ``function`` (a def anywhere in ``path``) calls."""
    node = next(n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef) and n.name == function)
    return {ast.unparse(call.func) for call in ast.walk(node) if isinstance(call, ast.Call)}


def test_the_run_path_is_three_calls_from_the_cli_to_the_training_step() -> None:
    """DESIGN.md's run path, walked: the command calls the session, the session the engine's loop, the
    loop the family's experiment; no wrapper in between."""
    assert "session.run" in _calls(PACKAGE / "cli.py", "callback")
    assert "engine.fit" in _calls(PACKAGE / "session.py", "run")
    assert "experiment.train_round" in _calls(PACKAGE / "engine.py", "fit")


# DESIGN.md's layering, as data. Parts bottom up: a module may import its own part and the parts below it.
ORDER = ("errors", "config", "data", "models", "analysis", "viz", "engine", "tracking", "families", "session", "drivers", "cli")
PARTS = {  # module (or package) -> part; the longest prefix wins
    "innerlens.errors": "errors",
    "innerlens.config": "config", "innerlens.configs": "config", "innerlens.search_space": "config", "innerlens.metrics": "config",
    "innerlens.data": "data", "innerlens.inputs": "data",
    "innerlens.models": "models",
    "innerlens.analysis": "analysis",
    "innerlens.viz": "viz",
    # The loop, and the protocol between it, the session and the families (Plan, RunLog).
    "innerlens.engine": "engine", "innerlens.flat_parameters": "engine", "innerlens.plan": "engine",
    "innerlens.tracking": "tracking", "innerlens.spool": "tracking", "innerlens.local_copy": "tracking",
    "innerlens.families": "families",
    # The callbacks record a fit into its MLflow run: the session's machinery, not the engine's (DESIGN.md
    # listed them with the engine, whose rule is that it knows no MLflow).
    "innerlens.session": "session", "innerlens.callbacks": "session", "innerlens.registry": "session",
    "innerlens.results": "session",
    "innerlens.drivers": "drivers",
    "innerlens.cli": "cli", "innerlens.commands": "cli", "innerlens.mlproject": "cli",
}
# Plain data or plain tensor code any part may read: each imports nothing of innerlens but errors.
LEAVES = ("innerlens.flat_parameters", "innerlens.inputs", "innerlens.data.catalog", "innerlens.analysis.llc_settings",
          "innerlens.models.hooks")
# The nevers, beyond the order: (part, what it must not import, why).
NEVER = (
    ("analysis", {"models", "tracking", "viz", "mlflow"}, "analysis is pure: tensors and callables in, numbers out"),
    ("viz", {"families", "tracking", "mlflow"}, "viz draws from DataFrames and arrays"),
    ("engine", {"families", "tracking", "mlflow"}, "the loop knows no experiment and no MLflow"),
    ("models", {"tracking", "mlflow"}, "models know no store"),
    ("data", {"models"}, "data knows no model"),
    ("families", {"tracking", "mlflow", "drivers"}, "families report through RunLog and are run by drivers, not back"),
    ("tracking", {"families"}, "tracking knows no family"),
    ("cli", {"tracking", "mlflow", "families"}, "the CLI goes through the session and the drivers"),
)


def _part(module: str) -> str | None:
    """innerlens.analysis.llc -> analysis; mlflow.tracking -> mlflow; other third-party modules -> None."""
    if module.split(".")[0] == "mlflow":
        return "mlflow"
    owners = [prefix for prefix in PARTS if module == prefix or module.startswith(prefix + ".")]
    return PARTS[max(owners, key=len)] if owners else None


def _edges() -> list[tuple[str, str]]:
    """(importer, imported) for every import in the package, at module level or inside a function."""
    modules = _modules()
    return [(name, target) for name, path in modules.items() if name != "innerlens" for target in _imports(path)
            if (target in modules and target not in ("innerlens", name)) or _part(target) == "mlflow"]


def test_every_module_belongs_to_a_part() -> None:
    assert [name for name in _modules() if name != "innerlens" and _part(name) is None] == []


def test_parts_import_only_their_own_part_and_those_below() -> None:
    broken = sorted(f"{a} -> {b}" for a, b in _edges() if _part(b) != "mlflow" and b not in LEAVES
                    and ORDER.index(_part(b)) > ORDER.index(_part(a)))
    assert broken == []


def test_no_part_imports_what_it_must_never_import() -> None:
    broken = sorted(f"{a} -> {b} ({why})" for a, b in _edges() for part, never, why in NEVER
                    if _part(a) == part and _part(b) in never)
    assert broken == []


def test_leaves_import_nothing_of_innerlens_but_errors() -> None:
    assert sorted(f"{a} -> {b}" for a, b in _edges() if a in LEAVES and b != "innerlens.errors") == []


def test_every_headline_and_study_metric_is_in_the_catalogue_with_the_same_direction() -> None:
    """A metric renamed in a family but not in the catalogue (or declared the other way round in a study)
    would silently get no direction, a NaN best or a missing row: this fails instead."""
    from innerlens.drivers.self_modeling_comparison import PRIMARY_METRICS, SECONDARY_METRICS
    from innerlens.metrics import direction, lookup
    from innerlens.registry import FAMILIES

    unknown = sorted(key for family in FAMILIES for key in family.headline_metrics if lookup(key) is None)
    assert unknown == []
    declared = {**PRIMARY_METRICS, **SECONDARY_METRICS}
    assert sorted(key for key in declared if lookup(key) is None) == []
    words = {"min": "lower", "max": "higher"}
    assert {key: way for key, way in declared.items() if direction(key) and words[direction(key)] != way} == {}


def test_every_family_imports_and_builds_without_mlflow_installed() -> None:
    """The family layer needs no MLflow at all, not only none at module level: with ``mlflow`` made
    unimportable, every family module imports and one builds its run and trains a round."""
    script = (
        "import sys; sys.modules['mlflow'] = None\n"
        "import torch\n"
        "from innerlens.registry import FAMILIES\n"
        "for entry in FAMILIES: entry.load()\n"
        "from innerlens.configs.grokking import GrokkingConfig\n"
        "from innerlens.families import grokking\n"
        "config = GrokkingConfig(p=23, d_model=16, n_heads=2, d_head=8, d_mlp=32, max_steps=20, eval_every=10, analysis_every=0)\n"
        "plan = grokking.build(config, torch.device('cpu'))\n"
        "plan.experiment.train_round(0)\n"
        "print(sorted(plan.experiment.evaluate(0)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'val/acc'" in done.stdout
