"""The house reads top-down: each stage imports only the stages below it.

The import graph is read from the source (``ast``), counting imports inside functions too (a
late import is still a dependency) and leaving out ``if TYPE_CHECKING:`` blocks (annotations
only). Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so those count too.
:data:`FLOORS` is the stage map the README's architecture section and the design guide show.

One explicit exception, :data:`LAZY`: the package ``fedlpp``'s module ``__getattr__`` (PEP 562)
imports :mod:`fedlpp.api` (the top floor) from the bottom floor. It runs only when a user asks for
``fedlpp.train``, ``fedlpp.attack`` or ``fedlpp.bench``, never when a module of the project
imports another, so its imports are left out of the graph; :func:`test_the_lazy_exception_is_only_the_api`
holds it to exactly that function and that import, and every other check stays strict.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fedlpp", "attacks", "benchmarks")

# bottom to top; a unit is a first-level module or folder of fedlpp/, or the whole of attacks/
# or benchmarks/. A unit may import its own floor (without a cycle) and the floors below.
FLOORS: list[tuple[str, ...]] = [
    ("fedlpp", "fedlpp.errors", "fedlpp.io", "fedlpp.meta", "fedlpp.seeding", "fedlpp.outdir",
     "fedlpp.tomlwrite", "fedlpp.scaffold",
     "fedlpp.own_packages"),  # finds attacks/, benchmarks/ beside fedlpp/ (imports neither)
    ("fedlpp.typed", "fedlpp.device"),
    ("fedlpp.config", "fedlpp.registry"),
    ("fedlpp.quant", "fedlpp.data", "fedlpp.models", "fedlpp.store"),
    ("fedlpp.evaluate", "fedlpp.protocol"),  # protocol: the round's records and bytes
    ("fedlpp.aggregators", "fedlpp.adversaries", "fedlpp.defenses"),  # plugins of a round
    ("fedlpp.federation",),  # the engine's parts: server, client, validation, master update
    ("fedlpp.methods",),  # training methods, and their parts assembled for a run
    # a run: resolve, prepare, drive, evaluate, select, observe, trace; describe: a plugin's
    # options and the resolved config, in words (`fedlpp ls KIND NAME`, `fedlpp config show`)
    ("fedlpp.run", "fedlpp.describe"),
    ("fedlpp.flower",),  # the same run over Flower
    ("fedlpp.train_command",),  # what `fedlpp train` and fedlpp.train share: checks, the run written
    ("attacks",),
    ("benchmarks",),
    # the command (its parser and main; its commands) and the Python API: the modules of fedlpp/
    # that reach attacks, benchmarks
    ("fedlpp.cli", "fedlpp.commands", "fedlpp.discovery", "fedlpp.api"),
]
# module -> (its one top-level function whose imports are left out of the graph, what they may be)
LAZY: dict[str, tuple[str, frozenset[str]]] = {
    "fedlpp": ("__getattr__", frozenset({"fedlpp.api"})),  # fedlpp.train etc., loaded on use
}
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, outside ``if TYPE_CHECKING:`` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
            else:
                visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def _project_module(name: str) -> str | None:
    """The longest project module ``name`` starts with (``a.b.C`` -> ``a.b``)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if modules()[module].name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def lazy_nodes(module: str, tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports of ``module``'s :data:`LAZY` function (none for every other module)."""
    if module not in LAZY:
        return []
    name = LAZY[module][0]
    return [n for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name
            for n in import_nodes(f)]


def targets_of(module: str, nodes: list[ast.Import | ast.ImportFrom]) -> frozenset[str]:
    """The project modules ``nodes`` (imports of ``module``) import, with the packages whose
    ``__init__`` that runs."""
    targets: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            source = _absolute(module, node)
            names = [f"{source}.{a.name}" for a in node.names]
        for name in names:
            target = _project_module(name)
            if target is None:
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # a.b.c runs a/__init__, a/b/__init__ too
                step = ".".join(parts[:i])
                if step in modules() and not (module == step or module.startswith(step + ".")):
                    targets.add(step)
    targets.discard(module)
    return frozenset(targets)


@cache
def imports_of(module: str) -> frozenset[str]:
    """The project modules ``module`` imports, but for its :data:`LAZY` function's imports."""
    tree = ast.parse(modules()[module].read_text())
    lazy = {id(n) for n in lazy_nodes(module, tree)}
    return targets_of(module, [n for n in import_nodes(tree) if id(n) not in lazy])


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "fedlpp" else parts[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
            connect(v)
    return found


def test_no_import_cycle_between_modules():
    graph = {m: set(imports_of(m)) for m in modules()}
    assert cycles(graph) == []


def test_no_import_cycle_between_the_stages_of_fedlpp():
    graph: dict[str, set[str]] = {}
    for m in modules():
        graph.setdefault(unit_of(m), set()).update(
            unit_of(t) for t in imports_of(m) if unit_of(t) != unit_of(m))
    assert cycles(graph) == []


def test_every_unit_has_a_floor():
    assert {unit_of(m) for m in modules()} <= set(FLOOR), \
        sorted({unit_of(m) for m in modules()} - set(FLOOR))


def test_no_import_reaches_a_higher_floor():
    upward = sorted(f"{m} -> {t}" for m in modules() for t in imports_of(m)
                    if FLOOR.get(unit_of(t), -1) > FLOOR.get(unit_of(m), -1))
    assert upward == []


def test_the_lazy_exception_is_only_the_api():
    """The one import left out of the graph is ``fedlpp.__getattr__``'s of ``fedlpp.api``: that
    function exists, imports exactly that, and the API is on the top floor."""
    for module, (name, allowed) in LAZY.items():
        tree = ast.parse(modules()[module].read_text())
        nodes = lazy_nodes(module, tree)
        assert nodes, f"{module} has no function {name} with an import: drop it from LAZY"
        assert targets_of(module, nodes) == allowed
        assert all(FLOOR[unit_of(t)] == len(FLOORS) - 1 for t in allowed)
    assert set(LAZY) == {"fedlpp"}


def test_no_module_imports_another_modules_private_names():
    private = []
    for module, path in modules().items():
        for node in import_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and _project_module(_absolute(module, node)):
                private += [f"{module}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert private == []


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_no_code_path_builds_a_bitsandbytes_layer():
    """A bitsandbytes layer's CPU forward changes on AVX-512-bf16 CPUs (in eval mode, on an input
    that needs no grad, ``Linear4bit`` repacks its weight and its LoRA grads come back None), so
    no path may build one untested: bnb is used only through its block-wise functions
    (``fedlpp/quant/bnb.py``, checked by ``tests/test_quant_bnb.py`` on whatever CPU runs it).
    A new path that builds such a layer must set ``support_avx512bf16_for_cpu = False`` and come
    with a test of its LoRA gradients after an eval-mode forward, then leave this list."""
    layers = {"Linear4bit", "Linear8bitLt", "LinearNF4", "LinearFP4", "Params4bit",
              "BitsAndBytesConfig", "load_in_4bit", "load_in_8bit"}
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else (
                node.id if isinstance(node, ast.Name) else (
                    node.arg if isinstance(node, ast.keyword) else None))
            if name in layers:
                found.append(f"{module}: {name}")
    assert found == []


@pytest.mark.parametrize("source, found", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(source, found):
    assert cycles(source) == found


def test_a_function_level_import_counts(tmp_path):
    tree = ast.parse("def f():\n    import x.y\nif TYPE_CHECKING:\n    import z\n")
    assert [type(n).__name__ for n in import_nodes(tree)] == ["Import"]
