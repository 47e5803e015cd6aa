"""The import rule of the package layout, read from the source with ``ast`` (nothing is imported).

Three rules (docs/architecture.md explains the layers):

- ``freshtoken._core`` is sans-I/O: it imports only itself and the standard library, and of the
  standard library nothing that runs threads, event loops or sockets, nor ``time.sleep``.
- Each client library is imported by the few modules listed in ``CLIENT_LIBRARY_HOMES`` only, so
  that a change of client library touches one place.
- No import cycle among freshtoken's modules (module-level imports; imports under
  ``if TYPE_CHECKING:`` never run, and function-local ones run after every module is loaded).

The checker takes a source root, so that the last tests can feed it a bad tree and see it fail.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

CORE = "freshtoken._core"

#: Standard-library modules the core may not import: each one waits, spawns or does I/O.
CORE_FORBIDDEN_STDLIB = frozenset({"threading", "_thread", "asyncio", "socket", "concurrent"})

#: Client libraries and the modules allowed to import them at run time (``TYPE_CHECKING``-only
#: imports name types and are not counted).
CLIENT_LIBRARY_HOMES: dict[str, frozenset[str]] = {
    "httpx": frozenset(
        {
            # The token-endpoint sender: the one module that performs token requests.
            "freshtoken._oauth.sender",
            # The public httpx face: drives the 401 flow as an httpx.Auth.
            "freshtoken.httpx",
            # The demo's API calls go through freshtoken.httpx's TokenAuth, on an httpx client.
            "freshtoken._cli.demo",
            # The test server's admin client controls a server in another process over HTTP.
            "freshtoken.testing._process",
        }
    ),
    "requests": frozenset(
        {
            # The public requests face.
            "freshtoken.requests",
            # The demo compares the blog post's requests-based pattern (demo_seed) with requests.
            "freshtoken._cli.demo",
            "freshtoken._cli.demo_seed",
        }
    ),
    "aiohttp": frozenset({"freshtoken.aiohttp"}),
    "redis": frozenset({"freshtoken.redis"}),
    "grpc": frozenset({"freshtoken.grpc"}),
}


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as an absolute module name."""

    importer: str
    target: str
    line: int
    module_level: bool
    type_checking: bool


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module below ``root``, by dotted name."""
    return {module_name(root, path): path for path in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import in one module, with where it stands (module level, under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, module_level: bool, type_checking: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(name, alias.name, child.lineno, module_level, type_checking)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(name, is_package, child)
                for alias in child.names:
                    # ``from pkg import mod`` imports the module pkg.mod when there is one.
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in known else base
                    yield Import(name, target, child.lineno, module_level, type_checking)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), module_level, True)
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), module_level, False)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, False, type_checking)
            else:
                yield from visit(child, module_level, type_checking)

    yield from visit(tree, True, False)


def _uses_time_sleep(path: Path) -> list[int]:
    """Lines that call ``time.sleep`` (under any alias of ``time``) or import ``sleep`` from it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = {"time"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "time"}
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "sleep"
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            lines += [node.lineno for a in node.names if a.name == "sleep"]
    return lines


def _top(target: str) -> str:
    return target.partition(".")[0]


def core_violations(root: Path) -> list[str]:
    """What a ``_core`` module imports from outside the core and the allowed standard library."""
    found = modules(root)
    known = set(found)
    problems = []
    for name, path in found.items():
        if not (name == CORE or name.startswith(CORE + ".")):
            continue
        for imp in imports_of(name, path, known):
            top = _top(imp.target)
            inside = imp.target == CORE or imp.target.startswith(CORE + ".")
            stdlib = top in sys.stdlib_module_names and top not in CORE_FORBIDDEN_STDLIB
            if not inside and not (stdlib and top != "freshtoken") and imp.target != "__future__":
                problems.append(f"{name}:{imp.line} imports {imp.target}")
        problems += [f"{name}:{line} uses time.sleep" for line in _uses_time_sleep(path)]
    return problems


def client_library_violations(root: Path) -> list[str]:
    """Run-time imports of a client library outside the modules allowed to import it."""
    found = modules(root)
    known = set(found)
    problems = []
    for name, path in found.items():
        for imp in imports_of(name, path, known):
            homes = CLIENT_LIBRARY_HOMES.get(_top(imp.target))
            if homes is not None and not imp.type_checking and name not in homes:
                problems.append(f"{name}:{imp.line} imports {imp.target}")
    return problems


def import_cycles(root: Path) -> list[list[str]]:
    """The import cycles among the modules below ``root`` (module-level, run-time imports)."""
    found = modules(root)
    known = set(found)
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        for imp in imports_of(name, path, known):
            runs_at_import = imp.module_level and not imp.type_checking
            if runs_at_import and imp.target in known and imp.target != name:
                graph[name].add(imp.target)
    return _strongly_connected(graph)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); returns the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_the_core_imports_only_itself_and_the_non_blocking_standard_library() -> None:
    assert core_violations(SRC) == []


def test_each_client_library_is_imported_only_by_its_modules() -> None:
    assert client_library_violations(SRC) == []


def test_there_is_no_import_cycle() -> None:
    assert import_cycles(SRC) == []


def test_the_core_package_exists_and_holds_the_lifecycle() -> None:
    """Guards the other tests against passing vacuously after a rename."""
    found = modules(SRC)
    assert {
        "freshtoken._core.lifecycle",
        "freshtoken._core.token",
        "freshtoken._oauth.sender",
    } <= set(found)


def _write(root: Path, name: str, text: str) -> None:
    path = root.joinpath(*name.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checker_finds_a_bad_tree(tmp_path: Path) -> None:
    for package in ("freshtoken", "freshtoken._core", "freshtoken._runtime"):
        _write(tmp_path, package + ".__init__", "")
    _write(tmp_path, "freshtoken._core.policy", "import threading\nimport math\n")
    _write(
        tmp_path,
        "freshtoken._core.lifecycle",
        "import time as t\n\ndef wait():\n    t.sleep(1)\n    from freshtoken._runtime import a\n",
    )
    _write(tmp_path, "freshtoken._core.clock", "from time import sleep\nfrom . import policy\n")
    _write(tmp_path, "freshtoken._runtime.a", "from . import b\n")
    _write(tmp_path, "freshtoken._runtime.b", "from .a import x\nimport httpx\n")
    _write(
        tmp_path,
        "freshtoken._runtime.c",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import redis\n"
        "    from .d import y\nelse:\n    import aiohttp\n",
    )
    _write(tmp_path, "freshtoken._runtime.d", "from .c import z\n")

    assert sorted(core_violations(tmp_path)) == [
        "freshtoken._core.clock:1 uses time.sleep",
        "freshtoken._core.lifecycle:4 uses time.sleep",
        "freshtoken._core.lifecycle:5 imports freshtoken._runtime.a",
        "freshtoken._core.policy:1 imports threading",
    ]
    assert sorted(client_library_violations(tmp_path)) == [
        "freshtoken._runtime.b:2 imports httpx",
        "freshtoken._runtime.c:6 imports aiohttp",
    ]
    assert import_cycles(tmp_path) == [["freshtoken._runtime.a", "freshtoken._runtime.b"]]
