"""Imports point one way: scripts -> converters -> yolo_tpu, and no circle inside a package.

Every module under ``converters/`` and ``yolo_tpu/`` is parsed with ``ast`` (not imported),
counting imports inside functions too, so a lazy import cannot hide a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("converters", "yolo_tpu")


def module_name(path: Path) -> str:
    """Dotted module name of a file under ROOT (``pkg/__init__.py`` -> ``pkg``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, package: str | None = None) -> set[str]:
    """Absolute dotted names every import statement in ``path`` refers to, at any depth;
    relative imports resolve against ``package`` (by default the file's own package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            # ``from pkg import mod`` imports the submodule pkg.mod when it exists
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    """Edges module -> project modules it imports, for every module of PACKAGES."""
    files = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = {n for n in imported_names(path) if n in files and n != name}
        # importing pkg.mod also runs pkg/__init__; that edge is not a design choice, skip it
        edges[name] = {t for t in targets if t not in PACKAGES}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def all_imports(pkg: str) -> dict[str, set[str]]:
    """Every dotted name imported by each module of ``pkg``."""
    return {module_name(p): imported_names(p) for p in sorted((ROOT / pkg).rglob("*.py"))}


def test_parser_sees_imports_inside_functions(tmp_path):
    """The parser counts a lazy ``from .x import y`` inside a function body."""
    src = tmp_path / "m.py"
    src.write_text("import sys\n\ndef f():\n    from .detect import main\n"
                   "    if sys:\n        import json\n")
    assert {"sys", "json", "yolo_tpu.detect", "yolo_tpu.detect.main"} <= imported_names(
        src, package="yolo_tpu")


def test_cycle_finder_finds_a_cycle():
    """The cycle finder reports a circle through three modules and none in a chain."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_import_cycle(pkg):
    """No circle among a package's modules, counting imports inside functions."""
    edges = {m: {t for t in ts if t.split(".")[0] == pkg} for m, ts in graph().items()
             if m.split(".")[0] == pkg}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_runtime_imports_neither_converters_nor_scripts():
    """yolo_tpu is the bottom layer: it never imports converters or scripts."""
    bad = {m: sorted(n for n in names if n.split(".")[0] in ("converters", "scripts"))
           for m, names in all_imports("yolo_tpu").items()}
    assert not {m: v for m, v in bad.items() if v}


def test_converters_import_no_scripts():
    """converters never imports scripts (scripts -> converters -> yolo_tpu)."""
    bad = {m: sorted(n for n in names if n.split(".")[0] == "scripts")
           for m, names in all_imports("converters").items()}
    assert not {m: v for m, v in bad.items() if v}


def test_no_module_imports_a_main():
    """Shared command-line helpers live in a module of their own, never in ``__main__``."""
    bad = {m: sorted(n for n in names if n.endswith(".__main__"))
           for pkg in PACKAGES for m, names in all_imports(pkg).items()}
    assert not {m: v for m, v in bad.items() if v}


@pytest.mark.parametrize("importer, imported", [
    ("yolo_tpu.batch", "yolo_tpu.detect"),      # shared pieces: yolo_tpu.cli
    ("yolo_tpu.cluster", "yolo_tpu.batch"),     # shared pieces: yolo_tpu.jobs
    ("yolo_tpu.edgetpu", "yolo_tpu.backends"),  # shared pieces: yolo_tpu.interpreters
    ("converters.keras_model", "converters.darknet"),  # the leaky forms: converters.leaky
])
def test_no_reverse_edge(importer, imported):
    """The modules that once imported each other now import their shared pieces instead."""
    assert imported not in graph()[importer]
