"""The import contract of src/awm_jax (docs/guide/architecture.md), read from the source with `ast`:

- layers: the tasks (envs/awm_envs) import nothing of awm_jax; core imports nothing of runner, analysis,
  api or cli; runner nothing of analysis, api or cli; analysis nothing of api or cli; none of them
  imports the package itself (`awm_jax/__init__.py` imports the API);
- no circle of imports between modules;
- no import of awm_jax or awm_envs inside a function, but for the few in `FUNCTION_LEVEL` with their reason.

Every import counts, at module level and inside functions, absolute and relative (`from . import x`);
`from package import name` is an import of the module package.name where that module exists. The method
registry's "module:factory" strings are imported by name when a method is built; they are not imports of
the module that names them and are not read here. The checks are tried on small trees written here too,
so a broken rule is seen to fail.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC, ENVS = ROOT / "src", ROOT / "envs"

# the layers a layer must not import
FORBIDDEN = {
    "core": {"runner", "analysis", "api", "cli", "package"},
    "runner": {"analysis", "api", "cli", "package"},
    "analysis": {"api", "cli", "package"},
}

# (module, imported module) -> why the import has to stay inside a function. Empty: no awm_jax module needs
# one (awm_envs never imports awm_jax, so importing it at the top closes no circle). Optional or heavy
# third-party packages (matplotlib, rliable, orbax, rejax, brax) stay imported where they are used; they are
# not first-party and not checked here.
FUNCTION_LEVEL: dict[tuple[str, str], str] = {}

FIRST_PARTY = ("awm_jax", "awm_envs")


@dataclasses.dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    line: int
    in_function: bool


def modules(src: Path, package: str = "awm_jax") -> dict[str, Path]:
    """{dotted module name: file} of every .py file of `package` under `src`."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _in_functions(tree: ast.AST) -> set[int]:
    """ids of the import nodes that stand inside a function or lambda."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return inside


def imports(src: Path, package: str = "awm_jax") -> list[Import]:
    """Every import of a first-party module by a module of `package` under `src`."""
    mods = modules(src, package)
    out = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        inside = _in_functions(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package, one level up per extra dot
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    head = ".".join(base + ([node.module] if node.module else []))
                else:
                    head = node.module
                targets = [f"{head}.{a.name}" if f"{head}.{a.name}" in mods else head for a in node.names]
            else:
                continue
            for t in dict.fromkeys(targets):
                if t.split(".")[0] in FIRST_PARTY:
                    out.append(Import(name, t, node.lineno, id(node) in inside))
    return out


def layer(module: str) -> str:
    """core, runner, analysis, api, cli or package (awm_jax itself); other first-party code: other."""
    parts = module.split(".")
    if parts[0] != "awm_jax":
        return "other"
    if len(parts) == 1:
        return "package"
    return parts[1] if parts[1] in ("core", "runner", "analysis", "api", "cli") else "other"


def upward(found: list[Import]) -> list[str]:
    return [f"{i.source} (line {i.line}) imports {i.target}: {layer(i.source)} may not import {layer(i.target)}"
            for i in found if layer(i.target) in FORBIDDEN.get(layer(i.source), ())]


def cycles(found: list[Import], package: str = "awm_jax") -> list[str]:
    """One chain 'a -> b -> ... -> a' (with the import lines) per circle found between modules of `package`."""
    graph: dict[str, dict[str, int]] = {}
    for i in found:
        if i.target.split(".")[0] == package and i.target != i.source:
            graph.setdefault(i.source, {}).setdefault(i.target, i.line)
    state, stack, out, seen = {}, [], [], set()

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                ring = stack[stack.index(nxt):]
                key = frozenset(ring)
                if key not in seen:
                    seen.add(key)
                    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(ring, ring[1:] + ring[:1])]
                    out.append(" -> ".join(steps + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return out


def function_level(found: list[Import], allowed=FUNCTION_LEVEL) -> list[str]:
    return [f"{i.source} (line {i.line}) imports {i.target} inside a function: move it to the top of the module"
            for i in found if i.in_function and (i.source, i.target) not in allowed]


@pytest.fixture(scope="module")
def found():
    return imports(SRC)


def test_the_import_graph_is_read(found):
    """The parser sees the imports it must: a sanity check against an empty graph passing everything."""
    edges = {(i.source, i.target) for i in found}
    assert ("awm_jax.runner.run", "awm_jax.core.methods") in edges
    assert ("awm_jax.api", "awm_jax.runner.run_folder") in edges
    assert len(modules(SRC)) > 40


def test_no_layer_imports_a_layer_above_it(found):
    bad = upward(found)
    assert not bad, "imports up a layer:\n" + "\n".join(bad)


def test_the_tasks_import_nothing_of_awm_jax():
    bad = [f"{i.source} (line {i.line}) imports {i.target}" for i in imports(ENVS, "awm_envs")
           if i.target.split(".")[0] == "awm_jax"]
    assert not bad, "the tasks import awm_jax:\n" + "\n".join(bad)


def test_no_circle_of_imports(found):
    bad = cycles(found)
    assert not bad, "circles of imports:\n" + "\n".join(bad)


def test_no_first_party_import_inside_a_function_but_the_listed_ones(found):
    bad = function_level(found)
    assert not bad, "imports inside functions:\n" + "\n".join(bad)
    stale = set(FUNCTION_LEVEL) - {(i.source, i.target) for i in found if i.in_function}
    assert not stale, f"listed in FUNCTION_LEVEL but not imported inside a function any more: {sorted(stale)}"


def _tree(tmp_path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "awm_jax" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checks_fail_on_a_broken_tree(tmp_path):
    """An upward import (also a relative one), a circle and an import inside a function are each reported."""
    src = _tree(tmp_path, {
        "__init__.py": "",
        "api.py": "",
        "core/__init__.py": "",
        "core/a.py": "from awm_jax.core import b\n",
        "core/b.py": "from . import c\n",
        "core/c.py": "import awm_jax.core.a\n",
        "core/d.py": "def f():\n    from ..runner import run\n",
        "runner/__init__.py": "",
        "runner/run.py": "from awm_jax.api import x\nfrom awm_jax.core.models import y\n",
        "analysis/__init__.py": "",
        "analysis/e.py": "import awm_jax\n",
    })
    found = imports(src)
    assert sorted(upward(found)) == [
        "awm_jax.analysis.e (line 1) imports awm_jax: analysis may not import package",
        "awm_jax.core.d (line 2) imports awm_jax.runner.run: core may not import runner",
        "awm_jax.runner.run (line 1) imports awm_jax.api: runner may not import api",
    ]
    assert cycles(found) == ["awm_jax.core.a (line 1) -> awm_jax.core.b (line 1) -> awm_jax.core.c (line 1) "
                             "-> awm_jax.core.a"]
    assert function_level(found) == ["awm_jax.core.d (line 2) imports awm_jax.runner.run inside a function: move "
                                     "it to the top of the module"]
    assert function_level(found, {("awm_jax.core.d", "awm_jax.runner.run"): "a reason"}) == []
