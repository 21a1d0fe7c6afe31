"""The shape of the package: no import cycles between its modules (imports inside functions
count too), no file over MAX_LINES lines, the IR depending on nothing above it, and
``import graphcnn`` staying free of Numba.

Imports are read with ast, never executed. A module importing a package that contains it
(``import graphcnn as gc`` inside graphcnn/commands/demo.py) is not an edge: the package is
imported before any module in it. A package's ``__init__`` importing its own submodules is
not one either: that is the package's face.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "graphcnn"
MAX_LINES = 500

def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under `package`."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> list[str]:
    """Every dotted name the module's import statements mention, anywhere in the file,
    relative imports made absolute: ``from a.b import c`` gives a.b and a.b.c."""
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` refers to: itself, or the nearest enclosing module (a name
    imported from a module); None outside the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path = PACKAGE) -> nx.DiGraph:
    modules = module_files(package)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        for name in imported_names(module, path):
            target = resolve(name, modules)
            if target is None or target == module:
                continue
            if module.startswith(target + "."):      # a package that contains the module
                continue
            if path.name == "__init__.py" and target.startswith(module + "."):  # its face
                continue
            graph.add_edge(module, target)
    return graph


def cycles(graph: nx.DiGraph) -> list[set[str]]:
    """The sets of modules that import each other, directly or through others."""
    return [c for c in nx.strongly_connected_components(graph) if len(c) > 1]


# ---- the checker itself ---------------------------------------------------------------------

def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")            # the face: no edge
    (pkg / "a.py").write_text("import pkg\nfrom pkg.sub import b\n")  # pkg: contains a
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import f\n")
    (pkg / "c.py").write_text("from . import a\nimport os\n")
    graph = import_graph(pkg)
    assert set(graph.edges) == {("pkg.a", "pkg.sub"), ("pkg.a", "pkg.sub.b"),
                                ("pkg.sub.b", "pkg.a"), ("pkg.c", "pkg.a")}
    assert cycles(graph) == [{"pkg.a", "pkg.sub.b"}]


# ---- the package --------------------------------------------------------------------------------

def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles: {[sorted(c) for c in found]}"


def test_no_file_over_the_line_limit():
    root = PACKAGE.parent
    lines = {path.relative_to(root).as_posix(): path.read_text().count("\n")
             for path in module_files().values()}
    long = {p: n for p, n in lines.items() if n > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_the_ir_imports_nothing_above_it():
    """graphcnn.ir is the bottom layer: it may import only itself and graphcnn.errors (the op
    rules reach it through graphcnn.ir.rules, installed by graphcnn.ops)."""
    modules = module_files()
    outside = {}
    for module, path in modules.items():
        if module != "graphcnn.ir" and not module.startswith("graphcnn.ir."):
            continue
        for name in imported_names(module, path):
            if name.split(".")[0] != "graphcnn":
                continue
            target = resolve(name, modules) or name
            if not (target in ("graphcnn.ir", "graphcnn.errors")
                    or target.startswith("graphcnn.ir.")):
                outside.setdefault(module, set()).add(target)
    assert not outside, f"the IR imports from layers above it: {outside}"


def test_importing_graphcnn_loads_no_numba():
    """Importing graphcnn stays light: Numba (and llvmlite) load with the first compile."""
    code = ("import sys, graphcnn\n"
            "loaded = sorted(m for m in ('numba', 'llvmlite') if m in sys.modules)\n"
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE.parent)   # this checkout's graphcnn
    assert result.returncode == 0, result.stderr
