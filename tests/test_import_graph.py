"""No two modules of frossl_hub, train and serve import each other, directly or round a longer
loop, and the library never imports the trainer or the service.

The graph is read from the source (``ast``), so every ``import`` counts: at module level,
inside functions and under ``TYPE_CHECKING``. ``from pkg import name`` is an edge to the
submodule ``pkg.name`` when there is one, else to ``pkg``; a module's implicit import of its
parent package is not an edge (every submodule would loop through its package's
``__init__``), and neither is ``importlib.import_module`` with a string.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("frossl_hub", "train", "serve")

Graph = Dict[str, Set[str]]


def _module_names(root: Path, packages: Iterable[str]) -> Dict[str, Path]:
    names = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _own_module(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """The longest prefix of ``name`` that is one of ours (None for third-party imports)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.AST, module: str, is_package: bool, modules: Dict[str, Path]
              ) -> List[Optional[str]]:
    """Our modules an import statement loads (None for a third-party one)."""
    if isinstance(node, ast.Import):
        return [_own_module(alias.name, modules) for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    # `from a import b`: the submodule a.b when there is one, else a itself
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _own_module(base, modules)
            for alias in node.names]


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
    """module -> the modules of ``packages`` it imports anywhere in its source."""
    modules = _module_names(root, packages)
    graph: Graph = {}
    for module, path in modules.items():
        targets: Set[Optional[str]] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets.update(_imported(node, module, path.name == "__init__.py", modules))
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: Graph) -> List[List[str]]:
    """The import loops of ``graph``: its strongly connected components of 2+ modules (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT)


def test_no_module_imports_itself_round_a_loop(graph):
    assert cycles(graph) == []


def test_the_library_never_imports_the_trainer_or_the_service(graph):
    offending = {module: sorted(t for t in targets if t.split(".")[0] in ("train", "serve"))
                 for module, targets in graph.items() if module.split(".")[0] == "frossl_hub"}
    assert {m: t for m, t in offending.items() if t} == {}


def test_the_graph_sees_every_kind_of_import(graph):
    assert "serve.gallery" in graph["serve.registry"]  # relative, module level
    assert "frossl_hub.hub" in graph["serve.registry"]  # absolute, inside a function
    assert "frossl_hub.gallery" in graph["serve.gallery"]  # under TYPE_CHECKING
    assert "frossl_hub.losses" in graph["frossl_hub.objectives"]  # from a package
    assert "frossl_hub.losses.frossl" in graph["frossl_hub.losses"]  # `from .frossl import ...`
    assert "train.view_config" in graph["train.augment"]


def test_loops_are_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def f():\n    from pkg import c\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (package / "d.py").write_text("from . import a\n")
    assert cycles(import_graph(tmp_path, ["pkg"])) == [["pkg.a", "pkg.b", "pkg.c"]]
