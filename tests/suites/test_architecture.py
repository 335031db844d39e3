"""The package's shape, checked on its source: recipes apart from the library, no import cycles, small
modules. Every import counts, those inside functions and under TYPE_CHECKING included: a lazy
import is still an arrow a reader has to follow."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "seal"
MAX_LINES = 420  # "about 400": the made-up benchmark's template table is the one module near it


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The seal modules `name` imports (a `from package import module` names the module)."""
    tree = ast.parse(MODULES[name].read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("seal")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seal") and not node.level:
            out |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                    for a in node.names}
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def test_the_package_was_read():
    assert {"seal.cli", "seal.rl.outer_loop", "seal.recipes.restem", "seal.domains.arc.domain"} <= set(MODULES)
    assert "seal.rl.reward" in GRAPH["seal.rl.outer_loop"]


def test_only_the_cli_imports_recipes_and_recipes_never_import_each_other():
    recipes = {m for m in MODULES if m.startswith("seal.recipes.")}
    wrong = sorted(f"{a} imports {b}" for a, deps in GRAPH.items() for b in deps & recipes
                   if a != "seal.cli" and not (a == b))
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
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
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_module_is_long():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_library_does_not_depend_on_a_domain_except_through_the_protocols():
    """The outer loop (seal.rl) is domain-agnostic: domains plug in through seal.rl.protocols."""
    wrong = sorted(f"{a} imports {b}" for a, deps in GRAPH.items() if a.startswith("seal.rl.")
                   for b in deps if b.startswith("seal.domains."))
    assert not wrong, wrong
