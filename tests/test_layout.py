"""Package layout rules: no import cycles between mmrec modules, modules of one job, and each
artifact kind named once (mmrec/kinds.py).

A cycle means two modules each need the other, so neither can be read (or tested) alone;
the fix is to move the shared piece down to the module that owns it. Function-level imports
count too: deferring an import hides a cycle from Python, not from the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmrec"

# Modules allowed over MAX_LINES, each with the reason it stays whole.
MAX_LINES = 450
LONG_MODULES: dict[str, str] = {
    # Constrained JSON decoding over the taxonomy: one grammar and its state machine, read
    # together; owned by the attributes engineer, who may split it.
    "mmrec/attributes/decode.py": "one decoder state machine",
}


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (a package is its __init__)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """Absolute name of the module a (possibly relative) ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    # A package's own __init__ is its level-1 anchor; a plain module's anchor is its parent.
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join(base + ([node.module] if node.module else []))


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest mmrec module that ``name`` is, or lives in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module of ``package`` -> the modules of ``package`` it imports, at any depth in the file."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, node, is_package)
                for alias in node.names:
                    # `from pkg import sub` where sub is a module imports that submodule.
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                owner = _owner(target, modules)
                # A package importing its own submodule is not an edge back to itself.
                if owner and owner != module:
                    graph[module].add(owner)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None. Iterative DFS, deterministic order."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
            elif colour[child] == GREY:
                path = [n for n, _ in stack]
                return path[path.index(child) :] + [child]
            elif colour[child] == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_find_cycle_reports_the_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_graph_counts_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from pkg import b\n",                         # a submodule named by a from-import
        "b.py": "def f():\n    from .sub import c\n",          # function level, relative
        "sub/__init__.py": "from . import c\n",                 # a package's own submodule
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.d\n",
        "d.py": "from ..outside import x\nimport os\n",          # leaves the package: no edge
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub.c"},
                     "pkg.sub": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.d"}, "pkg.d": set()}
    (pkg / "d.py").write_text("def g():\n    from pkg.a import thing\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.d", "pkg.a"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path: Path):
    name = str(path.relative_to(ROOT))
    lines = len(path.read_text().splitlines())
    if name in LONG_MODULES:
        return
    assert lines <= MAX_LINES, (
        f"{name} has {lines} lines (> {MAX_LINES}): split it by responsibility, "
        "or add it to LONG_MODULES with the reason it stays whole"
    )


def test_long_module_allow_list_is_current():
    # An entry whose module shrank or disappeared would silently allow a future long file.
    stale = [
        name
        for name in LONG_MODULES
        if not (ROOT / name).exists() or len((ROOT / name).read_text().splitlines()) <= MAX_LINES
    ]
    assert not stale, f"remove from LONG_MODULES (gone or now short): {stale}"


# ArtifactStore methods whose first argument is a kind.
_STORE_METHODS = {"load", "current_version", "versions", "write", "resolve", "kind_dir"}


def _kind_literals(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line, what) for each kind name written as a string literal where a kind is meant."""
    def lit(node: ast.AST) -> str | None:
        ok = isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
        return node.value if ok else None

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and lit(node.value):
            for t in node.targets:
                if isinstance(t, ast.Name) and t.id.endswith("KIND"):
                    out.append((node.lineno, f"{t.id} = {node.value.value!r}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in _STORE_METHODS and node.args and lit(node.args[0]):
            out.append((node.lineno, f".{node.func.attr}({node.args[0].value!r})"))
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Call) \
                and isinstance(node.left.func, ast.Attribute) and node.left.func.attr == "get" \
                and node.left.args and isinstance(node.left.args[0], ast.Constant) \
                and node.left.args[0].value == "kind" and any(lit(c) for c in node.comparators):
            out.append((node.lineno, "manifest input compared with a kind literal"))
    return out


def test_artifact_kinds_are_named_once():
    # A kind is a contract between writer and readers; a second spelling of it fails only at
    # run time ("no such artifact"), so code passes the constant from mmrec/kinds.py.
    from mmrec import kinds

    names = {v for k, v in vars(kinds).items() if k.isupper() and isinstance(v, str)}
    found = [f"{path.relative_to(ROOT)}:{line}: {what}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != PACKAGE / "kinds.py"
             for line, what in _kind_literals(ast.parse(path.read_text()), names)]
    assert not found, "use mmrec.kinds instead of:\n" + "\n".join(found)


def test_kind_names_are_distinct():
    from mmrec import kinds

    values = [v for k, v in vars(kinds).items() if k.isupper()]
    assert len(values) == len(set(values))
