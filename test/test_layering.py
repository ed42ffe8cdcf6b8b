"""The rooms depend one way (`hiopt_ros` ← `sim` ← `offline`), the project's modules import no circle, and
the project's own imports sit at the module top.

An AST scan of every module under hiopt_ros/, sim/ and offline/ (nothing is imported, so the scan needs
no ROS, torch or acados): every `import x` / `from x import y` (at module level or inside functions) that
names a project module is an edge. A module of a lower room must not import a higher room's module; among
module-level imports (the ones that run when the module is imported) the graph of project modules has no
strongly connected component of more than one module. An import of a project module inside a function is
allowed only when that module pulls in a heavy library at import time (:data:`HEAVY`, followed through the
module-level imports), when moving it to the top would close a circle, or when the line says why with
``# noqa: PLC0415`` (ruff's rule name; ruff's own PLC0415 is not enabled: it also flags the ~300
function-level imports of third-party libraries, which are deliberate — see docs/development.md).
"""
import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("hiopt_ros", "sim", "offline")  # lowest first: a room may import only its own and lower rooms
RANK = {room: i for i, room in enumerate(ROOMS)}
#: third-party packages whose import is slow or needs a special installation (ROS, acados, GPU stacks): a
#: project module importing one of them at its top may be imported late, inside the function that needs it
HEAVY = {"torch", "acados_template", "casadi", "rclpy", "rcl_interfaces", "launch", "launch_ros", "launch_testing",
         "pybullet", "matplotlib", "ray", "cvxpy", "cvxpylayers", "stable_baselines3", "tensorboard",
         "geometry_msgs", "nav_msgs", "std_msgs", "visualization_msgs", "diagnostic_msgs", "sensor_msgs",
         "builtin_interfaces", "lifecycle_msgs", "rosgraph_msgs", "tf2_ros"}


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
    """(imported project module, line, at module level) for every import statement of `path`; a heavy
    third-party package imported at module level is reported as ("<heavy>", line, True)."""
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
            elif resolved is None and id(node) in top_level and target.split(".")[0] in HEAVY:
                found.append(("<heavy>", node.lineno, True))
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
              if target != "<heavy>" and RANK[room(target)] > RANK[room(m)]]
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
            if top and target != "<heavy>" and not (target.startswith(m + ".") or m.startswith(target + ".")):
                g.add_edge(m, target)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, "module-level import circles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def module_level_closure(edges: dict, module: str) -> set[str]:
    """`module` and every project module importing it runs (module-level imports, parent packages first)."""
    seen, stack = set(), [module]
    while stack:
        m = stack.pop()
        if m in seen or m == "<heavy>":
            continue
        seen.add(m)
        parts = m.split(".")
        stack += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in edges]
        stack += [t for t, _, top in edges[m] if top]
    return seen


def test_project_imports_inside_functions_only_where_they_must_be(graph):
    modules, edges = graph
    heavy = {m for m in modules if any(t == "<heavy>" for t, _, _ in edges[m])}
    late = []
    for m, found in edges.items():
        lines = modules[m].read_text().splitlines()
        for target, line, top in found:
            if top or target == "<heavy>" or "noqa: PLC0415" in lines[line - 1]:
                continue
            pulled = module_level_closure(edges, target)
            if pulled & heavy or m in pulled:   # a heavy library, or a circle if it moved up
                continue
            late.append(f"{modules[m].relative_to(ROOT)}:{line} imports {target} inside a function")
    assert not late, (f"{len(late)} imports of the project's own light modules sit inside functions: move them to "
                      f"the module top (or say why on the line with `# noqa: PLC0415`):\n" + "\n".join(late))


def test_the_scan_sees_imports_of_every_kind(tmp_path):
    """The scanner itself: absolute, relative, function-level and `from package import module` imports."""
    modules = {"hiopt_ros": ROOT / "hiopt_ros/__init__.py", "hiopt_ros.tables": ROOT / "hiopt_ros/tables.py",
               "sim": ROOT / "sim/__init__.py", "sim.world": ROOT / "sim/world.py",
               "sim.course": ROOT / "sim/course.py"}
    src = tmp_path / "x.py"
    src.write_text("import hiopt_ros.tables\nfrom . import world\nimport torch.nn\n"
                   "def f():\n    from sim.course import Course\n    import numpy\n    import pybullet\n")
    found = imports("sim.x", src, modules)
    assert ("hiopt_ros.tables", 1, True) in found
    assert ("sim.world", 2, True) in found
    assert ("<heavy>", 3, True) in found          # torch at the top makes sim.x heavy
    assert ("sim.course", 5, False) in found
    assert len(found) == 4                       # numpy is light, pybullet inside a function is not sim.x's import
