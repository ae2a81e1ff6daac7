"""The sfteval import graph is acyclic (dependencies run one way), read from the source
with `ast`, not by importing: every import that runs counts, lazy ones inside functions
included (a lazy import is still a dependency); imports under `if TYPE_CHECKING:` are
annotations only and never run, so they are left out (import-linter's
exclude_type_checking_imports). Lazy registries of import strings are not imports."""

from __future__ import annotations

import ast
from pathlib import Path

import sfteval

ROOT = Path(sfteval.__file__).parent

# Edges of cycles known and owned elsewhere, each to be cut by its owner (then deleted here;
# a test below fails once an edge is gone, so this list cannot go stale).
KNOWN_CYCLE_EDGES = {
}


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if _is_type_checking(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules it imports (`from pkg import sub` counts as pkg.sub)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs or [base]
            for t in targets:
                while t and t not in mods:  # `import a.b.c` -> the deepest module that exists
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b  # lazy, and a submodule by name\n")
    (pkg / "b.py").write_text("from . import c\nfrom .sub.d import x\n")
    (pkg / "c.py").write_text("import os\nimport pkg.sub.d\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text("from .. import a\nx = 1\n")
    g = import_graph(pkg)
    assert g["pkg.a"] == {"pkg.b"} and g["pkg.b"] == {"pkg.c", "pkg.sub.d"} and g["pkg.c"] == {"pkg.sub.d"}
    assert g["pkg.sub.d"] == {"pkg.a"}
    assert find_cycle(g) == ["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d", "pkg.a"]
    assert "sfteval.diagnoses.memorisation" in import_graph()["sfteval.diagnoses.overfitting"]


def test_type_checking_imports_are_left_out(tmp_path: Path) -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n")
    names = {a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"b"}


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_sfteval_import_graph_is_acyclic() -> None:
    graph = import_graph()
    for a, b in KNOWN_CYCLE_EDGES:
        graph[a].discard(b)
    assert find_cycle(graph) is None


def test_known_cycle_edges_still_exist() -> None:
    graph = import_graph()
    assert [e for e in KNOWN_CYCLE_EDGES if e[1] not in graph.get(e[0], set())] == []
