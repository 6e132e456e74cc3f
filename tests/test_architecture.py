"""The import rules of docs/architecture.md: imports run one way and no module takes part in a circle.

Every ``import`` in the package counts, including those under ``TYPE_CHECKING`` and inside functions: a
circle a reader has to untangle is one whether Python trips on it at start-up or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "localagent"

FORBIDDEN = {
    "localagent.agent": ("localagent.server", "localagent.embedded", "localagent.runtime", "localagent.cli"),
    "localagent.server": ("localagent.agent", "localagent.embedded", "localagent.runtime", "localagent.cli"),
    "localagent.embedded": ("localagent.agent", "localagent.runtime", "localagent.cli"),
    "localagent.prefect": (
        "localagent.agent",
        "localagent.server",
        "localagent.embedded",
        "localagent.runtime",
        "localagent.cli",
    ),
    "localagent.api": (
        "localagent.agent",
        "localagent.server",
        "localagent.embedded",
        "localagent.runtime",
        "localagent.cli",
    ),
    "localagent.config": ("localagent.agent", "localagent.server", "localagent.embedded", "localagent.runtime"),
    "localagent.runtime": ("localagent.server", "localagent.cli"),
}
"""``package: packages none of its modules may import`` (the runtime reaches the server only through
``localagent.embedded``)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {module for module in found if module in known and module != name}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: _imports(path, name, known) for name, path in paths.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_module_takes_part_in_an_import_circle() -> None:
    graph = _graph()
    # A package's __init__ importing its own modules is how a package exposes them, not a circle.
    graph = {
        name: {
            target
            for target in targets
            if not (_within(name, target) and PACKAGE.joinpath(*target.split(".")[1:]).is_dir())
        }
        for name, targets in graph.items()
    }
    assert _circles(graph) == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in _graph().items()
        if _within(name, package)
        for target in targets
        for banned in FORBIDDEN[package]
        if _within(target, banned)
    )
    assert wrong == []


def test_the_rules_see_imports() -> None:
    """The checker itself: it finds the agent's import of the port, and would flag a circle."""
    assert "localagent.api.port" in _graph()["localagent.agent.supervisor"]
    assert _circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
