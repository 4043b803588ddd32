"""The package's shape: the core never imports a workflow, no module imports itself back, no module is too long."""

from __future__ import annotations

import ast
from pathlib import Path

import mamer

PACKAGE = Path(mamer.__file__).parent
CORE = (
    "atomic", "checkpoint", "config", "device", "distributed", "forward", "losses", "metrics", "modality", "objective",
    "scoring",
)  # fmt: skip
CORE_PACKAGES = ("model", "encoders", "data")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = ["mamer", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The mamer modules `path` imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def is_core(name: str) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and (parts[1] in CORE or parts[1] in CORE_PACKAGES)


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) for name, path in found.items()}


def test_the_core_never_imports_a_workflow():
    offending = {
        name: sorted(i for i in imported if i.startswith(("mamer.workflows", "mamer.cli")))
        for name, imported in graph().items()
        if is_core(name)
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_core_and_workflows_cover_every_module():
    entry = {"mamer", "mamer.__main__"}
    workflows = ("mamer.workflows", "mamer.cli")
    stray = [n for n in modules() if n not in entry and not is_core(n) and not n.startswith(workflows)]
    assert stray == []


def test_no_import_cycle():
    edges = graph()
    # Only module-level imports make cycles that matter at import time, but a cycle through a deferred import
    # is still a tangle: walk them all.
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(edges.get(name, ())):
            if nxt == name or nxt.startswith(name + "."):  # a package re-exporting its own modules
                continue
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [name, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_module_is_over_400_lines():
    long = {
        name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_init_files_hold_no_logic():
    for name, path in modules().items():
        if path.name != "__init__.py" or name == "mamer":
            continue
        tree = ast.parse(path.read_text())
        logic = [type(n).__name__ for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert logic == [], f"{path}: {logic}"


def drawn_files(text: str) -> set[str]:
    """The .py paths the tree in docs/layout.md draws (two spaces a level, folders end in '/')."""
    block = text.split("```text\n", 1)[1].split("```", 1)[0]
    folders: list[str] = []
    files = set()
    for line in block.splitlines():
        name = line.strip().split()[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        elif name.endswith(".py"):
            files.add("/".join([*folders, name]))
    return files


def test_the_layout_drawing_matches_the_files():
    drawing = (Path(__file__).parents[1] / "docs" / "layout.md").read_text()
    actual = {"mamer/" + p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    drawn = drawn_files(drawing)
    assert (sorted(actual - drawn), sorted(drawn - actual)) == ([], [])


def test_the_readme_is_for_users():
    """Under 15 KB, opening with the two set-up commands; measurements live in docs/."""
    readme = Path(__file__).parents[1] / "README.md"
    text = readme.read_text()
    assert len(text.encode()) < 15 * 1024
    first = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert first[0].endswith("&& mamer quickstart") and first[1].endswith("&& python -m pytest")
