"""The rooms depend one way (`hiopt_ros` ← `sim` ← `offline`) and the project's modules import no circle.

An AST scan of every module under hiopt_ros/, sim/ and offline/ (nothing is imported, so the scan needs
no ROS, torch or acados): every `import x` / `from x import y` (at module level, inside functions, inside
`if TYPE_CHECKING:`) that names a project module is an edge. A module of a lower room must not import a
higher room's module; among module-level imports (the ones that run when the module is imported) the graph
of project modules has no strongly connected component of more than one module.
"""
import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("hiopt_ros", "sim", "offline")  # lowest first: a room may import only its own and lower rooms
RANK = {room: i for i, room in enumerate(ROOMS)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for room in ROOMS for p in sorted((ROOT / room).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (a module, or the package holding an imported attribute)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for every import statement of `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    # an import inside `if`/`try` at the top of the module also runs at import time
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top_level.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = resolve(target, modules)
            if resolved is not None and resolved != module:
                found.append((resolved, node.lineno, id(node) in top_level))
    return found


def room(module: str) -> str:
    return module.split(".")[0]


@pytest.fixture(scope="module")
def graph():
    modules = project_modules()
    assert len(modules) > 100, f"found only {len(modules)} modules under {ROOMS}"
    return modules, {m: imports(m, p, modules) for m, p in modules.items()}


def test_no_import_from_a_lower_room_to_a_higher_one(graph):
    modules, edges = graph
    upward = [f"{modules[m].relative_to(ROOT)}:{line} imports {target} ({room(m)} → {room(target)})"
              for m, found in edges.items() for target, line, _ in found
              if RANK[room(target)] > RANK[room(m)]]
    assert not upward, (f"{len(upward)} imports run from a lower room to a higher one "
                        f"(rooms: {' ← '.join(ROOMS)}; move what both need into the lower room):\n"
                        + "\n".join(upward))


def test_no_import_cycle_at_module_level(graph):
    modules, edges = graph
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for m, found in edges.items():
        for target, _, top in found:
            # a package's __init__ runs before its submodules; an edge from a submodule to its own package
            # (or the package to its submodule) is Python's normal package loading, not a circle
            if top and not (target.startswith(m + ".") or m.startswith(target + ".")):
                g.add_edge(m, target)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, "module-level import circles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_the_scan_sees_imports_of_every_kind(tmp_path):
    """The scanner itself: absolute, relative, function-level and `from package import module` imports."""
    modules = {"hiopt_ros": ROOT / "hiopt_ros/__init__.py", "hiopt_ros.tables": ROOT / "hiopt_ros/tables.py",
               "sim": ROOT / "sim/__init__.py", "sim.world": ROOT / "sim/world.py",
               "sim.course": ROOT / "sim/course.py"}
    src = tmp_path / "x.py"
    src.write_text("import hiopt_ros.tables\nfrom . import world\n"
                   "def f():\n    from sim.course import Course\n    import numpy\n")
    found = imports("sim.x", src, modules)
    assert ("hiopt_ros.tables", 1, True) in found
    assert ("sim.world", 2, True) in found
    assert ("sim.course", 4, False) in found
    assert len(found) == 3
