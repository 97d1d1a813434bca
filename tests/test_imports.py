"""No import circles among alignzoo's modules.

The graph has one node per file (a package is its ``__init__.py``) and an edge for every import statement anywhere
in the file, at module level or inside a function: a lazy import defers a circle to run time, it does not remove
it. ``importlib.import_module("...")`` is not a statement and adds no edge (the plugin manager finds built-in
modules that way, by design). A statement names these modules:

- ``import alignzoo.a.b`` and ``from alignzoo.a.b import x``: ``alignzoo.a.b`` (and ``alignzoo.a.b.x`` if ``x`` is
  a submodule);
- ``from alignzoo.a import b``: the package ``alignzoo.a`` itself, whose namespace it reads, and ``alignzoo.a.b``
  if ``b`` is a submodule. So ``from alignzoo.board import stats`` in ``board/build.py`` closes a circle with
  ``board/__init__.py`` when that imports ``build``; ``import alignzoo.board.stats as stats`` does not;
- the ``__init__.py`` files Python runs before a submodule (``alignzoo/a/__init__.py`` for ``import alignzoo.a.b``)
  add no edge: otherwise every package would be circular with each submodule it re-exports.

Relative imports are resolved against the file's package. A circle is a strongly connected component of more than
one module; the failure names its modules and the statements that close it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "alignzoo"


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package_dir`` (a package is its ``__init__``)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def named_modules(node: ast.AST, package: str) -> list[str]:
    """The dotted names an import statement names (see the module docstring); ``package`` resolves relative ones."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(package_dir: Path) -> dict[str, dict[str, int]]:
    """module -> {module it imports: line of the first statement that does}, for the modules of ``package_dir``."""
    modules = module_files(package_dir)
    root = package_dir.name

    def known(name: str) -> str | None:  # the longest prefix that is a module here: `a.b.func` -> `a.b`
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = graph.setdefault(module, {})
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in named_modules(node, package):
                target = known(name) if name.split(".")[0] == root else None
                if target is not None and target != module:
                    edges[target] = min(edges.get(target, node.lineno), node.lineno)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
    return sorted(found)


def describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    inside = set(component)
    edges = [f"{a} -> {b} (line {line})" for a in component for b, line in sorted(graph[a].items()) if b in inside]
    return f"{len(component)} modules: " + "; ".join(edges)


def test_no_import_circle_among_alignzoo_modules():
    graph = import_graph(PACKAGE)
    assert "alignzoo.plugins" in graph and graph["alignzoo.run"], "the graph is empty: wrong package directory?"
    found = circles(graph)
    assert not found, "import circles (move the shared code into a lower module):\n" + "\n".join(
        describe(graph, c) for c in found)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return tmp_path / "pkg"


def test_a_lazy_import_still_closes_a_circle(tmp_path):
    pkg = _package(tmp_path, {"__init__.py": "", "a.py": "from pkg.b import g\n",
                              "b.py": "def g():\n    from pkg import a\n    return a\n"})
    graph = import_graph(pkg)
    assert circles(graph) == [["pkg.a", "pkg.b"]]
    assert describe(graph, ["pkg.a", "pkg.b"]) == "2 modules: pkg.a -> pkg.b (line 1); pkg.b -> pkg.a (line 2)"


def test_reading_a_sibling_through_the_package_init_is_a_circle_importing_it_directly_is_not(tmp_path):
    files = {"__init__.py": "from pkg.build import build\n", "stats.py": "LEVEL = 0.95\n",
             "build.py": "from pkg import stats\n\ndef build():\n    return stats.LEVEL\n"}
    assert circles(import_graph(_package(tmp_path / "through", files))) == [["pkg", "pkg.build"]]
    files["build.py"] = "import pkg.stats as stats\n\ndef build():\n    return stats.LEVEL\n"
    assert circles(import_graph(_package(tmp_path / "direct", files))) == []


def test_relative_imports_and_import_module_strings(tmp_path):
    pkg = _package(tmp_path, {"__init__.py": "", "sub/__init__.py": "", "sub/x.py": "from .. import y\n",
                              "y.py": "import importlib\nimportlib.import_module('pkg.sub.x')\n"})
    graph = import_graph(pkg)
    assert graph["pkg.sub.x"] == {"pkg": 1, "pkg.y": 1} and graph["pkg.y"] == {}
    assert circles(graph) == []
