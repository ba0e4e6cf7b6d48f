"""The layering of docs/architecture.md, checked on the source: every `import` of every module under
slam/ (at top level, inside functions and under TYPE_CHECKING, and `importlib.import_module` of a
literal name) against the table of allowed dependencies, and no import cycle between modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SLAM = Path(__file__).resolve().parents[2] / "slam"

CORE = {"errors", "geometry", "io", "solvers", "eval"}
SOURCES = {"sources", "synthetic"}
PARTS = {"frontend", "odometry", "loop", "map"}
BELOW_APP = CORE | SOURCES | PARTS | {"config", "system", "progress", "run_folder", "priority"}
# component (slam/<name> package or slam/<name>.py) -> the components it may import
ALLOWED: dict[str, set[str]] = {
    # core: math and file formats; no threads, images or terminal
    "errors": set(),
    "geometry": {"errors"},
    "io": {"errors", "geometry"},
    "solvers": {"errors", "geometry", "io"},
    "eval": {"errors", "geometry", "io", "solvers"},
    # sources: frames and calibration
    "sources": CORE | {"synthetic"},      # only sources/open.py, which opens synthetic:SCENE (see below)
    "synthetic": CORE | {"sources"},      # only sources.base: Frame, Calibration, Source (see below)
    # parts, above the map; frontend and odometry side by side: no part imports another
    "map": CORE,
    "frontend": CORE | {"sources", "map"},
    "odometry": CORE | {"map", "priority"},
    "loop": CORE | {"map", "priority"},
    # pipeline: the run configuration (the parts' own config modules) and the threads
    "config": CORE | {"frontend", "odometry", "loop"},  # only their config modules (see below)
    "progress": set(),                    # the terminal progress line: a leaf the pipeline hands numbers
    "priority": set(),                    # the workers' thread priority: a leaf
    "run_folder": {"errors"},             # which files of a folder are a run's (system clears, run checks)
    "system": CORE | SOURCES | PARTS | {"config", "progress", "run_folder", "priority"},
    # the precision study: runs the pipeline many times (slam study)
    "study": BELOW_APP,
    # app
    "cli": BELOW_APP | {"commands"},
    "commands": BELOW_APP | {"viewer", "report", "cli", "study"},
    "viewer": BELOW_APP,
    "report": BELOW_APP,
    "__main__": {"cli"},
    "slam": set(),                        # slam/__init__.py
}
# modules that may import a component the rest of theirs may not: (importer prefix, imported prefix)
NARROW = {
    ("slam.sources", "slam.synthetic"): {"slam.sources.open"},
    ("slam.config", "slam.frontend"): {"slam.frontend.config"},
    ("slam.config", "slam.odometry"): {"slam.odometry.config"},
    ("slam.config", "slam.loop"): {"slam.loop.config"},
}
LEAVES = ("slam.frontend.config", "slam.odometry.config", "slam.loop.config", "slam.errors", "slam.progress", "slam.priority")  # import nothing of slam


def _module_name(path: Path) -> str:
    parts = path.relative_to(SLAM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SLAM.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every slam module a file imports ('from a import b' counts as a.b when b is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the project uses absolute ones")
        out |= {n for n in names if n == "slam" or n.startswith("slam.")}
    return out


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "slam"


GRAPH = {m: _imports(p, _modules()) for m, p in _modules().items()}


def test_every_component_is_in_the_table() -> None:
    unknown = sorted({_component(m) for m in GRAPH} - set(ALLOWED))
    assert not unknown, f"new slam components {unknown}: give them a row in ALLOWED (docs/architecture.md)"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_follow_the_layers(module: str) -> None:
    mine = _component(module)
    bad = []
    for imp in sorted(GRAPH[module]):
        theirs = _component(imp)
        if theirs == mine:
            continue
        if theirs not in ALLOWED.get(mine, set()):
            bad.append(f"{imp} ({mine} may import only {', '.join(sorted(ALLOWED.get(mine, ()))) or 'nothing'})")
            continue
        for (a, b), allowed in NARROW.items():
            if (module + ".").startswith(a + ".") and (imp + ".").startswith(b + "."):
                if not any((module + ".").startswith(x + ".") or (imp + ".").startswith(x + ".") for x in allowed):
                    bad.append(f"{imp} (from {a} only {', '.join(sorted(allowed))} may reach {b})")
    assert not bad, f"{module} imports " + "; ".join(bad)


def test_narrow_rules_hold() -> None:
    """The one synthetic edge each way, and configuration leaves that import nothing of slam."""
    assert {i for i in GRAPH["slam.synthetic.source"] if i.startswith("slam.sources")} == {"slam.sources.base"}
    for m in (m for m in GRAPH if m.startswith("slam.synthetic")):
        assert {i for i in GRAPH[m] if i.startswith("slam.sources")} <= {"slam.sources.base"}, m
    for leaf in LEAVES:
        assert GRAPH[leaf] == set(), f"{leaf} must import nothing of slam, imports {sorted(GRAPH[leaf])}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over module imports: every component is one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_what_it_checks(tmp_path: Path) -> None:
    """The parser finds imports at every depth, so a violation could not hide in a function."""
    f = tmp_path / "x.py"
    f.write_text("import slam.map.map\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                 "    from slam.frontend.tracker import Tracker\n"
                 "def g():\n    from slam.geometry import lie\n    importlib.import_module('slam.synthetic.source')\n")
    mods = _modules()
    assert _imports(f, mods) == {"slam.map.map", "slam.frontend.tracker", "slam.geometry.lie",
                                 "slam.synthetic.source"}
