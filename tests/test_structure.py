"""The project's shape, read from its source: no import circles, the lower packages never
import the console, and the pure policy loads nothing but itself.

The import graph is built with `ast` from every module of the project's own packages, counting
every import wherever it stands (at the top, in a function, under ``if TYPE_CHECKING``): a
lazy import is still a dependency, it only hides the circle until the day it runs.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("campaigns", "dialer", "ami_bridge", "recordings", "agent_console", "asterisk_conf", "bench")
TOP_MODULES = ("cli",)
#: Alembic's script directory: loaded by path (``campaigns.db.migrate``), imported by nothing.
NOT_MODULES = (REPO / "campaigns" / "migrations",)
#: The packages below the console: they must not reach agent_console/, even through another.
BELOW_THE_CONSOLE = ("campaigns", "dialer", "ami_bridge")
#: The one module under campaigns/ that imports the console: it gathers every table for
#: Alembic (campaigns/migrations/env.py), and nothing in the packages imports it.
TABLE_REGISTRY = "campaigns.tables"


def module_files() -> dict[str, Path]:
    found = {name: REPO / f"{name}.py" for name in TOP_MODULES}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if any(path.is_relative_to(skipped) for skipped in NOT_MODULES):
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name `module` imports, relative imports resolved, `from X import y` as
    both X and X.y (y may be a submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules its imports run: the module named, and the packages
    on its way (their __init__ runs first), but not the importer's own packages."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        edges = set()
        for name in imported_names(module, path):
            parts = name.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[module] = {m for m in edges if m in files and m != module and m not in own}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one
    circle through it (the shortest from its first module), e.g. [a, b, c, a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [shortest_circle(graph, sorted(c)[0], c) for c in components]


def shortest_circle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & within):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is in no circle")


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` loads, each with the module that imports it on the way."""
    seen = {start: ""}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w not in seen:
                seen[w] = v
                queue.append(w)
    return seen


def chain(seen: dict[str, str], end: str) -> str:
    path = [end]
    while seen[path[-1]]:
        path.append(seen[path[-1]])
    return " -> ".join(reversed(path))


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "campaigns.jobs" in graph["campaigns.schedule"], "a top-level relative import"
    assert "campaigns.db" in graph["campaigns.schedule"], "an import inside a function"
    assert "campaigns.models" in graph["agent_console.schema"], "`from campaigns import models`"
    assert "ami_bridge" in graph["dialer.engine"] and "ami_bridge.events" in graph["ami_bridge"], \
        "a package's __init__ runs for its names"
    assert "cli" in graph and "bench.pacing" in graph and "campaigns.migrations.env" not in graph


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_campaigns_dialer_and_ami_bridge_do_not_reach_the_console():
    graph = import_graph()
    wrong = []
    for module in sorted(graph):
        if module.split(".")[0] not in BELOW_THE_CONSOLE or module == TABLE_REGISTRY:
            continue
        seen = reachable(graph, module)
        wrong += [chain(seen, m) for m in seen if m.split(".")[0] == "agent_console"][:1]
    assert not wrong, "below the console, yet loading it:\n" + "\n".join(wrong)


def test_nothing_imports_the_table_registry():
    graph = import_graph()
    assert [m for m, edges in graph.items() if TABLE_REGISTRY in edges] == [], \
        f"{TABLE_REGISTRY} is for Alembic (campaigns/migrations/env.py) and the schema test only"


def loaded_by(module: str) -> set[str]:
    """The modules a fresh interpreter holds after importing `module`."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_policy_loads_no_database_console_or_worker_pool():
    loaded = loaded_by("campaigns.policy")
    ours = {m for m in loaded if m.split(".")[0] in PACKAGES + TOP_MODULES}
    assert ours == {"campaigns", "campaigns.enums", "campaigns.policy", "campaigns.workdays"}
    assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "multiprocessing", "aiohttp")}
    assert "concurrent.futures.process" not in loaded


def test_the_batch_checker_loads_no_database_and_no_spreadsheet_reader():
    """The process that checks a large batch beside the import (campaigns.parallel_check)
    starts with what it needs: no SQLAlchemy, and openpyxl only for an XLSX file."""
    loaded = loaded_by("campaigns.parallel_check")
    ours = {m for m in loaded if m.split(".")[0] in PACKAGES + TOP_MODULES}
    assert ours == {"campaigns", "campaigns.batch_cells", "campaigns.batch_file", "campaigns.enums",
                    "campaigns.parallel_check"}
    assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "openpyxl", "psycopg")}


def test_the_engine_loads_no_console():
    loaded = loaded_by("dialer.engine")
    assert not {m for m in loaded if m.split(".")[0] == "agent_console"}


#: Test modules that still import another test module for its helpers, with why they are left.
KNOWN_TEST_IMPORTS: dict[tuple[str, str], str] = {}


def test_no_test_module_imports_another():
    """What several test modules share is in tests/helpers.py and tests/conftest.py."""
    tests = Path(__file__).resolve().parent
    modules = {path.stem for path in tests.glob("*.py")}
    found = {(path.stem, name.split(".")[0]) for path in sorted(tests.glob("test_*.py"))
             for name in imported_names(path.stem, path)
             if name.split(".")[0] in modules and name.split(".")[0].startswith("test_")}
    assert found - KNOWN_TEST_IMPORTS.keys() == set()


def test_the_console_calls_the_project_by_its_names():
    """The console's pages import what they call (no module loaded by a name in a string,
    whose results would be read under guessed attribute names), and only app.py, which puts
    the audiences' handlers together, is imported by nothing in the console."""
    files = {m: p for m, p in module_files().items() if m.split(".")[0] == "agent_console"}
    by_name = []
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            called = node.func if isinstance(node, ast.Call) else None
            name = (called.attr if isinstance(called, ast.Attribute) else called.id if isinstance(called, ast.Name)
                    else None)
            if name in ("import_module", "__import__"):
                by_name.append(f"{module}, line {node.lineno}")
    assert by_name == [], "modules loaded by name:\n" + "\n".join(by_name)
    graph = import_graph()
    assert [m for m in files if "agent_console.app" in graph[m]] == []
