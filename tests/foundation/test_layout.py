"""The package's layout is its data flow: a wing imports only itself and the wings before it, and no modules
import each other in a circle (docs/design.md, "Layout"). Read from the source with ast, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

PACKAGE = REPO / "exporter" / "threenines"
# In data-flow order: input parsed at the edge → probers → contract → ledgers → exposition → alerting and the
# notifier → the serve process; the report, the generators, the demo and the CLI read from all of it.
WINGS = ("base", "config", "probes", "contract", "ledgers", "exposition", "alerting", "notify", "serve", "report",
         "dashboards", "zabbix", "demo", "commands", "cli")
BASE = {"threenines", "threenines.clock", "threenines.logs", "threenines.intervals"}
# What the redesign has not untangled yet (issue 17): a ratchet, only ever shrinking; an entry that no longer
# occurs fails the test too, so it is deleted when fixed.
KNOWN_WRONG: set[str] = set()
KNOWN_CIRCLES: set[tuple[str, ...]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wing(module: str) -> str:
    if module in BASE:
        return "base"
    return module.split(".")[1]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """Every threenines module this file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("threenines"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("threenines"):
            for alias in node.names:  # `from threenines.probes import wire` imports a module, not a name
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports(path, set(mods)) if m != name} for name, path in mods.items()}


def test_every_module_is_in_a_wing() -> None:
    for name in modules():
        assert wing(name) in WINGS, f"{name}: put it in one of the wings {WINGS} (docs/design.md, 'Layout')"


def test_no_wing_imports_a_later_one() -> None:
    wrong = [
        f"{name} ({wing(name)}) imports {dep} ({wing(dep)})"
        for name, deps in graph().items() for dep in sorted(deps)
        if WINGS.index(wing(dep)) > WINGS.index(wing(name))
    ]
    assert set(wrong) == KNOWN_WRONG


def test_no_import_circle() -> None:
    g = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                circles.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    # A package's __init__ importing its own submodules is how a package exports them, not a circle.
    circles = [c for c in circles if not any(c[i + 1].startswith(c[i] + ".") for i in range(len(c) - 1))]
    assert {tuple(c) for c in circles} == KNOWN_CIRCLES


def test_the_checks_see_a_wrong_import(tmp_path: Path) -> None:
    """The walk finds lazy imports and `from package import module`; without that the tests above prove nothing."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from threenines.probes import ping\n    import threenines.serve.process\n")
    assert imports(source, {"threenines.probes.ping"}) == {"threenines.probes.ping", "threenines.serve.process"}
