"""The layering of the code, checked on its source with ``ast`` so that it stays true.

- ``graphs`` imports none of ``datasets``, ``metanets``, ``tasks`` or the scripts; ``datasets`` and
  ``metanets`` import neither each other, nor ``tasks``, nor the scripts; ``tasks`` not the scripts.
- ``metanets`` does no file I/O (the scripts read files and hand it dicts and tensors).
- No first-party import inside a function, except one that guards an optional dependency and says so
  in a comment (``# optional dependency: ...``).
- No import cycle between files (imports that run when a module loads; ``if TYPE_CHECKING:`` blocks
  only serve annotations and do not count).
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("graphs", "datasets", "metanets", "tasks")
SCRIPTS = ("train", "eval")
FIRST_PARTY = (*PACKAGES, *SCRIPTS, "tests", "benchmarks")
FORBIDDEN = {
    "graphs": {"datasets", "metanets", "tasks", *SCRIPTS},
    "datasets": {"metanets", "tasks", *SCRIPTS},
    "metanets": {"datasets", "tasks", *SCRIPTS},
    "tasks": set(SCRIPTS),
}
FILE_IO = {"open", "torch.load", "torch.save", "np.load", "np.save", "np.savez", "numpy.load", "numpy.save",
           "h5py.File", "json.load", "json.dump", "pickle.load", "pickle.dump", "os.makedirs", "os.remove",
           "os.replace", "os.rename", "shutil.copy", "shutil.move", "safe_open", "save_file", "load_file"}


@dataclass
class Import:
    """One import statement resolved to a first-party module."""

    source: str  # importing module, e.g. graphs.trace
    target: str  # imported module, e.g. graphs.layout
    line: int
    in_function: bool
    type_checking: bool
    comment: str


def python_files(tops=FIRST_PARTY) -> dict[str, str]:
    """``{module name: path}`` of every first-party Python file."""
    out = {}
    for top in tops:
        if os.path.isfile(os.path.join(ROOT, f"{top}.py")):
            out[top] = os.path.join(ROOT, f"{top}.py")
            continue
        for d, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [x for x in dirs if not x.startswith((".", "__pycache__"))]
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".")
                    out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(d, f)
    return out


def _resolve(name: str, modules: dict[str, str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: str, modules: dict[str, str]) -> list[Import]:
    """The first-party imports of one file."""
    src = open(path).read()
    lines = src.splitlines()
    tree = ast.parse(src)
    found: list[Import] = []
    is_pkg = path.endswith("__init__.py")

    def visit(node, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            tc = type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        parts = module.split(".")[: len(module.split(".")) - child.level + (1 if is_pkg else 0)]
                        base = ".".join(parts + ([base] if base else []))
                    names = [f"{base}.{a.name}" for a in child.names] or [base]
                comment = " ".join(lines[max(0, child.lineno - 2):child.end_lineno])
                for n in names:
                    target = _resolve(n, modules)
                    if target is not None and target != module:
                        found.append(Import(module, target, child.lineno, in_function, type_checking, comment))
            visit(child, fn, tc)

    visit(tree, False, False)
    return found


def all_imports(tops=FIRST_PARTY) -> list[Import]:
    """Every first-party import of every first-party file."""
    modules = python_files(tops)
    return [imp for m, p in modules.items() for imp in imports_of(m, p, modules)]


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one module (or a module importing itself)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_packages_import_only_downwards():
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in all_imports((*PACKAGES, *SCRIPTS))
           if i.target.split(".")[0] in FORBIDDEN.get(i.source.split(".")[0], set())]
    assert not bad, bad


def test_the_rule_sees_a_violation(tmp_path):
    """Sensitivity: an upward import in a file is found."""
    path = tmp_path / "x.py"
    path.write_text("import datasets.hdf5\nfrom metanets import models\ndef f():\n    from tasks import base\n")
    modules = {"graphs.x": str(path), "datasets.hdf5": "", "metanets.models": "", "tasks.base": ""}
    found = [(i.target, i.in_function) for i in imports_of("graphs.x", str(path), modules)]
    assert found == [("datasets.hdf5", False), ("metanets.models", False), ("tasks.base", True)]
    cycle = [Import("a", "b", 1, False, False, ""), Import("b", "c", 1, False, False, ""),
             Import("c", "a", 1, False, False, ""), Import("c", "d", 1, False, False, "")]
    assert import_cycles(cycle) == [["a", "b", "c"]]


def test_metanets_does_no_file_io():
    calls = []
    for module, path in python_files(("metanets",)).items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in FILE_IO:
                calls.append(f"{module}:{node.lineno} {ast.unparse(node.func)}(...)")
    assert not calls, calls


def test_no_first_party_import_inside_a_function():
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in all_imports()
           if i.in_function and "optional dependency" not in i.comment]
    assert not bad, bad


def test_no_import_cycles_between_files():
    runtime = [i for i in all_imports((*PACKAGES, *SCRIPTS)) if not i.type_checking and not i.in_function]
    assert import_cycles(runtime) == []
