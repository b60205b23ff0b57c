"""A generated package's imports, read from its source (never imported): which of its
modules each one imports, type-only imports included. The render tests check the graph
for circles; the pipeline tests check that each stage's deps in dvc.yaml list exactly the
files its module reaches."""

from __future__ import annotations

import ast
from pathlib import Path


def modules_of(package: Path, name: str) -> dict[str, Path]:
    """Every module of the package (dotted, under ``name``; a subpackage by its
    ``__init__``) and its file."""
    return {
        ".".join([name, *path.relative_to(package).with_suffix("").parts]).removesuffix(
            ".__init__"
        ): path
        for path in package.rglob("*.py")
    }


def import_graph(package: Path, name: str) -> dict[str, set[str]]:
    """Each module of the package and the package's modules it imports (``from a import
    b`` reaches ``a.b`` where that is a module, else ``a``)."""
    return graph_of(modules_of(package, name))


def graph_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    """:func:`import_graph` of the modules :func:`modules_of` found."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    found.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[module] = {other for other in found if other in modules and other != module}
    return graph


def reached_files(package: Path, name: str, module: str) -> set[Path]:
    """The files of the modules ``module`` (dotted, under ``name``) imports, transitively,
    its own included; packages' ``__init__`` are left out: they hold no logic that shapes
    an output."""
    modules = modules_of(package, name)
    graph = graph_of(modules)
    start = f"{name}.{module}"
    seen, todo = {start}, [start]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return {modules[each] for each in seen if modules[each].name != "__init__.py"}
