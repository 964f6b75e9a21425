"""The shape of the package, checked from its source: module size and the direction imports go.

Read from the files with :mod:`ast` (nothing is imported): an import edge ``a -> b`` exists when module ``a``
imports ``b`` anywhere (module level, inside a function, or under ``TYPE_CHECKING``), where ``from p import n``
points at ``p.n`` when that is a module and at ``p`` otherwise. Parent packages are not counted as edges: importing
``sovereign_mcp.gpu.manager`` runs ``sovereign_mcp/gpu/__init__.py`` first, which is how packages work, not a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sovereign_mcp"
MAX_LINES = 600

# Modules over MAX_LINES that a split in progress is about to fix; each must really be over, so the list can't go stale.
KNOWN_LONG: set[str] = set()
# Import circles known and scheduled for removal (each a sorted tuple of module names).
KNOWN_CIRCLES: set[tuple[str, ...]] = set()


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under the package."""
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                origin = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                full = f"{origin}.{alias.name}"
                targets.add(full if full in modules else origin)
    return {target for target in targets if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(tuple(sorted(component)))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_module_over_600_lines() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    over = {name for name, count in lengths.items() if count > MAX_LINES}
    assert over == KNOWN_LONG, {name: lengths.get(name) for name in over ^ KNOWN_LONG}


def test_no_import_circle() -> None:
    assert set(_circles(_graph())) == KNOWN_CIRCLES


def test_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [("a", "b", "c")]


@pytest.mark.parametrize("leaf", [
    "sovereign_mcp.config",
    "sovereign_mcp.paths",
])
def test_leaves_import_no_engine(leaf: str) -> None:
    """Settings import only settings: no engine module of the package is reachable from them, counting the
    parent packages' ``__init__`` that Python runs on the way (``import a.b.c`` runs ``a/b/__init__.py``)."""
    graph = _graph()
    seen, todo = set(), [leaf]
    while todo:
        name = todo.pop()
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in (graph[name] | parents) - seen:
            seen.add(target)
            todo.append(target)
    modules = _modules()
    engines = {name for name in seen if modules[name].name != "__init__.py"
               and not name.endswith((".config", ".models", ".errors", ".records", ".paths", ".entry_types"))}
    assert not engines, sorted(engines)


def test_sources_cite_upstream_not_reading_notes() -> None:
    """Docstrings cite the spec, repository path or issue a rule comes from, never the team's reading notes
    (the shared reference file beside the project is not shipped with it)."""
    notes = "REFERENCE" + ".md"
    roots = [PACKAGE, PACKAGE.parent / "tests", PACKAGE.parent / "benchmarks"]
    citing = sorted(str(p.relative_to(PACKAGE.parent)) for root in roots for p in root.rglob("*.py")
                    if notes in p.read_text(encoding="utf-8"))
    assert citing == []
