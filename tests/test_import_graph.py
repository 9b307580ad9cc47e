"""The import graph of the `harness` package has no circle, and the compiled kernels sit below the
engines: `harness._compiled` imports nothing from `sensitivity`, `problems` or `compare`.

Read from the source (ast), every import counted, module-level or inside a function: an import inside
a function is still a dependency a reader must follow, and a lazy import that closes a circle only
hides it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harness"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom, files) -> list[str]:
    """The harness modules a `from ... import ...` takes names from: `from pkg import sub` depends on
    the submodule `pkg.sub` alone, `from pkg import name` on `pkg` (its __init__)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in files else target)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the harness modules it imports (edges only to modules that exist)."""
    files = {(_module_name(p)): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(module, path.name == "__init__.py", node, files)
            else:
                continue
            edges.update(n for n in names if n in files and n != module)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
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


def test_the_walker_finds_a_circle():
    """The check can fail: a two-module circle is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_circle_in_harness():
    graph = import_graph()
    assert "harness.sensitivity._backward" in graph and graph["harness.sensitivity._backward"]
    cycles = _cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_relative_import_names_a_module_of_the_package():
    """A relative import that climbs out of `harness` or names no module is a broken import the graph
    above would silently leave out (it fails only when that line runs)."""
    files = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    broken = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                targets = _resolve(module, path.name == "__init__.py", node, files)
                broken += [(module, t) for t in targets if t not in files]
    assert not broken, broken


def test_compiled_kernels_sit_below_the_engines():
    graph = import_graph()
    above = ("harness.sensitivity", "harness.problems", "harness.compare", "harness.peers", "harness.julia")
    bad = sorted((m, t) for m, targets in graph.items() if m.startswith("harness._compiled")
                 for t in targets if t.startswith(above))
    assert not bad, bad
