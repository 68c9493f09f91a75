"""The package's shape: no import cycles (function-level imports included), small
modules, and a public API that is importable from the package itself."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import rasp_compiler

PACKAGE = Path(rasp_compiler.__file__).resolve().parent
#: no module is longer than this many lines (a file should read in one sitting)
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports at run time, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in modules:
                    out.add(sub)
                elif target in modules:
                    out.add(target)
    out.discard(name)
    return out


def import_graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for dep in _imports(name, path, modules):
            g.add_edge(name, dep)
    return g


def test_the_import_graph_sees_the_known_edges():
    g = import_graph()
    assert g.has_edge("rasp_compiler.compiler.pipeline", "rasp_compiler.compiler.plan.make")
    assert g.has_edge("rasp_compiler.compiler.assemble", "rasp_compiler.compiler.emit.attention")
    assert g.number_of_edges() > 60


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_the_language_does_not_depend_on_the_compiler():
    g = import_graph()
    bad = [
        (a, b)
        for a, b in g.edges
        if a.startswith("rasp_compiler.language") and b.startswith("rasp_compiler.compiler")
    ]
    assert not bad


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name):
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_the_public_api():
    from rasp_compiler import (  # noqa: F401
        CompiledModel,
        CompileError,
        RaspError,
        compile_program,
        evaluate,
        load_model,
        load_program,
        save_model,
        verify,
    )

    assert set(rasp_compiler.__all__) == {"__version__", *rasp_compiler._EXPORTS}
    for name in rasp_compiler._EXPORTS:
        assert getattr(rasp_compiler, name) is not None
    with pytest.raises(AttributeError):
        rasp_compiler.not_a_name  # noqa: B018


def test_public_names_are_not_shadowed_by_submodules():
    # ``import rasp_compiler.X`` binds attribute X on the package: a submodule named like a
    # public function would replace it (``from rasp_compiler import verify`` -> a module)
    import importlib

    for name in rasp_compiler._EXPORTS:
        assert not (PACKAGE / f"{name}.py").exists() and not (PACKAGE / name).is_dir(), name
    importlib.import_module("rasp_compiler.verification")
    from rasp_compiler import verify

    assert callable(verify)


def test_every_package_is_in_the_wheel():
    # pyproject lists packages by hand (the grammar folder is mapped into the package):
    # a new sub-package must be listed, or an installed copy cannot import it
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parent.parent
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(root).parts)
        for p in (root / "rasp_compiler").rglob("__init__.py")
    }
    assert found <= listed, f"not in pyproject's packages: {sorted(found - listed)}"
    assert "rasp_compiler.grammar" in listed
