"""The package's layout holds: imports point one way, no circles, the core stays sans-IO.

The import graph is read from the source with :mod:`ast` (every ``import``, including those under
``TYPE_CHECKING`` and inside functions: a circle there is still a circle for the reader), so
this needs no third-party tool and checks files nobody imported yet.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bmac_trio", "bmac_kit", "factor")

#: Which room may import which. A room is a subpackage of ``bmac_trio`` (or a top-level module
#: such as ``errors``), or one of the other top-level packages. Everything may import itself.
ALLOWED: dict[str, set[str]] = {
    "bmac_trio.errors": set(),
    "bmac_trio.clock": set(),
    "bmac_trio.binance": {"bmac_trio.errors"},
    "bmac_trio.store": {"bmac_trio.errors", "bmac_trio.binance"},
    "bmac_trio.ops": {
        "bmac_trio.errors",
        "bmac_trio.clock",
        "bmac_trio.binance",
        "bmac_trio.store",
    },
    "bmac_trio.bus": {
        "bmac_trio.errors",
        "bmac_trio.clock",
        "bmac_trio.binance",
        "bmac_trio.store",
        "bmac_trio.ops",
    },
    "bmac_trio.recorder": {
        "bmac_trio.errors",
        "bmac_trio.clock",
        "bmac_trio.binance",
        "bmac_trio.store",
        "bmac_trio.ops",
        "bmac_trio.bus",
    },
    "bmac_trio.sim": {"bmac_trio.errors", "bmac_trio.clock", "bmac_trio.binance"},
    "bmac_trio.cli": {
        "bmac_trio",
        "bmac_trio.errors",
        "bmac_trio.clock",
        "bmac_trio.binance",
        "bmac_trio.store",
        "bmac_trio.ops",
        "bmac_trio.bus",
        "bmac_trio.recorder",
        "bmac_trio.sim",
        "bmac_kit",
        "factor",
    },
    # the package's face re-exports the error classes and intervals
    "bmac_trio": {"bmac_trio.errors", "bmac_trio.binance"},
    "bmac_kit": {
        "bmac_trio.errors",
        "bmac_trio.clock",
        "bmac_trio.binance",
        "bmac_trio.store",
        "bmac_trio.bus",
        "factor",
    },
    "factor": {"bmac_kit"},
}

#: Modules that must stay sans-IO: they may not load trio, httpx or trio-websocket at all.
PURE_ROOMS = ("bmac_trio.binance",)
PURE_EXTRA = ("bmac_trio.errors", "bmac_trio.recorder.book", "bmac_trio.recorder.events")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (resolved to modules that exist)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                prefix = ".".join(base[:keep])
                origin = f"{prefix}.{node.module}" if node.module else prefix
            else:
                origin = node.module or ""
            targets = [origin] + [f"{origin}.{alias.name}" for alias in node.names]
        for target in targets:
            # the longest existing module that the import names
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts:
                found.add(".".join(parts))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def room_of(module: str) -> str:
    """The most specific room in :data:`ALLOWED` that holds ``module``."""
    parts = module.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in ALLOWED:
            return candidate
        parts.pop()
    raise AssertionError(f"{module} is in no room of ALLOWED: give it one")


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        room = room_of(module)
        for target in sorted(targets):
            other = room_of(target)
            if other != room and other not in ALLOWED[room]:
                bad.append(f"{module} ({room}) imports {target} ({other})")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_imports_point_the_allowed_way() -> None:
    assert forbidden_imports(import_graph()) == []


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_the_checks_catch_a_forbidden_import_and_a_circle() -> None:
    """The two checks above are not vacuous: a planted bad edge is reported."""
    graph = import_graph()
    assert "bmac_trio.binance.intervals" in graph
    graph["bmac_trio.binance.intervals"] = {"bmac_trio.recorder.service"}
    assert forbidden_imports(graph) == [
        "bmac_trio.binance.intervals (bmac_trio.binance) imports "
        "bmac_trio.recorder.service (bmac_trio.recorder)"
    ]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_relative_imports_resolve() -> None:
    tree_module = "bmac_trio.recorder.dispatcher"
    graph = import_graph()
    assert "bmac_trio.recorder.book" in graph[tree_module]


def pure_modules() -> list[str]:
    names = [m for m in source_modules() if room_of(m) in PURE_ROOMS]
    return sorted(names) + list(PURE_EXTRA)


@pytest.mark.parametrize("module", pure_modules())
def test_core_module_imports_no_io_library(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in ('trio', 'httpx', 'trio_websocket') if m in sys.modules); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
